//! The writer's threads: the writer (batches into the store, retries,
//! replays), the spooler (keeps the queue within its bound and hands late
//! rows to the spool file) and the journal (durable rows to the spool file
//! before their responses complete).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::backoff::Backoff;
use super::queue::InFlight;
use super::spool::{ReplayError, Spool};
use super::{Counters, Shared};
use crate::log::record::{WatchBatch, WatchRecord};
use crate::log::store::{StoreError, WatchLogStore};

/// The writer thread: a round every flush interval (or full batch), a
/// backoff while the store fails; at shutdown, rounds until everything is
/// stored or the shutdown timeout passes, then the rest goes to the spool.
pub(super) fn run_writer<S: WatchLogStore>(shared: &Shared, store: &S) {
    let config = &shared.config;
    let mut backoff = Backoff::new(config.max_backoff);
    let mut closing_since: Option<Instant> = None;
    loop {
        let round = shared.queue.take_batch(
            backoff.pause(config.flush_interval),
            backoff.is_backing_off(),
        );
        if round.closing {
            closing_since.get_or_insert_with(Instant::now);
        }
        if closing_since.is_some_and(|t| t.elapsed() >= config.shutdown_timeout) {
            // Out of time: everything left goes to the spool (or back into
            // memory, loudly, when there is none).
            // The process is about to stop: rows the spool cannot take now
            // are dropped and counted, not kept in a memory about to go.
            let rest = shared.queue.take_all(round.batch);
            if rest.rows() > 0 {
                spill_or_drop(shared, rest, false);
            } else {
                shared.queue.complete(rest);
            }
            return;
        }
        let stored = write_round(shared, store, round.spool_dirty, round.batch);
        shared.backing_off.store(!stored, Ordering::Relaxed);
        if stored {
            backoff.succeeded();
            if round.closing && shared.queue.is_drained() {
                return;
            }
        } else {
            backoff.failed();
        }
    }
}

/// Stores the batch, then replays the spool if it holds rows; a batch that
/// fails goes back to the front of the queue (and the spool waits for the
/// next round). The batch goes first because it is only in memory, while
/// the spool's rows are already safe in a file: a long replay must not
/// hold rows that a `kill -9` would lose. (Rows are not stored in the order
/// they came, which nothing needs: each has its time.) Returns whether
/// everything succeeded.
fn write_round<S: WatchLogStore>(
    shared: &Shared,
    store: &S,
    spool_dirty: bool,
    batch: Option<InFlight<WatchBatch>>,
) -> bool {
    if let Some(batch) = batch {
        match store_batch(shared, store, &batch) {
            Ok(()) => shared.queue.complete(batch),
            Err(err) => {
                tracing::warn!(%err, rows = batch.rows(), "watch log write failed; will retry");
                requeue(shared, batch);
                return false;
            }
        }
    }
    match (&shared.spool, spool_dirty) {
        (Some(spool), true) => {
            // What the journal, hand-offs and spills wrote since the last
            // round reaches the disk (at most a round's worth, in a power
            // loss).
            spool.sync();
            match replay(shared, spool, store) {
                Ok(()) => true,
                Err(ReplayError::Store) => false,
                // A spool that cannot be read must not hold back the rows in
                // memory: they are stored meanwhile, the spool when it can be.
                Err(ReplayError::Io) => true,
            }
        }
        _ => true,
    }
}

/// Puts a failed batch back to retry, spilling what that takes over the
/// memory bound.
fn requeue(shared: &Shared, batch: InFlight<WatchBatch>) {
    if let Some(excess) = shared.queue.requeue(batch) {
        spill(shared, excess.into_unnamed(shared.config.batch_size));
    }
}

/// Stores every spooled batch and empties the spool; an error if the store
/// or the spool failed (the spool is kept and replayed later).
fn replay<S: WatchLogStore>(shared: &Shared, spool: &Spool, store: &S) -> Result<(), ReplayError> {
    let replayed = spool.replay(
        &shared.queue,
        shared.config.batch_size,
        |batch| match store_batch(shared, store, batch) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(%err, "watch-log spool replay failed; will retry");
                false
            }
        },
    );
    let rows = replayed?;
    shared.counters.replayed.fetch_add(rows, Ordering::Relaxed);
    Ok(())
}

