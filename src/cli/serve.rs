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
use tower_http::trace::TraceLayer;

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
    /// A pause longer than this many minutes starts a new viewing session [default: 30]
    #[arg(long, env = "STREAM_SESSION_GAP_MINUTES")]
    pub(crate) session_gap_minutes: Option<u32>,
    /// Longest wait for a request's headers, also on idle keep-alive connections [default: 30s]
    #[arg(long, env = "STREAM_HEADER_TIMEOUT", value_parser = parse_duration)]
    pub(crate) header_timeout: Option<Duration>,
    /// Close a connection with no request in progress after this long (HTTP/2: GOAWAY) [default: 60s]
    #[arg(long, env = "STREAM_KEEP_ALIVE_TIMEOUT", value_parser = parse_duration)]
    pub(crate) keep_alive_timeout: Option<Duration>,
    /// Close a connection whose response made no write progress for this long [default: 60s]
    #[arg(long, env = "STREAM_SEND_TIMEOUT", value_parser = parse_duration)]
    pub(crate) send_timeout: Option<Duration>,
    /// Most connections open at once; beyond, new ones wait in the backlog [default: half the fd limit]
    #[arg(long, env = "STREAM_MAX_CONNECTIONS")]
    pub(crate) max_connections: Option<usize>,
    /// Cap per ranged response in MiB (STREAM_MAX_LOAD_VOLUME).
    #[arg(long)]
    pub(crate) max_load_volume: Option<u64>,
    /// Permission classes, comma-separated (STREAM_DEFAULT_PERMISSION_CLASSES).
    #[arg(long)]
    pub(crate) permission: Option<String>,
    /// Query variable of the media path (STREAM_DEFAULT_VIDEO_PATH_URL_VAR).
    #[arg(long)]
    pub(crate) path_var: Option<String>,
    /// Watch log on or off (STREAM_WATCH_LOG_ENABLED).
    #[arg(long)]
    pub(crate) watch_log: Option<bool>,
    /// Store client IPs with the last IPv4 octet / last 80 bits of IPv6 zeroed (the stream limit still sees the full address)
    #[arg(long, env = "STREAM_ANONYMIZE_IP", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) anonymize_ip: bool,
    /// Django's MEDIA_URL (e.g. /media/): removed from the front of requested paths
    #[arg(long, env = "STREAM_MEDIA_URL")]
    pub(crate) media_url: Option<String>,
    /// Endpoint the AuthRequest permission asks before each stream (http://…; e.g. a Django view)
    #[arg(long, env = "STREAM_AUTH_URL")]
    pub(crate) auth_url: Option<String>,
}

/// The TOML file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
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
    session_gap_minutes: Option<u32>,
    header_timeout_secs: Option<u64>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    tokens: BTreeMap<String, String>,
    /// The `STREAM_*` settings, by their snake_case names.
    stream: Option<Settings>,
}

/// Everything `serve` needs, resolved.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) app: AppConfig,
    pub(crate) bind: SocketAddr,
    pub(crate) database: String,
    pub(crate) spool: PathBuf,
    /// In bytes.
    pub(crate) spool_max: u64,
    pub(crate) durable_log: bool,
    pub(crate) retention: Option<Duration>,
    pub(crate) header_timeout: Duration,
    pub(crate) server: ServerConfig,
}

fn parse_token(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((token, user)) if !token.is_empty() && !user.is_empty() => {
            Ok((token.to_owned(), user.to_owned()))
        }
        _ => Err("expected TOKEN=USER".to_owned()),
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
            vars::MAX_LOAD_VOLUME => args.max_load_volume.map(|v| v.to_string()),
            vars::PERMISSION_CLASSES => args.permission.clone(),
            vars::PATH_VAR => args.path_var.clone(),
            vars::WATCH_LOG_ENABLED => args.watch_log.map(|v| v.to_string()),
            // Off is the default: only an explicit on overrides the file.
            vars::ANONYMIZE_IP => args.anonymize_ip.then(|| "true".to_owned()),
            vars::MEDIA_URL => args.media_url.clone(),
            vars::AUTH_URL => args.auth_url.clone(),
            _ => None,
        }
    };
    settings.apply_lookup(flags)?;

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
    if retention == Some(Duration::ZERO) {
        return Err("retention must be longer than 0 (it would delete every row); leave it unset to keep them all".into());
    }
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
            session_gap_minutes: args
                .session_gap_minutes
                .or(file.session_gap_minutes)
                .unwrap_or(30),
            player_path: Some("/".to_owned()),
        },
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
            .or(file.header_timeout_secs.map(Duration::from_secs))
            .unwrap_or(Duration::from_secs(30)),
        server: {
            let defaults = ServerConfig::default();
            ServerConfig {
                keep_alive_timeout: args
                    .keep_alive_timeout
                    .unwrap_or(defaults.keep_alive_timeout),
                send_timeout: args.send_timeout.unwrap_or(defaults.send_timeout),
                max_connections: args.max_connections.unwrap_or(defaults.max_connections),
                ..defaults
            }
        },
    })
}

pub(crate) fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let resolved = resolve(args, |name| std::env::var(name).ok())?;
    let store = sage_stream::log::open_store(&resolved.database)?;
    let (sink, writer) = WatchLogWriter::spawn(
        store.clone(),
        WriterConfig {
            spool_path: Some(resolved.spool.clone()),
            spool_max_bytes: resolved.spool_max,
            durable: resolved.durable_log,
            retention: resolved.retention,
            ..WriterConfig::default()
        },
    )?;
    let app = app::router(&resolved.app, store, sink)?.layer(TraceLayer::new_for_http());
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
        let root = &resolved.app.root;
        println!("sage-stream: serving {}", root.display());
        println!("  player:  http://{addr}/");
        if let Some(file) = first_file(root) {
            println!("  stream:  http://{addr}/api/stream?path={file}");
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
            max_load_volume: Some(6),
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
}
