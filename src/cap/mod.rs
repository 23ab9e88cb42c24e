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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http::{header, Request, Response, StatusCode};
    use http_body::{Body, Frame};
    use http_body_util::BodyExt;
    use tower::{service_fn, Layer, ServiceExt};

    use super::*;

    /// A body yielding the given chunks one frame at a time, so a cut can
    /// fall inside any of them.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
        }
    }

    /// A foreign service answering every request with `status`, the given
    /// `Content-Range` and 1000 bytes `0, 1, 2, …` in 7 frames, and echoing
    /// the cap it saw in `x-cap`.
    async fn foreign(
        status: StatusCode,
        content_range: Option<&'static str>,
        req: Request<()>,
    ) -> Result<Response<Chunks>, Infallible> {
        let bytes: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let chunks = bytes.chunks(150).map(Bytes::copy_from_slice).collect();
        let mut res = Response::new(Chunks(chunks));
        *res.status_mut() = status;
        if let Some(range) = content_range {
            res.headers_mut()
                .insert(header::CONTENT_RANGE, range.parse().unwrap());
        }
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, "1000".parse().unwrap());
        let cap = req.extensions().get::<VolumeCap>().map(|c| c.bytes());
        res.headers_mut()
            .insert("x-cap", cap.unwrap_or(0).to_string().parse().unwrap());
        Ok(res)
    }

    fn ranged() -> Request<()> {
        Request::get("/")
            .header(header::RANGE, "bytes=0-")
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn a_foreign_206_is_cut_at_the_cap_across_frames() {
        let svc = CapVolumeLayer::new(333).layer(service_fn(|req| {
            foreign(StatusCode::PARTIAL_CONTENT, Some("bytes 0-999/5000"), req)
        }));
        let res = svc.oneshot(ranged()).await.unwrap();
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(res.headers()[header::CONTENT_RANGE], "bytes 0-332/5000");
        assert_eq!(res.headers()[header::CONTENT_LENGTH], "333");
        assert_eq!(res.headers()["x-cap"], "333");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let expected: Vec<u8> = (0..333u32).map(|i| i as u8).collect();
        assert_eq!(body, expected);
    }

    #[tokio::test]
    async fn a_206_within_the_cap_and_a_200_pass_untouched() {
        for (status, range) in [
            (StatusCode::PARTIAL_CONTENT, Some("bytes 0-999/1000")),
            (StatusCode::OK, None),
        ] {
            let svc =
                CapVolumeLayer::new(1000).layer(service_fn(move |req| foreign(status, range, req)));
            let res = svc.oneshot(ranged()).await.unwrap();
            assert_eq!(res.status(), status);
            assert_eq!(res.headers()[header::CONTENT_LENGTH], "1000");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.len(), 1000);
        }
    }

    #[tokio::test]
    async fn a_request_without_range_is_never_cut() {
        // Even a (wrong) 206 from the inner service: without `Range` the cap
        // does not apply to what comes back.
        let svc = CapVolumeLayer::new(10).layer(service_fn(|req| {
            foreign(StatusCode::PARTIAL_CONTENT, Some("bytes 0-999/1000"), req)
        }));
        let res = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.headers()[header::CONTENT_RANGE], "bytes 0-999/1000");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 1000);
    }

    #[tokio::test]
    async fn the_smaller_of_two_caps_wins() {
        let inner = service_fn(|req| foreign(StatusCode::OK, None, req));
        // Outer 100, inner 500: the outer (smaller) one reaches the service.
        let svc = CapVolumeLayer::new(100).layer(CapVolumeLayer::new(500).layer(inner));
        let res = svc.oneshot(ranged()).await.unwrap();
        assert_eq!(res.headers()["x-cap"], "100");
        // Outer 500, inner 100: the inner one replaces it.
        let svc = CapVolumeLayer::new(500).layer(CapVolumeLayer::new(100).layer(inner));
        let res = svc.oneshot(ranged()).await.unwrap();
        assert_eq!(res.headers()["x-cap"], "100");
    }

    #[tokio::test]
    async fn an_unreadable_content_range_is_left_alone() {
        for range in ["bytes */1000", "items 0-999/1000", "bytes 9-3/1000"] {
            let svc = CapVolumeLayer::new(10).layer(service_fn(move |req| {
                foreign(StatusCode::PARTIAL_CONTENT, Some(range), req)
            }));
            let res = svc.oneshot(ranged()).await.unwrap();
            assert_eq!(res.headers()[header::CONTENT_RANGE], range);
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.len(), 1000);
        }
    }

    #[test]
    fn the_default_is_django_s_eight_mebibytes() {
        assert_eq!(CapVolumeLayer::default().bytes(), 8 * 1024 * 1024);
        assert_eq!(CapVolumeLayer::mebibytes(3).bytes(), 3 * 1024 * 1024);
    }
}
