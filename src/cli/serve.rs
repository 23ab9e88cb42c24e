//! `sage-stream serve`: one layered configuration, then the app.
//!
//! Every setting is one field of [`ServeConfig`]: its `#[arg]` declares the
//! flag and the `STREAM_*` variable, its name is the TOML key. Four layers
//! fill it, each over the one below: defaults (where [`resolve`] reads the
//! value), the TOML file, the environment, the flags (see
//! [`super::layers`]). A new setting is therefore one field plus the line
//! that uses it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::FromArgMatches as _;
use sage_stream::app::{self, AppConfig};
use sage_stream::extension::IpNet;
use sage_stream::log::{WatchLogWriter, WriterConfig};
use sage_stream::server::{self, ServerConfig};
use sage_stream::settings::{vars, PermissionClass, Settings, MIB};
use serde::Deserialize;

use super::layers::{self, duration_value, map_pairs, parsed_list, Secret, SecretUrl};
use super::{format_duration, parse_duration, DEFAULT_DATABASE};

/// What the stream limit does when its shared store does not answer.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum LimitStoreDown {
    /// Count on this node alone until the store answers again.
    CountPerNode,
    /// Refuse new streams with 503 and Retry-After.
    Refuse,
}

/// The stream limit's store from its settings: `memory` (or nothing) is
/// this process; a `redis://` or `rediss://` URL is Redis (feature `redis`).
fn limit_store(
    url: Option<String>,
    prefix: Option<String>,
    lease: Option<Duration>,
    timeout: Option<Duration>,
    down: Option<LimitStoreDown>,
) -> Result<app::LimitStore, Box<dyn std::error::Error>> {
    let Some(url) = url.filter(|u| !u.is_empty() && u != "memory") else {
        return Ok(app::LimitStore::default());
    };
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(format!(
            "limit_store: {} is neither `memory` nor a redis:// URL",
            sage_stream::redact_url(&url)
        )
        .into());
    }
    #[cfg(feature = "redis")]
    {
        use sage_stream::limit::{RedisSlotsConfig, WhenRedisFails};
        let mut config = RedisSlotsConfig::default();
        if let Some(prefix) = prefix {
            config = config.prefix(prefix);
        }
        if let Some(lease) = lease {
            if lease < Duration::from_secs(1) {
                return Err("limit_lease must be at least 1s".into());
            }
            config = config.lease(lease);
        }
        if let Some(timeout) = timeout {
            if timeout.is_zero() {
                return Err("limit_timeout must be longer than 0".into());
            }
            config = config.timeout(timeout);
        }
        config = config.when_redis_fails(match down.unwrap_or(LimitStoreDown::CountPerNode) {
            LimitStoreDown::CountPerNode => WhenRedisFails::CountPerNode,
            LimitStoreDown::Refuse => WhenRedisFails::Refuse,
        });
        Ok(app::LimitStore::Redis { url, config })
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = (prefix, lease, timeout, down);
        Err("limit_store: this binary was built without the `redis` feature (cargo build --features full)".into())
    }
}

/// The media root when none is named: `./media`, which holds the sample
/// clips in a checkout. Nothing is baked in at compile time, so a copied
/// binary does not look for the source tree.
const DEFAULT_MEDIA: &str = "media";

