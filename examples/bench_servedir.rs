//! Run with `cargo run --release --example bench_servedir -- ROOT ADDR`.
//!
//! tower-http's `ServeDir` behind the same server loop as `sage-stream
//! serve`: the baseline that `bench/run.sh` compares against.

use sage_stream::server::{self, ServerConfig};
use tower_http::services::ServeDir;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let root = args.next().unwrap_or_else(|| "media".to_owned());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("ServeDir {root} on http://{addr}/");
    server::serve(
        listener,
        ServeDir::new(root),
        ServerConfig::default(),
        server::shutdown_signal(),
    )
    .await?;
    Ok(())
}
