//! Command-line interface of the `sage-stream` binary.

mod duration;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod import_django;
mod layers;
pub(crate) mod logs;
pub(crate) mod prune;
pub(crate) mod serve;

use std::time::Duration;

use clap::{Parser, Subcommand};

pub(crate) use duration::{format_duration, parse_duration};

/// The SQLite file used when no database is named.
pub(crate) const DEFAULT_DATABASE: &str = "sqlite://sage_stream.db";

#[derive(Parser)]
#[command(
    name = "sage-stream",
    version,
    about = "Stream video files over HTTP with byte ranges, permissions and a watch log"
)]
pub(crate) struct Cli {
    /// How stderr logs are written: text for people, json (one object per line) for collectors
    #[arg(long, global = true, env = "STREAM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The format of the log on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

// Parsed once at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub(crate) enum Command {
    /// Serve the media root at /api/stream?path=FILE and log who watched.
    Serve(serve::ServeFlags),
    /// Create or update the watch-log tables, then exit.
    Migrate(DatabaseArgs),
    /// Print watch-log rows or per-path totals.
    Logs(logs::LogsArgs),
    /// Delete watch-log rows older than --older-than (and their batch ids); --dry-run counts them.
    Prune(prune::PruneArgs),
    /// Print a signed URL for PATH, or with --prefix DIR/ one covering every file below DIR/ (needs STREAM_SIGNING_KEY or --key).
    Sign(SignArgs),
    /// Copy django-sage-streaming's watch history (sage_stream_watchlog) into the watch log; rerunnable.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    ImportDjango(import_django::ImportDjangoArgs),
}

#[derive(clap::Args, Clone)]
pub(crate) struct DatabaseArgs {
    /// Watch-log database: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long = "database", env = "STREAM_DATABASE_URL", default_value = DEFAULT_DATABASE)]
    pub(crate) database: String,
}

impl DatabaseArgs {
    pub(crate) fn url(&self) -> String {
        self.database.clone()
    }
}

#[derive(clap::Args)]
pub(crate) struct SignArgs {
    /// Media path relative to the root, e.g. sample.mp4 (with --prefix: a file below it; default the prefix itself).
    #[arg(required_unless_present = "prefix")]
    path: Option<String>,
    /// Sign every file below this directory (ending in /, e.g. show1/) with the signature in the path, for HLS/DASH: prints BASE/_s/EXPIRES/SIGNATURE/PATH.
    #[arg(long, value_name = "DIR/")]
    prefix: Option<String>,
    /// How long the link stays valid: 90s, 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    expires: Duration,
    /// Signing key [default: STREAM_SIGNING_KEY]
    #[arg(long, env = "STREAM_SIGNING_KEY", hide_env_values = true)]
    key: String,
    /// Base URL of the stream endpoint [default: http://127.0.0.1:8000/api/stream; with --prefix http://127.0.0.1:8000/media]
    #[arg(long)]
    base: Option<String>,
    /// Query variable naming the media path, as the server reads it.
    #[arg(long, env = "STREAM_DEFAULT_VIDEO_PATH_URL_VAR", default_value = sage_stream::extension::DEFAULT_PATH_VAR)]
    path_var: String,
    /// Django's MEDIA_URL, as the server's --media-url: a PATH starting with it is signed without it.
    #[arg(long, env = "STREAM_MEDIA_URL")]
    media_url: Option<String>,
}

pub(crate) fn sign(args: SignArgs) -> Result<(), Box<dyn std::error::Error>> {
    use sage_stream::extension::MediaPathSource;
    use sage_stream::permission::SignedUrl;
    const SERVER: &str = "http://127.0.0.1:8000";
    let link = match args.prefix {
        // The path-style route, which reads the signature from the path.
        Some(prefix) => {
            let route = sage_stream::app::DEFAULT_MEDIA_ROUTE;
            let source = MediaPathSource::uri_prefix(route).path_signatures(true);
            let base = args.base.unwrap_or_else(|| format!("{SERVER}{route}"));
            let path = args.path.unwrap_or_else(|| prefix.clone());
            SignedUrl::new(args.key)
                .media_path(source)
                .signed_prefix_link(&base, &prefix, &path, args.expires)?
        }
        // The same media-path rule as the server's, so the link names the
        // path where the server looks for it.
        None => {
            let source =
                MediaPathSource::query(args.path_var).media_url(args.media_url.unwrap_or_default());
            let base = args.base.unwrap_or_else(|| format!("{SERVER}/api/stream"));
            SignedUrl::new(args.key).media_path(source).signed_link(
                &base,
                args.path.as_deref().unwrap_or_default(),
                args.expires,
            )
        }
    };
    println!("{link}");
    Ok(())
}

pub(crate) fn migrate(args: DatabaseArgs) -> Result<(), Box<dyn std::error::Error>> {
    let store = sage_stream::log::open_store(&args.url())?;
    store.migrate()?;
    println!(
        "sage-stream: watch-log tables are up to date in {}",
        redact(&args.url())
    );
    Ok(())
}

/// The URL without a password, for printing.
pub(crate) fn redact(url: &str) -> String {
    sage_stream::redact_url(url)
}
