//! The watch log: who watched what, how much, and when.
//!
//! [`WatchLogLayer`] works alone around any `Service<http::Request<B>>` —
//! the stream endpoint, tower-http's `ServeDir`, an axum handler — and
//! writes one row per response: time (UTC), media path relative to the root,
//! user id and authenticated flag from the [`Viewer`](crate::extension::Viewer),
//! client IP, method, status, the requested `Range`, the **bytes actually
//! sent** (counted in [`LoggedBody`]), duration, user agent, and whether the
//! body completed or the client went away. The row is written when the body
//! ends or is dropped.
//!
//! Rows never slow or fail a stream: the layer hands them to a
//! [`WatchLogSink`], and a [`WatchLogWriter`] thread batches them into the
//! [`WatchLogStore`] — `SqliteStore` (default feature `sqlite`),
//! `PgStore` (feature `postgres`) or [`MemoryStore`] — retrying with
//! backoff and spooling to a local file while the database is down. See
//! [`WatchLogWriter`] for the guarantees.
//!
//! Which responses count: GET, whatever the status (refusals show who tried);
//! HEAD not (players probe with it); `304` yes. Each is configurable.
//!
//! The client IP is the [`ClientIp`](crate::extension::ClientIp) that
//! [`ResolveClientIpLayer`](crate::client_ip::ResolveClientIpLayer) worked
//! out at the edge (the one place trusted proxies are configured; an
//! unparsable forwarded value is stored as null); without that layer, the
//! TCP peer ([`PeerAddr`](crate::extension::PeerAddr) or axum's
//! `ConnectInfo`). The media path is the normalised
//! [`MediaPath`](crate::extension::MediaPath) of
//! [`ResolveMediaPathLayer`](crate::media_path::ResolveMediaPathLayer);
//! without it the layer decodes it itself, by the same rule, and sets it
//! for the layers inside.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use http::Request;
//! use sage_stream::log::{MemoryStore, WatchLogLayer, WatchLogStore, WatchLogWriter, WriterConfig, LogFilter};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use std::convert::Infallible;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = Arc::new(MemoryStore::new());
//! let (sink, writer) = WatchLogWriter::spawn(store.clone(), WriterConfig::default()).unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(WatchLogLayer::new(sink))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from("hello"))))
//!     }));
//! let res = svc.oneshot(Request::get("/?path=a.mp4").body(()).unwrap()).await.unwrap();
//! http_body_util::BodyExt::collect(res.into_body()).await.unwrap();
//! writer.shutdown_async().await;
//! let rows = store.query(&LogFilter::default(), None, 10).unwrap().entries;
//! assert_eq!((rows[0].path.as_str(), rows[0].bytes_sent, rows[0].completed), ("a.mp4", 5, true));
//! # }
//! ```

mod ack;
pub mod analytics;
mod body;
pub mod export;
mod future;
mod layer;
mod query;
mod record;
mod service;
mod sink;
mod store;
mod text;
mod writer;

pub use ack::RowAck;
pub use body::LoggedBody;
pub use future::ResponseFuture;
pub use layer::WatchLogLayer;
pub use query::{Cursor, DayCount, LogFilter, Page, PathStats, WatchLogEntry};
pub use record::{WatchBatch, WatchRecord};
pub use service::WatchLog;
pub use sink::RecordSink;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use store::PgStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use store::SqliteStore;
pub use store::{
    open_store, retention_cutoff, MemoryStore, Pruned, StoreError, WatchLogStore, PRUNE_CHUNK,
};
pub use text::LogText;
pub use writer::{WatchLogSink, WatchLogWriter, WriterConfig, WriterHandle, WriterStats};