/// One store call, counted: rows written, or a failure.
///
/// A batch the database refuses for its data (not for being unreachable)
/// is halved until each refused row stands alone; those go to the
/// quarantine and every other row is stored. The halves' ids derive from
/// the batch's, so a retry or a spool replay splits the same way and skips
/// the halves already stored.
fn store_batch<S: WatchLogStore>(
    shared: &Shared,
    store: &S,
    batch: &WatchBatch,
) -> Result<(), StoreError> {
    match store.insert_batch(batch) {
        Ok(n) => {
            Counters::add(&shared.counters.written, n);
            Ok(())
        }
        Err(err) => {
            Counters::add(&shared.counters.failures, 1);
            if err.is_unavailable() {
                return Err(err);
            }
            if let [record] = batch.records.as_slice() {
                quarantine(shared, record, &err);
                return Ok(());
            }
            let (first, second) = batch.records.split_at(batch.records.len() / 2);
            for (i, half) in [first, second].into_iter().enumerate() {
                let half = WatchBatch {
                    id: format!("{}.{i}", batch.id),
                    records: half.to_vec(),
                };
                store_batch(shared, store, &half)?;
            }
            Ok(())
        }
    }
}

/// Sets aside a row the database will never take, loudly.
fn quarantine(shared: &Shared, record: &WatchRecord, err: &StoreError) {
    Counters::add(&shared.counters.quarantined, 1);
    let line = serde_json::to_string(record).unwrap_or_default();
    let path = shared.config.quarantine_path.clone().or_else(|| {
        shared
            .config
            .spool_path
            .as_ref()
            .map(|spool| spool.with_extension("quarantine"))
    });
    let Some(path) = path else {
        tracing::error!(%err, row = %line, "watch-log row refused by the database; not stored");
        return;
    };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes()));
    match written {
        Ok(()) => tracing::error!(
            %err,
            quarantine = %path.display(),
            "watch-log row refused by the database; set aside in the quarantine"
        ),
        Err(io) => {
            tracing::error!(%err, %io, row = %line, "watch-log row refused by the database; quarantine not writable")
        }
    }
}

/// The spool thread: keeps the queue under its memory bound. After a spool
/// write failed it waits the queue's backoff out (`take_excess`) instead of
/// trying again at once.
pub(super) fn run_spooler(shared: &Shared) {
    while let Some(excess) = shared.queue.take_excess() {
        spill(shared, excess.into_unnamed(shared.config.batch_size));
    }
}

/// Appends new rows over the memory bound to the spool; what it cannot
/// write comes back into memory, within the bound.
fn spill(shared: &Shared, batches: InFlight<Vec<WatchBatch>>) {
    spill_or_drop(shared, batches, true);
}

/// Appends batches to the spool: what it cannot write comes back into
/// memory (`keep`) or is dropped and counted. Without a spool, which
/// happens only at the end of shutdown, the rows can go nowhere: dropped,
/// counted.
fn spill_or_drop(shared: &Shared, batches: InFlight<Vec<WatchBatch>>, keep: bool) {
    match &shared.spool {
        Some(spool) => {
            let spooled = spool.append(&shared.queue, batches, keep);
            Counters::add(&shared.counters.spooled, spooled);
        }
        None => shared.queue.drop_all(batches),
    }
}

/// The journal thread: appends each group of rows handed over meanwhile
/// with one `write`, then lets their responses complete. Rows it cannot
/// journal (the spool is backing off after a failure, or this write failed)
/// are queued in memory, within its bound, as without `durable`; rows that
/// do not fit the spool's bound are dropped there, counted. Ends once
/// shutdown began and the inbox is empty.
pub(super) fn run_journal(shared: &Shared) {
    let (Some(journal), Some(spool)) = (&shared.journal, &shared.spool) else {
        return;
    };
    while let Some(group) = journal.take() {
        let rest = if shared.queue.spool_usable() {
            let done = spool.journal(&shared.queue, group.rows);
            Counters::add(&shared.counters.journaled, done.written);
            done.failed
        } else {
            group.rows
        };
        for row in rest {
            shared.queue.push(row);
        }
        journal.written();
    }
}

#[cfg(test)]
mod tests {
    //! The loops through a real writer (its threads, queue and backoff)
    //! over a store that notes every call.

    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use chrono::{NaiveDateTime, Utc};

