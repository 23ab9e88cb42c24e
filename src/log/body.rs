use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use chrono::{DateTime, Utc};
use compact_str::CompactString;
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

use super::ack::{ack_pair, AckWait, RowAck};
use super::layer::LogConfig;
use super::record::WatchRecord;
use super::sink::RecordSink;
use super::writer::WatchLogSink;
use super::LogText;
use crate::body::{BodyEnd, Guarded, OnBodyEnd};

/// What is known of a logged request before its response ends.
#[derive(Debug)]
pub(super) struct Pending<K> {
    pub(super) sink: K,
    pub(super) started: Instant,
    pub(super) created_at: DateTime<Utc>,
    // Used only if the inner service does not report the path itself.
    pub(super) requested_path: Option<CompactString>,
    pub(super) config: Arc<LogConfig>,
    pub(super) user_id: Option<CompactString>,
    pub(super) is_authenticated: bool,
    pub(super) ip: Option<CompactString>,
    pub(super) method: CompactString,
    pub(super) range_header: Option<CompactString>,
    pub(super) user_agent: Option<CompactString>,
    pub(super) is_head: bool,
    // Set from `ServedFile` once the response is known.
    pub(super) range_start: Option<u64>,
}

impl<K: RecordSink> Pending<K> {
    /// Hands the row to the sink; with `ack`, the response waits for it.
    pub(super) fn finish(
        self,
        path: Option<CompactString>,
        status: u16,
        bytes_sent: u64,
        completed: bool,
        ack: Option<RowAck>,
    ) {
        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let row = WatchRecord {
            created_at: self.created_at,
            path: LogText::from_compact(path.or(self.requested_path).unwrap_or_default()),
            user_id: self.user_id.map(LogText::from_compact),
            is_authenticated: self.is_authenticated,
            ip: self.ip.map(LogText::from_compact),
            method: LogText::from_compact(self.method),
            status,
            range_header: self.range_header.map(LogText::from_compact),
            bytes_sent,
            duration_ms,
            user_agent: self.user_agent.map(LogText::from_compact),
            completed,
            range_start: self.range_start,
        };
        match ack {
            Some(ack) => {
                ack.arm();
                self.sink.record_acked(row, ack)
            }
            None => self.sink.record(row),
        }
    }
}

/// A response being logged: written when its body ends or is dropped.
#[derive(Debug)]
pub(super) struct Active<K> {
    pub(super) pending: Pending<K>,
    pub(super) path: Option<CompactString>,
    pub(super) status: u16,
    pub(super) expected: Option<u64>,
    // With a sink that acknowledges: the response waits for it when it
    // completed.
    pub(super) ack: Option<RowAck>,
}

/// Body that counts the bytes it hands on and writes the watch-log row when
/// it ends, fails, or is dropped (the client went away), by the crate's one
/// end-of-response rule; built by [`WatchLog`](super::WatchLog).
///
/// With a sink that [acknowledges](RecordSink::acknowledges) rows (the
/// writer's, with [`WriterConfig::durable`](super::WriterConfig::durable)),
/// a response that completed holds back its last frame (or its end, for a
/// body of unknown length) until the sink says the row is safe, so a client
/// never has a complete response whose row a crash could lose.
#[pin_project]
#[derive(Debug)]
pub struct LoggedBody<B: Body, K: RecordSink = WatchLogSink> {
    #[pin]
    inner: Guarded<B, Active<K>>,
    // The response's side of the row's ack, while it may have to wait.
    wait: Option<AckWait>,
    // The last frame, held until the ack is released.
    held: Option<Frame<B::Data>>,
    // The inner body ended while the ack was not released yet.
    end_held: bool,
}

impl<B: Body, K: RecordSink> LoggedBody<B, K> {
    pub(super) fn new(inner: B, mut log: Option<Active<K>>) -> Self {
        let expected = log.as_ref().and_then(|a| a.expected);
        let wait = match log.as_mut() {
            Some(active) if active.pending.sink.acknowledges() => {
                let (ack, wait) = ack_pair();
                active.ack = Some(ack);
                Some(wait)
            }
            _ => None,
        };
        Self {
            inner: Guarded::expecting(inner, log, expected),
            wait,
            held: None,
            end_held: false,
        }
    }
}

impl<K: RecordSink> OnBodyEnd for Active<K> {
    fn on_end(self, end: BodyEnd) {
        // Only a complete response waits; a failed or abandoned one goes on.
        let ack = self.ack.filter(|_| end.completed);
        self.pending
            .finish(self.path, self.status, end.sent, end.completed, ack);
    }
}

