//! The durable journal's hand-off: rows a `--durable-log` records are
//! handed to the journal thread, which appends each group that arrived
//! meanwhile to the spool file with one `write`, then releases the responses
//! waiting for them ([`RowAck`]). The request's thread only pushes onto this
//! bounded inbox: no I/O there.
//!
//! The inbox is bounded (`capacity` rows): a row that finds it full, or the
//! journal stalled (a write has taken longer than [`MOST_WAIT`]), is not
//! journaled but queued in memory as without `--durable-log`, and its
//! response is released at once; a stall also releases every response
//! already waiting. So a response never waits on a failing or hung disk for
//! long, and every row is still counted once.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::log::ack::RowAck;
use crate::log::record::WatchRecord;

/// Longest a journal write may take before the journal counts as stalled:
/// new rows then bypass it and waiting responses are released.
pub(super) const MOST_WAIT: Duration = Duration::from_secs(1);

/// Rows waiting for the journal thread.
#[derive(Debug)]
pub(super) struct Journal {
    state: Mutex<State>,
    wake: Condvar,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    inbox: Vec<(WatchRecord, Option<RowAck>)>,
    // Responses waiting on the write in progress.
    writing: Vec<RowAck>,
    // Rows in the write in progress, and since when it runs.
    writing_rows: usize,
    writing_since: Option<Instant>,
    closing: bool,
}

/// What the journal thread takes for one write.
#[derive(Debug)]
pub(super) struct Group {
    pub(super) rows: Vec<WatchRecord>,
}

impl Journal {
    /// An empty inbox of at most `capacity` rows.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `row` to the journal thread; gives it back when the inbox is
    /// full, the journal is stalled (then every waiting response is released
    /// too) or shutting down, releasing `ack`. Never blocks on I/O: one
    /// lock, one push.
    pub(super) fn offer(&self, row: WatchRecord, ack: Option<RowAck>) -> Option<WatchRecord> {
        let mut state = self.lock();
        let stalled = state
            .writing_since
            .is_some_and(|since| since.elapsed() >= MOST_WAIT);
        if stalled {
            // Release everyone: their rows are journaled when the disk
            // answers, but no response waits for that.
            let waiting: Vec<RowAck> = {
                let state = &mut *state;
                state
                    .writing
                    .drain(..)
                    .chain(state.inbox.iter_mut().filter_map(|(_, ack)| ack.take()))
                    .collect()
            };
            drop(state);
            waiting.into_iter().for_each(RowAck::release);
            return Some(row);
        }
        if state.closing || state.inbox.len() >= self.capacity {
            return Some(row);
        }
        state.inbox.push((row, ack));
        let first = state.inbox.len() == 1;
        drop(state);
        if first {
            self.wake.notify_one();
        }
        None
    }

    /// Blocks until rows wait, then takes them all (their responses wait
    /// on [`Journal::written`]); `None` once shutdown began and nothing is
    /// left.
    pub(super) fn take(&self) -> Option<Group> {
        let mut state = self.lock();
        loop {
            if !state.inbox.is_empty() {
                let taken = std::mem::take(&mut state.inbox);
                let mut rows = Vec::with_capacity(taken.len());
                for (row, ack) in taken {
                    rows.push(row);
                    state.writing.extend(ack);
                }
                state.writing_rows = rows.len();
                state.writing_since = Some(Instant::now());
                return Some(Group { rows });
            }
            if state.closing {
                return None;
            }
            state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The group taken last is dealt with (journaled, queued or dropped,
    /// and counted): its responses go on.
    pub(super) fn written(&self) {
        let mut state = self.lock();
        let waiting = std::mem::take(&mut state.writing);
        state.writing_rows = 0;
        state.writing_since = None;
        drop(state);
        waiting.into_iter().for_each(RowAck::release);
    }

    /// No row waits for the journal thread or is being written by it.
    pub(super) fn is_idle(&self) -> bool {
        let state = self.lock();
        state.inbox.is_empty() && state.writing_since.is_none()
    }

    /// Rows waiting for the journal thread or in its write now.
    pub(super) fn pending(&self) -> usize {
        let state = self.lock();
        state.inbox.len() + state.writing_rows
    }

    /// Begins shutdown: the thread journals what waits, then stops; new
    /// rows are refused (and queued in memory by the caller).
    pub(super) fn close(&self) {
        self.lock().closing = true;
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::ack::ack_pair;

    fn row(i: u64) -> WatchRecord {
        WatchRecord {
            created_at: chrono::Utc::now(),
            path: "a.mp4".into(),
            user_id: None,
            is_authenticated: false,
            ip: None,
            method: "GET".into(),
            status: 200,
            range_header: None,
            bytes_sent: i,
            duration_ms: 0,
            user_agent: None,
            completed: true,
            range_start: None,
        }
    }

    #[test]
    fn responses_wait_for_their_group_and_the_inbox_is_bounded() {
        let journal = Journal::new(2);
        let (ack, wait) = ack_pair();
        assert!(journal.offer(row(0), Some(ack)).is_none());
        assert!(journal.offer(row(1), None).is_none());
        let refused = journal.offer(row(2), None).unwrap();
        assert_eq!(refused.bytes_sent, 2, "a full inbox gives the row back");
        assert_eq!(journal.pending(), 2);
        let group = journal.take().unwrap();
        assert_eq!(group.rows.len(), 2);
        assert!(!wait.is_released(), "waits for the write");
        assert!(!journal.is_idle());
        journal.written();
        assert!(wait.is_released());
        assert!(journal.is_idle());
        journal.close();
        assert!(journal.take().is_none());
        assert!(journal.offer(row(3), None).is_some(), "closed");
    }

    #[test]
    fn a_stalled_write_releases_every_waiting_response() {
        let journal = Journal::new(10);
        let (first, first_wait) = ack_pair();
        assert!(journal.offer(row(0), Some(first)).is_none());
        let _group = journal.take().unwrap();
        let (second, second_wait) = ack_pair();
        assert!(journal.offer(row(1), Some(second)).is_none());
        // The write in progress hangs past the bound.
        journal.lock().writing_since = Instant::now().checked_sub(MOST_WAIT);
        let (third, third_wait) = ack_pair();
        let back = journal.offer(row(2), Some(third)).unwrap();
        assert_eq!(back.bytes_sent, 2);
        assert!(first_wait.is_released() && second_wait.is_released());
        assert!(third_wait.is_released(), "a refused row's response goes on");
        // The row already in the inbox is still journaled later.
        journal.written();
        assert_eq!(journal.take().unwrap().rows[0].bytes_sent, 1);
    }
}
