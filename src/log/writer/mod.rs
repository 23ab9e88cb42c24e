//! [`WatchLogWriter`]: takes rows off the request path and into the store.
//!
//! Requests hand rows to a [`WatchLogSink`] (a short, non-blocking push onto
//! an in-memory queue). A writer thread takes batches (size- and
//! time-bounded) and inserts each in one transaction; when the store fails it
//! keeps the rows and retries with exponential backoff. A spool thread keeps
//! the queue under its memory bound by appending the excess to a local
//! append-only spool file (JSON lines, one batch per line), and appends the
//! rows the writer has not taken a quarter of a flush interval late (it is
//! in a long transaction, backing off, or starved of CPU), so that what a
//! `kill -9` loses stays bounded; the writer replays the spool once the
//! store answers again. Every batch carries an id the store
//! commits with its rows, and a batch keeps its id through retries and the
//! spool, so a replay or a retry after an ambiguous commit never duplicates a
//! row.
//!
//! Both are bounded: over `memory_limit` rows that no spool takes, and over
//! `spool_max_bytes` in the spool, the oldest rows are dropped and counted
//! ([`WriterStats::rows_dropped`]). With [`WriterConfig::retention`] a third
//! thread deletes rows older than it.
//!
//! The parts: `queue.rs` (the rows in memory, the count of rows in flight
//! and the memory bound), `spool.rs` (the spool file and its bound),
//! `retention.rs` (the pruning thread), `backoff.rs` (the pause between
//! failing rounds); this file holds the public types and the writer's and
//! spooler's loops.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::record::{WatchBatch, WatchRecord};
use super::store::{StoreError, WatchLogStore};

mod backoff;
mod queue;
mod retention;
mod spool;

use backoff::Backoff;
use queue::{InFlight, Queue};
use retention::{run_retention, Stop};
use spool::{Journaled, ReplayError, Spool};

/// Tuning of a [`WatchLogWriter`].
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Most rows per transaction (default 5 000). The writer also flushes
    /// every `flush_interval`, so under load a transaction carries what
    /// arrived in that time: fewer, larger transactions write each index
    /// page once for many rows.
    pub batch_size: usize,
    /// Longest a row waits before its batch is taken for a transaction
    /// (default 200 ms), counted from when the writer last emptied the
    /// queue, so a long transaction does not add to it. With a spool, rows
    /// the writer has not taken a quarter of an interval after that go to
    /// the spool file instead (a `write`: they survive a `kill -9`).
    pub flush_interval: Duration,
    /// Most rows kept in memory while the store is slow or down (default
    /// 50 000), besides the one batch being written. Past half of it the
    /// spool thread moves the newest rows to the spool; should it fall
    /// behind, the request that finds the queue full moves them itself.
    /// Rows no spool takes — there is none, or it cannot be written — are
    /// dropped over the bound, oldest first, counted in
    /// [`WriterStats::rows_dropped`] and reported in the error log: memory
    /// stays bounded whatever happens to the store.
    pub memory_limit: usize,
    /// Spool file (default `None`: no spool, so an outage longer than
    /// `memory_limit` rows drops the oldest rows; `sage-stream serve` always
    /// sets one).
    pub spool_path: Option<PathBuf>,
    /// Most bytes the spool holds, the files set aside for replay included
    /// (default 256 MiB). The spool is kept as segments of a sixteenth of
    /// this; an append that would pass it deletes the oldest segments first
    /// (their rows counted in [`WriterStats::rows_dropped`] and named in the
    /// error log), so a long outage keeps the newest rows, never an
    /// unbounded disk.
    pub spool_max_bytes: u64,
    /// Journals every row to the spool file as its response ends, before it
    /// is queued anywhere (default false; needs `spool_path`). A row then
    /// survives the process being killed (`kill -9`, an OOM kill, an abort)
    /// at the cost of one `write` per request on the request's thread; the
    /// writer fsyncs the journal every `flush_interval`, which bounds what a
    /// power loss can take. Without it, a killed process loses the rows
    /// not yet committed nor in the spool file: with a spool, those of the
    /// last `flush_interval` and a quarter (the spool thread hands rows the
    /// writer has not taken by then to the spool file) plus the one batch in
    /// a transaction; without a spool, every row queued (up to
    /// `memory_limit` while the store is down). docs/watch-log.md has the
    /// measured figures.
    pub durable: bool,
    /// Where rows the database refuses for their data go, one JSON line
    /// each (default `None`: beside the spool as `<spool>.quarantine`, or
    /// only the error log when there is no spool). Such a row can never be
    /// stored as it is; quarantining it lets every other row through.
    pub quarantine_path: Option<PathBuf>,
    /// Longest pause between retries while the store fails (default 5 s).
    pub max_backoff: Duration,
    /// How long [`WriterHandle::shutdown`] keeps trying the store before it
    /// spools what is left (default 10 s).
    pub shutdown_timeout: Duration,
    /// Runs the writer thread at the lowest CPU priority (default true): when
    /// the CPU is saturated, streams come first and rows wait in the queue
    /// instead. The spool thread keeps the normal priority, since it is what
    /// bounds that queue.
    pub low_priority: bool,
    /// Deletes rows older than this, with the batch ids stored before the
    /// same cutoff ([`WatchLogStore::prune`]), when the writer starts and
    /// then every `retention_interval` (default `None`: rows are kept for
    /// ever). It runs on a thread of its own at the writer's priority, a
    /// chunk of rows per statement, and is logged at info with the count.
    pub retention: Option<Duration>,
    /// How often retention runs (default 24 h).
    pub retention_interval: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            batch_size: 5_000,
            flush_interval: Duration::from_millis(200),
            memory_limit: 50_000,
            spool_path: None,
            spool_max_bytes: 256 * 1024 * 1024,
            durable: false,
            quarantine_path: None,
            max_backoff: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            low_priority: true,
            retention: None,
            retention_interval: Duration::from_secs(24 * 3600),
        }
    }
}

