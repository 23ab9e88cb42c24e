//! `sage-stream serve`: configuration from flags, environment variables and
//! a TOML file (in that order of precedence), then the app.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sage_stream::app::{self, AppConfig};
use sage_stream::extension::IpNet;
use sage_stream::log::{WatchLogWriter, WriterConfig};
use sage_stream::server::{self, ServerConfig};
use sage_stream::settings::{vars, Settings, MIB};
use serde::Deserialize;

use super::{format_duration, parse_duration, redact, DEFAULT_DATABASE};

/// The media root when none is named: `./media`, which holds the sample
/// clips in a checkout. Nothing is baked in at compile time, so a copied
/// binary does not look for the source tree.
const DEFAULT_MEDIA: &str = "media";

#[derive(clap::Args, Default)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (see README); flags and environment variables override it.
    #[arg(long, env = "STREAM_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Directory whose files may be streamed [default: ./media if it exists]
    #[arg(long, env = "STREAM_MEDIA_ROOT")]
    pub(crate) root: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8000]
    #[arg(long, env = "STREAM_BIND")]
    pub(crate) bind: Option<SocketAddr>,
    /// Watch-log database: sqlite://PATH or postgres://... [default: sqlite://sage_stream.db]
    #[arg(long, env = "STREAM_DATABASE_URL")]
    pub(crate) database: Option<String>,
    /// Spool file for rows while the database is unreachable [default: beside the SQLite file, else ./sage_stream.spool]
    #[arg(long, env = "STREAM_SPOOL")]
    pub(crate) spool: Option<PathBuf>,
    /// Journal each watch-log row to the spool as its response ends, so that kill -9 loses none (one write per request)
    #[arg(long, env = "STREAM_DURABLE_LOG")]
    pub(crate) durable_log: bool,
    /// Most MiB the spool may hold; beyond, its oldest rows are dropped (and counted) [default: 256]
    #[arg(long, env = "STREAM_SPOOL_MAX_MIB")]
    pub(crate) spool_max_mib: Option<u64>,
    /// Delete watch-log rows older than this (90d, 12h), at start-up and then daily [default: keep every row]
    #[arg(long, env = "STREAM_RETENTION", value_parser = parse_duration)]
    pub(crate) retention: Option<Duration>,
    /// Turns the admin on at /admin/ with this token (bearer, or Basic password).
    #[arg(long, env = "STREAM_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// Accept `Authorization: Bearer TOKEN` as user USER (repeatable; the variable takes a comma-separated list).
    #[arg(long = "token", value_name = "TOKEN=USER", value_parser = parse_token, env = "STREAM_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub(crate) tokens: Vec<(String, String)>,
    /// Proxy (IP or CIDR) whose X-Forwarded-For / Forwarded is believed (repeatable; the variable takes a comma-separated list).
    #[arg(
        long = "trusted-proxy",
        value_name = "CIDR",
        env = "STREAM_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub(crate) trusted_proxies: Vec<IpNet>,
    /// At most N concurrent streams per viewer (429 beyond) [default: no limit]
    #[arg(long, env = "STREAM_MAX_STREAMS_PER_VIEWER")]
    pub(crate) max_streams_per_viewer: Option<usize>,
    /// A pause longer than this starts a new viewing session: 30m, 1h [default: 30m]
    #[arg(long, env = "STREAM_SESSION_GAP", value_parser = parse_duration)]
    pub(crate) session_gap: Option<Duration>,
    /// Longest wait for a request's headers, also on idle keep-alive connections [default: 30s]
    #[arg(long, env = "STREAM_HEADER_TIMEOUT", value_parser = parse_duration)]
    pub(crate) header_timeout: Option<Duration>,
    /// Close a connection with no request in progress after this long (HTTP/2: GOAWAY) [default: 60s]
    #[arg(long, env = "STREAM_KEEP_ALIVE_TIMEOUT", value_parser = parse_duration)]
    pub(crate) keep_alive_timeout: Option<Duration>,
    /// Close a connection whose response made no write progress for this long [default: 60s]
    #[arg(long, env = "STREAM_SEND_TIMEOUT", value_parser = parse_duration)]
    pub(crate) send_timeout: Option<Duration>,
    /// Most connections open at once; beyond, new ones wait in the backlog [default: half the fd limit less the open-file cache]
    #[arg(long, env = "STREAM_MAX_CONNECTIONS")]
    pub(crate) max_connections: Option<usize>,
    /// Files kept open between requests, so a hot file costs no open and no thread hop; 0 turns it off [default: 256]
    #[arg(long, env = "STREAM_OPEN_FILE_CACHE", value_name = "FILES")]
    pub(crate) open_file_cache: Option<usize>,
    /// Trust a cached file this long without a stat, e.g. 5s on a network file system [default: 0s, a stat per request]
    #[arg(long, env = "STREAM_OPEN_FILE_CACHE_VALID", value_parser = parse_duration)]
    pub(crate) open_file_cache_valid: Option<Duration>,
    /// Experimental (Linux): send file bytes of HTTP/1.x responses with sendfile, never copying them into user space [default: off]
    #[arg(
        long,
        env = "STREAM_ZERO_COPY",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub(crate) zero_copy: Option<bool>,
    /// A client that stops reading pins one file chunk, not a whole write buffer, at a throughput cost [default: off]
    #[arg(
        long,
        env = "STREAM_STRICT_BACKPRESSURE",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub(crate) strict_backpressure: Option<bool>,
    /// Cap per ranged response in MiB [default: 8]
    // Text here: the settings parse it, with an error that names the variable.
    #[arg(long, env = "STREAM_MAX_LOAD_VOLUME", value_name = "MIB")]
    pub(crate) max_load_volume: Option<String>,
    /// Permission classes, comma-separated: AllowAny, IsAuthenticated, SignedUrl, AuthRequest [default: AllowAny]
    #[arg(long, env = "STREAM_DEFAULT_PERMISSION_CLASSES")]
    pub(crate) permission: Option<String>,
    /// Query variable of the media path [default: path]
    #[arg(long, env = "STREAM_DEFAULT_VIDEO_PATH_URL_VAR")]
    pub(crate) path_var: Option<String>,
    /// Keep no watch log [env: STREAM_WATCH_LOG_ENABLED=false]
    #[arg(long)]
    pub(crate) no_watch_log: bool,
    /// Store client IPs with the last IPv4 octet / last 80 bits of IPv6 zeroed (the stream limit still sees the full address)
    #[arg(long, env = "STREAM_ANONYMIZE_IP", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) anonymize_ip: bool,
    /// Django's MEDIA_URL (e.g. /media/): removed from the front of requested paths
    #[arg(long, env = "STREAM_MEDIA_URL")]
    pub(crate) media_url: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics, on a listener of their own [default: off]
    #[arg(long, env = "STREAM_METRICS_BIND", value_name = "ADDR")]
    pub(crate) metrics_bind: Option<SocketAddr>,
    /// Write no access-log line per request (they go to stderr at info, as text or --log-format json)
    #[arg(long, env = "STREAM_NO_ACCESS_LOG")]
    pub(crate) no_access_log: bool,
    /// Endpoint the AuthRequest permission asks before each stream (http://…; e.g. a Django view)
    #[arg(long, env = "STREAM_AUTH_URL")]
    pub(crate) auth_url: Option<String>,
    /// Origin whose pages may read the stream routes (CORS), e.g. https://player.example, or * (repeatable; the variable takes a comma-separated list).
    #[arg(
        long = "cors-origin",
        value_name = "ORIGIN",
        env = "STREAM_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub(crate) cors_origins: Vec<String>,
    /// Cache-Control of the file's answers (200, 206, 304), e.g. "public, max-age=3600"
    #[arg(long, env = "STREAM_CACHE_CONTROL")]
    pub(crate) cache_control: Option<String>,
    /// Serve .EXT files as TYPE, over the built-in types (repeatable; the variable takes a comma-separated list).
    #[arg(long = "mime", value_name = "EXT=TYPE", value_parser = parse_mime, env = "STREAM_MIME", value_delimiter = ',')]
    pub(crate) mime_types: Vec<(String, String)>,
}