impl<B: Body, K: RecordSink> Body for LoggedBody<B, K> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(wait) = this.wait.as_ref() else {
            return this.inner.poll_frame(cx);
        };
        if this.held.is_some() || *this.end_held {
            if wait.poll_released(cx).is_pending() {
                return Poll::Pending;
            }
            *this.wait = None;
            return Poll::Ready(this.held.take().map(Ok));
        }
        let frame = match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => return Poll::Pending,
        };
        // The row was handed over, in this poll or before: its response
        // ends once the sink has released it.
        if !wait.is_armed() || matches!(frame, Some(Err(_))) {
            return Poll::Ready(frame);
        }
        if wait.poll_released(cx).is_ready() {
            *this.wait = None;
            return Poll::Ready(frame);
        }
        match frame {
            Some(Ok(frame)) => *this.held = Some(frame),
            _ => *this.end_held = true,
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        if self.held.is_some() || self.end_held {
            return false;
        }
        match &self.wait {
            // An end whose row is not released yet is not an end.
            Some(wait) if wait.is_armed() => wait.is_released() && self.inner.is_end_stream(),
            _ => self.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;
    use std::task::Waker;

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::BodyExt;
    use tower::{service_fn, ServiceExt};
    use tower_layer::Layer;

    use super::*;
    use crate::log::WatchLogLayer;

    /// A sink that keeps rows (and their acks, when it acknowledges) in
    /// vectors, as a user's test would.
    #[derive(Clone, Default)]
    struct Rows {
        rows: Arc<Mutex<Vec<WatchRecord>>>,
        acks: Arc<Mutex<Vec<RowAck>>>,
        acknowledges: bool,
    }

    impl RecordSink for Rows {
        fn record(&self, row: WatchRecord) {
            self.rows.lock().unwrap().push(row);
        }
        fn acknowledges(&self) -> bool {
            self.acknowledges
        }
        fn record_acked(&self, row: WatchRecord, ack: RowAck) {
            self.record(row);
            self.acks.lock().unwrap().push(ack);
        }
    }

    /// A body of ready frames; with `length`, an exact size and
    /// `is_end_stream` after the last frame, as a file body has.
    struct Parts {
        frames: std::collections::VecDeque<Bytes>,
        length: Option<u64>,
    }

    impl Body for Parts {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.frames.pop_front().map(|b| Ok(Frame::data(b))))
        }

        fn is_end_stream(&self) -> bool {
            self.length.is_some() && self.frames.is_empty()
        }

        fn size_hint(&self) -> SizeHint {
            match self.length {
                Some(_) => SizeHint::with_exact(self.frames.iter().map(|b| b.len() as u64).sum()),
                None => SizeHint::default(),
            }
        }
    }

    fn chunks(parts: &[&'static str], length: bool) -> Response<Parts> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        Response::new(Parts {
            frames: parts
                .iter()
                .map(|p| Bytes::from_static(p.as_bytes()))
                .collect(),
            length: length.then_some(total as u64),
        })
    }

    async fn logged(
        sink: Rows,
        parts: &'static [&'static str],
        length: bool,
    ) -> LoggedBody<Parts, Rows> {
        let svc = WatchLogLayer::new(sink).layer(service_fn(move |_req: Request<()>| async move {
            Ok::<_, Infallible>(chunks(parts, length))
        }));
        let res = svc
            .oneshot(Request::get("/?path=a.mp4").body(()).unwrap())
            .await
            .unwrap();
        res.into_body()
    }

    #[tokio::test]
    async fn the_layer_hands_each_row_to_its_sink() {
        let sink = Rows::default();
        let body = logged(sink.clone(), &["ab", "cde"], true).await;
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcde");
        let rows = sink.rows.lock().unwrap().clone();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].path.as_str(), rows[0].bytes_sent, rows[0].completed),
            ("a.mp4", 5, true)
        );
    }

    fn poll(body: &mut Pin<Box<impl Body<Data = Bytes>>>) -> Poll<Option<Bytes>> {
        let mut cx = Context::from_waker(Waker::noop());
        body.as_mut()
            .poll_frame(&mut cx)
            .map(|f| f.map(|f| f.ok().and_then(|f| f.into_data().ok()).unwrap_or_default()))
    }

    #[tokio::test]
    async fn a_complete_response_holds_its_last_frame_until_the_row_is_safe() {
        for length in [true, false] {
            let sink = Rows {
                acknowledges: true,
                ..Rows::default()
            };
            let mut body = Box::pin(logged(sink.clone(), &["ab", "cde"], length).await);
            assert_eq!(poll(&mut body), Poll::Ready(Some(Bytes::from("ab"))));
            assert!(sink.rows.lock().unwrap().is_empty());
            // With a length the row is made at the last frame, which waits;
            // without one, at the end, which waits.
            let last = poll(&mut body);
            if length {
                assert!(last.is_pending(), "held until the ack");
            } else {
                assert_eq!(last, Poll::Ready(Some(Bytes::from("cde"))));
                assert!(poll(&mut body).is_pending(), "the end waits");
            }
            assert!(!body.is_end_stream());
            assert_eq!(sink.rows.lock().unwrap().len(), 1, "the row is handed over");
            assert!(poll(&mut body).is_pending(), "still waiting");
            sink.acks.lock().unwrap().clear();
            if length {
                assert_eq!(poll(&mut body), Poll::Ready(Some(Bytes::from("cde"))));
                assert!(body.is_end_stream());
            } else {
                assert_eq!(poll(&mut body), Poll::Ready(None));
            }
        }
    }

    #[tokio::test]
    async fn a_sink_that_does_not_acknowledge_holds_nothing() {
        let sink = Rows::default();
        let mut body = Box::pin(logged(sink.clone(), &["ab", "cde"], true).await);
        assert_eq!(poll(&mut body), Poll::Ready(Some(Bytes::from("ab"))));
        assert_eq!(poll(&mut body), Poll::Ready(Some(Bytes::from("cde"))));
        assert!(body.is_end_stream());
        assert_eq!(sink.rows.lock().unwrap().len(), 1);
    }
}