/// Counters of a writer, for monitoring and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Rows handed to the sink.
    pub recorded: u64,
    /// Rows the store confirmed (new rows only).
    pub written: u64,
    /// Rows appended to the spool file so far because the store was slow or
    /// down.
    pub spooled: u64,
    /// Rows journaled to the spool file as they were recorded
    /// ([`WriterConfig::durable`]).
    pub journaled: u64,
    /// Rows replayed from the spool into the store.
    pub replayed: u64,
    /// Failed store calls.
    pub failures: u64,
    /// Rows the database refused for their data, set aside in the
    /// quarantine instead of blocking the log.
    pub quarantined: u64,
    /// Rows waiting in memory now.
    pub queued: u64,
    /// The most rows that ever waited in memory at once.
    pub queued_peak: u64,
    /// Rows deleted by retention ([`WriterConfig::retention`]).
    pub pruned: u64,
    /// Rows lost to the bounds: dropped from memory over
    /// [`WriterConfig::memory_limit`] when no spool took them, and from the
    /// spool over [`WriterConfig::spool_max_bytes`]. Each drop is also in
    /// the error log.
    pub rows_dropped: u64,
}

#[derive(Default)]
struct Counters {
    recorded: AtomicU64,
    written: AtomicU64,
    spooled: AtomicU64,
    journaled: AtomicU64,
    replayed: AtomicU64,
    failures: AtomicU64,
    quarantined: AtomicU64,
    pruned: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

struct Shared {
    queue: Queue,
    spool: Option<Spool>,
    counters: Counters,
    config: WriterConfig,
    retention: Stop,
    /// The last store call failed: the writer is waiting to try again.
    backing_off: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn stats(&self) -> WriterStats {
        let c = &self.counters;
        WriterStats {
            recorded: c.recorded.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            spooled: c.spooled.load(Ordering::Relaxed),
            journaled: c.journaled.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            quarantined: c.quarantined.load(Ordering::Relaxed),
            queued: self.queue.queued() as u64,
            queued_peak: self.queue.peak() as u64,
            pruned: c.pruned.load(Ordering::Relaxed),
            rows_dropped: self.queue.dropped() + self.spool.as_ref().map_or(0, Spool::dropped),
        }
    }
}

/// Where the logging layer puts rows; cheap to clone, never blocks on I/O.
#[derive(Clone)]
pub struct WatchLogSink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WatchLogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchLogSink").finish_non_exhaustive()
    }
}

impl WatchLogSink {
    /// The writer's counters now (as [`WriterHandle::stats`]), for metrics
    /// read where only the sink is at hand.
    pub fn stats(&self) -> WriterStats {
        self.shared.stats()
    }

    /// Whether the writer's last store call failed and it is waiting to
    /// retry (rows are kept meanwhile, in memory or the spool).
    pub fn store_failing(&self) -> bool {
        self.shared.backing_off.load(Ordering::Relaxed)
    }

    /// Bytes in the spool file and in spool files set aside for replay.
    pub fn spool_bytes(&self) -> u64 {
        self.shared.spool.as_ref().map_or(0, Spool::bytes)
    }

    /// Queues one row (or, with [`WriterConfig::durable`], journals it).
    /// Rows recorded after shutdown began are still queued and written by
    /// the final drain.
    pub fn record(&self, record: WatchRecord) {
        let shared = &self.shared;
        Counters::add(&shared.counters.recorded, 1);
        // A journal that just failed is left alone for a backoff: the row
        // is queued in memory meanwhile, without a failing write per request.
        if let (true, Some(spool)) = (shared.config.durable, &shared.spool) {
            if shared.queue.spool_usable() {
                match spool.journal(&shared.queue, &record) {
                    Journaled::Written => return Counters::add(&shared.counters.journaled, 1),
                    // Dropped to keep the spool within its bound (counted there).
                    Journaled::Dropped => return,
                    // Logged there (rate-limited); kept in memory here.
                    Journaled::Failed => {}
                }
            }
        }
        if let Some(excess) = shared.queue.push(record) {
            // The spool thread fell behind: this request spills the excess
            // itself (one file append), so that memory stays bounded.
            spill(shared, excess.into_unnamed(shared.config.batch_size));
        }
    }
}

