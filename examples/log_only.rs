//! Run with `cargo run --example log_only --features axum`, then
//! `curl -r 0-99 http://127.0.0.1:3000/videos/sample.mp4 -o /dev/null` and
//! `cargo run -- logs --database sqlite://log_only.db`.
//!
//! Only the watch-log layer, around tower-http's `ServeDir`, in your own
//! axum app: sage-stream's endpoint is not needed to know who watched what.

use std::net::SocketAddr;

use axum::{routing::get, Router};
use sage_stream::extension::MediaPathSource;
use sage_stream::log::{SqliteStore, WatchLogLayer, WatchLogWriter, WriterConfig};
use tower_http::services::ServeDir;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/media");
    let store = SqliteStore::open("log_only.db")?;
    let (sink, writer) =
        WatchLogWriter::spawn(store, WriterConfig::default().spool_path("log_only.spool"))?;

    // The path logged is the part of the URI below /videos.
    let videos = Router::new()
        .nest_service("/videos", ServeDir::new(root))
        .layer(WatchLogLayer::new(sink).media_path(MediaPathSource::uri_prefix("/videos")));
    let app = Router::new()
        .route("/", get(|| async { "try /videos/sample.mp4" }))
        .merge(videos);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("open http://127.0.0.1:3000/videos/sample.mp4");
    // ConnectInfo gives the layer the client's address (feature `axum`).
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    let stats = writer.shutdown_async().await;
    println!("logged {} requests", stats.written);
    Ok(())
}
