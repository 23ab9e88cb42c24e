//! Limit how many streams one viewer holds at once.
//!
//! [`ViewerStreamLimitLayer`] counts open responses per viewer — by
//! [`ViewerKey`](crate::extension::ViewerKey), the rule the watch log groups
//! by too: the user id when the [`Viewer`](crate::extension::Viewer) has
//! one, else the [`ClientIp`](crate::extension::ClientIp) that
//! [`ResolveClientIpLayer`](crate::client_ip::ResolveClientIpLayer) worked
//! out at the edge (behind a proxy, stack it outermost, or everyone behind
//! the proxy shares its slots; without it, the peer address) — and
//! answers `429 Too Many Requests` with a short reason and `Retry-After`
//! once the limit is reached. A stream's slot is held until its body ends or
//! is dropped (the client went away), so the count follows real streams.
//! Requests with neither a user id nor an address are not limited.
//!
//! This answers the long-standing request of django-sage-streaming users to
//! stop one account from running many parallel streams.
//!
//! ```
//! use http::{Request, StatusCode};
//! use sage_stream::{limit::ViewerStreamLimitLayer, extension::Viewer, StreamEndpoint};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let dir = tempfile::tempdir().unwrap();
//! # std::fs::write(dir.path().join("a.mp4"), vec![0u8; 10]).unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(ViewerStreamLimitLayer::new(1))
//!     .service(StreamEndpoint::new(dir.path()).into_service());
//! let request = || {
//!     let mut req = Request::get("/?path=a.mp4").body(()).unwrap();
//!     req.extensions_mut().insert(Viewer::user("alice"));
//!     req
//! };
//! let first = ServiceExt::<Request<()>>::ready(&mut svc).await.unwrap().call(request()).await.unwrap();
//! let second = ServiceExt::<Request<()>>::ready(&mut svc).await.unwrap().call(request()).await.unwrap();
//! assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
//! drop(first); // the first stream ends: its slot is free again
//! let third = ServiceExt::<Request<()>>::ready(&mut svc).await.unwrap().call(request()).await.unwrap();
//! assert_eq!(third.status(), StatusCode::OK);
//! # }
//! ```

mod body;
mod future;
mod layer;
mod service;

pub use body::SlotBody;
pub use future::ResponseFuture;
pub use layer::ViewerStreamLimitLayer;
pub use service::ViewerStreamLimit;
