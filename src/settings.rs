//! [`Settings`]: django-sage-streaming's five `STREAM_*` settings with its
//! defaults, and sage-stream's own, readable from environment variables of
//! the same names.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `STREAM_DEFAULT_PERMISSION_CLASSES` | `AllowAny` | comma-separated [`PermissionClass`] names; all must allow |
//! | `STREAM_DEFAULT_VIDEO_PATH_URL_VAR` | `path` | query variable naming the media path |
//! | `STREAM_MAX_LOAD_VOLUME` | `8` | cap per ranged response, in MiB (1 MiB = 1 048 576 bytes) |
//! | `STREAM_WATCH_LOG_ENABLED` | `true` | whether the watch log records requests |
//! | `STREAM_RANGE_HEADER_REGEX_PATTERN` | unset (RFC 9110 grammar) | regex with two capture groups, matched as Django does: case-insensitive, anchored at the start (the app's misspelt `STREAM_RANGE_HEADER_REGEX_PATTER` is read too, with a warning) |
//! | `STREAM_SIGNING_KEY` | unset | secret for the `SignedUrl` permission class |
//! | `STREAM_MEDIA_URL` | unset | Django's `MEDIA_URL` (e.g. `/media/`): removed from the front of requested paths |
//! | `STREAM_AUTH_URL` | unset | endpoint the `AuthRequest` permission class asks (`http://…`) |
//! | `STREAM_AUTH_CACHE_SECONDS` | `30` | how long `AuthRequest` reuses a decision (0: never) |
//! | `STREAM_AUTH_TIMEOUT_SECONDS` | `5` | longest `AuthRequest` waits for the endpoint (then 503) |
//! | `STREAM_CORS_ORIGINS` | unset (no CORS) | comma-separated origins (`https://player.example`) or `*` whose pages may read the stream routes (used by the app, feature `server`) |
//! | `STREAM_CACHE_CONTROL` | unset | `Cache-Control` of the file's answers (`200`, `206`, `304`), e.g. `public, max-age=3600` |
//! | `STREAM_MIME` | unset | comma-separated `EXT=TYPE` overriding the content type of an extension |
//! | `STREAM_ANONYMIZE_IP` | `false` | the watch log stores client IPs with the host part zeroed (last IPv4 octet, last 80 bits of IPv6) |
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

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use http::HeaderValue;
use regex::Regex;
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::extension::{MediaPathSource, DEFAULT_PATH_VAR};
use crate::permission::{AllOf, AllowAny, IsAuthenticated, Permission, RoutePermission, SignedUrl};

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
    /// The range regex under the name django-sage-streaming actually reads
    /// (a typo in that app); accepted with a warning.
    pub const RANGE_REGEX_MISSPELT: &str = "STREAM_RANGE_HEADER_REGEX_PATTER";
    /// Django's `MEDIA_URL`, removed from the front of requested paths.
    pub const MEDIA_URL: &str = "STREAM_MEDIA_URL";
    /// Endpoint of the `AuthRequest` permission class.
    pub const AUTH_URL: &str = "STREAM_AUTH_URL";
    /// Seconds `AuthRequest` caches a decision.
    pub const AUTH_CACHE_SECONDS: &str = "STREAM_AUTH_CACHE_SECONDS";
    /// Seconds `AuthRequest` waits for its endpoint.
    pub const AUTH_TIMEOUT_SECONDS: &str = "STREAM_AUTH_TIMEOUT_SECONDS";
    /// Origins allowed to read the stream routes (CORS), comma-separated.
    pub const CORS_ORIGINS: &str = "STREAM_CORS_ORIGINS";
    /// `Cache-Control` of the file's answers.
    pub const CACHE_CONTROL: &str = "STREAM_CACHE_CONTROL";
    /// Content-type overrides, comma-separated `EXT=TYPE`.
    pub const MIME: &str = "STREAM_MIME";
    /// The watch log stores anonymized client IPs.
    pub const ANONYMIZE_IP: &str = "STREAM_ANONYMIZE_IP";
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
    /// `AuthRequest` (feature `auth-request`): asks `STREAM_AUTH_URL`, e.g.
    /// a Django view that sees the session. Asynchronous; in
    /// [`Settings::permission`] it asks before the other classes decide.
    AuthRequest,
}

