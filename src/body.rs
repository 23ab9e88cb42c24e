//! [`ResponseBody`]: the body of a layer that may refuse a request itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

/// Either the inner service's body or a short plain-text refusal written by
/// a layer (401, 403, 429…), so a stack of layers keeps one body type and
/// refusals stay responses, never errors.
#[pin_project]
#[derive(Debug)]
pub struct ResponseBody<B> {
    #[pin]
    kind: Kind<B>,
}

#[pin_project(project = KindProj)]
#[derive(Debug)]
enum Kind<B> {
    Inner(#[pin] B),
    Refusal(Option<Bytes>),
}

impl<B> ResponseBody<B> {
    /// The inner service's body.
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner(body),
        }
    }

    /// A plain-text response with `status` and `reason` as its body.
    pub(crate) fn refusal(status: StatusCode, reason: impl Into<Bytes>) -> Response<Self> {
        let reason = reason.into();
        let len = HeaderValue::from(reason.len());
        let mut response = Response::new(Self {
            kind: Kind::Refusal(Some(reason)),
        });
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response.headers_mut().insert(header::CONTENT_LENGTH, len);
        // As the file service's answers: a refusal on a media route is never
        // read as a page (no sniffing, no script).
        response.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("sandbox; default-src 'none'"),
        );
        response
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
{
    // `Bytes` so both sides share one data type; zero-copy for `Bytes` bodies.
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner(inner) => inner
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining()))))),
            KindProj::Refusal(text) => Poll::Ready(text.take().map(|t| Ok(Frame::data(t)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner(inner) => inner.is_end_stream(),
            Kind::Refusal(text) => text.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner(inner) => inner.size_hint(),
            Kind::Refusal(text) => {
                SizeHint::with_exact(text.as_ref().map_or(0, |t| t.len() as u64))
            }
        }
    }
}
