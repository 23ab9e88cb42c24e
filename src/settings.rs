//! [`Settings`]: django-sage-streaming's five `STREAM_*` settings with its
//! defaults, readable from environment variables of the same names.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `STREAM_DEFAULT_PERMISSION_CLASSES` | `AllowAny` | comma-separated [`PermissionClass`] names; all must allow |
//! | `STREAM_DEFAULT_VIDEO_PATH_URL_VAR` | `path` | query variable naming the media path |
//! | `STREAM_MAX_LOAD_VOLUME` | `8` | cap per ranged response, in MiB (1 MiB = 1 048 576 bytes) |
//! | `STREAM_WATCH_LOG_ENABLED` | `true` | whether the watch log records requests |
//! | `STREAM_RANGE_HEADER_REGEX_PATTERN` | unset (RFC 9110 grammar) | regex with two capture groups, for Django compatibility |
//! | `STREAM_SIGNING_KEY` | unset | secret for the `SignedUrl` permission class |
//!
//! ```
//! use sage_stream::settings::Settings;
//!
//! let settings = Settings::from_lookup(|name| match name {
//!     "STREAM_MAX_LOAD_VOLUME" => Some("16".to_owned()),
//!     _ => None,
//! }).unwrap();
//! assert_eq!(settings.max_load_volume, 16 * 1024 * 1024); // bytes in code
//! assert_eq!(settings.max_load_volume_mib(), 16);
//! assert_eq!(settings.default_video_path_url_var, "path");
//! assert!(Settings::from_lookup(|_| Some("x".to_owned())).is_err());
//! ```

use std::str::FromStr;
use std::sync::Arc;

use regex::Regex;
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::extension::{MediaPathSource, DEFAULT_PATH_VAR};
use crate::permission::{AllOf, AllowAny, IsAuthenticated, Permission, SignedUrl};

/// One mebibyte, the unit of `STREAM_MAX_LOAD_VOLUME`.
pub const MIB: u64 = 1024 * 1024;

#[cfg(feature = "serde")]
mod mib {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(bytes / super::MIB)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        u64::deserialize(d).map(|mib| mib.saturating_mul(super::MIB))
    }
}

/// Names of the settings' environment variables.
pub mod vars {
    /// Permission classes.
    pub const PERMISSION_CLASSES: &str = "STREAM_DEFAULT_PERMISSION_CLASSES";
    /// Query variable of the media path.
    pub const PATH_VAR: &str = "STREAM_DEFAULT_VIDEO_PATH_URL_VAR";
    /// Cap in MiB.
    pub const MAX_LOAD_VOLUME: &str = "STREAM_MAX_LOAD_VOLUME";
    /// Watch log on or off.
    pub const WATCH_LOG_ENABLED: &str = "STREAM_WATCH_LOG_ENABLED";
    /// Range regex.
    pub const RANGE_REGEX: &str = "STREAM_RANGE_HEADER_REGEX_PATTERN";
    /// Signing key for `SignedUrl`.
    pub const SIGNING_KEY: &str = "STREAM_SIGNING_KEY";
}

/// A built-in permission, by the name used in settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum PermissionClass {
    /// [`AllowAny`].
    AllowAny,
    /// [`IsAuthenticated`].
    IsAuthenticated,
    /// [`SignedUrl`], keyed by `STREAM_SIGNING_KEY`.
    SignedUrl,
}

/// A permission class name that is not one of [`PermissionClass`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission class {name:?}; known: AllowAny, IsAuthenticated, SignedUrl")]
pub struct UnknownPermissionClass {
    name: String,
}

impl FromStr for PermissionClass {
    type Err = UnknownPermissionClass;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Accept Django's dotted paths such as `rest_framework.permissions.AllowAny`.
        match s.rsplit('.').next().unwrap_or(s) {
            "AllowAny" => Ok(Self::AllowAny),
            "IsAuthenticated" => Ok(Self::IsAuthenticated),
            "SignedUrl" => Ok(Self::SignedUrl),
            other => Err(UnknownPermissionClass {
                name: other.to_owned(),
            }),
        }
    }
}

