//! [`ObserveLayer`]: Prometheus metrics and one access-log line per
//! response, for the server's operators.
//!
//! The layer counts each response by route and status class, the body
//! bytes sent, streams in progress and the time until the body ended, into
//! a [`Metrics`] registry that renders the Prometheus text format; with
//! [`ObserveLayer::access_log`] on, it also writes one `info` event per
//! response (target `sage_stream::access`: method, URI path, media path,
//! status, bytes, duration, viewer key, whether the body completed).
//! Like the watch log, the work happens when the body ends or is dropped.
//!
//! ```
//! use http::Request;
//! use sage_stream::observe::{Metrics, ObserveLayer, Route};
//! use sage_stream::StreamEndpoint;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let dir = tempfile::tempdir().unwrap();
//! # std::fs::write(dir.path().join("clip.mp4"), vec![1u8; 1000]).unwrap();
//! let metrics = Metrics::new();
//! let svc = ServiceBuilder::new()
//!     .layer(ObserveLayer::new(Route::Stream).metrics(metrics.clone()))
//!     .service(StreamEndpoint::new(dir.path()).into_service());
//! let res = svc.oneshot(Request::get("/?path=clip.mp4").body(()).unwrap()).await.unwrap();
//! drop(res); // the body ends (here: is dropped) before the response is counted
//! assert!(metrics.render().contains(r#"sage_stream_requests_total{route="stream",class="2xx"} 1"#));
//! # }
//! ```

mod body;
mod future;
mod layer;
mod metrics;
mod service;

pub use body::ObservedBody;
pub use future::ResponseFuture;
pub use layer::ObserveLayer;
pub use metrics::{Metrics, Route, WatchLogCounters, METRICS_CONTENT_TYPE};
pub use service::Observe;
