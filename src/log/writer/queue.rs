//! The writer's in-memory queue, and the one invariant that makes
//! [`wait_idle`](super::WriterHandle::wait_idle) honest: every recorded row
//! is at all times queued, in flight, in the spool, or stored.
//!
//! Rows leave the queue only as an [`InFlight`], and the queue counts them
//! in flight until the holder hands the `InFlight` back: [`Queue::complete`]
//! (stored), [`Queue::requeue`] (to retry), [`Queue::spooled`] (in the
//! spool file, or counted as dropped by the spool), [`Queue::spill_failed`]
//! (back in memory, or counted as dropped) or [`Queue::drop_all`] (counted
//! as dropped). Nothing else touches the count.
//!
//! The queue also owns its memory bound: rows over `memory_limit` that no
//! spool has taken (there is none, a write to it failed a moment ago, or
//! the spool thread has fallen behind) are dropped — batches waiting for a retry first, then the oldest new rows —
//! counted, and reported in the error log. So a row may also end up
//! *dropped*, and memory is never unbounded.
//!
//! And it keeps the spool's health: after a spool write fails (a full
//! disk, an I/O error) nobody touches the spool until a backoff has passed
//! (doubling while it keeps failing), so a broken spool costs neither a
//! spinning thread nor a failing write per request.

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::backoff::{Backoff, LOG_EVERY};
use crate::log::record::{WatchBatch, WatchRecord};

/// How often the spooler looks again when the queue is past its spill mark
/// but holds only batches to retry, which it does not move.
const RECHECK: Duration = Duration::from_millis(100);

/// Rows taken off the [`Queue`]: counted in flight until given back.
#[must_use = "rows in flight must be completed, requeued or spooled"]
#[derive(Debug)]
pub(super) struct InFlight<T> {
    items: T,
    rows: usize,
}

impl<T> Deref for InFlight<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.items
    }
}

impl<T> InFlight<T> {
    /// How many rows this holds.
    pub(super) fn rows(&self) -> usize {
        self.rows
    }
}

impl InFlight<Vec<WatchRecord>> {
    /// The rows cut into batches of at most `size`, still in flight.
    #[cfg(test)]
    pub(super) fn into_batches(self, size: usize) -> InFlight<Vec<WatchBatch>> {
        InFlight {
            items: into_batches(self.items, size),
            rows: self.rows,
        }
    }

    /// The rows as batches of at most `size` without an id, for the spool
    /// (lines of a size that fits or not as a whole): a replay groups
    /// such lines into batches of the writer's size, named after the spool
    /// file and line (as journaled rows are), so rows handed to the spool a
    /// few at a time are still stored in large transactions. Only for new
    /// rows: a batch that may have been stored keeps its id.
    pub(super) fn into_unnamed(self, size: usize) -> InFlight<Vec<WatchBatch>> {
        let mut items = into_batches(self.items, size);
        for batch in &mut items {
            batch.id.clear();
        }
        InFlight {
            items,
            rows: self.rows,
        }
    }
}

/// What the writer takes for one round.
#[derive(Debug)]
pub(super) struct Round {
    /// A batch to store: one to retry first, else up to a batch of new rows.
    pub(super) batch: Option<InFlight<WatchBatch>>,
    /// Shutdown has begun.
    pub(super) closing: bool,
    /// The spool file holds rows to replay.
    pub(super) spool_dirty: bool,
}

/// Rows waiting for the writer, shared by the sink, the writer and the
/// spooler.
#[derive(Debug)]
pub(super) struct Queue {
    state: Mutex<State>,
    // Wakes the writer: a full batch arrived, or shutdown.
    writer_wake: Condvar,
    // Wakes the spooler: the queue is past half its bound, or shutdown.
    spool_wake: Condvar,
    batch_size: usize,
    memory_limit: usize,
    // Whether rows over the bound can go to a spool (else they stay).
    spills: bool,
    // With a spool: the spooler hands rows that may have waited this long
    // (a flush interval and a quarter) to the spool when the writer has not
    // taken them (it is in a long transaction, or starved of CPU at its low
    // priority).
    handoff: Option<Duration>,
}

