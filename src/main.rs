//! The `sage-stream` command: serve media over HTTP and sign links.
//!
//! Run `cargo run -- serve` and open the printed URL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use clap::{Parser, Subcommand};
use http::StatusCode;
use sage_stream::auth::BearerAuthLayer;
use sage_stream::permission::SignedUrl;
use sage_stream::server::{self, ServerConfig};
use sage_stream::settings::Settings;
use sage_stream::StreamEndpoint;
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;

/// The sample clips shipped with the crate.
const SAMPLE_MEDIA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/media");

#[derive(Parser)]
#[command(
    name = "sage-stream",
    version,
    about = "Stream video files over HTTP with byte ranges, permissions and a watch log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the media root at /api/stream?path=FILE.
    Serve(ServeArgs),
    /// Print a signed URL for PATH (needs STREAM_SIGNING_KEY or --key).
    Sign(SignArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Directory whose files may be streamed [default: the bundled sample media]
    #[arg(long, env = "STREAM_MEDIA_ROOT")]
    root: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "STREAM_BIND", default_value = "127.0.0.1:8000")]
    bind: SocketAddr,
    /// Accept `Authorization: Bearer TOKEN` as user USER (repeatable).
    #[arg(long = "token", value_name = "TOKEN=USER", value_parser = parse_token)]
    tokens: Vec<(String, String)>,
}

#[derive(clap::Args)]
struct SignArgs {
    /// Media path relative to the root, e.g. sample.mp4.
    path: String,
    /// How long the link stays valid: 90s, 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    expires: Duration,
    /// Signing key [default: STREAM_SIGNING_KEY]
    #[arg(long, env = "STREAM_SIGNING_KEY", hide_env_values = true)]
    key: String,
    /// Base URL of the stream endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8000/api/stream")]
    base: String,
}

fn parse_token(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((token, user)) if !token.is_empty() && !user.is_empty() => {
            Ok((token.to_owned(), user.to_owned()))
        }
        _ => Err("expected TOKEN=USER".to_owned()),
    }
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("bad duration {value:?}"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("bad duration unit in {value:?}; use s, m, h or d")),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Sign(args) => {
            let signer = SignedUrl::new(args.key);
            println!(
                "{}?{}",
                args.base,
                signer.signed_query(&args.path, args.expires)
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sage-stream: {err}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::from_env()?;
    let root = args.root.unwrap_or_else(|| PathBuf::from(SAMPLE_MEDIA));
    if !root.is_dir() {
        return Err(format!("media root {} is not a directory", root.display()).into());
    }
    let endpoint = StreamEndpoint::from_settings(&root, &settings)?;
    let stream = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(args.tokens))
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
        let example = std::fs::read_dir(&root)
            .ok()
            .and_then(|entries| {
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().is_file())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect();
                names.sort();
                names.into_iter().next()
            })
            .unwrap_or_else(|| "FILE".to_owned());
        println!(
            "sage-stream: serving {} at http://{addr}/api/stream?path={example}  (Ctrl-C to stop)",
            root.display()
        );
        server::serve(
            listener,
            app,
            ServerConfig::default(),
            server::shutdown_signal(),
        )
        .await?;
        println!("sage-stream: stopped");
        Ok(())
    })
}