/// Every `serve` setting, each optional: one layer of the configuration.
///
/// The TOML file is deserialised into it (unknown keys refused); the
/// environment and the flags are parsed by clap and laid over it with
/// `update_from_arg_matches`, which sets only what they name. Its derived
/// `Debug` shows no secret: those fields are [`Secret`] or [`SecretUrl`].
#[derive(clap::Args, Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServeConfig {
    /// TOML configuration file (see README); the environment and flags override it.
    #[arg(long, env = "STREAM_CONFIG")]
    #[serde(skip)]
    pub(crate) config: Option<PathBuf>,
    /// Directory whose files may be streamed [default: ./media if it exists]
    #[arg(long, env = "STREAM_MEDIA_ROOT")]
    pub(crate) root: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8000]
    #[arg(long, env = "STREAM_BIND")]
    pub(crate) bind: Option<SocketAddr>,
    /// Watch-log database: sqlite://PATH or postgres://... [default: sqlite://sage_stream.db]
    #[arg(long, env = "STREAM_DATABASE_URL")]
    pub(crate) database: Option<SecretUrl>,
    /// Spool file for rows while the database is unreachable [default: beside the SQLite file, else ./sage_stream.spool]
    #[arg(long, env = "STREAM_SPOOL")]
    pub(crate) spool: Option<PathBuf>,
    /// Journal each watch-log row to the spool as its response ends, so that kill -9 loses none (one write per request)
    #[arg(long, env = "STREAM_DURABLE_LOG", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) durable_log: Option<bool>,
    /// Most MiB the spool may hold; beyond, its oldest rows are dropped (and counted) [default: 256]
    #[arg(long, env = "STREAM_SPOOL_MAX_MIB")]
    pub(crate) spool_max_mib: Option<u64>,
    /// Delete watch-log rows older than this (90d, 12h), at start-up and then daily [default: keep every row]
    #[arg(long, env = "STREAM_RETENTION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_value")]
    pub(crate) retention: Option<Duration>,
    /// Turns the admin on at /admin/ with this token (bearer, or Basic password).
    #[arg(long, env = "STREAM_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<Secret>,
    /// Accept `Authorization: Bearer TOKEN` as user USER (repeatable; the variable takes a comma-separated list; in the file, a [tokens] table).
    #[arg(long = "token", value_name = "TOKEN=USER", value_parser = parse_token, env = "STREAM_TOKENS", value_delimiter = ',', hide_env_values = true)]
    #[serde(default, deserialize_with = "map_pairs")]
    pub(crate) tokens: Option<Vec<(Secret, String)>>,
    /// Proxy (IP or CIDR) whose X-Forwarded-For / Forwarded is believed (repeatable; the variable takes a comma-separated list).
    #[arg(
        long = "trusted-proxy",
        value_name = "CIDR",
        env = "STREAM_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    #[serde(default, deserialize_with = "parsed_list")]
    pub(crate) trusted_proxies: Option<Vec<IpNet>>,
    /// At most N concurrent streams per viewer (429 beyond) [default: no limit]
    #[arg(long, env = "STREAM_MAX_STREAMS_PER_VIEWER")]
    pub(crate) max_streams_per_viewer: Option<usize>,
    /// Where the stream limit counts: `memory` (this process) or redis://[:PASSWORD@]HOST[:PORT][/DB], one count for every node using it [default: memory]
    #[arg(
        long,
        env = "STREAM_LIMIT_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub(crate) limit_store: Option<SecretUrl>,
    /// Key prefix in the limit store, so that several fleets can share one Redis [default: sage-stream:]
    #[arg(long, env = "STREAM_LIMIT_KEY_PREFIX", value_name = "PREFIX")]
    pub(crate) limit_key_prefix: Option<String>,
    /// How long a stream's slot lives in the limit store unless renewed: a dead node's slots come free after this [default: 30s]
    #[arg(long, env = "STREAM_LIMIT_LEASE", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_value")]
    pub(crate) limit_lease: Option<Duration>,
    /// Longest wait for the limit store; past it, --limit-store-down decides [default: 250ms]
    #[arg(long, env = "STREAM_LIMIT_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_value")]
    pub(crate) limit_timeout: Option<Duration>,
    /// When the limit store does not answer in time: count-per-node (keep streaming, limit per node) or refuse (503) [default: count-per-node]
    #[arg(long, env = "STREAM_LIMIT_STORE_DOWN", value_enum)]
    pub(crate) limit_store_down: Option<LimitStoreDown>,
    /// A pause longer than this starts a new viewing session: 30m, 1h [default: 30m]
    #[arg(long, env = "STREAM_SESSION_GAP", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_value")]
    pub(crate) session_gap: Option<Duration>,
    /// Longest wait for a request's headers, also on idle keep-alive connections [default: 30s]
    #[arg(long, env = "STREAM_HEADER_TIMEOUT", value_parser = parse_duration)]
    #[serde(
        default,
        alias = "header_timeout_secs",
        deserialize_with = "duration_value"
    )]
    pub(crate) header_timeout: Option<Duration>,
    /// Close a connection with no request in progress after this long (HTTP/2: GOAWAY) [default: 60s]
    #[arg(long, env = "STREAM_KEEP_ALIVE_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_value")]
    pub(crate) keep_alive_timeout: Option<Duration>,
    /// Close a connection whose response made no write progress for this long [default: 60s]
    #[arg(long, env = "STREAM_SEND_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_value")]
    pub(crate) send_timeout: Option<Duration>,
    /// Most connections open at once; beyond, new ones wait in the backlog [default: half the fd limit less the open-file cache]
    #[arg(long, env = "STREAM_MAX_CONNECTIONS")]
    pub(crate) max_connections: Option<usize>,
    /// Files kept open between requests, so a hot file costs no open and no thread hop; 0 turns it off [default: 256]
    #[arg(long, env = "STREAM_OPEN_FILE_CACHE", value_name = "FILES")]
    pub(crate) open_file_cache: Option<usize>,
    /// Trust a cached file this long without a stat, e.g. 5s on a network file system [default: 0s, a stat per request]
    #[arg(long, env = "STREAM_OPEN_FILE_CACHE_VALID", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_value")]
    pub(crate) open_file_cache_valid: Option<Duration>,
    /// Experimental (Linux): send file bytes of HTTP/1.x responses with sendfile, never copying them into user space [default: off]
    #[arg(long, env = "STREAM_ZERO_COPY", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) zero_copy: Option<bool>,
    /// A client that stops reading pins one file chunk, not a whole write buffer, at a throughput cost [default: off]
    #[arg(long, env = "STREAM_STRICT_BACKPRESSURE", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) strict_backpressure: Option<bool>,
    /// Serve Prometheus metrics at http://ADDR/metrics, on a listener of their own [default: off]
    #[arg(long, env = "STREAM_METRICS_BIND", value_name = "ADDR")]
    pub(crate) metrics_bind: Option<SocketAddr>,
    /// In the file only: `access_log = false` writes no access-log line
    /// (the flag and variable are --no-access-log / STREAM_NO_ACCESS_LOG).
    #[arg(skip)]
    pub(crate) access_log: Option<bool>,
    /// Write no access-log line per request (they go to stderr at info, as text or --log-format json)
    #[arg(long, env = "STREAM_NO_ACCESS_LOG", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    #[serde(skip)]
    pub(crate) no_access_log: Option<bool>,
    /// Keep no watch log (the same as --watch-log=false) [env: STREAM_WATCH_LOG_ENABLED=false]
    #[arg(long)]
    #[serde(skip)]
    pub(crate) no_watch_log: bool,
    /// The `STREAM_*` settings of the stream routes (in the file, the [stream] table).
    #[command(flatten)]
    #[serde(default)]
    pub(crate) stream: StreamConfig,
}

