//! Run with `cargo run --example hyper_server`, then open
//! <http://127.0.0.1:3000/?path=sample.mp4>.
//!
//! The stream endpoint on plain hyper 1 and hyper-util, no framework: the
//! layers are stacked with `ServiceBuilder` and handed to hyper per
//! connection.

use std::net::SocketAddr;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use sage_stream::{media::ServeMedia, permission::AllowAny, SageStreamExt};
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/media");
    // Outermost first: permission, then Range parsing, then the 8 MiB cap.
    let svc = ServiceBuilder::new()
        .require_permission(AllowAny)
        .parse_range()
        .cap_volume(8 * 1024 * 1024)
        .service(ServeMedia::new(root));

    let addr = SocketAddr::from(([127, 0, 0, 1], 3000));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("open http://{addr}/?path=sample.mp4");
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let svc = TowerToHyperService::new(svc.clone());
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
