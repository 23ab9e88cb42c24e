use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{header, HeaderValue, Request, Response, StatusCode};
use pin_project::pin_project;
use tower_service::Service;

use super::check::{Checked, Denial, LearnedViewer};
use crate::body::ResponseBody;
use crate::extension::Viewer;

/// Response future of [`RequirePermission`](super::RequirePermission).
#[pin_project]
pub struct ResponseFuture<C, S, B>
where
    S: Service<Request<B>>,
{
    #[pin]
    state: State<C, S, S::Future>,
}

#[pin_project(project = StateProj)]
enum State<C, S, F> {
    // Refused before any check (the edge refused the media path).
    Refused(Option<Denial>),
    Checking {
        #[pin]
        check: C,
        inner: Option<S>,
    },
    Calling {
        #[pin]
        future: F,
        // A viewer the check learned, for the response (see LearnedViewer).
        learned: Option<Viewer>,
    },
}

impl<C, S, B> ResponseFuture<C, S, B>
where
    S: Service<Request<B>>,
{
    pub(super) fn refused(denial: Denial) -> Self {
        Self {
            state: State::Refused(Some(denial)),
        }
    }

    pub(super) fn new(check: C, inner: S) -> Self {
        Self {
            state: State::Checking {
                check,
                inner: Some(inner),
            },
        }
    }
}

impl<C, S, B> std::fmt::Debug for ResponseFuture<C, S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<C, S, B, ResBody> Future for ResponseFuture<C, S, B>
where
    C: Future<Output = Checked<B>>,
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Refused(denial) => {
                    return Poll::Ready(Ok(match denial.take() {
                        Some(denial) => refuse(denial),
                        None => ResponseBody::refusal(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "polled after completion",
                        ),
                    }))
                }
                StateProj::Checking { check, inner } => {
                    let Checked {
                        mut request,
                        decision,
                    } = ready!(check.poll(cx));
                    if let Err(denial) = decision {
                        return Poll::Ready(Ok(refuse(denial)));
                    }
                    let learned = request
                        .extensions_mut()
                        .remove::<LearnedViewer>()
                        .map(|l| l.0);
                    let Some(mut inner) = inner.take() else {
                        return Poll::Ready(Ok(ResponseBody::refusal(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "polled after completion",
                        )));
                    };
                    let future = inner.call(request);
                    this.state.set(State::Calling { future, learned });
                }
                StateProj::Calling { future, learned } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(viewer) = learned.take() {
                        // The watch log runs outside the permission: this is
                        // how it learns whom the check identified.
                        response.extensions_mut().insert(viewer);
                    }
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
            }
        }
    }
}

/// Response future of [`RequirePermission`](super::RequirePermission) with
/// a synchronous check ([`SyncPermission`](super::SyncPermission)): the
/// check was decided in `call`.
#[pin_project]
pub struct SyncResponseFuture<F> {
    #[pin]
    state: Decided<F>,
}

#[pin_project(project = DecidedProj)]
enum Decided<F> {
    Refused(Option<Denial>),
    Calling(#[pin] F),
}

impl<F> SyncResponseFuture<F> {
    pub(super) fn refused(denial: Denial) -> Self {
        Self {
            state: Decided::Refused(Some(denial)),
        }
    }

    pub(super) fn calling(future: F) -> Self {
        Self {
            state: Decided::Calling(future),
        }
    }
}

impl<F> std::fmt::Debug for SyncResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncResponseFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for SyncResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            DecidedProj::Refused(denial) => Poll::Ready(Ok(match denial.take() {
                Some(denial) => refuse(denial),
                None => ResponseBody::refusal(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "polled after completion",
                ),
            })),
            DecidedProj::Calling(future) => {
                Poll::Ready(Ok(ready!(future.poll(cx))?.map(ResponseBody::inner)))
            }
        }
    }
}

fn refuse<B>(denial: Denial) -> Response<ResponseBody<B>> {
    match denial {
        Denial::Unauthenticated(reason) => {
            let mut response = ResponseBody::refusal(StatusCode::UNAUTHORIZED, reason.into_owned());
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sage-stream\""),
            );
            response
        }
        Denial::Forbidden(reason) => {
            ResponseBody::refusal(StatusCode::FORBIDDEN, reason.into_owned())
        }
        Denial::InvalidPath(refusal) => ResponseBody::refusal(refusal.status(), refusal.reason()),
        Denial::Unavailable(reason) => {
            let mut response =
                ResponseBody::refusal(StatusCode::SERVICE_UNAVAILABLE, reason.into_owned());
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
    }
}