/// The TOML file. Every key is optional. Its `Debug` hides the tokens, the
/// admin token and the database password (see [`redacted`]).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    root: Option<PathBuf>,
    bind: Option<SocketAddr>,
    database: Option<String>,
    spool: Option<PathBuf>,
    spool_max_mib: Option<u64>,
    durable_log: Option<bool>,
    /// Written as on the command line: "90d".
    retention: Option<String>,
    admin_token: Option<String>,
    max_streams_per_viewer: Option<usize>,
    #[serde(default, deserialize_with = "duration_value")]
    session_gap: Option<Duration>,
    #[serde(
        default,
        alias = "header_timeout_secs",
        deserialize_with = "duration_value"
    )]
    header_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration_value")]
    keep_alive_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration_value")]
    send_timeout: Option<Duration>,
    max_connections: Option<usize>,
    open_file_cache: Option<usize>,
    #[serde(default, deserialize_with = "duration_value")]
    open_file_cache_valid: Option<Duration>,
    zero_copy: Option<bool>,
    strict_backpressure: Option<bool>,
    metrics_bind: Option<SocketAddr>,
    access_log: Option<bool>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    tokens: BTreeMap<String, String>,
    /// The `STREAM_*` settings, by their snake_case names.
    stream: Option<Settings>,
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
    pub(crate) header_timeout: Duration,
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
            header_timeout,
            server,
        } = self;
        f.debug_struct("Resolved")
            .field("app", app)
            .field("bind", bind)
            .field("metrics_bind", metrics_bind)
            .field("database", &redact(database))
            .field("spool", spool)
            .field("spool_max", spool_max)
            .field("durable_log", durable_log)
            .field("retention", retention)
            .field("header_timeout", header_timeout)
            .field("server", server)
            .finish()
    }
}