/// A permission class name that is not one of [`PermissionClass`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown permission class {name:?}; known: AllowAny, IsAuthenticated, SignedUrl, AuthRequest"
)]
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
            "AuthRequest" => Ok(Self::AuthRequest),
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
///
/// Its `Debug` shows the signing key as `"***"` and the password of
/// `auth_url` hidden, so the settings can be logged.
///
/// Built from [`Default`] with the setters, each named after its field
/// (the struct is `#[non_exhaustive]`, so a new setting is not a breaking
/// change):
///
/// ```
/// use sage_stream::settings::{PermissionClass, Settings};
///
/// let settings = Settings::default()
///     .default_permission_classes([PermissionClass::SignedUrl])
///     .signing_key(Some("k3y".to_owned()))
///     .max_load_volume(16 << 20);
/// assert_eq!(settings.max_load_volume_mib(), 16);
/// assert!(!format!("{settings:?}").contains("k3y"));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    #[cfg_attr(feature = "serde", serde(alias = "range_header_regex_patter"))]
    pub range_header_regex_pattern: Option<String>,
    /// `STREAM_SIGNING_KEY`, the secret of the `SignedUrl` class.
    pub signing_key: Option<String>,
    /// `STREAM_MEDIA_URL`: Django's `MEDIA_URL` (e.g. `/media/`), removed
    /// from the front of requested paths that start with it.
    pub media_url: Option<String>,
    /// `STREAM_AUTH_URL`: the endpoint `AuthRequest` asks.
    pub auth_url: Option<String>,
    /// `STREAM_AUTH_CACHE_SECONDS`: how long `AuthRequest` reuses a
    /// decision (0: never).
    pub auth_cache_seconds: u64,
    /// `STREAM_AUTH_TIMEOUT_SECONDS`: longest `AuthRequest` waits.
    pub auth_timeout_seconds: u64,
    /// `STREAM_CORS_ORIGINS`: origins (`scheme://host[:port]`, lower case,
    /// no trailing `/`) whose pages may read the stream routes, or `["*"]`
    /// for any; empty turns CORS off. The app (feature `server`) answers
    /// their preflights on the stream routes only.
    pub cors_origins: Vec<String>,
    /// `STREAM_CACHE_CONTROL`: the `Cache-Control` of the file's answers
    /// (`200`, `206`, `304`; never of a refusal).
    pub cache_control: Option<String>,
    /// `STREAM_MIME`: content types by extension (`m3u8` →
    /// `application/x-mpegURL`), over the built-in streaming types and
    /// `mime_guess`.
    pub mime_types: BTreeMap<String, String>,
    /// `STREAM_ANONYMIZE_IP`: the watch log stores client IPs with the host
    /// part zeroed (see `extension::anonymize_ip`); the stream limit still
    /// tells viewers apart by the full address, in memory.
    pub anonymize_ip: bool,
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
            media_url: None,
            auth_url: None,
            auth_cache_seconds: 30,
            auth_timeout_seconds: 5,
            cors_origins: Vec::new(),
            cache_control: None,
            mime_types: BTreeMap::new(),
            anonymize_ip: false,
        }
    }
}

/// Setters, builder style: each replaces one field and returns the settings.
impl Settings {
    /// Sets `default_permission_classes`: all must allow.
    pub fn default_permission_classes(
        mut self,
        classes: impl IntoIterator<Item = PermissionClass>,
    ) -> Self {
        self.default_permission_classes = classes.into_iter().collect();
        self
    }

    /// Sets `default_video_path_url_var`, the query variable of the media path.
    pub fn default_video_path_url_var(mut self, name: impl Into<String>) -> Self {
        self.default_video_path_url_var = name.into();
        self
    }

    /// Sets `max_load_volume`, the cap per ranged response, in **bytes**.
    pub fn max_load_volume(mut self, bytes: u64) -> Self {
        self.max_load_volume = bytes;
        self
    }