#[derive(Debug)]
struct State {
    rows: VecDeque<WatchRecord>,
    // Batches that already have an id (a store call failed, perhaps after
    // committing): retried as they are, so the id keeps them idempotent.
    retry: VecDeque<WatchBatch>,
    // Rows in `retry`, kept so that a push counts the queue in O(1).
    retry_rows: usize,
    // The most rows ever queued at once.
    peak: usize,
    closing: bool,
    // The spool file holds rows not yet replayed.
    spool_dirty: bool,
    // Rows handed out as an `InFlight` and not yet given back.
    in_flight: usize,
    // Rows dropped over the memory bound, in all, and since the last report.
    dropped: u64,
    dropped_unreported: u64,
    drop_reported_at: Option<Instant>,
    // A spool write failed: the spool is left alone until then, and the
    // pause doubles while it keeps failing.
    spool_retry_at: Option<Instant>,
    spool_backoff: Backoff,
    // Every row in `rows` arrived after this: the last time `rows` was
    // emptied (by the writer or a hand-off to the spool).
    emptied_at: Instant,
}

impl State {
    /// Rows waiting in memory, new or to retry.
    fn queued(&self) -> usize {
        self.rows.len() + self.retry_rows
    }

    fn push_retry(&mut self, batch: WatchBatch, front: bool) {
        self.retry_rows += batch.records.len();
        if front {
            self.retry.push_front(batch);
        } else {
            self.retry.push_back(batch);
        }
    }

    fn note_peak(&mut self) {
        self.peak = self.peak.max(self.queued());
    }

    fn pop_retry(&mut self) -> Option<WatchBatch> {
        let batch = self.retry.pop_front()?;
        self.retry_rows -= batch.records.len();
        Some(batch)
    }

    fn hand_out<T>(&mut self, items: T, rows: usize) -> InFlight<T> {
        self.in_flight += rows;
        InFlight { items, rows }
    }

    fn give_back<T>(&mut self, taken: InFlight<T>) -> T {
        self.in_flight -= taken.rows;
        taken.items
    }

    /// Drops the oldest rows (batches to retry first, then new rows) until
    /// at most `keep` are queued. A batch cut short keeps its id: had it
    /// been stored, it still is, and otherwise its rest is.
    fn drop_oldest(&mut self, keep: usize) {
        let mut excess = self.queued().saturating_sub(keep);
        let dropped = excess;
        while excess > 0 {
            let cut = match self.retry.front_mut() {
                Some(batch) => {
                    let cut = batch.records.len().min(excess);
                    batch.records.drain(..cut);
                    if batch.records.is_empty() {
                        self.retry.pop_front();
                    }
                    self.retry_rows -= cut;
                    cut
                }
                None => {
                    let cut = self.rows.len().min(excess);
                    self.rows.drain(..cut);
                    cut
                }
            };
            if cut == 0 {
                break;
            }
            excess -= cut;
        }
        let dropped = (dropped - excess) as u64;
        self.dropped += dropped;
        self.dropped_unreported += dropped;
    }

    /// The rows dropped since the last report and the total, when a report
    /// is due (see [`LOG_EVERY`]).
    fn drops_to_report(&mut self) -> Option<(u64, u64)> {
        if self.dropped_unreported == 0 {
            return None;
        }
        let now = Instant::now();
        if self
            .drop_reported_at
            .is_some_and(|at| now.duration_since(at) < LOG_EVERY)
        {
            return None;
        }
        self.drop_reported_at = Some(now);
        Some((std::mem::take(&mut self.dropped_unreported), self.dropped))
    }

    /// Whether rows over the bound may go to the spool now: there is one,
    /// and no write to it failed within the current backoff.
    fn spool_usable(&self, spills: bool) -> bool {
        spills && self.spool_retry_at.is_none_or(|at| Instant::now() >= at)
    }
}

