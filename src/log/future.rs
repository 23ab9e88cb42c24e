use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Response, StatusCode};
use http_body::Body;
use pin_project::{pin_project, pinned_drop};

use super::body::{Active, LoggedBody, Pending};
use super::sink::RecordSink;
use super::writer::WatchLogSink;
use crate::extension::ServedFile;
use crate::extension::Viewer;

/// Response future of [`WatchLog`](super::WatchLog).
#[pin_project(PinnedDrop)]
#[derive(Debug)]
pub struct ResponseFuture<F, K: RecordSink = WatchLogSink> {
    #[pin]
    inner: F,
    pending: Option<Pending<K>>,
}

impl<F, K: RecordSink> ResponseFuture<F, K> {
    pub(super) fn new(inner: F, pending: Option<Pending<K>>) -> Self {
        Self { inner, pending }
    }
}

/// nginx's code for "client closed the request before the response".
const CLIENT_CLOSED: u16 = 499;

impl<F, B, E, K> Future for ResponseFuture<F, K>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    K: RecordSink,
{
    type Output = Result<Response<LoggedBody<B, K>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(mut pending) = this.pending.take() else {
            return Poll::Ready(result.map(|r| r.map(|b| LoggedBody::new(b, None))));
        };
        let response = match result {
            Ok(response) => response,
            Err(err) => {
                pending.finish(
                    None,
                    StatusCode::INTERNAL_SERVER_ERROR.as_u16(),
                    0,
                    false,
                    None,
                );
                return Poll::Ready(Err(err));
            }
        };
        // A layer inside identified the viewer (forward authentication puts
        // its answer on the response): that is whom the row is about.
        if let Some(viewer) = response.extensions().get::<Viewer>() {
            pending.user_id = viewer
                .user_id
                .as_deref()
                .map(|id| super::service::truncate(id, super::service::MAX_PATH_LEN));
            pending.is_authenticated = viewer.authenticated;
        }
        let status = response.status();
        let skip = (status == StatusCode::NOT_MODIFIED && !pending.config.log_not_modified)
            || (status.is_client_error() && !pending.config.log_refusals);
        if skip {
            return Poll::Ready(Ok(response.map(|b| LoggedBody::new(b, None))));
        }
        let served = response.extensions().get::<ServedFile>();
        let path = served.map(|f| f.path.as_str().into());
        pending.range_start = served.and_then(|f| f.range_start);
        let expected = if pending.is_head || status == StatusCode::NOT_MODIFIED {
            Some(0)
        } else {
            // Servers stop polling once Content-Length bytes are out, so the
            // header is as good a measure as an exact size hint.
            response.body().size_hint().exact().or_else(|| {
                response
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
            })
        };
        let active = Active {
            pending,
            path,
            status: status.as_u16(),
            expected,
            ack: None,
        };
        Poll::Ready(Ok(response.map(|b| LoggedBody::new(b, Some(active)))))
    }
}

#[pinned_drop]
impl<F, K: RecordSink> PinnedDrop for ResponseFuture<F, K> {
    fn drop(self: Pin<&mut Self>) {
        if let Some(pending) = self.project().pending.take() {
            pending.finish(None, CLIENT_CLOSED, 0, false, None);
        }
    }
}
