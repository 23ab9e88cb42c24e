//! [`ResponseBody`]: the body of a layer that may refuse a request itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project::{pin_project, pinned_drop};

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

/// How a response ended, reported once by [`Guarded`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BodyEnd {
    /// Body bytes handed on.
    pub(crate) sent: u64,
    /// Whether the whole body went out: `false` after an error or when the
    /// body was dropped short of its length (the client left).
    pub(crate) completed: bool,
}

/// What a layer does, once, when a response ends (write a row, count a
/// metric, free a stream slot).
pub(crate) trait OnBodyEnd {
    /// The response ended as `end` says.
    fn on_end(self, end: BodyEnd);
}

/// The one rule for "the response ended", shared by every per-response body
/// (the watch log, the metrics, the stream limit), as tower-http's trace
/// body has it. Counts the data bytes handed on and calls the hook exactly
/// once, at the first of:
///
/// - the body already ended when wrapped (HEAD, `304`, an empty body):
///   completed;
/// - a data frame after which the body reports `is_end_stream` (servers stop
///   polling there), or `poll_frame` returns `None`: completed;
/// - an error frame: not completed;
/// - the body is dropped first: completed only if the expected length
///   (`Content-Length`, the exact size hint) went out, since a server may
///   drop a body it knows is complete without polling it to the end.
#[pin_project(PinnedDrop)]
#[derive(Debug)]
pub(crate) struct Guarded<B, E: OnBodyEnd> {
    #[pin]
    inner: B,
    sent: u64,
    expected: Option<u64>,
    on_end: Option<E>,
}

impl<B: Body, E: OnBodyEnd> Guarded<B, E> {
    /// Watches `inner`, expecting its exact size hint, if it has one.
    pub(crate) fn new(inner: B, on_end: Option<E>) -> Self {
        let expected = inner.size_hint().exact();
        Self::expecting(inner, on_end, expected)
    }

    /// Watches `inner`, which a complete response sends `expected` bytes of.
    pub(crate) fn expecting(inner: B, on_end: Option<E>, expected: Option<u64>) -> Self {
        let mut guarded = Self {
            inner,
            sent: 0,
            expected,
            on_end,
        };
        if guarded.inner.is_end_stream() || expected == Some(0) {
            guarded.end(true);
        }
        guarded
    }

    /// The hook, until the response ends (a body that acts on every frame
    /// reads its state here).
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn hook(&self) -> Option<&E> {
        self.on_end.as_ref()
    }

    fn end(&mut self, completed: bool) {
        if let Some(hook) = self.on_end.take() {
            hook.on_end(BodyEnd {
                sent: self.sent,
                completed,
            });
        }
    }
}

fn end_projected<E: OnBodyEnd>(on_end: &mut Option<E>, sent: u64, completed: bool) {
    if let Some(hook) = on_end.take() {
        hook.on_end(BodyEnd { sent, completed });
    }
}

