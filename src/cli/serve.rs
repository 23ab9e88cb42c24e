//! `sage-stream serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use http::StatusCode;
use sage_stream::auth::BearerAuthLayer;
use sage_stream::log::{IpNet, WatchLogLayer, WatchLogWriter, WriterConfig};
use sage_stream::server::{self, ServerConfig};
use sage_stream::settings::Settings;
use sage_stream::StreamEndpoint;
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;

use super::{redact, DatabaseArgs};

/// The sample clips shipped with the crate.
const SAMPLE_MEDIA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/media");

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Directory whose files may be streamed [default: the bundled sample media]
    #[arg(long, env = "STREAM_MEDIA_ROOT")]
    root: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "STREAM_BIND", default_value = "127.0.0.1:8000")]
    bind: SocketAddr,
    #[command(flatten)]
    database: DatabaseArgs,
    /// Spool file for watch-log rows while the database is unreachable
    /// [default: sage_stream.spool beside an SQLite file, else ./sage_stream.spool]
    #[arg(long, env = "STREAM_SPOOL")]
    spool: Option<PathBuf>,
    /// Accept `Authorization: Bearer TOKEN` as user USER (repeatable).
    #[arg(long = "token", value_name = "TOKEN=USER", value_parser = parse_token)]
    tokens: Vec<(String, String)>,
    /// Proxy (IP or CIDR) whose X-Forwarded-For / Forwarded is believed (repeatable).
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    trusted_proxies: Vec<IpNet>,
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

pub(crate) fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::from_env()?;
    let root = args.root.unwrap_or_else(|| PathBuf::from(SAMPLE_MEDIA));
    if !root.is_dir() {
        return Err(format!("media root {} is not a directory", root.display()).into());
    }
    let endpoint = StreamEndpoint::from_settings(&root, &settings)?;
    let database = args.database.url();
    let store = sage_stream::log::open_store(&database)?;
    let spool = args.spool.unwrap_or_else(|| default_spool(&database));
    let (sink, writer) = WatchLogWriter::spawn(
        store,
        WriterConfig {
            spool_path: Some(spool),
            ..WriterConfig::default()
        },
    )?;
    let watch_log = WatchLogLayer::new(sink)
        .enabled(settings.watch_log_enabled)
        .path_var(settings.default_video_path_url_var.clone())
        .trusted_proxies(args.trusted_proxies);

    // Authentication first, so the log and the permission see the viewer;
    // the log wraps the permission, so refused attempts are logged too.
    let stream = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(args.tokens))
        .layer(watch_log)
        .service(endpoint.into_service());
    let app = Router::new()
        .route_service("/api/stream", stream.clone())
        .route_service("/api/stream/", stream)
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .layer(TraceLayer::new_for_http());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.bind).await?;
        let addr = listener.local_addr()?;
        let example = first_file(&root).unwrap_or_else(|| "FILE".to_owned());
        println!(
            "sage-stream: serving {} at http://{addr}/api/stream?path={example}",
            root.display()
        );
        println!(
            "sage-stream: watch log {} in {} (Ctrl-C to stop)",
            if settings.watch_log_enabled {
                "on"
            } else {
                "off"
            },
            redact(&database)
        );
        server::serve(
            listener,
            app,
            ServerConfig::default(),
            server::shutdown_signal(),
        )
        .await?;
        let stats = writer.shutdown_async().await;
        println!(
            "sage-stream: stopped; watch log: {} recorded, {} written, {} spooled",
            stats.recorded, stats.written, stats.spooled
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

fn first_file(root: &std::path::Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names.into_iter().next()
}
