//! Run with `cargo run --example custom_permission`, then try:
//!
//! ```text
//! curl -i 'http://127.0.0.1:3000/api/stream?path=sample.mp4'                        # 401
//! curl -i -H 'Authorization: Bearer viewer-token' 'http://127.0.0.1:3000/api/stream?path=sample.webm'  # 403
//! curl -i -H 'Authorization: Bearer viewer-token' 'http://127.0.0.1:3000/api/stream?path=sample.mp4'   # 200
//! ```
//!
//! A permission written as a closure, combined with the built-in
//! `IsAuthenticated`; identities come from the bundled bearer-token layer.

use axum::Router;
use sage_stream::auth::BearerAuthLayer;
use sage_stream::permission::{Denial, IsAuthenticated, PermissionExt, RequestHead};
use sage_stream::StreamEndpoint;
use tower::ServiceBuilder;

/// Only MP4 for everyone but the user `admin`.
fn mp4_unless_admin(req: &RequestHead<'_>) -> Result<(), Denial> {
    let is_admin = req.viewer().user_id.as_deref() == Some("admin");
    // The normalised media path StreamEndpoint decided at its edge (the
    // file that will be served), never the raw query.
    match req.media_path() {
        Some(path) if !is_admin && !path.ends_with(".mp4") => {
            Err(Denial::forbidden("only MP4 is published"))
        }
        _ => Ok(()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/media");
    let stream = ServiceBuilder::new()
        .layer(BearerAuthLayer::new([
            ("viewer-token", "42"),
            ("admin-token", "admin"),
        ]))
        .service(
            StreamEndpoint::new(root)
                .permission(IsAuthenticated.and(mp4_unless_admin))
                .into_service(),
        );
    let app = Router::new().route_service("/api/stream", stream);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000/api/stream?path=sample.mp4");
    axum::serve(listener, app).await?;
    Ok(())
}