impl<B: Body, E: OnBodyEnd> Body for Guarded<B, E> {
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
                if let Some(data) = frame.data_ref() {
                    *this.sent += data.remaining() as u64;
                }
                if this.inner.is_end_stream() {
                    end_projected(this.on_end, *this.sent, true);
                }
            }
            Poll::Ready(None) => end_projected(this.on_end, *this.sent, true),
            Poll::Ready(Some(Err(_))) => end_projected(this.on_end, *this.sent, false),
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
impl<B, E: OnBodyEnd> PinnedDrop for Guarded<B, E> {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        let completed = this.expected.is_some_and(|e| *this.sent >= e);
        end_projected(this.on_end, *this.sent, completed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::{BodyExt, Full};

    use super::*;

    #[derive(Clone, Default)]
    struct Ends(Arc<Mutex<Vec<BodyEnd>>>);

    impl OnBodyEnd for Ends {
        fn on_end(self, end: BodyEnd) {
            self.0.lock().unwrap().push(end);
        }
    }

    impl Ends {
        fn seen(&self) -> Vec<BodyEnd> {
            self.0.lock().unwrap().clone()
        }
    }

    fn end(sent: u64, completed: bool) -> BodyEnd {
        BodyEnd { sent, completed }
    }

    /// A body that plays a script of polls, with an exact length.
    struct Script {
        steps: std::collections::VecDeque<Option<Result<&'static [u8], ()>>>,
        len: u64,
    }

    impl Script {
        fn new(len: u64, steps: Vec<Option<Result<&'static [u8], ()>>>) -> Self {
            Self {
                steps: steps.into(),
                len,
            }
        }
    }

    impl Body for Script {
        type Data = Bytes;
        type Error = &'static str;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.steps.pop_front() {
                Some(Some(Ok(data))) => {
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(data)))))
                }
                Some(Some(Err(()))) => Poll::Ready(Some(Err("disk error"))),
                Some(None) => Poll::Ready(None),
                None => Poll::Pending,
            }
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(self.len)
        }
    }

    type Polled<B> = Poll<Option<Result<Frame<<B as Body>::Data>, <B as Body>::Error>>>;

    fn poll_once<B: Body + Unpin>(body: &mut B) -> Polled<B> {
        let waker = std::task::Waker::noop();
        Pin::new(body).poll_frame(&mut Context::from_waker(waker))
    }

    #[tokio::test]
    async fn ends_once_at_the_end_of_the_stream() {
        let ends = Ends::default();
        let body = Guarded::new(Full::new(Bytes::from_static(b"hello")), Some(ends.clone()));
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected.as_ref(), b"hello");
        assert_eq!(ends.seen(), [end(5, true)]);
    }

    #[tokio::test]
    async fn an_ended_body_ends_when_wrapped() {
        let ends = Ends::default();
        let body = Guarded::new(Full::new(Bytes::new()), Some(ends.clone()));
        assert_eq!(ends.seen(), [end(0, true)]);
        drop(body);
        assert_eq!(ends.seen(), [end(0, true)], "once");
    }

    #[test]
    fn an_error_ends_it_incomplete() {
        let ends = Ends::default();
        let mut body = Guarded::new(
            Script::new(10, vec![Some(Ok(b"abc")), Some(Err(()))]),
            Some(ends.clone()),
        );
        assert!(matches!(poll_once(&mut body), Poll::Ready(Some(Ok(_)))));
        assert!(ends.seen().is_empty());
        assert!(matches!(poll_once(&mut body), Poll::Ready(Some(Err(_)))));
        drop(body);
        assert_eq!(ends.seen(), [end(3, false)]);
    }

    #[test]
    fn dropped_short_of_its_length_is_incomplete() {
        let ends = Ends::default();
        let mut body = Guarded::new(Script::new(10, vec![Some(Ok(b"abcd"))]), Some(ends.clone()));
        assert!(matches!(poll_once(&mut body), Poll::Ready(Some(Ok(_)))));
        assert!(poll_once(&mut body).is_pending());
        drop(body);
        assert_eq!(ends.seen(), [end(4, false)]);
    }

    #[test]
    fn dropped_after_its_length_is_complete() {
        // A server stops polling once Content-Length bytes are out.
        let ends = Ends::default();
        let mut body = Guarded::new(Script::new(4, vec![Some(Ok(b"abcd"))]), Some(ends.clone()));
        assert!(matches!(poll_once(&mut body), Poll::Ready(Some(Ok(_)))));
        drop(body);
        assert_eq!(ends.seen(), [end(4, true)]);
    }

    #[test]
    fn dropped_before_any_poll_is_incomplete() {
        let ends = Ends::default();
        drop(Guarded::new(Script::new(4, vec![]), Some(ends.clone())));
        assert_eq!(ends.seen(), [end(0, false)]);
    }

    #[test]
    fn the_end_of_stream_after_the_last_frame_ends_it() {
        // Full reports its end once its one frame is out: no further poll.
        let ends = Ends::default();
        let mut body = Guarded::new(Full::new(Bytes::from_static(b"xy")), Some(ends.clone()));
        assert!(matches!(poll_once(&mut body), Poll::Ready(Some(Ok(_)))));
        assert_eq!(ends.seen(), [end(2, true)]);
        drop(body);
        assert_eq!(ends.seen(), [end(2, true)], "once");
    }

    #[test]
    fn an_expected_length_of_zero_ends_it_at_once() {
        // HEAD and 304: headers only, whatever the body says.
        let ends = Ends::default();
        let body = Guarded::expecting(Script::new(10, vec![]), Some(ends.clone()), Some(0));
        assert_eq!(ends.seen(), [end(0, true)]);
        drop(body);
        assert_eq!(ends.seen().len(), 1);
    }
}