/// The stream endpoint's settings; [`Default`] gives django-sage-streaming's.
///
/// With feature `serde` it reads from a config file (the server's TOML) under
/// the same names in lower case; `max_load_volume` is written in MiB there,
/// as in the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Settings {
    /// `STREAM_DEFAULT_PERMISSION_CLASSES`: all must allow.
    pub default_permission_classes: Vec<PermissionClass>,
    /// `STREAM_DEFAULT_VIDEO_PATH_URL_VAR`.
    pub default_video_path_url_var: String,
    /// `STREAM_MAX_LOAD_VOLUME`: the cap per ranged response, in **bytes**
    /// (the variable and the config file say MiB; they are converted here).
    #[cfg_attr(feature = "serde", serde(with = "mib"))]
    pub max_load_volume: u64,
    /// `STREAM_WATCH_LOG_ENABLED`.
    pub watch_log_enabled: bool,
    /// `STREAM_RANGE_HEADER_REGEX_PATTERN`; `None` selects the RFC 9110 grammar.
    pub range_header_regex_pattern: Option<String>,
    /// `STREAM_SIGNING_KEY`, the secret of the `SignedUrl` class.
    pub signing_key: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            default_permission_classes: vec![PermissionClass::AllowAny],
            default_video_path_url_var: DEFAULT_PATH_VAR.to_owned(),
            max_load_volume: MIB * 8,
            watch_log_enabled: true,
            range_header_regex_pattern: None,
            signing_key: None,
        }
    }
}

fn invalid(name: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidSetting {
        name,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

impl Settings {
    /// The defaults overridden by the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The defaults overridden by whatever `lookup` returns for each name.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut settings = Self::default();
        settings.apply_lookup(lookup)?;
        Ok(settings)
    }

    /// Overrides these settings with whatever `lookup` returns.
    pub fn apply_lookup(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(v) = lookup(vars::PERMISSION_CLASSES) {
            self.default_permission_classes = parse_classes(&v)?;
        }
        if let Some(v) = lookup(vars::PATH_VAR) {
            self.default_video_path_url_var = v;
        }
        if let Some(v) = lookup(vars::MAX_LOAD_VOLUME) {
            let mib: u64 = v.trim().parse().map_err(|_| {
                invalid(vars::MAX_LOAD_VOLUME, &v, "expected a whole number of MiB")
            })?;
            self.max_load_volume = mib.saturating_mul(MIB);
        }
        if let Some(v) = lookup(vars::WATCH_LOG_ENABLED) {
            self.watch_log_enabled = parse_bool(&v)
                .ok_or_else(|| invalid(vars::WATCH_LOG_ENABLED, &v, "expected true or false"))?;
        }
        if let Some(v) = lookup(vars::RANGE_REGEX) {
            self.range_header_regex_pattern = Some(v);
        }
        if let Some(v) = lookup(vars::SIGNING_KEY) {
            self.signing_key = Some(v);
        }
        self.validate()
    }

    /// Checks every value, naming the setting at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_load_volume == 0 {
            return Err(invalid(vars::MAX_LOAD_VOLUME, "0", "must be at least 1"));
        }
        if self.default_video_path_url_var.is_empty() {
            return Err(invalid(vars::PATH_VAR, "", "must not be empty"));
        }
        self.range_regex()?;
        self.permission()?;
        Ok(())
    }

    /// The cap in whole MiB, as `STREAM_MAX_LOAD_VOLUME` writes it.
    pub fn max_load_volume_mib(&self) -> u64 {
        self.max_load_volume / MIB
    }

    /// Sets the cap from a number of MiB, the settings' unit.
    pub fn set_max_load_volume_mib(&mut self, mib: u64) {
        self.max_load_volume = mib.saturating_mul(MIB);
    }

    /// Where requests name the media path: the
    /// `STREAM_DEFAULT_VIDEO_PATH_URL_VAR` query variable.
    pub fn media_path_source(&self) -> MediaPathSource {
        MediaPathSource::query(self.default_video_path_url_var.clone())
    }

    /// The compiled range regex, if one is set.
    pub fn range_regex(&self) -> Result<Option<Regex>, ConfigError> {
        let Some(pattern) = &self.range_header_regex_pattern else {
            return Ok(None);
        };
        let regex = Regex::new(pattern)?;
        if regex.captures_len() < 3 {
            return Err(invalid(
                vars::RANGE_REGEX,
                pattern,
                "needs two capture groups: first byte and last byte",
            ));
        }
        Ok(Some(regex))
    }

    /// The permission classes as one permission.
    pub fn permission(&self) -> Result<AllOf, ConfigError> {
        let mut all: Vec<Arc<dyn Permission>> = Vec::new();
        for class in &self.default_permission_classes {
            all.push(match class {
                PermissionClass::AllowAny => Arc::new(AllowAny),
                PermissionClass::IsAuthenticated => Arc::new(IsAuthenticated),
                PermissionClass::SignedUrl => {
                    let key = self
                        .signing_key
                        .as_deref()
                        .filter(|k| !k.is_empty())
                        .ok_or(ConfigError::Missing {
                            name: vars::PERMISSION_CLASSES,
                            needs: "STREAM_SIGNING_KEY for SignedUrl",
                        })?;
                    Arc::new(SignedUrl::new(key).media_path(self.media_path_source()))
                }
            });
        }
        Ok(AllOf(all))
    }
}

