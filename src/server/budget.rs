//! Per-connection budgets: how long a connection may sit idle and how long
//! a response may make no write progress (nginx's `client_header_timeout`,
//! `keepalive_timeout` and `send_timeout`).
//!
//! Every request a connection serves registers a stream; its response body
//! ([`TimedBody`]) stamps the stream each time the connection takes a frame
//! from it, which happens only once the previous one was written. A
//! watchdog per connection checks the stamps: a stream without progress for
//! the send timeout ends the connection (its bodies drop: files close,
//! stream slots free, watch-log rows are written as incomplete), and a
//! connection without streams for the idle timeout is shut down gracefully
//! (HTTP/2 gets a GOAWAY).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

use super::drain::Drain;
use crate::body::{BodyEnd, Guarded, OnBodyEnd};

/// The clock of one connection and the streams it serves.
#[derive(Debug)]
pub(super) struct Activity {
    opened: Instant,
    // Milliseconds since `opened`: the last stream's end (or the opening).
    idle_since: AtomicU64,
    // Requests served so far: 0 means still waiting for the first head.
    requests: AtomicU64,
    streams: Mutex<Vec<Weak<AtomicU64>>>,
    /// Notified when the server, at its connection limit, chose this
    /// connection to make room for a new one.
    pub(super) shed: tokio::sync::Notify,
}

/// What the watchdog decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing to do yet.
    Fine,
    /// No request head arrived within the first budget: close.
    Silent,
    /// No stream for the idle budget: shut the connection down gracefully.
    Idle,
    /// A stream made no progress for the send budget: end the connection.
    Stalled,
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            idle_since: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            streams: Mutex::new(Vec::new()),
            shed: tokio::sync::Notify::new(),
        })
    }

    /// Since when the connection has had no request in progress (its
    /// opening if none came yet); `None` while a stream is open.
    pub(super) fn idle_since(&self) -> Option<Instant> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|s| s.strong_count() > 0);
        if !streams.is_empty() {
            return None;
        }
        drop(streams);
        let ms = self.idle_since.load(Ordering::Relaxed);
        Some(self.opened + Duration::from_millis(ms))
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request head arrived: a stream starts, stamped now.
    pub(super) fn start(self: &Arc<Self>) -> Stream {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let stamp = Arc::new(AtomicU64::new(self.now()));
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|s| s.strong_count() > 0);
        streams.push(Arc::downgrade(&stamp));
        Stream {
            activity: Arc::clone(self),
            stamp,
        }
    }

    /// Judges the connection: `first` is the budget before the first
    /// request head, `idle` between requests, `send` for write progress.
    pub(super) fn verdict(&self, first: Duration, idle: Duration, send: Duration) -> Verdict {
        let now = self.now();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|s| s.strong_count() > 0);
        let mut open = false;
        for stamp in streams.iter().filter_map(Weak::upgrade) {
            open = true;
            if now.saturating_sub(stamp.load(Ordering::Relaxed)) >= ms(send) {
                return Verdict::Stalled;
            }
        }
        drop(streams);
        if open {
            return Verdict::Fine;
        }
        let silent = self.requests.load(Ordering::Relaxed) == 0;
        let budget = if silent { first } else { idle };
        if now.saturating_sub(self.idle_since.load(Ordering::Relaxed)) < ms(budget) {
            Verdict::Fine
        } else if silent {
            Verdict::Silent
        } else {
            Verdict::Idle
        }
    }
}

/// One request's stream; its end makes the connection idle from then.
#[derive(Debug)]
pub(super) struct Stream {
    activity: Arc<Activity>,
    stamp: Arc<AtomicU64>,
}

impl Stream {
    fn progressed(&self) {
        self.stamp.store(self.activity.now(), Ordering::Relaxed);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let now = self.activity.now();
        self.activity.idle_since.store(now, Ordering::Relaxed);
    }
}

impl OnBodyEnd for Stream {
    /// Ends the stream: the connection is idle from now if no other is open.
    fn on_end(self, _: BodyEnd) {}
}

/// A response body that stamps its stream whenever the connection takes a
/// frame, and ends the stream by the crate's one rule for the end of a
/// response ([`Guarded`]): at the end of the stream, after a frame that
/// ends it, on an error, or when the body is dropped.
#[pin_project]
#[derive(Debug)]
pub(super) struct TimedBody<B> {
    #[pin]
    inner: Guarded<B, Stream>,
    // HTTP/1: the next frame waits until the socket took the last one.
    drain: Option<Arc<Drain>>,
}

impl<B: Body> TimedBody<B> {
    pub(super) fn new(inner: B, stream: Stream, drain: Option<Arc<Drain>>) -> Self {
        Self {
            inner: Guarded::new(inner, Some(stream)),
            drain,
        }
    }
}

