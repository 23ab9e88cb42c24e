use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http::Response;
use pin_project::{pin_project, pinned_drop};

use super::body::{AccessLine, Finish, ObservedBody};
use super::layer::ObserveConfig;
use crate::extension::ServedFile;
use crate::extension::Viewer;

/// What the service noted when the request came in.
#[derive(Debug)]
pub(super) struct Started {
    pub(super) at: Instant,
    pub(super) config: Arc<ObserveConfig>,
    pub(super) access: Option<AccessLine>,
}

/// Response future of [`Observe`](super::Observe). Dropped before the
/// response (the client left while a check or the file open was under way),
/// it counts a `499` that sent nothing, as the watch log records one.
#[pin_project(PinnedDrop)]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    started: Option<Started>,
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, started: Option<Started>) -> Self {
        Self { inner, started }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<ObservedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(mut started) = this.started.take() else {
            return Poll::Ready(result.map(|r| r.map(|b| ObservedBody::new(b, None))));
        };
        match result {
            Ok(response) => {
                if let Some(access) = &mut started.access {
                    // A layer inside may have learned who it is (forward
                    // authentication puts its answer on the response).
                    if let Some(viewer) = response.extensions().get::<Viewer>() {
                        access.user_id.clone_from(&viewer.user_id);
                    }
                    access.media = response
                        .extensions()
                        .get::<ServedFile>()
                        .map(|f| f.path.as_str().into());
                }
                let finish = Finish::begin(started, response.status());
                Poll::Ready(Ok(response.map(|b| ObservedBody::new(b, Some(finish)))))
            }
            Err(err) => {
                Finish::begin(started, http::StatusCode::INTERNAL_SERVER_ERROR).end(0, false);
                Poll::Ready(Err(err))
            }
        }
    }
}

/// nginx's code for "client closed the request before the response".
const CLIENT_CLOSED: u16 = 499;

#[pinned_drop]
impl<F> PinnedDrop for ResponseFuture<F> {
    fn drop(self: Pin<&mut Self>) {
        if let Some(started) = self.project().started.take() {
            let status =
                http::StatusCode::from_u16(CLIENT_CLOSED).unwrap_or(http::StatusCode::BAD_REQUEST);
            Finish::begin(started, status).end(0, false);
        }
    }
}
