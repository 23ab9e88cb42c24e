//! Parse the `Range` request header into a typed request extension.
//!
//! [`ParseRangeLayer`] reads `Range` on GET and HEAD requests and, when the
//! header is a valid byte-range request, inserts a [`RangeRequest`] into the
//! request's extensions. The terminal [`ServeMedia`](crate::media::ServeMedia)
//! reads that extension; without this layer it answers every request with the
//! whole file (`200 OK`).
//!
//! The default grammar is RFC 9110 §14.1.2: `a-b`, `a-` and suffix `-n`
//! specs, several per header. A header that is syntactically invalid, uses a
//! unit other than `bytes`, or holds more specs than
//! [`ParseRangeLayer::max_ranges`] allows is *ignored*, as RFC 9110 §14.2
//! permits, so the client gets the full representation instead of an error.
//!
//! For drop-in compatibility with django-sage-streaming a regular expression
//! with two capture groups (first byte, optional last byte) can replace the
//! grammar; see [`ParseRangeLayer::regex`].
//!
//! # Example
//!
//! ```
//! use http::{Request, Response};
//! use sage_stream::range::{ParseRangeLayer, RangeRequest, ByteRangeSpec};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use std::convert::Infallible;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(ParseRangeLayer::new())
//!     .service(service_fn(|req: Request<()>| async move {
//!         let specs = req.extensions().get::<RangeRequest>().map(|r| r.specs().to_vec());
//!         Ok::<_, Infallible>(Response::new(format!("{specs:?}")))
//!     }));
//! let req = Request::get("/").header("range", "bytes=0-1, -5").body(()).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.body(), &format!("{:?}", Some(vec![ByteRangeSpec::FromTo(0, 1), ByteRangeSpec::Last(5)])));
//! # }
//! ```

mod layer;
mod spec;

pub use crate::extension::{resolve_ranges as resolve, Resolved};
pub use crate::extension::{ByteRangeSpec, RangeRequest};
pub use layer::{ParseRange, ParseRangeLayer, DEFAULT_MAX_RANGES, DJANGO_RANGE_PATTERN};