    /// Sets `watch_log_enabled`.
    pub fn watch_log_enabled(mut self, on: bool) -> Self {
        self.watch_log_enabled = on;
        self
    }

    /// Sets `range_header_regex_pattern`; `None` selects the RFC 9110 grammar.
    pub fn range_header_regex_pattern(mut self, pattern: Option<String>) -> Self {
        self.range_header_regex_pattern = pattern;
        self
    }

    /// Sets `signing_key`, the secret of the `SignedUrl` class.
    pub fn signing_key(mut self, key: Option<String>) -> Self {
        self.signing_key = key;
        self
    }

    /// Sets `media_url`, Django's `MEDIA_URL`.
    pub fn media_url(mut self, url: Option<String>) -> Self {
        self.media_url = url;
        self
    }

    /// Sets `auth_url`, the endpoint `AuthRequest` asks.
    pub fn auth_url(mut self, url: Option<String>) -> Self {
        self.auth_url = url;
        self
    }

    /// Sets `auth_cache_seconds`.
    pub fn auth_cache_seconds(mut self, seconds: u64) -> Self {
        self.auth_cache_seconds = seconds;
        self
    }

    /// Sets `auth_timeout_seconds`.
    pub fn auth_timeout_seconds(mut self, seconds: u64) -> Self {
        self.auth_timeout_seconds = seconds;
        self
    }

    /// Sets `cors_origins`; empty turns CORS off.
    pub fn cors_origins(mut self, origins: impl IntoIterator<Item = String>) -> Self {
        self.cors_origins = origins.into_iter().collect();
        self
    }

    /// Sets `cache_control`.
    pub fn cache_control(mut self, value: Option<String>) -> Self {
        self.cache_control = value;
        self
    }

    /// Sets `mime_types`, content types by extension.
    pub fn mime_types(mut self, types: impl IntoIterator<Item = (String, String)>) -> Self {
        self.mime_types = types.into_iter().collect();
        self
    }

    /// Sets `anonymize_ip`.
    pub fn anonymize_ip(mut self, on: bool) -> Self {
        self.anonymize_ip = on;
        self
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field named, so that a new one is a decision here.
        let Self {
            default_permission_classes,
            default_video_path_url_var,
            max_load_volume,
            watch_log_enabled,
            range_header_regex_pattern,
            signing_key,
            media_url,
            auth_url,
            auth_cache_seconds,
            auth_timeout_seconds,
            cors_origins,
            cache_control,
            mime_types,
            anonymize_ip,
        } = self;
        f.debug_struct("Settings")
            .field("default_permission_classes", default_permission_classes)
            .field("default_video_path_url_var", default_video_path_url_var)
            .field("max_load_volume", max_load_volume)
            .field("watch_log_enabled", watch_log_enabled)
            .field("range_header_regex_pattern", range_header_regex_pattern)
            .field("signing_key", &crate::redact::hidden(signing_key))
            .field("media_url", media_url)
            .field("auth_url", &auth_url.as_deref().map(crate::redact_url))
            .field("auth_cache_seconds", auth_cache_seconds)
            .field("auth_timeout_seconds", auth_timeout_seconds)
            .field("cors_origins", cors_origins)
            .field("cache_control", cache_control)
            .field("mime_types", mime_types)
            .field("anonymize_ip", anonymize_ip)
            .finish()
    }
}