fn parse_classes(value: &str) -> Result<Vec<PermissionClass>, ConfigError> {
    // Tolerates Python tuple or list spelling: `(AllowAny,)`, `["IsAuthenticated"]`.
    value
        .split(',')
        .map(|s| s.trim_matches(|c: char| c.is_whitespace() || "()[]'\"".contains(c)))
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse().map_err(|e: UnknownPermissionClass| {
                invalid(vars::PERMISSION_CLASSES, value, e.to_string())
            })
        })
        .collect()
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_follow_django() {
        let s = with(&[]).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.max_load_volume, 8 * 1024 * 1024);
        assert_eq!(
            s.default_permission_classes,
            vec![PermissionClass::AllowAny]
        );
        assert!(s.watch_log_enabled);
    }

    #[test]
    fn reads_every_variable() {
        let s = with(&[
            (
                vars::PERMISSION_CLASSES,
                "(rest_framework.permissions.IsAuthenticated, 'SignedUrl')",
            ),
            (vars::PATH_VAR, "video"),
            (vars::MAX_LOAD_VOLUME, "2"),
            (vars::WATCH_LOG_ENABLED, "False"),
            (vars::RANGE_REGEX, crate::range::DJANGO_RANGE_PATTERN),
            (vars::SIGNING_KEY, "k"),
        ])
        .unwrap();
        assert_eq!(
            s.default_permission_classes,
            vec![PermissionClass::IsAuthenticated, PermissionClass::SignedUrl]
        );
        assert_eq!(s.default_video_path_url_var, "video");
        assert_eq!(s.max_load_volume, 2 * 1024 * 1024);
        assert!(!s.watch_log_enabled);
        assert!(s.range_regex().unwrap().is_some());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            (vars::MAX_LOAD_VOLUME, "eight"),
            (vars::MAX_LOAD_VOLUME, "0"),
            (vars::WATCH_LOG_ENABLED, "maybe"),
            (vars::RANGE_REGEX, "bytes=(\\d+"),
            (vars::RANGE_REGEX, "bytes=\\d+"),
            (vars::PERMISSION_CLASSES, "IsAdmin"),
            (vars::PERMISSION_CLASSES, "SignedUrl"),
        ] {
            let err = with(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }
}
