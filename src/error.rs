//! The crate's error type, for construction and configuration only: request
//! problems are always answered with HTTP responses.

/// A configuration or start-up error.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An environment variable or setting holds a value that cannot be used.
    #[error("invalid value for {name}: {reason} (got {value:?})")]
    InvalidSetting {
        /// The variable or setting, e.g. `STREAM_MAX_LOAD_VOLUME`.
        name: &'static str,
        /// What was given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting needs another one that is missing.
    #[error("{name} requires {needs}")]
    Missing {
        /// The setting that was given.
        name: &'static str,
        /// What it needs.
        needs: &'static str,
    },
}