impl Queue {
    /// An empty queue; `spool_dirty` says whether a spool file left by an
    /// earlier run holds rows; a spool that fails is left alone for a
    /// backoff of up to `max_backoff`. The writer takes rows every
    /// `flush_interval`; with a spool, rows the writer has not taken a
    /// quarter of an interval later are handed to the spool instead
    /// ([`Queue::take_excess`]).
    pub(super) fn new(
        batch_size: usize,
        memory_limit: usize,
        spills: bool,
        spool_dirty: bool,
        max_backoff: Duration,
        flush_interval: Duration,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                rows: VecDeque::new(),
                retry: VecDeque::new(),
                retry_rows: 0,
                peak: 0,
                closing: false,
                spool_dirty,
                in_flight: 0,
                dropped: 0,
                dropped_unreported: 0,
                drop_reported_at: None,
                spool_retry_at: None,
                spool_backoff: Backoff::new(max_backoff),
                emptied_at: Instant::now(),
            }),
            writer_wake: Condvar::new(),
            spool_wake: Condvar::new(),
            batch_size: batch_size.max(1),
            memory_limit,
            spills,
            handoff: spills.then(|| flush_interval.saturating_add(flush_interval / 4)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The queue stays usable even if a thread panicked holding it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs the rows dropped over the bound, when a report is due; called
    /// with the lock released.
    fn report_drops(&self, report: Option<(u64, u64)>) {
        if let Some((rows, total)) = report {
            tracing::error!(
                rows,
                total,
                memory_limit = self.memory_limit,
                "watch-log queue over its memory bound and no spool took the excess (none, it failed a moment ago, or the spool thread fell behind): the oldest rows were dropped"
            );
        }
    }

    /// Rows dropped over the memory bound so far.
    pub(super) fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Queues one row; also after shutdown began (the final drain takes it).
    /// Never does I/O: at the memory bound (the spooler has fallen behind,
    /// or there is no spool, or it failed a moment ago) the oldest rows
    /// make room, dropped and counted, so the bound holds however fast rows
    /// come and the request never waits for a disk.
    pub(super) fn push(&self, record: WatchRecord) {
        let mut state = self.lock();
        if state.queued() >= self.memory_limit {
            state.drop_oldest(self.memory_limit.saturating_sub(1));
        }
        state.rows.push_back(record);
        state.note_peak();
        let (len, queued) = (state.rows.len(), state.queued());
        let report = state.drops_to_report();
        drop(state);
        self.report_drops(report);
        // Wake a thread only on the transition: a wake-up per request would
        // cost a system call each while the writer is busy.
        if len == self.batch_size {
            self.writer_wake.notify_one();
        }
        // The spooler times a hand-off from the first row after the queue
        // was emptied, and spills past the mark.
        if queued == self.spill_at() + 1 || (len == 1 && self.handoff.is_some()) {
            self.spool_wake.notify_one();
        }
    }

    // Past this many queued rows the spooler moves the newest to the spool,
    // leaving half the bound's headroom for it to catch up.
    fn spill_at(&self) -> usize {
        self.memory_limit / 2
    }

    /// The most rows ever queued at once.
    pub(super) fn peak(&self) -> usize {
        self.lock().peak
    }

    /// A row went straight to the spool's journal.
    pub(super) fn journaled(&self) {
        self.lock().spool_dirty = true;
    }

    /// Whether the spool may be written now: no write to it failed within
    /// the current backoff (see [`Queue::spool_failed`]).
    pub(super) fn spool_usable(&self) -> bool {
        self.lock().spool_usable(true)
    }

    /// A spool write failed: nobody writes to the spool for the next
    /// backoff (50 ms, doubling per failure up to `max_backoff`); rows over
    /// the bound are dropped meanwhile.
    pub(super) fn spool_failed(&self) {
        Self::back_off_spool(&mut self.lock());
    }

    fn back_off_spool(state: &mut State) {
        state.spool_backoff.failed();
        let pause = state.spool_backoff.pause(Duration::ZERO);
        let now = Instant::now();
        state.spool_retry_at = Some(now.checked_add(pause).unwrap_or(now));
    }

    /// A spool write succeeded: the spool is healthy again.
    pub(super) fn spool_succeeded(&self) {
        let mut state = self.lock();
        if state.spool_retry_at.is_some() {
            state.spool_backoff.succeeded();
            state.spool_retry_at = None;
        }
    }

    /// Rows waiting in memory, new or to retry.
    pub(super) fn queued(&self) -> usize {
        self.lock().queued()
    }

    /// Nothing queued, in flight or in the spool: every row is stored.
    pub(super) fn is_idle(&self) -> bool {
        let state = self.lock();
        state.queued() == 0 && !state.spool_dirty && state.in_flight == 0
    }

    /// Nothing queued and nothing in the spool: the writer may stop.
    pub(super) fn is_drained(&self) -> bool {
        let state = self.lock();
        state.queued() == 0 && !state.spool_dirty
    }

    /// Nudges the writer to look at the queue now.
    pub(super) fn wake_writer(&self) {
        self.writer_wake.notify_one();
    }

    /// Begins shutdown and wakes both threads.
    pub(super) fn close(&self) {
        self.lock().closing = true;
        self.writer_wake.notify_all();
        self.spool_wake.notify_all();
    }

    /// Waits, then takes a batch to retry, else up to a batch of new rows.
    /// A patient writer (one backing off) waits `pause` from now, even
    /// through shutdown, so that a dead store is not hammered; otherwise
    /// the wait ends when a batch is full, shutdown begins, or `pause` (the
    /// flush interval) has passed since the queue was last emptied — not
    /// since the last transaction ended, so a long transaction does not add
    /// an interval to the time a row waits.
    pub(super) fn take_batch(&self, pause: Duration, patient: bool) -> Round {
        let mut state = self.lock();
        // A pause too long for `Instant` (a huge configured backoff) is a year.
        let now = Instant::now();
        let from = if patient { now } else { state.emptied_at };
        let wait_until = from
            .checked_add(pause)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400));
        loop {
            let ready = !patient && (state.closing || state.rows.len() >= self.batch_size);
            let now = Instant::now();
            if ready || now >= wait_until {
                break;
            }
            state = self
                .writer_wake
                .wait_timeout(state, wait_until - now)
                .map(|(state, _)| state)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let batch = match state.pop_retry() {
            Some(batch) => Some(batch),
            None if state.rows.is_empty() => None,
            None => {
                let take = state.rows.len().min(self.batch_size);
                Some(WatchBatch::new(state.rows.drain(..take).collect()))
            }
        };
        if state.rows.is_empty() {
            state.emptied_at = Instant::now();
        }
        let batch = batch.map(|batch| {
            let rows = batch.records.len();
            state.hand_out(batch, rows)
        });
        Round {
            batch,
            closing: state.closing,
            spool_dirty: state.spool_dirty,
        }
    }

    /// The batch is stored.
    pub(super) fn complete<T>(&self, taken: InFlight<T>) {
        self.lock().give_back(taken);
    }

    /// The batch failed: it goes back to the front, to be retried first
    /// under the same id. Returns the newest rows if that took the queue
    /// over its bound, for the caller to spill.
    pub(super) fn requeue(
        &self,
        taken: InFlight<WatchBatch>,
    ) -> Option<InFlight<Vec<WatchRecord>>> {
        let mut state = self.lock();
        let batch = state.give_back(taken);
        state.push_retry(batch, true);
        let over = state.queued() > self.memory_limit;
        let spills = state.spool_usable(self.spills);
        let excess = (spills && over).then(|| self.excess(&mut state));
        if over && !spills {
            state.drop_oldest(self.memory_limit);
        }
        state.note_peak();
        let report = state.drops_to_report();
        drop(state);
        self.report_drops(report);
        excess
    }

    /// Rows that can go nowhere (shutdown with the store down and no
    /// spool): counted as dropped, loudly.
    pub(super) fn drop_all<T>(&self, taken: InFlight<T>) {
        let rows = taken.rows;
        let mut state = self.lock();
        state.give_back(taken);
        state.dropped += rows as u64;
        drop(state);
        tracing::error!(
            rows,
            "watch-log store unavailable at shutdown and no spool file configured: rows dropped"
        );
    }

    /// The spool has dealt with the batches: each is in the spool file or
    /// was counted as dropped by the spool. Called under the spool's lock,
    /// so that a replay emptying the file cannot clear the flag this sets.
    pub(super) fn spooled(&self, taken: InFlight<Vec<WatchBatch>>) {
        let mut state = self.lock();
        state.give_back(taken);
        state.spool_dirty = true;
    }

    /// A spool write failed at batch `unwritten`: the batches before it are
    /// in the spool file (`any_written`) or were counted as dropped by the
    /// spool, the rest were not written. With `keep`, those come back as new rows (a
    /// spill only ever takes new rows, so no batch id is lost) and the
    /// oldest rows over the bound are dropped, as if there were no spool;
    /// without it (the end of shutdown) they are dropped. Either way the
    /// spool is left alone for a backoff ([`Queue::spool_failed`]). Called
    /// under the spool's lock.
    pub(super) fn spill_failed(
        &self,
        taken: InFlight<Vec<WatchBatch>>,
        unwritten: usize,
        any_written: bool,
        keep: bool,
    ) {
        let mut state = self.lock();
        let batches = state.give_back(taken);
        state.spool_dirty |= any_written;
        let rest = batches.into_iter().skip(unwritten);
        if keep {
            for batch in rest {
                state.rows.extend(batch.records);
            }
            state.drop_oldest(self.memory_limit);
        } else {
            let rows: usize = rest.map(|batch| batch.records.len()).sum();
            state.dropped += rows as u64;
            state.dropped_unreported += rows as u64;
        }
        state.note_peak();
        Self::back_off_spool(&mut state);
        let report = state.drops_to_report();
        drop(state);
        self.report_drops(report);
    }

    /// The spool file is empty again. Called under the spool's lock.
    pub(super) fn spool_replayed(&self) {
        self.lock().spool_dirty = false;
    }

    /// Blocks until the spool should take rows, then takes them; `None`
    /// once shutdown begins. Nothing is taken while the spool is backing off
    /// after a failure. Past half the memory bound it takes the newest rows
    /// down to a quarter of it (so that spills are rare and large). And
    /// when the writer has not taken the new rows a quarter of a flush
    /// interval after it should have (a transaction that runs long, a
    /// writer starved of CPU), it takes them all: a `write` to the spool
    /// file is what keeps them through a `kill -9`, and the writer replays
    /// them first, in order, at its next round. Never returns an empty
    /// take: a queue past its mark that holds only batches to retry is
    /// looked at again later.
    pub(super) fn take_excess(&self) -> Option<InFlight<Vec<WatchRecord>>> {
        let mut state = self.lock();
        loop {
            if state.closing {
                return None;
            }
            let now = Instant::now();
            let handoff_at = match (self.handoff, state.rows.is_empty()) {
                (Some(after), false) => state.emptied_at.checked_add(after),
                _ => None,
            };
            let wait = match state.spool_retry_at {
                Some(at) if at > now => Some(at - now),
                _ if state.queued() > self.spill_at() && state.rows.len() > self.keep(&state) => {
                    return Some(self.excess(&mut state))
                }
                _ => match handoff_at {
                    Some(at) if at <= now => return Some(self.hand_off(&mut state)),
                    Some(at) if state.queued() > self.spill_at() => Some((at - now).min(RECHECK)),
                    Some(at) => Some(at - now),
                    None if state.queued() > self.spill_at() => Some(RECHECK),
                    None => None,
                },
            };
            state = match wait {
                None => self
                    .spool_wake
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(wait) => self
                    .spool_wake
                    .wait_timeout(state, wait)
                    .map(|(state, _)| state)
                    .unwrap_or_else(|e| e.into_inner().0),
            };
        }
    }

    // Every new row, for the spool: the writer has not taken them in time.
    fn hand_off(&self, state: &mut State) -> InFlight<Vec<WatchRecord>> {
        let rows: Vec<WatchRecord> = state.rows.drain(..).collect();
        state.emptied_at = Instant::now();
        let n = rows.len();
        state.hand_out(rows, n)
    }

    // New rows a spill leaves in memory: a quarter of the bound, less the
    // batches to retry.
    fn keep(&self, state: &State) -> usize {
        (self.memory_limit / 4).saturating_sub(state.retry_rows)
    }

    fn excess(&self, state: &mut State) -> InFlight<Vec<WatchRecord>> {
        let keep = self.keep(state);
        let excess: Vec<WatchRecord> = if state.rows.len() > keep {
            state.rows.drain(keep..).collect()
        } else {
            Vec::new()
        };
        let rows = excess.len();
        state.hand_out(excess, rows)
    }

    /// Everything left, for the spool at the end of shutdown: `failed` (the
    /// batch the writer held), the batches to retry, then the new rows.
    pub(super) fn take_all(
        &self,
        failed: Option<InFlight<WatchBatch>>,
    ) -> InFlight<Vec<WatchBatch>> {
        let mut state = self.lock();
        let mut batches: Vec<WatchBatch> = failed.map(|f| state.give_back(f)).into_iter().collect();
        batches.extend(state.retry.drain(..));
        state.retry_rows = 0;
        let rows: Vec<WatchRecord> = state.rows.drain(..).collect();
        batches.extend(into_batches(rows, self.batch_size));
        let rows = batches.iter().map(|b| b.records.len()).sum();
        state.hand_out(batches, rows)
    }
}

