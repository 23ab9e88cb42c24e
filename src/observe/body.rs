use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

use super::future::Started;
use super::metrics::Route;
use crate::body::{BodyEnd, Guarded, OnBodyEnd};
use crate::extension::ViewerKey;

/// What the access-log line says besides status, bytes and time.
#[derive(Debug)]
pub(super) struct AccessLine {
    pub(super) method: Method,
    pub(super) path: Box<str>,
    pub(super) user_id: Option<String>,
    pub(super) ip: Option<IpAddr>,
    pub(super) media: Option<Box<str>>,
}

/// A response being observed: counted and logged once, when its body ends
/// or is dropped.
#[derive(Debug)]
pub(super) struct Finish {
    started: Started,
    status: StatusCode,
}

impl Finish {
    pub(super) fn begin(started: Started, status: StatusCode) -> Self {
        if let (Some(metrics), Route::Stream) = (&started.config.metrics, started.config.route) {
            metrics.stream_started();
        }
        Self { started, status }
    }

    pub(super) fn end(self, sent: u64, completed: bool) {
        let config = &self.started.config;
        let elapsed = self.started.at.elapsed();
        if let Some(metrics) = &config.metrics {
            metrics.response_ended(config.route, self.status, sent, elapsed);
        }
        if let Some(line) = &self.started.access {
            let viewer = ViewerKey::new(line.user_id.as_deref(), line.ip);
            tracing::info!(
                target: "sage_stream::access",
                method = %line.method,
                path = %line.path,
                media = line.media.as_deref().unwrap_or("-"),
                status = self.status.as_u16(),
                bytes = sent,
                duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                viewer = viewer.as_str(),
                completed,
                "request"
            );
        }
    }
}

impl OnBodyEnd for Finish {
    fn on_end(self, end: BodyEnd) {
        self.end(end.sent, end.completed);
    }
}

/// Body that counts the bytes it hands on, for [`Observe`](super::Observe):
/// counted and logged by the crate's one end-of-response rule.
#[pin_project]
#[derive(Debug)]
pub struct ObservedBody<B> {
    #[pin]
    inner: Guarded<B, Finish>,
}

impl<B: Body> ObservedBody<B> {
    pub(super) fn new(inner: B, finish: Option<Finish>) -> Self {
        Self {
            inner: Guarded::new(inner, finish),
        }
    }
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