fn invalid(name: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidSetting {
        name,
        // STREAM_AUTH_URL may carry a password.
        value: crate::redact_url(value),
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
        for (name, field) in [
            (vars::WATCH_LOG_ENABLED, &mut self.watch_log_enabled),
            (vars::ANONYMIZE_IP, &mut self.anonymize_ip),
        ] {
            if let Some(v) = lookup(name) {
                *field =
                    parse_bool(&v).ok_or_else(|| invalid(name, &v, "expected true or false"))?;
            }
        }
        match (
            lookup(vars::RANGE_REGEX),
            lookup(vars::RANGE_REGEX_MISSPELT),
        ) {
            (Some(v), misspelt) => {
                if misspelt.is_some() {
                    tracing::warn!(
                        "both {} and {} are set; using {0}",
                        vars::RANGE_REGEX,
                        vars::RANGE_REGEX_MISSPELT
                    );
                }
                self.range_header_regex_pattern = Some(v);
            }
            (None, Some(v)) => {
                tracing::warn!(
                    "{} is django-sage-streaming's misspelling; accepted, but please name it {}",
                    vars::RANGE_REGEX_MISSPELT,
                    vars::RANGE_REGEX
                );
                self.range_header_regex_pattern = Some(v);
            }
            (None, None) => {}
        }
        if let Some(v) = lookup(vars::SIGNING_KEY) {
            self.signing_key = Some(v);
        }
        if let Some(v) = lookup(vars::MEDIA_URL) {
            self.media_url = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = lookup(vars::AUTH_URL) {
            self.auth_url = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = lookup(vars::CORS_ORIGINS) {
            self.cors_origins = split_list(&v).map(str::to_owned).collect();
        }
        if let Some(v) = lookup(vars::CACHE_CONTROL) {
            self.cache_control = Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        }
        if let Some(v) = lookup(vars::MIME) {
            self.mime_types = split_list(&v)
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(ext, ty)| (ext.trim().to_owned(), ty.trim().to_owned()))
                        .ok_or_else(|| invalid(vars::MIME, pair, "expected EXT=TYPE"))
                })
                .collect::<Result<_, _>>()?;
        }
        for (name, field) in [
            (vars::AUTH_CACHE_SECONDS, &mut self.auth_cache_seconds),
            (vars::AUTH_TIMEOUT_SECONDS, &mut self.auth_timeout_seconds),
        ] {
            if let Some(v) = lookup(name) {
                *field = v
                    .trim()
                    .parse()
                    .map_err(|_| invalid(name, &v, "expected a whole number of seconds"))?;
            }
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
        if self.auth_timeout_seconds == 0 {
            return Err(invalid(
                vars::AUTH_TIMEOUT_SECONDS,
                "0",
                "must be at least 1",
            ));
        }
        self.range_regex()?;
        // The classes that need no other setting; AuthRequest's URL may
        // still come from a later source (checked by `permission`).
        self.sync_classes(&self.media_path_source())?;
        check_origins(&self.cors_origins)?;
        self.cache_control_value()?;
        for (ext, ty) in &self.mime_types {
            crate::media::check_mime_override(ext, ty)
                .map_err(|reason| invalid(vars::MIME, &format!("{ext}={ty}"), reason))?;
        }
        Ok(())
    }

    /// `cache_control` as a header value, when set.
    pub fn cache_control_value(&self) -> Result<Option<HeaderValue>, ConfigError> {
        self.cache_control
            .as_deref()
            .map(|v| {
                HeaderValue::from_str(v).map_err(|_| {
                    invalid(
                        vars::CACHE_CONTROL,
                        v,
                        "must be printable ASCII, fit for a header",
                    )
                })
            })
            .transpose()
    }

    fn uses_auth_request(&self) -> bool {
        self.default_permission_classes
            .contains(&PermissionClass::AuthRequest)
    }

    /// `AuthRequest` listed needs a URL; a URL needs `AuthRequest` listed
    /// (so that a forgotten class cannot leave the stream open). Checked by
    /// [`Settings::permission`], once every source has been applied.
    #[cfg(feature = "auth-request")]
    fn check_auth_request(&self) -> Result<(), ConfigError> {
        match (self.uses_auth_request(), &self.auth_url) {
            (true, None) => Err(ConfigError::Missing {
                name: vars::PERMISSION_CLASSES,
                needs: "STREAM_AUTH_URL for AuthRequest",
            }),
            (false, Some(url)) => Err(invalid(
                vars::AUTH_URL,
                url,
                "set, but AuthRequest is not among STREAM_DEFAULT_PERMISSION_CLASSES",
            )),
            _ => Ok(()),
        }
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
    /// `STREAM_DEFAULT_VIDEO_PATH_URL_VAR` query variable, with
    /// `STREAM_MEDIA_URL` removed from the front.
    pub fn media_path_source(&self) -> MediaPathSource {
        let source = MediaPathSource::query(self.default_video_path_url_var.clone());
        match &self.media_url {
            Some(url) => source.media_url(url.clone()),
            None => source,
        }
    }

    /// The compiled range regex, if one is set, matched as
    /// django-sage-streaming matches it (see [`django_regex`]).
    pub fn range_regex(&self) -> Result<Option<Regex>, ConfigError> {
        let Some(pattern) = &self.range_header_regex_pattern else {
            return Ok(None);
        };
        let regex = django_regex(pattern)?;
        if regex.captures_len() < 3 {
            return Err(invalid(
                vars::RANGE_REGEX,
                pattern,
                "needs two capture groups: first byte and last byte",
            ));
        }
        Ok(Some(regex))
    }

    /// The permission classes as the one check a stream route runs, reading
    /// media paths as [`Settings::media_path_source`] does: all must
    /// allow; `AuthRequest`, when listed, asks first (see
    /// [`RoutePermission`]). Refuses `SignedUrl` without a signing key,
    /// `AuthRequest` without `STREAM_AUTH_URL` (or without the
    /// `auth-request` feature) and a URL without `AuthRequest` (so that a
    /// forgotten class cannot leave the stream open).
    pub fn permission(&self) -> Result<RoutePermission, ConfigError> {
        self.permission_for(&self.media_path_source())
    }

    /// [`Settings::permission`] for a route that reads media paths through
    /// `source` (such as the app's path-style `/media/`): `SignedUrl` reads
    /// path signatures and `AuthRequest` decodes paths (when no edge layer
    /// did) by the route's rule.
    pub fn permission_for(&self, source: &MediaPathSource) -> Result<RoutePermission, ConfigError> {
        let route = RoutePermission::new(self.sync_classes(source)?);
        #[cfg(feature = "auth-request")]
        if let Some(auth) = self.auth_request(source)? {
            return Ok(route.asking_first(auth));
        }
        #[cfg(not(feature = "auth-request"))]
        if self.uses_auth_request() {
            return Err(invalid(
                vars::PERMISSION_CLASSES,
                "AuthRequest",
                "needs the auth-request feature",
            ));
        }
        Ok(route)
    }

    /// The classes but `AuthRequest`, all of which must allow.
    fn sync_classes(&self, source: &MediaPathSource) -> Result<AllOf, ConfigError> {
        let mut all: Vec<Arc<dyn Permission>> = Vec::new();
        for class in &self.default_permission_classes {
            all.push(match class {
                PermissionClass::AuthRequest => continue,
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
                    Arc::new(SignedUrl::new(key).media_path(source.clone()))
                }
            });
        }
        Ok(AllOf(all))
    }

    /// The `AuthRequest` class, when listed: asks `STREAM_AUTH_URL`,
    /// caching for `STREAM_AUTH_CACHE_SECONDS`.
    #[cfg(feature = "auth-request")]
    fn auth_request(
        &self,
        source: &MediaPathSource,
    ) -> Result<Option<crate::permission::AuthRequest>, ConfigError> {
        self.check_auth_request()?;
        let Some(url) = self
            .auth_url
            .as_deref()
            .filter(|_| self.uses_auth_request())
        else {
            return Ok(None);
        };
        let auth = crate::permission::AuthRequest::new(url)
            .map_err(|err| invalid(vars::AUTH_URL, url, err.to_string()))?
            .cache_ttl(std::time::Duration::from_secs(self.auth_cache_seconds))
            .timeout(std::time::Duration::from_secs(self.auth_timeout_seconds))
            .media_path(source.clone());
        Ok(Some(auth))
    }
}