    use crate::log::query::{Cursor, DayCount, LogFilter, Page, PathStats};
    use crate::log::record::{WatchBatch, WatchRecord};
    use crate::log::store::{MemoryStore, Pruned, StoreError, WatchLogStore};
    use crate::log::writer::{WatchLogWriter, WriterConfig};

    /// One `insert_batch` call: when, the batch's id and size, whether it
    /// was stored.
    #[derive(Clone, Debug)]
    struct Call {
        at: Instant,
        id: String,
        rows: usize,
        ok: bool,
    }

    /// A memory store that notes its inserts and fails the first
    /// `fail_first` of them as unreachable.
    #[derive(Default)]
    struct Probe {
        inner: MemoryStore,
        calls: Mutex<Vec<Call>>,
        fail_first: AtomicU32,
    }

    impl Probe {
        fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }

        fn stored(&self) -> usize {
            self.inner.entries().len()
        }

        /// Polls (1 ms) until `n` rows are stored; the time it took.
        fn wait_stored(&self, n: usize, timeout: Duration) -> Duration {
            let start = Instant::now();
            while self.stored() < n {
                assert!(start.elapsed() < timeout, "{n} rows not stored in time");
                std::thread::sleep(Duration::from_millis(1));
            }
            start.elapsed()
        }
    }

    impl WatchLogStore for Probe {
        fn migrate(&self) -> Result<(), StoreError> {
            self.inner.migrate()
        }
        fn insert_batch(&self, batch: &WatchBatch) -> Result<usize, StoreError> {
            let fail = self
                .fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let result = if fail {
                Err(StoreError::unavailable("probe: down"))
            } else {
                self.inner.insert_batch(batch)
            };
            self.calls.lock().unwrap().push(Call {
                at: Instant::now(),
                id: batch.id.clone(),
                rows: batch.records.len(),
                ok: result.is_ok(),
            });
            result
        }
        fn query(
            &self,
            filter: &LogFilter,
            after: Option<Cursor>,
            limit: usize,
        ) -> Result<Page, StoreError> {
            self.inner.query(filter, after, limit)
        }
        fn count(&self, filter: &LogFilter) -> Result<u64, StoreError> {
            self.inner.count(filter)
        }
        fn path_stats(
            &self,
            filter: &LogFilter,
            limit: usize,
        ) -> Result<Vec<PathStats>, StoreError> {
            self.inner.path_stats(filter, limit)
        }
        fn views_per_day(&self, filter: &LogFilter) -> Result<Vec<DayCount>, StoreError> {
            self.inner.views_per_day(filter)
        }
        fn last_batch_id(&self, prefix: &str) -> Result<Option<String>, StoreError> {
            self.inner.last_batch_id(prefix)
        }
        fn prune_chunk(&self, cutoff: NaiveDateTime, limit: usize) -> Result<Pruned, StoreError> {
            self.inner.prune_chunk(cutoff, limit)
        }
        fn prunable(&self, cutoff: NaiveDateTime) -> Result<Pruned, StoreError> {
            self.inner.prunable(cutoff)
        }
    }

    fn row(i: u64) -> WatchRecord {
        WatchRecord {
            created_at: Utc::now(),
            path: "v.mp4".into(),
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
            range_start: Some(0),
        }
    }

    /// Every row recorded is either stored or dropped, never both, never
    /// lost.
    fn assert_counted(stats: &crate::log::WriterStats, store: &Probe) {
        assert_eq!(stats.written, store.stored() as u64);
        assert_eq!(stats.recorded, stats.written + stats.rows_dropped);
    }

    #[test]
    fn a_partial_batch_waits_for_the_flush_interval() {
        let interval = Duration::from_millis(100);
        let store = Arc::new(Probe::default());
        let config = WriterConfig::default()
            .batch_size(1000)
            .flush_interval(interval);
        let (sink, writer) = WatchLogWriter::spawn(Arc::clone(&store), config).unwrap();
        // Rows recorded together leave together, within one interval.
        for i in 0..5 {
            sink.record(row(i));
        }
        let first = store.wait_stored(5, Duration::from_secs(2));
        assert!(first <= interval + Duration::from_millis(250), "{first:?}");
        // The queue emptied when that batch was taken: a row recorded now
        // waits about one interval (less the store call and this poll).
        sink.record(row(5));
        let second = store.wait_stored(6, Duration::from_secs(2));
        assert!(second >= interval - Duration::from_millis(25), "{second:?}");
        assert!(
            second <= interval + Duration::from_millis(250),
            "{second:?}"
        );
        let sizes: Vec<usize> = store.calls().iter().map(|c| c.rows).collect();
        assert_eq!(sizes, [5, 1]);
        let stats = writer.shutdown();
        assert_eq!((stats.recorded, stats.written), (6, 6));
        assert_counted(&stats, &store);
    }

    #[test]
    fn full_batches_leave_at_once_and_shutdown_drains_the_rest() {
        let store = Arc::new(Probe::default());
        // An interval no test waits for: only a full batch or shutdown
        // makes the writer store.
        let config = WriterConfig::default()
            .batch_size(10)
            .flush_interval(Duration::from_secs(30));
        let (sink, writer) = WatchLogWriter::spawn(Arc::clone(&store), config).unwrap();
        for i in 0..25 {
            sink.record(row(i));
        }
        store.wait_stored(20, Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(store.stored(), 20, "the partial batch waits");
        let start = Instant::now();
        let stats = writer.shutdown();
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "shutdown drains now"
        );
        let sizes: Vec<usize> = store.calls().iter().map(|c| c.rows).collect();
        assert_eq!(sizes, [10, 10, 5]);
        assert!(store.calls().iter().all(|c| c.ok));
        assert_eq!((stats.written, stats.queued, stats.failures), (25, 0, 0));
        assert_counted(&stats, &store);
    }

    #[test]
    fn a_failed_batch_is_retried_under_its_id_after_a_growing_backoff() {
        let store = Arc::new(Probe::default());
        store.fail_first.store(3, Ordering::SeqCst);
        let config = WriterConfig::default()
            .flush_interval(Duration::from_millis(5))
            .max_backoff(Duration::from_millis(120));
        let (sink, writer) = WatchLogWriter::spawn(Arc::clone(&store), config).unwrap();
        for i in 0..4 {
            sink.record(row(i));
        }
        store.wait_stored(4, Duration::from_secs(3));
        let calls = store.calls();
        let oks: Vec<bool> = calls.iter().map(|c| c.ok).collect();
        assert_eq!(oks, [false, false, false, true]);
        assert!(
            calls.iter().all(|c| c.id == calls[0].id && c.rows == 4),
            "the same batch, requeued whole: {calls:?}"
        );
        // 50 ms, doubled, capped by max_backoff: 50, 100, 120.
        let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1].at - w[0].at).collect();
        for (gap, least) in gaps.iter().zip([50u64, 100, 120]) {
            assert!(*gap >= Duration::from_millis(least - 2), "{gaps:?}");
        }
        // Success resets the backoff: the next row waits an interval, not the
        // 120 ms a backoff still in force would make it wait.
        sink.record(row(4));
        let next = store.wait_stored(5, Duration::from_secs(1));
        assert!(next < Duration::from_millis(100), "{next:?}");
        let stats = writer.shutdown();
        assert_eq!(
            (stats.failures, stats.written, stats.rows_dropped),
            (3, 5, 0)
        );
        assert_counted(&stats, &store);
    }

    #[test]
    fn shutdown_with_the_store_down_and_no_spool_drops_and_counts_every_row() {
        let store = Arc::new(Probe::default());
        store.fail_first.store(u32::MAX, Ordering::SeqCst);
        let config = WriterConfig::default()
            .flush_interval(Duration::from_millis(5))
            .max_backoff(Duration::from_millis(20))
            .shutdown_timeout(Duration::from_millis(60));
        let (sink, writer) = WatchLogWriter::spawn(Arc::clone(&store), config).unwrap();
        for i in 0..7 {
            sink.record(row(i));
        }
        let start = Instant::now();
        let stats = writer.shutdown();
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "bounded by the timeout"
        );
        assert_eq!(store.stored(), 0);
        assert!(stats.failures >= 1, "{stats:?}");
        assert_eq!(
            (stats.recorded, stats.written, stats.rows_dropped),
            (7, 0, 7)
        );
        assert_eq!(stats.queued, 0);
        assert_counted(&stats, &store);
    }
}
