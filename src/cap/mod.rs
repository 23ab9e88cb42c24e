//! Cap how many bytes one ranged response sends.
//!
//! [`CapVolumeLayer`] inserts a [`VolumeCap`] into the request's extensions;
//! [`ServeMedia`](crate::media::ServeMedia) honours it when it resolves the
//! ranges, so single and multipart answers come out exact. For an inner
//! service that ignores the extension (tower-http's `ServeDir`, say), a
//! single-range `206` whose `Content-Range` exceeds the cap is cut here: the
//! `Content-Range` and `Content-Length` are rewritten and [`CappedBody`] ends
//! the body at the cap.
//!
//! Responses to requests without `Range` are never changed: RFC 9110 allows
//! `206` only in answer to a range request. The default cap is
//! django-sage-streaming's `STREAM_MAX_LOAD_VOLUME` of 8 MiB, exactly
//! 8 × 1024 × 1024 bytes.
//!
//! # Example
//!
//! ```
//! use http::{Request, StatusCode};
//! use sage_stream::{cap::CapVolumeLayer, media::ServeMedia, range::ParseRangeLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let dir = tempfile::tempdir().unwrap();
//! # std::fs::write(dir.path().join("clip.mp4"), vec![7u8; 100]).unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(ParseRangeLayer::new())
//!     .layer(CapVolumeLayer::new(10))
//!     .service(ServeMedia::new(dir.path()));
//! let req = Request::get("/?path=clip.mp4").header("range", "bytes=0-").body(()).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
//! assert_eq!(res.headers()["content-range"], "bytes 0-9/100");
//! # }
//! ```

mod body;
mod future;
mod layer;
mod service;

pub use crate::extension::VolumeCap;
pub use body::CappedBody;
pub use future::ResponseFuture;
pub use layer::{CapVolumeLayer, DEFAULT_MAX_LOAD_VOLUME};
pub use service::CapVolume;
