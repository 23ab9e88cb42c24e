use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use chrono::{DateTime, Utc};
use compact_str::CompactString;
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

use super::layer::LogConfig;
use super::record::WatchRecord;
use super::writer::WatchLogSink;
use super::LogText;
use crate::body::{BodyEnd, Guarded, OnBodyEnd};

/// What is known of a logged request before its response ends.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) sink: WatchLogSink,
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
}

impl Pending {
    pub(super) fn finish(
        self,
        path: Option<CompactString>,
        status: u16,
        bytes_sent: u64,
        completed: bool,
    ) {
        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.sink.record(WatchRecord {
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
        });
    }
}

/// A response being logged: written when its body ends or is dropped.
#[derive(Debug)]
pub(super) struct Active {
    pub(super) pending: Pending,
    pub(super) path: Option<CompactString>,
    pub(super) status: u16,
    pub(super) expected: Option<u64>,
}

/// Body that counts the bytes it hands on and writes the watch-log row when
/// it ends, fails, or is dropped (the client went away), by the crate's one
/// end-of-response rule; built by [`WatchLog`](super::WatchLog).
#[pin_project]
#[derive(Debug)]
pub struct LoggedBody<B> {
    #[pin]
    inner: Guarded<B, Active>,
}

impl<B: Body> LoggedBody<B> {
    pub(super) fn new(inner: B, log: Option<Active>) -> Self {
        let expected = log.as_ref().and_then(|a| a.expected);
        Self {
            inner: Guarded::expecting(inner, log, expected),
        }
    }
}

impl OnBodyEnd for Active {
    fn on_end(self, end: BodyEnd) {
        self.pending
            .finish(self.path, self.status, end.sent, end.completed);
    }
}

impl<B: Body> Body for LoggedBody<B> {
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
