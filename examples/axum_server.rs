//! Run with `cargo run --example axum_server`, then open
//! <http://127.0.0.1:3000/api/stream?path=sample.mp4>.
//!
//! The stream endpoint mounted in an axum app with `route_service`, beside
//! ordinary handlers.

use axum::{routing::get, Router};
use sage_stream::StreamEndpoint;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/media");
    let stream = StreamEndpoint::new(root).into_service();
    let app = Router::new()
        .route("/", get(|| async { "try /api/stream?path=sample.mp4" }))
        .route_service("/api/stream", stream);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("open http://127.0.0.1:3000/api/stream?path=sample.mp4");
    axum::serve(listener, app).await?;
    Ok(())
}
