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
pub use metrics::{LimitStoreStatus, Metrics, Route, WatchLogCounters, METRICS_CONTENT_TYPE};
pub use service::Observe;

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full};
    use tower::{service_fn, Layer, Service, ServiceExt};

    use super::*;

    fn answering(
        status: StatusCode,
        body: &'static [u8],
    ) -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
    {
        service_fn(move |_req: Request<()>| async move {
            let mut res = Response::new(Full::new(Bytes::from_static(body)));
            *res.status_mut() = status;
            Ok::<_, Infallible>(res)
        })
    }

    /// The value of one sample line of the rendered registry.
    fn sample(metrics: &Metrics, line_start: &str) -> Option<String> {
        metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(line_start).map(|v| v.trim().to_owned()))
    }

    #[tokio::test]
    async fn a_response_counts_once_its_body_has_ended() {
        let metrics = Metrics::new();
        let svc = ObserveLayer::new(Route::Stream)
            .metrics(metrics.clone())
            .layer(answering(StatusCode::PARTIAL_CONTENT, b"0123456789"));
        let res = svc.oneshot(Request::new(())).await.unwrap();
        // Headers out, body not yet read: in progress, not counted.
        assert_eq!(
            sample(&metrics, "sage_stream_active_streams ").as_deref(),
            Some("1")
        );
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "0123456789");
        let class = r#"sage_stream_requests_total{route="stream",class="2xx"} "#;
        assert_eq!(sample(&metrics, class).as_deref(), Some("1"));
        let bytes = r#"sage_stream_response_bytes_total{route="stream"} "#;
        assert_eq!(sample(&metrics, bytes).as_deref(), Some("10"));
        assert_eq!(
            sample(&metrics, "sage_stream_active_streams ").as_deref(),
            Some("0")
        );
    }

    #[tokio::test]
    async fn refusals_count_by_reason() {
        let metrics = Metrics::new();
        for status in [StatusCode::TOO_MANY_REQUESTS, StatusCode::FORBIDDEN] {
            let svc = ObserveLayer::new(Route::Stream)
                .metrics(metrics.clone())
                .layer(answering(status, b"no"));
            drop(svc.oneshot(Request::new(())).await.unwrap());
        }
        let limit = r#"sage_stream_refusals_total{reason="stream_limit"} "#;
        assert_eq!(sample(&metrics, limit).as_deref(), Some("1"));
        let permission = r#"sage_stream_refusals_total{reason="permission"} "#;
        assert_eq!(sample(&metrics, permission).as_deref(), Some("1"));
        let class = r#"sage_stream_requests_total{route="stream",class="4xx"} "#;
        assert_eq!(sample(&metrics, class).as_deref(), Some("2"));
    }

    #[tokio::test]
    async fn a_future_dropped_before_its_answer_counts_as_client_closed() {
        let metrics = Metrics::new();
        let never = service_fn(|_req: Request<()>| {
            std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>()
        });
        let svc = ObserveLayer::new(Route::Page)
            .metrics(metrics.clone())
            .layer(never);
        let future = svc.oneshot(Request::new(()));
        // Polled once (so the request started), then abandoned.
        let mut future = Box::pin(future);
        assert!(futures_poll_once(future.as_mut()).await.is_none());
        drop(future);
        let class = r#"sage_stream_requests_total{route="page",class="4xx"} "#;
        assert_eq!(sample(&metrics, class).as_deref(), Some("1"));
    }

    async fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
