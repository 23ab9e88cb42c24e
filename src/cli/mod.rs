//! Command-line interface of the `sage-stream` binary.

mod duration;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod import_django;
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
    #[command(subcommand)]
    pub(crate) command: Command,
}

// Parsed once at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub(crate) enum Command {
    /// Serve the media root at /api/stream?path=FILE and log who watched.
    Serve(serve::ServeArgs),
    /// Create or update the watch-log tables, then exit.
    Migrate(DatabaseArgs),
    /// Print watch-log rows or per-path totals.
    Logs(logs::LogsArgs),
    /// Delete watch-log rows older than --older-than (and their batch ids); --dry-run counts them.
    Prune(prune::PruneArgs),
    /// Print a signed URL for PATH (needs STREAM_SIGNING_KEY or --key).
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
    /// Query variable naming the media path, as the server reads it.
    #[arg(long, env = "STREAM_DEFAULT_VIDEO_PATH_URL_VAR", default_value = sage_stream::extension::DEFAULT_PATH_VAR)]
    path_var: String,
    /// Django's MEDIA_URL, as the server's --media-url: a PATH starting with it is signed without it.
    #[arg(long, env = "STREAM_MEDIA_URL")]
    media_url: Option<String>,
}

pub(crate) fn sign(args: SignArgs) {
    // The same media-path rule as the server's, so the link names the path
    // where the server looks for it.
    let source = sage_stream::extension::MediaPathSource::query(args.path_var)
        .media_url(args.media_url.unwrap_or_default());
    let signer = sage_stream::permission::SignedUrl::new(args.key).media_path(source);
    println!(
        "{}",
        signer.signed_link(&args.base, &args.path, args.expires)
    );
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
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