/// `pattern` compiled to match as django-sage-streaming applies
/// `STREAM_RANGE_HEADER_REGEX_PATTERN`: Python's
/// `re.compile(pattern, re.I).match(header)`, i.e. case-insensitive and
/// anchored at the start of the header (not at its end).
///
/// ```
/// let re = sage_stream::settings::django_regex(r"bytes=(\d+)-(\d*)").unwrap();
/// assert!(re.is_match("BYTES=0-9"));
/// assert!(!re.is_match("xbytes=0-9"), "anchored at the start");
/// assert!(re.is_match("bytes=0-9 and more"), "not at the end");
/// ```
pub fn django_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})"))
        .case_insensitive(true)
        .build()
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

/// The non-empty, trimmed items of a comma-separated list.
fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Each origin as a browser sends it in `Origin`, or `*` alone; anything
/// else would never match and leave a player failing without a reason.
fn check_origins(origins: &[String]) -> Result<(), ConfigError> {
    let fail = |origin: &str, reason: &str| Err(invalid(vars::CORS_ORIGINS, origin, reason));
    if origins.len() > 1 && origins.iter().any(|o| o == "*") {
        return fail("*", "* allows every origin: list it alone");
    }
    for origin in origins.iter().filter(|o| *o != "*") {
        let Some((scheme, host)) = origin.split_once("://") else {
            return fail(
                origin,
                "an origin is scheme://host[:port], e.g. https://player.example",
            );
        };
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_lowercase())
            && scheme
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:[]_".contains(c));
        if !scheme_ok || !host_ok {
            return fail(
                origin,
                "an origin is scheme://host[:port] in lower case, without path or trailing / (as browsers send it)",
            );
        }
    }
    Ok(())
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
            (vars::ANONYMIZE_IP, "yes"),
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
        assert!(s.anonymize_ip);
        assert!(s.range_regex().unwrap().is_some());
    }

    #[test]
    fn reads_the_player_settings() {
        let s = with(&[
            (
                vars::CORS_ORIGINS,
                " https://player.example , http://127.0.0.1:8080,",
            ),
            (vars::CACHE_CONTROL, "public, max-age=60"),
            (
                vars::MIME,
                "m3u8=application/x-mpegURL, .MKV=video/x-matroska",
            ),
        ])
        .unwrap();
        assert_eq!(
            s.cors_origins,
            ["https://player.example", "http://127.0.0.1:8080"]
        );
        assert_eq!(
            s.cache_control_value().unwrap().unwrap(),
            "public, max-age=60"
        );
        assert_eq!(s.mime_types.len(), 2);
        assert_eq!(s.mime_types[".MKV"], "video/x-matroska");
        assert_eq!(
            with(&[(vars::CORS_ORIGINS, "*")]).unwrap().cors_origins,
            ["*"]
        );
        assert_eq!(
            with(&[(vars::CORS_ORIGINS, "capacitor://localhost")])
                .unwrap()
                .cors_origins,
            ["capacitor://localhost"]
        );
        // An empty variable turns each off.
        let off = with(&[
            (vars::CORS_ORIGINS, ""),
            (vars::CACHE_CONTROL, ""),
            (vars::MIME, ""),
        ])
        .unwrap();
        assert_eq!(off, Settings::default());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            (vars::MAX_LOAD_VOLUME, "eight"),
            (vars::MAX_LOAD_VOLUME, "0"),
            (vars::WATCH_LOG_ENABLED, "maybe"),
            (vars::ANONYMIZE_IP, "partly"),
            (vars::RANGE_REGEX, "bytes=(\\d+"),
            (vars::RANGE_REGEX, "bytes=\\d+"),
            (vars::PERMISSION_CLASSES, "IsAdmin"),
            (vars::PERMISSION_CLASSES, "SignedUrl"),
            (vars::CORS_ORIGINS, "https://player.example/"),
            (vars::CORS_ORIGINS, "player.example"),
            (vars::CORS_ORIGINS, "https://Player.example"),
            (vars::CORS_ORIGINS, "*,https://a.example"),
            (vars::CORS_ORIGINS, "null"),
            (vars::CACHE_CONTROL, "max-age=1\u{7f}"),
            (vars::MIME, "m3u8"),
            (vars::MIME, "m3u8=mpegurl"),
            (vars::MIME, "=video/mp4"),
        ] {
            let err = with(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }
}