impl<B: Body> Body for TimedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let Some(drain) = this.drain.as_ref() {
            std::task::ready!(drain.poll_drained(cx));
        }
        // The last frame went out (HTTP/1: all of it reached the socket;
        // HTTP/2: the stream had window for it): that is progress.
        if let Some(stream) = this.inner.as_ref().get_ref().hook() {
            stream.progressed();
        }
        let polled = this.inner.poll_frame(cx);
        if let (Some(drain), Poll::Ready(Some(Ok(frame)))) = (this.drain.as_ref(), &polled) {
            if frame.data_ref().is_some_and(bytes::Buf::has_remaining) {
                drain.queued();
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_millis(40);

    #[test]
    fn verdicts() {
        let activity = Activity::new();
        assert_eq!(activity.verdict(S, S * 10, S * 10), Verdict::Fine);
        std::thread::sleep(S + Duration::from_millis(5));
        // No request head within the first budget.
        assert_eq!(activity.verdict(S, S * 10, S * 10), Verdict::Silent);
        let stream = activity.start();
        assert_eq!(
            activity.verdict(S, S, S * 10),
            Verdict::Fine,
            "a stream is open"
        );
        std::thread::sleep(S + Duration::from_millis(5));
        assert_eq!(activity.verdict(S, S, S), Verdict::Stalled);
        stream.progressed();
        assert_eq!(activity.verdict(S, S, S), Verdict::Fine);
        drop(stream);
        assert_eq!(activity.verdict(S, S, S), Verdict::Fine, "idle just began");
        std::thread::sleep(S + Duration::from_millis(5));
        assert_eq!(
            activity.verdict(S * 100, S, S),
            Verdict::Idle,
            "keep-alive over"
        );
    }

    #[test]
    fn only_connections_without_a_stream_are_idle() {
        let activity = Activity::new();
        let opened = activity.idle_since().unwrap();
        let stream = activity.start();
        assert_eq!(activity.idle_since(), None, "a request is in progress");
        std::thread::sleep(Duration::from_millis(5));
        drop(stream);
        assert!(
            activity.idle_since().unwrap() > opened,
            "idle since the stream ended"
        );
    }

    /// A body that plays a script of polls (no known length), then pends.
    struct Script(std::collections::VecDeque<Option<Result<&'static [u8], ()>>>);

    impl Body for Script {
        type Data = bytes::Bytes;
        type Error = &'static str;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<bytes::Bytes>, Self::Error>>> {
            match self.0.pop_front() {
                Some(Some(Ok(data))) => {
                    Poll::Ready(Some(Ok(Frame::data(bytes::Bytes::from_static(data)))))
                }
                Some(Some(Err(()))) => Poll::Ready(Some(Err("disk error"))),
                Some(None) => Poll::Ready(None),
                None => Poll::Pending,
            }
        }
    }

    fn timed<B: Body + Unpin>(body: B) -> (Arc<Activity>, TimedBody<B>) {
        let activity = Activity::new();
        let stream = activity.start();
        (Arc::clone(&activity), TimedBody::new(body, stream, None))
    }

    type Polled<B> = Poll<Option<Result<Frame<<B as Body>::Data>, <B as Body>::Error>>>;

    fn poll<B: Body + Unpin>(body: &mut TimedBody<B>) -> Polled<B> {
        let waker = std::task::Waker::noop();
        Pin::new(body).poll_frame(&mut Context::from_waker(waker))
    }

    fn open(activity: &Activity) -> bool {
        activity.idle_since().is_none()
    }

    #[test]
    fn the_stream_ends_when_the_body_ends() {
        let (activity, mut body) = timed(Script(vec![Some(Ok(&b"ab"[..])), None].into()));
        assert!(open(&activity));
        assert!(matches!(poll(&mut body), Poll::Ready(Some(Ok(_)))));
        assert!(open(&activity), "more may come");
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
        assert!(!open(&activity), "ended before the body is dropped");
    }

    #[test]
    fn the_stream_ends_after_a_frame_that_ends_the_body() {
        // Servers stop polling once `is_end_stream` says so.
        let (activity, mut body) =
            timed(http_body_util::Full::new(bytes::Bytes::from_static(b"xy")));
        assert!(open(&activity));
        assert!(matches!(poll(&mut body), Poll::Ready(Some(Ok(_)))));
        assert!(!open(&activity));
        drop(body);
        assert!(!open(&activity));
    }

    #[test]
    fn the_stream_ends_on_an_error() {
        let (activity, mut body) = timed(Script(vec![Some(Ok(&b"ab"[..])), Some(Err(()))].into()));
        assert!(matches!(poll(&mut body), Poll::Ready(Some(Ok(_)))));
        assert!(open(&activity));
        assert!(matches!(poll(&mut body), Poll::Ready(Some(Err(_)))));
        assert!(!open(&activity));
    }

    #[test]
    fn the_stream_ends_when_the_body_is_dropped() {
        let (activity, mut body) = timed(Script(vec![Some(Ok(&b"ab"[..]))].into()));
        assert!(matches!(poll(&mut body), Poll::Ready(Some(Ok(_)))));
        assert!(poll(&mut body).is_pending());
        assert!(open(&activity), "waiting for the next frame");
        drop(body);
        assert!(!open(&activity));
    }

    #[test]
    fn an_empty_body_ends_the_stream_at_once() {
        // HEAD, 304: nothing to send, nothing to time.
        let (activity, body) = timed(http_body_util::Empty::<bytes::Bytes>::new());
        assert!(!open(&activity));
        drop(body);
    }

    #[test]
    fn each_poll_is_progress() {
        let (activity, mut body) = timed(Script(vec![Some(Ok(&b"ab"[..]))].into()));
        std::thread::sleep(S + Duration::from_millis(5));
        assert_eq!(activity.verdict(S, S, S), Verdict::Stalled);
        assert!(matches!(poll(&mut body), Poll::Ready(Some(Ok(_)))));
        assert_eq!(activity.verdict(S, S, S), Verdict::Fine);
    }
}