/// The `[stream]` table: [`Settings`], each optional, under the names of
/// their `STREAM_*` variables in lower case (`max_load_volume` in MiB).
#[derive(clap::Args, Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamConfig {
    /// Permission classes, comma-separated: AllowAny, IsAuthenticated, SignedUrl, AuthRequest [default: AllowAny]
    #[arg(long = "permission", env = vars::PERMISSION_CLASSES, value_parser = parse_classes)]
    pub(crate) default_permission_classes: Option<Classes>,
    /// Query variable of the media path [default: path]
    #[arg(long = "path-var", env = vars::PATH_VAR)]
    pub(crate) default_video_path_url_var: Option<String>,
    /// Cap per ranged response in MiB [default: 8]
    #[arg(long, env = vars::MAX_LOAD_VOLUME, value_name = "MIB")]
    pub(crate) max_load_volume: Option<u64>,
    /// Keep the watch log [default: true]
    #[arg(long = "watch-log", env = vars::WATCH_LOG_ENABLED, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) watch_log_enabled: Option<bool>,
    /// Regex with two capture groups (first and last byte) for the Range header, matched as Django does [default: the RFC 9110 grammar]
    #[arg(long = "range-regex", env = vars::RANGE_REGEX, value_name = "REGEX")]
    #[serde(alias = "range_header_regex_patter")]
    pub(crate) range_header_regex_pattern: Option<String>,
    /// Secret of the SignedUrl permission class
    #[arg(long, env = vars::SIGNING_KEY, hide_env_values = true)]
    pub(crate) signing_key: Option<Secret>,
    /// Django's MEDIA_URL (e.g. /media/): removed from the front of requested paths
    #[arg(long, env = vars::MEDIA_URL)]
    pub(crate) media_url: Option<String>,
    /// Endpoint the AuthRequest permission asks before each stream (http://…; e.g. a Django view)
    #[arg(long, env = vars::AUTH_URL)]
    pub(crate) auth_url: Option<SecretUrl>,
    /// How long AuthRequest reuses a decision, in seconds; 0: never [default: 30]
    #[arg(long, env = vars::AUTH_CACHE_SECONDS, value_name = "SECONDS")]
    pub(crate) auth_cache_seconds: Option<u64>,
    /// Longest AuthRequest waits for its endpoint, in seconds (then 503) [default: 5]
    #[arg(long, env = vars::AUTH_TIMEOUT_SECONDS, value_name = "SECONDS")]
    pub(crate) auth_timeout_seconds: Option<u64>,
    /// Origin whose pages may read the stream routes (CORS), e.g. https://player.example, or * (repeatable; the variable takes a comma-separated list).
    #[arg(long = "cors-origin", value_name = "ORIGIN", env = vars::CORS_ORIGINS, value_delimiter = ',')]
    pub(crate) cors_origins: Option<Vec<String>>,
    /// Cache-Control of the file's answers (200, 206, 304), e.g. "public, max-age=3600"
    #[arg(long, env = vars::CACHE_CONTROL)]
    pub(crate) cache_control: Option<String>,
    /// Serve .EXT files as TYPE, over the built-in types (repeatable; the variable takes a comma-separated list; in the file, a [stream.mime_types] table).
    #[arg(long = "mime", value_name = "EXT=TYPE", value_parser = parse_mime, env = vars::MIME, value_delimiter = ',')]
    #[serde(default, deserialize_with = "map_pairs")]
    pub(crate) mime_types: Option<Vec<(String, String)>>,
    /// Store client IPs with the last IPv4 octet / last 80 bits of IPv6 zeroed (the stream limit still sees the full address)
    #[arg(long, env = vars::ANONYMIZE_IP, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) anonymize_ip: Option<bool>,
}

impl StreamConfig {
    /// The defaults with every value this layer set; checked.
    fn settings(self) -> Result<Settings, sage_stream::ConfigError> {
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
        let d = Settings::default();
        // An empty text turns an optional setting off, as in the environment.
        let text = |v: Option<String>, default: Option<String>| match v {
            Some(v) => Some(v.trim().to_owned()).filter(|v| !v.is_empty()),
            None => default,
        };
        let settings = d
            .clone()
            .default_permission_classes(
                default_permission_classes.map_or(d.default_permission_classes, |c| c.0),
            )
            .default_video_path_url_var(
                default_video_path_url_var.unwrap_or(d.default_video_path_url_var),
            )
            .max_load_volume(
                max_load_volume.map_or(d.max_load_volume, |mib| mib.saturating_mul(MIB)),
            )
            .watch_log_enabled(watch_log_enabled.unwrap_or(d.watch_log_enabled))
            .range_header_regex_pattern(range_header_regex_pattern.or(d.range_header_regex_pattern))
            .signing_key(signing_key.map(Secret::into_inner).or(d.signing_key))
            .media_url(text(media_url, d.media_url))
            .auth_url(text(auth_url.map(SecretUrl::into_inner), d.auth_url))
            .auth_cache_seconds(auth_cache_seconds.unwrap_or(d.auth_cache_seconds))
            .auth_timeout_seconds(auth_timeout_seconds.unwrap_or(d.auth_timeout_seconds))
            .cors_origins(cors_origins.map_or(d.cors_origins, |list| {
                list.into_iter().filter(|o| !o.trim().is_empty()).collect()
            }))
            .cache_control(text(cache_control, d.cache_control))
            .mime_types(mime_types.map_or(d.mime_types, |pairs| pairs.into_iter().collect()))
            .anonymize_ip(anonymize_ip.unwrap_or(d.anonymize_ip));
        settings.validate()?;
        Ok(settings)
    }
}

/// `STREAM_DEFAULT_PERMISSION_CLASSES` as written: a comma-separated list,
/// in the file a list of names.
#[derive(Clone, Debug, Deserialize)]
#[serde(transparent)]
pub(crate) struct Classes(Vec<PermissionClass>);

/// Tolerates Python's tuple or list spelling: `(AllowAny,)`, `["IsAuthenticated"]`.
fn parse_classes(value: &str) -> Result<Classes, String> {
    value
        .split(',')
        .map(|s| s.trim_matches(|c: char| c.is_whitespace() || "()[]'\"".contains(c)))
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<PermissionClass>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()
        .map(Classes)
}

fn parse_token(value: &str) -> Result<(Secret, String), String> {
    match value.split_once('=') {
        Some((token, user)) if !token.is_empty() && !user.is_empty() => {
            Ok((Secret::new(token), user.to_owned()))
        }
        _ => Err("expected TOKEN=USER".to_owned()),
    }
}

fn parse_mime(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((ext, ty)) if !ext.trim().is_empty() && !ty.trim().is_empty() => {
            Ok((ext.trim().to_owned(), ty.trim().to_owned()))
        }
        _ => Err("expected EXT=TYPE, e.g. m3u8=application/vnd.apple.mpegurl".to_owned()),
    }
}

fn default_spool(database: &str) -> PathBuf {
    match database.strip_prefix("sqlite://") {
        Some(path) => PathBuf::from(format!("{path}.spool")),
        None => PathBuf::from("sage_stream.spool"),
    }
}