/// Takes rows off the request path and into a [`WatchLogStore`].
///
/// Requests hand rows to a [`WatchLogSink`] (a short, non-blocking push onto
/// an in-memory queue). A writer thread takes batches (size- and
/// time-bounded) and inserts each in one transaction; when the store fails
/// it keeps the rows and retries with exponential backoff. A spool thread
/// keeps the queue under its memory bound by appending the excess to a local
/// append-only spool file (JSON lines), which the writer replays once the
/// store answers again — also after a restart. Each batch is stored under an
/// id it keeps through retries and the spool ([`WatchBatch`]), so a replay or
/// a retry after an ambiguous commit never duplicates a row.
/// [`WriterHandle::shutdown`] drains everything.
#[derive(Debug)]
pub struct WatchLogWriter;

impl WatchLogWriter {
    /// Spawns the writer (and spooler) threads for `store`.
    pub fn spawn<S: WatchLogStore>(
        store: S,
        config: WriterConfig,
    ) -> std::io::Result<(WatchLogSink, WriterHandle)> {
        let spool_dirty = config.spool_path.as_deref().is_some_and(Spool::has_rows);
        let shared = Arc::new(Shared {
            queue: Queue::new(
                config.batch_size,
                config.memory_limit,
                config.spool_path.is_some(),
                spool_dirty,
                config.max_backoff,
                config.flush_interval,
            ),
            spool: config
                .spool_path
                .clone()
                .map(|path| Spool::new(path, config.spool_max_bytes)),
            counters: Counters::default(),
            config,
            retention: Stop::default(),
            backing_off: std::sync::atomic::AtomicBool::new(false),
        });
        let low = shared.config.low_priority;
        let store = Arc::new(store);
        let retention = match shared.config.retention {
            Some(keep) => {
                let store = Arc::clone(&store);
                Some(spawn_named(
                    "sage-stream-log-retention",
                    low,
                    &shared,
                    move |shared| run_retention(shared, &store, keep),
                )?)
            }
            None => None,
        };
        let writer = spawn_named("sage-stream-log-writer", low, &shared, move |shared| {
            run_writer(shared, &store)
        })?;
        let spooler = match shared.spool {
            Some(_) => Some(spawn_named(
                "sage-stream-log-spool",
                false,
                &shared,
                run_spooler,
            )?),
            None => None,
        };
        Ok((
            WatchLogSink {
                shared: Arc::clone(&shared),
            },
            WriterHandle {
                shared,
                writer: Some(writer),
                spooler,
                retention,
            },
        ))
    }
}

/// Controls a running writer: statistics and shutdown.
pub struct WriterHandle {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    spooler: Option<JoinHandle<()>>,
    retention: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

impl WriterHandle {
    /// Current counters.
    pub fn stats(&self) -> WriterStats {
        self.shared.stats()
    }

    /// Blocks until every recorded row is in the store (queue, batch in
    /// flight and spool all empty) or `timeout` passes; returns whether it
    /// got there.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if self.shared.queue.is_idle() {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            self.shared.queue.wake_writer();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the writer: writes what is queued (trying the store for up to
    /// [`WriterConfig::shutdown_timeout`]), spools whatever the store would
    /// not take, stops retention (after the chunk it may be deleting), and
    /// returns the final counters. Blocking.
    pub fn shutdown(mut self) -> WriterStats {
        self.shared.queue.close();
        self.shared.retention.stop();
        for thread in [
            self.writer.take(),
            self.spooler.take(),
            self.retention.take(),
        ]
        .into_iter()
        .flatten()
        {
            if thread.join().is_err() {
                tracing::error!("watch-log thread panicked");
            }
        }
        self.stats()
    }

    /// [`WriterHandle::shutdown`] on a blocking thread.
    pub async fn shutdown_async(self) -> WriterStats {
        tokio::task::spawn_blocking(move || self.shutdown())
            .await
            .unwrap_or_default()
    }
}

/// Spawns a named thread running `run`, at the lowest CPU priority if
/// `low_priority`.
fn spawn_named(
    name: &str,
    low_priority: bool,
    shared: &Arc<Shared>,
    run: impl FnOnce(&Shared) + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if low_priority {
                if let Err(err) = thread_priority::set_current_thread_priority(
                    thread_priority::ThreadPriority::Min,
                ) {
                    tracing::debug!(?err, "could not lower the watch-log thread's priority");
                }
            }
            run(&shared)
        })
}

/// The writer thread: a round every flush interval (or full batch), a
/// backoff while the store fails; at shutdown, rounds until everything is
/// stored or the shutdown timeout passes, then the rest goes to the spool.
fn run_writer<S: WatchLogStore>(shared: &Shared, store: &S) {
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
fn run_spooler(shared: &Shared) {
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
