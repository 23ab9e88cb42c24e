//! The crate's error type, for construction and configuration only: request
//! problems are always answered with HTTP responses.

/// A configuration or start-up error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An environment variable or setting holds a value that cannot be used.
    #[error(
        "invalid value for {name}: {reason} (got {:?})",
        crate::redact_url(value)
    )]
    InvalidSetting {
        /// The variable or setting, e.g. `STREAM_MAX_LOAD_VOLUME`.
        name: &'static str,
        /// What was given, with a URL's password hidden
        /// ([`redact_url`](crate::redact_url)): it is printed.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `STREAM_RANGE_HEADER_REGEX_PATTERN` is not a regular expression.
    #[error("invalid value for STREAM_RANGE_HEADER_REGEX_PATTERN: {source}")]
    RangeRegex {
        /// Why the pattern does not compile.
        #[from]
        source: regex::Error,
    },
    /// The media root cannot be used.
    #[error("media root {}: {source}", path.display())]
    MediaRoot {
        /// The root as given.
        path: std::path::PathBuf,
        /// Why it cannot be resolved.
        #[source]
        source: std::io::Error,
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