/// Everything `serve` needs, resolved. Its `Debug` shows no secret: the
/// database password and the tokens are hidden.
pub(crate) struct Resolved {
    pub(crate) app: AppConfig,
    pub(crate) bind: SocketAddr,
    pub(crate) metrics_bind: Option<SocketAddr>,
    pub(crate) database: String,
    pub(crate) spool: PathBuf,
    /// In bytes.
    pub(crate) spool_max: u64,
    pub(crate) durable_log: bool,
    pub(crate) retention: Option<Duration>,
    pub(crate) server: ServerConfig,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            app,
            bind,
            metrics_bind,
            database,
            spool,
            spool_max,
            durable_log,
            retention,
            server,
        } = self;
        f.debug_struct("Resolved")
            .field("app", app)
            .field("bind", bind)
            .field("metrics_bind", metrics_bind)
            .field("database", &sage_stream::redact_url(database))
            .field("spool", spool)
            .field("spool_max", spool_max)
            .field("durable_log", durable_log)
            .field("retention", retention)
            .field("server", server)
            .finish()
    }
}

/// Defaults, then the file, the environment (`env` looks a variable up: a
/// parameter so tests can give their own) and the flags, each over the one
/// before; then every value is checked and turned into the app's types.
pub(crate) fn resolve(
    flags: &clap::ArgMatches,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Resolved, Box<dyn std::error::Error>> {
    let path = match flags.get_one::<PathBuf>("config") {
        Some(path) => Some(path.clone()),
        None => env("STREAM_CONFIG").map(PathBuf::from),
    };
    let mut config: ServeConfig = match &path {
        Some(path) => layers::read_file(path)?,
        None => ServeConfig::default(),
    };
    layers::apply_env::<ServeConfig>(&mut config, &env)?;
    config.update_from_arg_matches(flags)?;
    config.resolve()
}

impl ServeConfig {
    /// The merged layers over the defaults, as the app's types.
    fn resolve(self) -> Result<Resolved, Box<dyn std::error::Error>> {
        let mut settings = self.stream.settings()?;
        if self.no_watch_log {
            settings.watch_log_enabled = false;
        }
        let root = match self.root {
            Some(root) => root,
            None if Path::new(DEFAULT_MEDIA).is_dir() => PathBuf::from(DEFAULT_MEDIA),
            None => {
                return Err("no media root: pass --root DIR (or set STREAM_MEDIA_ROOT); ./media does not exist here".into())
            }
        };
        if !root.is_dir() {
            return Err(format!("media root {} is not a directory", root.display()).into());
        }
        let database = self
            .database
            .map_or_else(|| DEFAULT_DATABASE.to_owned(), SecretUrl::into_inner);
        let spool = self.spool.unwrap_or_else(|| default_spool(&database));
        let spool_max = match self.spool_max_mib {
            Some(0) => return Err("spool_max_mib must be at least 1".into()),
            Some(mib) => mib.saturating_mul(MIB),
            None => WriterConfig::default().spool_max_bytes,
        };
        if self.retention == Some(Duration::ZERO) {
            return Err("retention must be longer than 0 (it would delete every row); leave it unset to keep them all".into());
        }
        let open_file_cache = self
            .open_file_cache
            .unwrap_or(sage_stream::media::DEFAULT_OPEN_FILE_CACHE);
        let strict_backpressure = self.strict_backpressure.unwrap_or(false);
        let zero_copy = self.zero_copy.unwrap_or(false);
        if zero_copy && !cfg!(target_os = "linux") {
            tracing::warn!("zero copy is Linux-only; file bytes are copied as usual");
        }
        let app = AppConfig::new(root)
            .settings(settings)
            .tokens(
                self.tokens
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(token, user)| (token.into_inner(), user))
                    .collect(),
            )
            .trusted_proxies(self.trusted_proxies.unwrap_or_default())
            .admin_token(
                self.admin_token
                    .map(Secret::into_inner)
                    .filter(|t| !t.is_empty()),
            )
            .max_streams_per_viewer(self.max_streams_per_viewer.filter(|n| *n > 0))
            .limit_store(limit_store(
                self.limit_store.map(SecretUrl::into_inner),
                self.limit_key_prefix,
                self.limit_lease,
                self.limit_timeout,
                self.limit_store_down,
            )?)
            .session_gap_minutes(self.session_gap.map_or(30, |gap| {
                u32::try_from(gap.as_secs() / 60).unwrap_or(u32::MAX).max(1)
            }))
            // The flag and variable are above the file: they decide when set.
            .access_log(
                self.no_access_log
                    .map(|off| !off)
                    .or(self.access_log)
                    .unwrap_or(true),
            )
            .open_file_cache(open_file_cache)
            .open_file_cache_valid(self.open_file_cache_valid.unwrap_or(Duration::ZERO))
            // Under strict backpressure a stalled client pins about one
            // chunk: 32 KiB keeps that within 64 KiB with its state.
            .chunk_size(if strict_backpressure {
                STRICT_CHUNK_SIZE
            } else {
                sage_stream::media::DEFAULT_CHUNK_SIZE
            });
        let defaults = ServerConfig::default();
        // The default leaves descriptors for the default cache; a bigger
        // cache takes them from connections (each holds a socket and
        // perhaps a file).
        let max_connections = self.max_connections.unwrap_or_else(|| {
            let extra = open_file_cache.saturating_sub(sage_stream::media::DEFAULT_OPEN_FILE_CACHE);
            defaults.max_connections.saturating_sub(extra / 2).max(16)
        });
        let server = ServerConfig::default()
            .header_read_timeout(self.header_timeout.unwrap_or(defaults.header_read_timeout))
            .keep_alive_timeout(
                self.keep_alive_timeout
                    .unwrap_or(defaults.keep_alive_timeout),
            )
            .send_timeout(self.send_timeout.unwrap_or(defaults.send_timeout))
            .max_connections(max_connections)
            .zero_copy(zero_copy)
            .strict_backpressure(strict_backpressure)
            // For the start-up check of the descriptor limit.
            .open_file_cache(open_file_cache);
        Ok(Resolved {
            app,
            bind: self
                .bind
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8000))),
            metrics_bind: self.metrics_bind,
            database,
            spool,
            spool_max,
            durable_log: self.durable_log.unwrap_or(false),
            retention: self.retention,
            server,
        })
    }
}

/// Bytes per disk read under `--strict-backpressure`.
const STRICT_CHUNK_SIZE: usize = 32 * 1024;

/// The `serve` flags as parsed: the top layer of [`ServeConfig`]. Its
/// arguments are `ServeConfig`'s, with each variable shown in `--help` but
/// left to the environment layer.
#[derive(Clone, Debug)]
pub(crate) struct ServeFlags(pub(crate) clap::ArgMatches);