/// Cuts rows into batches of at most `size` under fresh ids.
fn into_batches(rows: Vec<WatchRecord>, size: usize) -> Vec<WatchBatch> {
    let size = size.max(1);
    let mut batches = Vec::with_capacity(rows.len().div_ceil(size));
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        batches.push(WatchBatch::new(rows.by_ref().take(size).collect()));
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn record(i: u64) -> WatchRecord {
        WatchRecord {
            created_at: Utc::now(),
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

    fn queue_of(n: u64, batch_size: usize, memory_limit: usize) -> Queue {
        let queue = Queue::new(
            batch_size,
            memory_limit,
            true,
            false,
            Duration::from_secs(5),
            Duration::from_secs(3600),
        );
        for i in 0..n {
            queue.push(record(i));
        }
        queue
    }

    #[test]
    fn rows_in_flight_keep_the_queue_busy_until_given_back() {
        let queue = queue_of(5, 3, 100);
        let round = queue.take_batch(Duration::ZERO, false);
        let batch = round.batch.unwrap();
        assert_eq!((batch.rows(), queue.queued()), (3, 2));
        assert!(!queue.is_idle(), "three rows in flight, two queued");
        assert!(queue.requeue(batch).is_none());
        assert_eq!(queue.queued(), 5);
        // A requeued batch comes back first, under the same id.
        let again = queue.take_batch(Duration::ZERO, false).batch.unwrap();
        assert_eq!(again.records[0].bytes_sent, 0);
        queue.complete(again);
        let rest = queue.take_batch(Duration::ZERO, false).batch.unwrap();
        assert_eq!(rest.rows(), 2);
        assert!(!queue.is_idle());
        queue.complete(rest);
        assert!(queue.is_idle());
        assert!(queue.take_batch(Duration::ZERO, false).batch.is_none());
    }

    #[test]
    fn without_a_spool_the_oldest_rows_make_room() {
        let queue = Queue::new(
            4,
            10,
            false,
            false,
            Duration::from_secs(5),
            Duration::from_secs(3600),
        );
        for i in 0..25 {
            queue.push(record(i));
        }
        assert_eq!(
            (queue.queued(), queue.dropped(), queue.peak()),
            (10, 15, 10)
        );
        // The writer takes the oldest four, fails, and puts them back while
        // three more rows arrived: the oldest go again.
        let batch = queue.take_batch(Duration::ZERO, false).batch.unwrap();
        assert_eq!(batch.records[0].bytes_sent, 15);
        for i in 25..28 {
            queue.push(record(i));
        }
        assert!(queue.requeue(batch).is_none());
        assert_eq!((queue.queued(), queue.dropped()), (10, 18));
        let mut kept = Vec::new();
        while let Some(batch) = queue.take_batch(Duration::ZERO, false).batch {
            kept.extend(batch.records.iter().map(|r| r.bytes_sent));
            queue.complete(batch);
        }
        assert_eq!(
            kept,
            (18..28).collect::<Vec<u64>>(),
            "the newest ten, in order"
        );
        assert!(queue.is_idle());
    }

    #[test]
    fn a_failed_spool_is_left_alone_and_the_bound_drops_meanwhile() {
        let queue = queue_of(10, 4, 12);
        let excess = queue.take_excess().unwrap().into_batches(4);
        assert_eq!((excess.rows(), queue.queued()), (7, 3));
        // The spool could not write them: back into memory.
        queue.spill_failed(excess, 0, false, true);
        assert!(!queue.spool_usable());
        assert_eq!((queue.queued(), queue.dropped()), (10, 0));
        let round = queue.take_batch(Duration::ZERO, false);
        assert!(!round.spool_dirty, "nothing reached the spool file");
        assert!(queue.requeue(round.batch.unwrap()).is_none());
        // Meanwhile a full queue drops its oldest rows instead of handing
        // the request a spill, and the spooler waits the backoff out.
        for i in 10..18 {
            queue.push(record(i));
        }
        assert_eq!((queue.queued(), queue.dropped()), (12, 6));
        let t0 = Instant::now();
        let excess = queue.take_excess().unwrap();
        assert!(
            t0.elapsed() >= Duration::from_millis(40),
            "{:?}",
            t0.elapsed()
        );
        assert!(queue.spool_usable(), "the backoff has passed");
        assert_eq!(excess.rows(), 9);
        queue.spooled(excess.into_batches(4));
        queue.spool_succeeded();
        assert!(!queue.is_drained(), "the spool holds rows");
        assert_eq!(queue.queued(), 3);
    }

    #[test]
    fn rows_the_writer_does_not_take_in_time_are_handed_to_the_spool() {
        let flush = Duration::from_millis(100);
        let queue = Queue::new(100, 1000, true, false, Duration::from_secs(5), flush);
        // The writer takes on time: from when the queue was last emptied,
        // not from when it asked.
        std::thread::sleep(Duration::from_millis(60));
        queue.push(record(0));
        let t0 = Instant::now();
        let round = queue.take_batch(flush, false);
        assert!(
            t0.elapsed() < Duration::from_millis(80),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(round.batch.as_ref().map(|b| b.rows()), Some(1));
        // Now the writer is busy (its transaction runs long): the spooler
        // takes the rows that came meanwhile, a quarter interval late.
        let emptied = Instant::now();
        for i in 1..4 {
            queue.push(record(i));
        }
        let handed = queue.take_excess().unwrap();
        let waited = emptied.elapsed();
        assert!(
            waited >= Duration::from_millis(120) && waited < Duration::from_millis(400),
            "{waited:?}"
        );
        assert_eq!((handed.rows(), queue.queued()), (3, 0));
        queue.complete(round.batch.unwrap());
        queue.spooled(handed.into_batches(100));
        assert!(!queue.is_drained(), "the spool holds them");
        // Without a spool nothing is handed off.
        let plain = Queue::new(100, 1000, false, false, Duration::from_secs(5), flush);
        plain.push(record(0));
        plain.close();
        assert!(plain.take_excess().is_none());
    }

    #[test]
    fn the_spooler_never_takes_an_empty_excess() {
        // A bound of 8 with a batch of 6 to retry: past the mark, but no new
        // rows beyond a quarter to move.
        let queue = queue_of(6, 6, 8);
        let batch = queue.take_batch(Duration::ZERO, false).batch.unwrap();
        assert!(queue.requeue(batch).is_none());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| tx.send(queue.take_excess().map(|e| e.rows())).unwrap());
            assert!(
                rx.recv_timeout(Duration::from_millis(300)).is_err(),
                "it waits"
            );
            queue.close();
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), None);
        });
    }

    #[test]
    fn excess_and_shutdown_leftovers_go_through_the_spool_bookkeeping() {
        let queue = queue_of(11, 4, 20);
        let excess = queue.take_excess().unwrap();
        assert_eq!(
            (excess.rows(), queue.queued()),
            (6, 5),
            "past half the bound, down to a quarter"
        );
        let batches = excess.into_batches(4);
        assert_eq!(batches.len(), 2);
        queue.spooled(batches);
        assert!(!queue.is_drained(), "the spool holds rows");
        let held = queue.take_batch(Duration::ZERO, false).batch;
        let all = queue.take_all(held);
        assert_eq!((all.rows(), queue.queued()), (5, 0));
        queue.drop_all(all);
        assert_eq!((queue.queued(), queue.dropped()), (0, 5));
        queue.spool_replayed();
        queue.close();
        assert!(queue.take_excess().is_none());
        assert!(queue.is_idle(), "every row stored, spooled or dropped");
    }
}