impl std::fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Written as parsed, but with every secret replaced by its
        // redacted form; the rest of the fields are plain data.
        let tokens: Vec<&str> = self.tokens.values().map(String::as_str).collect();
        f.debug_struct("ConfigFile")
            .field("root", &self.root)
            .field("bind", &self.bind)
            .field("database", &self.database.as_deref().map(redact))
            .field("spool", &self.spool)
            .field("spool_max_mib", &self.spool_max_mib)
            .field("durable_log", &self.durable_log)
            .field("retention", &self.retention)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("token_users", &tokens)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

fn parse_token(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((token, user)) if !token.is_empty() && !user.is_empty() => {
            Ok((token.to_owned(), user.to_owned()))
        }
        _ => Err("expected TOKEN=USER".to_owned()),
    }
}

/// A duration in the file, written as the flags take it (`"30s"`, `"90d"`);
/// a bare integer is seconds, as the old `header_timeout_secs` took.
fn duration_value<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Seconds(u64),
        Text(String),
    }
    match Option::<Written>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Written::Seconds(seconds)) => Ok(Some(Duration::from_secs(seconds))),
        Some(Written::Text(text)) => parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
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

/// Flags over environment over file over defaults. `env` is the process
/// environment (a parameter so tests can give their own).
pub(crate) fn resolve(
    args: ServeArgs,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Resolved, Box<dyn std::error::Error>> {
    let file: ConfigFile = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => ConfigFile::default(),
    };
    let mut settings = file.stream.unwrap_or_default();
    settings.apply_lookup(&env)?;
    let flags = |name: &str| -> Option<String> {
        match name {
            vars::MAX_LOAD_VOLUME => args.max_load_volume.clone(),
            vars::PERMISSION_CLASSES => args.permission.clone(),
            vars::PATH_VAR => args.path_var.clone(),
            vars::WATCH_LOG_ENABLED => args.no_watch_log.then(|| "false".to_owned()),
            // Off is the default: only an explicit on overrides the file.
            vars::ANONYMIZE_IP => args.anonymize_ip.then(|| "true".to_owned()),
            vars::MEDIA_URL => args.media_url.clone(),
            vars::AUTH_URL => args.auth_url.clone(),
            _ => None,
        }
    };
    settings.apply_lookup(flags)?;
    // Lists: flags (or their variables, which clap reads) replace.
    if !args.cors_origins.is_empty() {
        settings.cors_origins = args.cors_origins;
    }
    if let Some(value) = args.cache_control {
        settings.cache_control = Some(value).filter(|v| !v.is_empty());
    }
    if !args.mime_types.is_empty() {
        settings.mime_types = args.mime_types.into_iter().collect();
    }
    settings.validate()?;

    // A list from a higher source (flags or environment) replaces the
    // file's, as single values do; it is not added to it.
    let mut trusted_proxies = args.trusted_proxies;
    if trusted_proxies.is_empty() {
        for text in &file.trusted_proxies {
            trusted_proxies.push(
                text.parse::<IpNet>()
                    .map_err(|e| format!("trusted_proxies: {e}"))?,
            );
        }
    }
    let tokens: Vec<(String, String)> = if args.tokens.is_empty() {
        file.tokens.into_iter().collect()
    } else {
        args.tokens
    };

    let root = args
        .root
        .or(file.root)
        .map_or_else(
            || {
                let media = PathBuf::from(DEFAULT_MEDIA);
                if media.is_dir() {
                    Ok(media)
                } else {
                    Err("no media root: pass --root DIR (or set STREAM_MEDIA_ROOT); ./media does not exist here")
                }
            },
            Ok,
        )?;
    if !root.is_dir() {
        return Err(format!("media root {} is not a directory", root.display()).into());
    }
    let database = args
        .database
        .or(file.database)
        .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    let spool = args
        .spool
        .or(file.spool)
        .unwrap_or_else(|| default_spool(&database));
    let spool_max = match args.spool_max_mib.or(file.spool_max_mib) {
        Some(0) => return Err("spool_max_mib must be at least 1".into()),
        Some(mib) => mib.saturating_mul(MIB),
        None => WriterConfig::default().spool_max_bytes,
    };
    let retention = match (args.retention, &file.retention) {
        (Some(flag), _) => Some(flag),
        (None, Some(text)) => Some(parse_duration(text).map_err(|e| format!("retention: {e}"))?),
        (None, None) => None,
    };
    let open_file_cache = args
        .open_file_cache
        .or(file.open_file_cache)
        .unwrap_or(sage_stream::media::DEFAULT_OPEN_FILE_CACHE);
    if retention == Some(Duration::ZERO) {
        return Err("retention must be longer than 0 (it would delete every row); leave it unset to keep them all".into());
    }
    let strict_backpressure = args
        .strict_backpressure
        .or(file.strict_backpressure)
        .unwrap_or(false);
    Ok(Resolved {
        app: AppConfig {
            root,
            settings,
            tokens,
            trusted_proxies,
            admin_token: args
                .admin_token
                .or(file.admin_token)
                .filter(|t| !t.is_empty()),
            max_streams_per_viewer: args
                .max_streams_per_viewer
                .or(file.max_streams_per_viewer)
                .filter(|n| *n > 0),
            session_gap_minutes: args.session_gap.or(file.session_gap).map_or(30, |gap| {
                u32::try_from(gap.as_secs() / 60).unwrap_or(u32::MAX).max(1)
            }),
            player_path: Some("/".to_owned()),
            metrics: None,
            access_log: !args.no_access_log && file.access_log.unwrap_or(true),
            media_route: Some(app::DEFAULT_MEDIA_ROUTE.to_owned()),
            open_file_cache,
            open_file_cache_valid: args
                .open_file_cache_valid
                .or(file.open_file_cache_valid)
                .unwrap_or(Duration::ZERO),
            // Under strict backpressure a stalled client pins about one
            // chunk: 32 KiB keeps that within 64 KiB with its state.
            chunk_size: if strict_backpressure {
                STRICT_CHUNK_SIZE
            } else {
                sage_stream::media::DEFAULT_CHUNK_SIZE
            },
        },
        metrics_bind: args.metrics_bind.or(file.metrics_bind),
        bind: args
            .bind
            .or(file.bind)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8000))),
        database,
        spool,
        spool_max,
        durable_log: args.durable_log || file.durable_log.unwrap_or(false),
        retention,
        header_timeout: args
            .header_timeout
            .or(file.header_timeout)
            .unwrap_or(Duration::from_secs(30)),
        server: {
            let defaults = ServerConfig::default();
            ServerConfig {
                keep_alive_timeout: args
                    .keep_alive_timeout
                    .or(file.keep_alive_timeout)
                    .unwrap_or(defaults.keep_alive_timeout),
                send_timeout: args
                    .send_timeout
                    .or(file.send_timeout)
                    .unwrap_or(defaults.send_timeout),
                max_connections: args
                    .max_connections
                    .or(file.max_connections)
                    .unwrap_or_else(|| {
                        // The default leaves descriptors for the default
                        // cache; a bigger cache takes them from connections
                        // (each holds a socket and perhaps a file).
                        let extra = open_file_cache
                            .saturating_sub(sage_stream::media::DEFAULT_OPEN_FILE_CACHE);
                        defaults.max_connections.saturating_sub(extra / 2).max(16)
                    }),
                zero_copy: {
                    let on = args.zero_copy.or(file.zero_copy).unwrap_or(false);
                    if on && !cfg!(target_os = "linux") {
                        tracing::warn!("zero copy is Linux-only; file bytes are copied as usual");
                    }
                    on
                },
                strict_backpressure,
                // For the start-up check of the descriptor limit.
                open_file_cache,
                ..defaults
            }
        },
    })
}

