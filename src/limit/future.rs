use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{header, HeaderValue, Response, StatusCode};
use pin_project::pin_project;

use super::{Held, SlotBody};
use crate::body::ResponseBody;

/// Response future of [`ViewerStreamLimit`](super::ViewerStreamLimit).
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    state: State<F>,
}

#[pin_project(project = StateProj)]
#[derive(Debug)]
enum State<F> {
    Refused {
        max: usize,
    },
    Called {
        #[pin]
        future: F,
        slot: Option<Held>,
    },
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(future: F, slot: Option<Held>) -> Self {
        Self {
            state: State::Called { future, slot },
        }
    }

    pub(super) fn refused(max: usize) -> Self {
        Self {
            state: State::Refused { max },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<ResponseBody<SlotBody<B>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Refused { max } => Poll::Ready(Ok(too_many(*max))),
            StateProj::Called { future, slot } => {
                let response = ready!(future.poll(cx))?;
                let slot = slot.take();
                Poll::Ready(Ok(
                    response.map(|b| ResponseBody::inner(SlotBody::new(b, slot)))
                ))
            }
        }
    }
}

/// The `429` for a viewer at the limit.
pub(super) fn too_many<B>(max: usize) -> Response<ResponseBody<B>> {
    let mut response = ResponseBody::refusal(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many concurrent streams (at most {max} per viewer)"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The `503` when the fleet-wide count cannot be reached and the policy is
/// to refuse.
#[cfg(feature = "redis")]
pub(super) fn unavailable<B>() -> Response<ResponseBody<B>> {
    let mut response = ResponseBody::refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "the stream limit cannot be checked right now",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
