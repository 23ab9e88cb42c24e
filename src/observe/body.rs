use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project::{pin_project, pinned_drop};

use super::future::Started;
use super::metrics::Route;
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
    sent: u64,
}

impl Finish {
    pub(super) fn begin(started: Started, status: StatusCode) -> Self {
        if let (Some(metrics), Route::Stream) = (&started.config.metrics, started.config.route) {
            metrics.stream_started();
        }
        Self {
            started,
            status,
            sent: 0,
        }
    }

    pub(super) fn end(self, completed: bool) {
        let config = &self.started.config;
        let elapsed = self.started.at.elapsed();
        if let Some(metrics) = &config.metrics {
            metrics.response_ended(config.route, self.status, self.sent, elapsed);
        }
        if let Some(line) = &self.started.access {
            let viewer = ViewerKey::new(line.user_id.as_deref(), line.ip);
            tracing::info!(
                target: "sage_stream::access",
                method = %line.method,
                path = %line.path,
                media = line.media.as_deref().unwrap_or("-"),
                status = self.status.as_u16(),
                bytes = self.sent,
                duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                viewer = viewer.as_str(),
                completed,
                "request"
            );
        }
    }
}

/// Body that counts the bytes it hands on, for [`Observe`](super::Observe).
#[pin_project(PinnedDrop)]
#[derive(Debug)]
pub struct ObservedBody<B> {
    #[pin]
    inner: B,
    finish: Option<Finish>,
}

impl<B: Body> ObservedBody<B> {
    pub(super) fn new(inner: B, mut finish: Option<Finish>) -> Self {
        // Servers never poll a body that has ended already (HEAD, 304).
        if inner.is_end_stream() {
            if let Some(finish) = finish.take() {
                finish.end(true);
            }
        }
        Self { inner, finish }
    }
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(finish), Some(data)) = (this.finish.as_mut(), frame.data_ref()) {
                    finish.sent += data.remaining() as u64;
                }
                // Servers stop polling once the body says it has ended.
                if this.inner.is_end_stream() {
                    if let Some(finish) = this.finish.take() {
                        finish.end(true);
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(finish) = this.finish.take() {
                    finish.end(true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(finish) = this.finish.take() {
                    finish.end(false);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[pinned_drop]
impl<B> PinnedDrop for ObservedBody<B> {
    fn drop(self: Pin<&mut Self>) {
        // Dropped before its end: the client went away, or the server
        // stopped on an error.
        if let Some(finish) = self.project().finish.take() {
            finish.end(false);
        }
    }
}