/// Bytes per disk read under `--strict-backpressure`.
const STRICT_CHUNK_SIZE: usize = 32 * 1024;

pub(crate) fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut resolved = resolve(args, |name| std::env::var(name).ok())?;
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
    let server_config = ServerConfig {
        header_read_timeout: resolved.header_timeout,
        ..resolved.server.clone()
    };
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
            redact(&resolved.database)
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

    #[test]
    fn anonymize_ip_from_flag_environment_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sage.toml");
        let root = dir.path().display().to_string();
        std::fs::write(
            &config,
            format!("root = {root:?}\n[stream]\nanonymize_ip = true\n"),
        )
        .unwrap();
        let args = |config: Option<PathBuf>, anonymize_ip| ServeArgs {
            root: Some(dir.path().to_owned()),
            config,
            anonymize_ip,
            ..ServeArgs::default()
        };
        let anonymized = |r: Resolved| r.app.settings.anonymize_ip;
        assert!(!anonymized(resolve(args(None, false), |_| None).unwrap()));
        assert!(anonymized(resolve(args(None, true), |_| None).unwrap()));
        let env = |name: &str| (name == "STREAM_ANONYMIZE_IP").then(|| "1".to_owned());
        assert!(anonymized(resolve(args(None, false), env).unwrap()));
        assert!(anonymized(
            resolve(args(Some(config.clone()), false), |_| None).unwrap()
        ));
        let off = |name: &str| (name == "STREAM_ANONYMIZE_IP").then(|| "false".to_owned());
        assert!(
            !anonymized(resolve(args(Some(config), false), off).unwrap()),
            "environment over file"
        );
    }

    #[test]
    fn spool_bound_in_mib_from_flag_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sage.toml");
        let root = dir.path().display().to_string();
        std::fs::write(&config, format!("root = {root:?}\nspool_max_mib = 64\n")).unwrap();
        let args = |spool_max_mib| ServeArgs {
            config: Some(config.clone()),
            spool_max_mib,
            ..ServeArgs::default()
        };
        assert_eq!(resolve(args(None), |_| None).unwrap().spool_max, 64 << 20);
        assert_eq!(resolve(args(Some(2)), |_| None).unwrap().spool_max, 2 << 20);
        let err = resolve(args(Some(0)), |_| None).unwrap_err();
        assert!(err.to_string().contains("spool_max_mib"), "{err}");
    }

    #[test]
    fn retention_from_flag_or_file_never_zero() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sage.toml");
        let root = dir.path().display().to_string();
        std::fs::write(&config, format!("root = {root:?}\nretention = \"30d\"\n")).unwrap();
        let from_file = |retention| ServeArgs {
            config: Some(config.clone()),
            retention,
            ..ServeArgs::default()
        };
        let r = resolve(from_file(None), |_| None).unwrap();
        assert_eq!(r.retention, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(
            r.spool_max,
            256 * 1024 * 1024,
            "the spool is bounded by default"
        );
        let r = resolve(from_file(Some(Duration::from_secs(3600))), |_| None).unwrap();
        assert_eq!(
            r.retention,
            Some(Duration::from_secs(3600)),
            "the flag wins"
        );
        let err = resolve(from_file(Some(Duration::ZERO)), |_| None).unwrap_err();
        assert!(
            err.to_string().contains("retention must be longer than 0"),
            "{err}"
        );
        std::fs::write(
            &config,
            format!("root = {root:?}\nretention = \"a month\"\n"),
        )
        .unwrap();
        let err = resolve(from_file(None), |_| None).unwrap_err();
        assert!(
            err.to_string().starts_with("retention: bad duration"),
            "{err}"
        );
        let args = ServeArgs {
            root: Some(dir.path().to_owned()),
            ..ServeArgs::default()
        };
        assert_eq!(
            resolve(args, |_| None).unwrap().retention,
            None,
            "off by default"
        );
    }

    /// The resolved configuration and the parsed file, as `{:?}` prints
    /// them, hold no token, key or database password.
    #[test]
    fn resolved_config_debug_shows_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sage.toml");
        std::fs::write(
            &config,
            format!(
                "root = {root:?}\ndatabase = \"postgres://me:dbpw-SECRET-1@db.example/log\"\n\
                 admin_token = \"adm-SECRET-2\"\n[tokens]\ntok-SECRET-3 = \"alice\"\n\
                 [stream]\nsigning_key = \"sk-SECRET-4\"\n",
                root = dir.path().display().to_string()
            ),
        )
        .unwrap();
        let file: ConfigFile = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
        let args = ServeArgs {
            config: Some(config),
            ..ServeArgs::default()
        };
        let resolved = resolve(args, |_| None).unwrap();
        assert_eq!(resolved.app.admin_token.as_deref(), Some("adm-SECRET-2"));
        for text in [format!("{resolved:?}"), format!("{file:?}")] {
            for secret in [
                "dbpw-SECRET-1",
                "adm-SECRET-2",
                "tok-SECRET-3",
                "sk-SECRET-4",
            ] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
            assert!(text.contains("postgres://me:***@db.example/log"), "{text}");
        }
    }

    #[test]
    fn flags_over_env_over_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sage.toml");
        std::fs::write(
            &config,
            format!(
                "root = {root:?}\nbind = \"127.0.0.1:9000\"\nadmin_token = \"from-file\"\nmax_streams_per_viewer = 3\n\
                 trusted_proxies = [\"10.0.0.0/8\"]\n[tokens]\nt1 = \"alice\"\n[stream]\nmax_load_volume = 2\ndefault_video_path_url_var = \"video\"\n",
                root = dir.path().display().to_string()
            ),
        )
        .unwrap();
        // File only.
        let args = ServeArgs {
            config: Some(config.clone()),
            ..ServeArgs::default()
        };
        let r = resolve(args, |_| None).unwrap();
        assert_eq!(r.bind.port(), 9000);
        assert_eq!(r.app.admin_token.as_deref(), Some("from-file"));
        assert_eq!(r.app.max_streams_per_viewer, Some(3));
        assert_eq!(r.app.settings.max_load_volume_mib(), 2);
        assert_eq!(r.app.settings.default_video_path_url_var, "video");
        assert_eq!(r.app.tokens, vec![("t1".to_owned(), "alice".to_owned())]);
        assert_eq!(r.app.trusted_proxies.len(), 1);
        assert_eq!(r.database, "sqlite://sage_stream.db");
        // Environment over file.
        let env = |name: &str| (name == "STREAM_MAX_LOAD_VOLUME").then(|| "4".to_owned());
        let args = ServeArgs {
            config: Some(config.clone()),
            ..ServeArgs::default()
        };
        assert_eq!(
            resolve(args, env)
                .unwrap()
                .app
                .settings
                .max_load_volume_mib(),
            4
        );
        // Flags over environment.
        let args = ServeArgs {
            config: Some(config.clone()),
            max_load_volume: Some("6".into()),
            admin_token: Some("flag".into()),
            ..ServeArgs::default()
        };
        let r = resolve(args, env).unwrap();
        assert_eq!(r.app.settings.max_load_volume_mib(), 6);
        assert_eq!(r.app.admin_token.as_deref(), Some("flag"));
        // A list from the flags replaces the file's.
        let args = ServeArgs {
            config: Some(config.clone()),
            tokens: vec![("t2".into(), "bob".into())],
            trusted_proxies: vec!["192.0.2.1".parse().unwrap(), "::1".parse().unwrap()],
            ..ServeArgs::default()
        };
        let r = resolve(args, |_| None).unwrap();
        assert_eq!(r.app.tokens, vec![("t2".to_owned(), "bob".to_owned())]);
        assert_eq!(r.app.trusted_proxies.len(), 2);
        // Defaults.
        let r = resolve(ServeArgs::default(), |_| None).unwrap();
        assert_eq!(r.bind.to_string(), "127.0.0.1:8000");
        assert!(r.app.admin_token.is_none());
        assert_eq!(r.app.settings, Settings::default());
        // Durations are written as the flags take them; a bare integer is
        // seconds (the old `header_timeout_secs`).
        std::fs::write(
            &config,
            format!(
                "root = {root:?}\nheader_timeout = \"45s\"\nkeep_alive_timeout = 5\nsend_timeout = \"2m\"\nsession_gap = \"2h\"\n",
                root = dir.path().display().to_string()
            ),
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(config.clone()),
            ..ServeArgs::default()
        };
        let r = resolve(args, |_| None).unwrap();
        assert_eq!(r.header_timeout, Duration::from_secs(45));
        assert_eq!(r.server.keep_alive_timeout, Duration::from_secs(5));
        assert_eq!(r.server.send_timeout, Duration::from_secs(120));
        assert_eq!(r.app.session_gap_minutes, 120);
        std::fs::write(
            &config,
            format!(
                "root = {root:?}\nheader_timeout_secs = 7\n",
                root = dir.path().display().to_string()
            ),
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(config.clone()),
            no_watch_log: true,
            ..ServeArgs::default()
        };
        let r = resolve(args, |_| None).unwrap();
        assert_eq!(r.header_timeout, Duration::from_secs(7));
        assert!(!r.app.settings.watch_log_enabled);
        std::fs::write(&config, "header_timeout = \"soon\"\n").unwrap();
        let args = ServeArgs {
            config: Some(config.clone()),
            ..ServeArgs::default()
        };
        assert!(resolve(args, |_| None)
            .unwrap_err()
            .to_string()
            .contains("bad duration"));
        // Errors name what is wrong.
        std::fs::write(&config, "nonsense = 1\n").unwrap();
        let args = ServeArgs {
            config: Some(config.clone()),
            ..ServeArgs::default()
        };
        assert!(resolve(args, |_| None)
            .unwrap_err()
            .to_string()
            .contains("nonsense"));
        let bad_env = |name: &str| (name == "STREAM_MAX_LOAD_VOLUME").then(|| "lots".to_owned());
        assert!(resolve(ServeArgs::default(), bad_env)
            .unwrap_err()
            .to_string()
            .contains("STREAM_MAX_LOAD_VOLUME"));
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
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if arg.get_env().is_none() && !help.contains("[env: STREAM_") {
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
        use clap::Parser as _;
        let parse = |args: &[&str]| match crate::cli::Cli::try_parse_from(args).unwrap().command {
            crate::cli::Command::Serve(serve) => serve.zero_copy,
            _ => unreachable!(),
        };
        assert_eq!(parse(&["sage-stream", "serve"]), None);
        assert_eq!(parse(&["sage-stream", "serve", "--zero-copy"]), Some(true));
        assert_eq!(
            parse(&["sage-stream", "serve", "--zero-copy=false"]),
            Some(false)
        );
    }

    #[test]
    fn open_file_cache_from_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let config = dir.path().join("sage.toml");
        let defaults = resolve(
            ServeArgs {
                root: Some(dir.path().to_path_buf()),
                ..ServeArgs::default()
            },
            |_| None,
        )
        .unwrap();
        assert_eq!(defaults.app.open_file_cache, 256);
        assert_eq!(defaults.app.open_file_cache_valid, Duration::ZERO);
        std::fs::write(
            &config,
            format!("root = {root:?}\nopen_file_cache = 1256\nopen_file_cache_valid = \"5s\"\nzero_copy = true\n"),
        )
        .unwrap();
        let with_file = || ServeArgs {
            config: Some(config.clone()),
            ..ServeArgs::default()
        };
        let from_file = resolve(with_file(), |_| None).unwrap();
        assert_eq!(from_file.app.open_file_cache, 1256);
        assert_eq!(from_file.app.open_file_cache_valid, Duration::from_secs(5));
        assert!(from_file.server.zero_copy);
        assert!(!defaults.server.zero_copy);
        // A thousand more cached files leave 500 fewer connections.
        assert_eq!(
            from_file.server.max_connections,
            defaults.server.max_connections.saturating_sub(500).max(16)
        );
        let flags = resolve(
            ServeArgs {
                open_file_cache: Some(0),
                open_file_cache_valid: Some(Duration::from_secs(1)),
                max_connections: Some(100),
                // A flag (or STREAM_ZERO_COPY=false) turns the file's off.
                zero_copy: Some(false),
                ..with_file()
            },
            |_| None,
        )
        .unwrap();
        assert_eq!(flags.app.open_file_cache, 0);
        assert_eq!(flags.app.open_file_cache_valid, Duration::from_secs(1));
        assert_eq!(flags.server.max_connections, 100);
        assert!(!flags.server.zero_copy);
    }

    #[test]
    fn cors_cache_control_and_mime_from_each_source() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sage.toml");
        std::fs::write(
            &config,
            format!(
                "root = {root:?}\n[stream]\ncors_origins = [\"https://file.example\"]\ncache_control = \"no-cache\"\n\
                 [stream.mime_types]\nm3u8 = \"application/x-mpegURL\"\n",
                root = dir.path().display().to_string()
            ),
        )
        .unwrap();
        let with_file = || ServeArgs {
            config: Some(config.clone()),
            ..ServeArgs::default()
        };
        let s = resolve(with_file(), |_| None).unwrap().app.settings;
        assert_eq!(s.cors_origins, ["https://file.example"]);
        assert_eq!(s.cache_control.as_deref(), Some("no-cache"));
        assert_eq!(s.mime_types["m3u8"], "application/x-mpegURL");
        // The environment replaces the file's lists.
        let env = |name: &str| match name {
            "STREAM_CORS_ORIGINS" => Some("https://a.example,https://b.example".to_owned()),
            "STREAM_MIME" => Some("ts=video/x-test".to_owned()),
            _ => None,
        };
        let s = resolve(with_file(), env).unwrap().app.settings;
        assert_eq!(s.cors_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(s.mime_types.len(), 1);
        assert_eq!(s.mime_types["ts"], "video/x-test");
        // Flags replace both.
        let args = ServeArgs {
            cors_origins: vec!["*".into()],
            cache_control: Some("public, max-age=60".into()),
            mime_types: vec![("vtt".into(), "text/plain".into())],
            ..with_file()
        };
        let s = resolve(args, env).unwrap().app.settings;
        assert_eq!(s.cors_origins, ["*"]);
        assert_eq!(s.cache_control.as_deref(), Some("public, max-age=60"));
        assert_eq!(s.mime_types.keys().collect::<Vec<_>>(), ["vtt"]);
        // Bad values name the setting.
        let args = ServeArgs {
            cors_origins: vec!["https://a.example/".into()],
            ..with_file()
        };
        let err = resolve(args, |_| None).unwrap_err().to_string();
        assert!(err.contains("STREAM_CORS_ORIGINS"), "{err}");
        let args = ServeArgs {
            mime_types: vec![("m3u8".into(), "nonsense".into())],
            ..with_file()
        };
        let err = resolve(args, |_| None).unwrap_err().to_string();
        assert!(err.contains("STREAM_MIME"), "{err}");
        assert!(parse_mime("m3u8").is_err() && parse_mime("=x/y").is_err());
    }
}