impl clap::FromArgMatches for ServeFlags {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(Self(matches.clone()))
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0 = matches.clone();
        Ok(())
    }
}

impl clap::Args for ServeFlags {
    fn augment_args(command: clap::Command) -> clap::Command {
        layers::flags_only(<ServeConfig as clap::Args>::augment_args(command))
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

pub(crate) fn run(flags: ServeFlags) -> Result<(), Box<dyn std::error::Error>> {
    let mut resolved = resolve(&flags.0, |name| std::env::var(name).ok())?;
    let metrics = resolved
        .metrics_bind
        .map(|_| sage_stream::observe::Metrics::new());
    resolved.app.metrics.clone_from(&metrics);
    let store = sage_stream::log::open_store(&resolved.database)?;
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), {
        let mut config = WriterConfig::default()
            .spool_path(resolved.spool.clone())
            .spool_max_bytes(resolved.spool_max)
            .durable(resolved.durable_log);
        config.retention = resolved.retention;
        config
    })?;
    let app = app::router(&resolved.app, store, sink)?;
    let server_config = resolved.server.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Before the banner: a SIGTERM sent as soon as it appears must stop
        // the server gracefully.
        let stop = server::shutdown_signal();
        let listener = tokio::net::TcpListener::bind(resolved.bind).await?;
        let addr = listener.local_addr()?;
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_addr = match (resolved.metrics_bind, metrics) {
            (Some(bind), Some(metrics)) => {
                let listener = tokio::net::TcpListener::bind(bind).await?;
                let metrics_addr = listener.local_addr()?;
                let config = server_config.clone();
                tokio::spawn(async move {
                    let stop = async move {
                        let _ = metrics_stopped.await;
                    };
                    if let Err(err) =
                        server::serve(listener, app::metrics_router(metrics), config, stop).await
                    {
                        tracing::error!(%err, "metrics listener failed");
                    }
                });
                Some(metrics_addr)
            }
            _ => None,
        };
        let root = &resolved.app.root;
        println!("sage-stream: serving {}", root.display());
        println!("  player:  http://{addr}/");
        if let Some(file) = first_file(root) {
            println!("  stream:  http://{addr}/api/stream?path={file}");
        }
        println!(
            "  media:   http://{addr}{}/FILE  (path-style, for HLS/DASH playlists)",
            app::DEFAULT_MEDIA_ROUTE
        );
        if !resolved.app.settings.cors_origins.is_empty() {
            println!("  CORS:    {}", resolved.app.settings.cors_origins.join(", "));
        }
        println!("  health:  http://{addr}/healthz, http://{addr}/readyz");
        if let Some(metrics_addr) = metrics_addr {
            println!("  metrics: http://{metrics_addr}/metrics");
        }
        match &resolved.app.admin_token {
            Some(_) => println!("  admin:   http://{addr}/admin/  (token: the configured admin token, as Basic password or bearer)"),
            None => println!("  admin:   off (set --admin-token or STREAM_ADMIN_TOKEN to turn it on)"),
        }
        let kept = resolved.retention.map_or_else(String::new, |keep| {
            format!(" (rows older than {} deleted daily)", format_duration(keep))
        });
        println!(
            "  watch log {} in {}{kept}; Ctrl-C to stop",
            if resolved.app.settings.watch_log_enabled { "on" } else { "off" },
            sage_stream::redact_url(&resolved.database)
        );
        server::serve(listener, app, server_config, stop).await?;
        let _ = metrics_stop.send(());
        let stats = writer.shutdown_async().await;
        let dropped = match stats.rows_dropped {
            0 => String::new(),
            n => format!(", {n} dropped (over the memory or spool bound)"),
        };
        println!(
            "sage-stream: stopped; watch log: {} recorded, {} written, {} spooled{dropped}",
            stats.recorded, stats.written, stats.spooled
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

fn first_file(root: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags as `serve` parses them (no variable read).
    fn flags(args: &[&str]) -> clap::ArgMatches {
        use clap::Args as _;
        ServeFlags::augment_args(clap::Command::new("serve"))
            .no_binary_name(true)
            .try_get_matches_from(args)
            .unwrap()
    }

    /// `resolve` with these flags and exactly these variables.
    fn with(args: &[&str], env: &[(&str, &str)]) -> Result<Resolved, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        resolve(&flags(args), |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .map_err(|e| e.to_string())
    }

    /// A media root and a config file holding `toml` (after `root = ...`).
    struct Dir {
        dir: tempfile::TempDir,
        config: String,
    }

    fn dir(toml: &str) -> Dir {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sage.toml");
        let root = dir.path().display().to_string();
        std::fs::write(&config, format!("root = {root:?}\n{toml}")).unwrap();
        let config = config.display().to_string();
        Dir { dir, config }
    }

    impl Dir {
        fn root(&self) -> String {
            self.dir.path().display().to_string()
        }

        fn rewrite(&self, text: &str) {
            std::fs::write(&self.config, text).unwrap();
        }
    }

    /// Four layers for a few settings of each kind (a number, a duration,
    /// a `[stream]` setting, a list, a secret): each layer beats the ones
    /// below it, and a layer that does not name a setting leaves it alone.
    #[test]
    fn flags_over_env_over_file_over_defaults() {
        let d = dir(
            "max_connections = 10\nsend_timeout = \"10s\"\nadmin_token = \"from-file\"\n\
             trusted_proxies = [\"10.0.0.0/8\"]\n[tokens]\nt1 = \"alice\"\n\
             [stream]\nmax_load_volume = 2\ndefault_video_path_url_var = \"file\"\n",
        );
        let file = ["--config", d.config.as_str()];
        let env = [
            ("STREAM_MAX_CONNECTIONS", "20"),
            ("STREAM_SEND_TIMEOUT", "20s"),
            ("STREAM_MAX_LOAD_VOLUME", "4"),
            ("STREAM_TRUSTED_PROXIES", "192.0.2.1,::1"),
        ];
        let all_flags = [
            "--config",
            d.config.as_str(),
            "--max-connections",
            "30",
            "--send-timeout",
            "30s",
            "--max-load-volume",
            "6",
            "--token",
            "t2=bob",
        ];
        // Defaults.
        let r = with(&["--root", &d.root()], &[]).unwrap();
        assert_eq!(r.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(r.server.send_timeout, Duration::from_secs(60));
        assert_eq!(r.server.header_read_timeout, Duration::from_secs(30));
        assert_eq!(r.app.settings, Settings::default());
        assert!(r.app.admin_token.is_none() && r.app.tokens.is_empty());
        assert_eq!(r.database, "sqlite://sage_stream.db");
        // The file over the defaults.
        let r = with(&file, &[]).unwrap();
        assert_eq!(r.server.max_connections, 10);
        assert_eq!(r.server.send_timeout, Duration::from_secs(10));
        assert_eq!(r.app.settings.max_load_volume_mib(), 2);
        assert_eq!(r.app.settings.default_video_path_url_var, "file");
        assert_eq!(r.app.admin_token.as_deref(), Some("from-file"));
        assert_eq!(r.app.tokens, [("t1".to_owned(), "alice".to_owned())]);
        assert_eq!(r.app.trusted_proxies.len(), 1);
        // The environment over the file.
        let r = with(&file, &env).unwrap();
        assert_eq!(r.server.max_connections, 20);
        assert_eq!(r.server.send_timeout, Duration::from_secs(20));
        assert_eq!(r.app.settings.max_load_volume_mib(), 4);
        assert_eq!(r.app.trusted_proxies.len(), 2, "a list replaces the file's");
        assert_eq!(
            r.app.settings.default_video_path_url_var, "file",
            "unnamed: kept"
        );
        // The flags over the environment.
        let r = with(&all_flags, &env).unwrap();
        assert_eq!(r.server.max_connections, 30);
        assert_eq!(r.server.send_timeout, Duration::from_secs(30));
        assert_eq!(r.app.settings.max_load_volume_mib(), 6);
        assert_eq!(r.app.tokens, [("t2".to_owned(), "bob".to_owned())]);
        assert_eq!(r.app.trusted_proxies.len(), 2, "the flags named none");
        assert_eq!(r.app.admin_token.as_deref(), Some("from-file"));
        // The file may be named by its variable too.
        let r = with(&[], &[("STREAM_CONFIG", &d.config)]).unwrap();
        assert_eq!(r.server.max_connections, 10);
    }

    #[test]
    fn durations_in_the_file_are_written_as_the_flags_take_them() {
        let d = dir("header_timeout = \"45s\"\nkeep_alive_timeout = 5\nsend_timeout = \"2m\"\nsession_gap = \"2h\"\n");
        let r = with(&["--config", &d.config], &[]).unwrap();
        assert_eq!(r.server.header_read_timeout, Duration::from_secs(45));
        assert_eq!(r.server.keep_alive_timeout, Duration::from_secs(5));
        assert_eq!(r.server.send_timeout, Duration::from_secs(120));
        assert_eq!(r.app.session_gap_minutes, 120);
        // The old name, in seconds.
        d.rewrite(&format!("root = {:?}\nheader_timeout_secs = 7\n", d.root()));
        let r = with(&["--config", &d.config, "--no-watch-log"], &[]).unwrap();
        assert_eq!(r.server.header_read_timeout, Duration::from_secs(7));
        assert!(!r.app.settings.watch_log_enabled);
    }

    /// A bad value in the file names the file and the key; an unknown key
    /// (at the top, in `[stream]`, or `config` itself) is refused.
    #[test]
    fn bad_file_values_name_the_key() {
        let d = dir("");
        for (text, key) in [
            ("max_connections = \"many\"\n", "key `max_connections`"),
            ("header_timeout = \"soon\"\n", "key `header_timeout`"),
            ("trusted_proxies = [\"nowhere\"]\n", "key `trusted_proxies`"),
            (
                "[stream]\nmax_load_volume = \"lots\"\n",
                "key `stream.max_load_volume`",
            ),
            (
                "[stream]\ndefault_permission_classes = [\"IsAdmin\"]\n",
                "IsAdmin",
            ),
            ("nonsense = 1\n", "nonsense"),
            ("[stream]\nnonsense = 1\n", "nonsense"),
            ("config = \"other.toml\"\n", "config"),
        ] {
            d.rewrite(text);
            let err = with(&["--config", &d.config], &[]).unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
            assert!(err.starts_with(&d.config), "names the file: {err}");
        }
        d.rewrite("retention = \"a month\"\n");
        let err = with(&["--config", &d.config], &[]).unwrap_err();
        assert!(err.contains("key `retention`: bad duration"), "{err}");
    }

    /// A bad value in the environment names the variable (and never shows
    /// a secret's value); a bad flag is clap's error, which names the flag.
    #[test]
    fn bad_env_values_name_the_variable() {
        let d = dir("");
        let root_dir = d.root();
        let root = ["--root", root_dir.as_str()];
        for (var, value) in [
            ("STREAM_MAX_CONNECTIONS", "lots"),
            ("STREAM_ZERO_COPY", "maybe"),
            ("STREAM_SEND_TIMEOUT", "soon"),
            ("STREAM_BIND", "nowhere"),
            ("STREAM_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("STREAM_MAX_LOAD_VOLUME", "lots"),
            ("STREAM_WATCH_LOG_ENABLED", "maybe"),
            ("STREAM_DEFAULT_PERMISSION_CLASSES", "IsAdmin"),
            ("STREAM_MIME", "m3u8"),
        ] {
            let err = with(&root, &[(var, value)]).unwrap_err();
            assert!(err.starts_with(var), "{var}: {err}");
        }
        let err = with(&root, &[("STREAM_TOKENS", "tok-SECRET")]).unwrap_err();
        assert!(err.starts_with("STREAM_TOKENS"), "{err}");
        assert!(!err.contains("tok-SECRET"), "{err}");
        // Checked after merging, under the setting's variable.
        let err = with(&root, &[("STREAM_CORS_ORIGINS", "https://a.example/")]).unwrap_err();
        assert!(err.contains("STREAM_CORS_ORIGINS"), "{err}");
        let err = with(&root, &[("STREAM_MAX_LOAD_VOLUME", "0")]).unwrap_err();
        assert!(err.contains("STREAM_MAX_LOAD_VOLUME"), "{err}");
    }

    /// Every variable `serve` read before the layers were one structure is
    /// still a variable of it.
    #[test]
    fn every_old_variable_is_still_read() {
        use clap::Args as _;
        let command = ServeConfig::augment_args(clap::Command::new("serve"));
        let declared: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        for var in [
            "STREAM_CONFIG",
            "STREAM_MEDIA_ROOT",
            "STREAM_BIND",
            "STREAM_DATABASE_URL",
            "STREAM_SPOOL",
            "STREAM_DURABLE_LOG",
            "STREAM_SPOOL_MAX_MIB",
            "STREAM_RETENTION",
            "STREAM_ADMIN_TOKEN",
            "STREAM_TOKENS",
            "STREAM_TRUSTED_PROXIES",
            "STREAM_MAX_STREAMS_PER_VIEWER",
            "STREAM_SESSION_GAP",
            "STREAM_HEADER_TIMEOUT",
            "STREAM_KEEP_ALIVE_TIMEOUT",
            "STREAM_SEND_TIMEOUT",
            "STREAM_MAX_CONNECTIONS",
            "STREAM_OPEN_FILE_CACHE",
            "STREAM_OPEN_FILE_CACHE_VALID",
            "STREAM_ZERO_COPY",
            "STREAM_STRICT_BACKPRESSURE",
            "STREAM_METRICS_BIND",
            "STREAM_NO_ACCESS_LOG",
            "STREAM_CORS_ORIGINS",
            "STREAM_CACHE_CONTROL",
            "STREAM_MIME",
            vars::PERMISSION_CLASSES,
            vars::PATH_VAR,
            vars::MAX_LOAD_VOLUME,
            vars::WATCH_LOG_ENABLED,
            vars::RANGE_REGEX,
            vars::SIGNING_KEY,
            vars::MEDIA_URL,
            vars::AUTH_URL,
            vars::AUTH_CACHE_SECONDS,
            vars::AUTH_TIMEOUT_SECONDS,
            vars::ANONYMIZE_IP,
        ] {
            assert!(declared.iter().any(|d| d == var), "{var} not read");
        }
        // The misspelt name of the range regex, read when the right one is not.
        let d = dir("");
        let r = with(
            &["--root", &d.root()],
            &[(vars::RANGE_REGEX_MISSPELT, crate_range_pattern())],
        )
        .unwrap();
        assert!(r.app.settings.range_header_regex_pattern.is_some());
    }

    fn crate_range_pattern() -> &'static str {
        r"bytes=(\d+)-(\d*)"
    }

    #[test]
    fn anonymize_ip_from_flag_environment_or_file() {
        let d = dir("[stream]\nanonymize_ip = true\n");
        let root = d.root();
        let on = |args: &[&str], env: &[(&str, &str)]| {
            with(args, env).unwrap().app.settings.anonymize_ip
        };
        assert!(!on(&["--root", &root], &[]));
        assert!(on(&["--root", &root, "--anonymize-ip"], &[]));
        assert!(on(&["--root", &root], &[("STREAM_ANONYMIZE_IP", "1")]));
        assert!(on(&["--config", &d.config], &[]));
        assert!(
            !on(
                &["--config", &d.config],
                &[("STREAM_ANONYMIZE_IP", "false")]
            ),
            "environment over file"
        );
        assert!(!on(
            &["--config", &d.config, "--anonymize-ip=false"],
            &[("STREAM_ANONYMIZE_IP", "true")]
        ));
    }

    #[test]
    fn spool_bound_in_mib_from_flag_or_file() {
        let d = dir("spool_max_mib = 64\n");
        let spool = |args: &[&str]| with(args, &[]).map(|r| r.spool_max);
        assert_eq!(spool(&["--config", &d.config]).unwrap(), 64 << 20);
        assert_eq!(
            spool(&["--config", &d.config, "--spool-max-mib", "2"]).unwrap(),
            2 << 20
        );
        let err = spool(&["--config", &d.config, "--spool-max-mib", "0"]).unwrap_err();
        assert!(err.contains("spool_max_mib"), "{err}");
    }

    #[test]
    fn retention_from_flag_or_file_never_zero() {
        let d = dir("retention = \"30d\"\n");
        let r = with(&["--config", &d.config], &[]).unwrap();
        assert_eq!(r.retention, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(
            r.spool_max,
            256 * 1024 * 1024,
            "the spool is bounded by default"
        );
        let r = with(&["--config", &d.config, "--retention", "1h"], &[]).unwrap();
        assert_eq!(
            r.retention,
            Some(Duration::from_secs(3600)),
            "the flag wins"
        );
        let err = with(&["--config", &d.config, "--retention", "0s"], &[]).unwrap_err();
        assert!(err.contains("retention must be longer than 0"), "{err}");
        let r = with(&["--root", &d.root()], &[]).unwrap();
        assert_eq!(r.retention, None, "off by default");
    }

    /// The resolved configuration and each layer, as `{:?}` prints them,
    /// hold no token, key or password, wherever the secret came from.
    #[test]
    fn config_debug_shows_no_secret() {
        let d = dir(
            "database = \"postgres://me:dbpw-SECRET-1@db.example/log\"\n\
             admin_token = \"adm-SECRET-2\"\n[tokens]\ntok-SECRET-3 = \"alice\"\n\
             [stream]\nsigning_key = \"sk-SECRET-4\"\nauth_url = \"http://u:auth-SECRET-5@a.example/\"\n\
             default_permission_classes = [\"AuthRequest\"]\n",
        );
        let secrets = [
            "dbpw-SECRET-1",
            "adm-SECRET-2",
            "tok-SECRET-3",
            "sk-SECRET-4",
            "auth-SECRET-5",
        ];
        let file: ServeConfig = layers::read_file(Path::new(&d.config)).unwrap();
        let resolved = with(&["--config", &d.config], &[]).unwrap();
        assert_eq!(resolved.app.admin_token.as_deref(), Some("adm-SECRET-2"));
        let mut from_env = ServeConfig::default();
        let env = [
            (
                "STREAM_DATABASE_URL",
                "postgres://me:dbpw-SECRET-1@db.example/log",
            ),
            ("STREAM_ADMIN_TOKEN", "adm-SECRET-2"),
            ("STREAM_TOKENS", "tok-SECRET-3=alice"),
            ("STREAM_SIGNING_KEY", "sk-SECRET-4"),
            ("STREAM_AUTH_URL", "http://u:auth-SECRET-5@a.example/"),
        ];
        layers::apply_env(&mut from_env, &|name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap();
        assert_eq!(
            from_env
                .admin_token
                .clone()
                .map(Secret::into_inner)
                .as_deref(),
            Some("adm-SECRET-2")
        );
        for text in [
            format!("{resolved:?}"),
            format!("{file:?}"),
            format!("{from_env:?}"),
            format!("{:?}", resolved.app),
            format!("{:?}", resolved.app.settings),
            format!("{:?}", resolved.server),
        ] {
            for secret in secrets {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
        assert!(format!("{resolved:?}").contains("postgres://me:***@db.example/log"));
        assert!(format!("{file:?}").contains("postgres://me:***@db.example/log"));
    }

    /// Every `serve` flag names the variable that sets it, in `--help`.
    #[test]
    fn every_serve_flag_shows_its_variable() {
        use clap::CommandFactory as _;
        let mut cli = crate::cli::Cli::command();
        let serve = cli.find_subcommand_mut("serve").unwrap();
        let mut missing = Vec::new();
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" || long == "version" {
                continue;
            }
            assert!(
                arg.get_env().is_none(),
                "--{long}: the flags layer reads no variable"
            );
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if !help.contains("[env: STREAM_") {
                missing.push(long.to_owned());
            }
        }
        assert!(
            missing.is_empty(),
            "serve flags without a variable: {missing:?}"
        );
    }

    #[test]
    fn zero_copy_flag_takes_an_optional_value() {
        let parse = |args: &[&str]| flags(args).get_one::<bool>("zero_copy").copied();
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&["--zero-copy"]), Some(true));
        assert_eq!(parse(&["--zero-copy=false"]), Some(false));
    }

    #[test]
    fn open_file_cache_from_file_and_flags() {
        let d = dir("open_file_cache = 1256\nopen_file_cache_valid = \"5s\"\nzero_copy = true\n");
        let defaults = with(&["--root", &d.root()], &[]).unwrap();
        assert_eq!(defaults.app.open_file_cache, 256);
        assert_eq!(defaults.app.open_file_cache_valid, Duration::ZERO);
        let from_file = with(&["--config", &d.config], &[]).unwrap();
        assert_eq!(from_file.app.open_file_cache, 1256);
        assert_eq!(from_file.app.open_file_cache_valid, Duration::from_secs(5));
        assert!(from_file.server.zero_copy);
        assert!(!defaults.server.zero_copy);
        // A thousand more cached files leave 500 fewer connections.
        assert_eq!(
            from_file.server.max_connections,
            defaults.server.max_connections.saturating_sub(500).max(16)
        );
        let flags = with(
            &[
                "--config",
                &d.config,
                "--open-file-cache",
                "0",
                "--open-file-cache-valid",
                "1s",
                "--max-connections",
                "100",
                // A flag turns the file's zero copy off.
                "--zero-copy=false",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(flags.app.open_file_cache, 0);
        assert_eq!(flags.app.open_file_cache_valid, Duration::from_secs(1));
        assert_eq!(flags.server.max_connections, 100);
        assert!(!flags.server.zero_copy);
        // So does the variable; and the flag beats the variable.
        let env = [("STREAM_ZERO_COPY", "false")];
        assert!(
            !with(&["--config", &d.config], &env)
                .unwrap()
                .server
                .zero_copy
        );
        let on = with(&["--config", &d.config, "--zero-copy"], &env).unwrap();
        assert!(on.server.zero_copy);
    }

    #[test]
    fn cors_cache_control_and_mime_from_each_source() {
        let d = dir(
            "[stream]\ncors_origins = [\"https://file.example\"]\ncache_control = \"no-cache\"\n\
             [stream.mime_types]\nm3u8 = \"application/x-mpegURL\"\n",
        );
        let file = ["--config", d.config.as_str()];
        let s = with(&file, &[]).unwrap().app.settings;
        assert_eq!(s.cors_origins, ["https://file.example"]);
        assert_eq!(s.cache_control.as_deref(), Some("no-cache"));
        assert_eq!(s.mime_types["m3u8"], "application/x-mpegURL");
        // The environment replaces the file's lists.
        let env = [
            ("STREAM_CORS_ORIGINS", "https://a.example,https://b.example"),
            ("STREAM_MIME", "ts=video/x-test"),
        ];
        let s = with(&file, &env).unwrap().app.settings;
        assert_eq!(s.cors_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(s.mime_types.len(), 1);
        assert_eq!(s.mime_types["ts"], "video/x-test");
        // An empty variable turns the file's CORS and Cache-Control off.
        let off = [("STREAM_CORS_ORIGINS", ""), ("STREAM_CACHE_CONTROL", "")];
        let s = with(&file, &off).unwrap().app.settings;
        assert!(s.cors_origins.is_empty() && s.cache_control.is_none());
        // Flags replace both.
        let args = [
            "--config",
            d.config.as_str(),
            "--cors-origin",
            "*",
            "--cache-control",
            "public, max-age=60",
            "--mime",
            "vtt=text/plain",
        ];
        let s = with(&args, &env).unwrap().app.settings;
        assert_eq!(s.cors_origins, ["*"]);
        assert_eq!(s.cache_control.as_deref(), Some("public, max-age=60"));
        assert_eq!(s.mime_types.keys().collect::<Vec<_>>(), ["vtt"]);
        // Bad values name the setting.
        let err = with(
            &["--config", &d.config, "--cors-origin", "https://a.example/"],
            &[],
        )
        .unwrap_err();
        assert!(err.contains("STREAM_CORS_ORIGINS"), "{err}");
        let err = with(&["--config", &d.config, "--mime", "m3u8=nonsense"], &[]).unwrap_err();
        assert!(err.contains("STREAM_MIME"), "{err}");
        assert!(parse_mime("m3u8").is_err() && parse_mime("=x/y").is_err());
    }
}
