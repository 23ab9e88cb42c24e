//! [`WatchLogWriter`]: takes rows off the request path and into the store.
//!
//! Requests hand rows to a [`WatchLogSink`] (a short, non-blocking push onto
//! an in-memory queue). A writer thread takes batches (size- and
//! time-bounded) and inserts each in one transaction; when the store fails it
//! keeps the rows and retries with exponential backoff. A spool thread keeps
//! the queue under its memory bound by appending the excess to a local
//! append-only spool file (JSON lines, one batch per line), which the writer
//! replays once the store answers again. Every batch carries an id the store
//! commits with its rows, and a batch keeps its id through retries and the
//! spool, so a replay or a retry after an ambiguous commit never duplicates a
//! row.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::record::{WatchBatch, WatchRecord};
use super::store::WatchLogStore;

/// Tuning of a [`WatchLogWriter`].
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Most rows per transaction (default 5 000). The writer also flushes
    /// every `flush_interval`, so under load a transaction carries what
    /// arrived in that time: fewer, larger transactions write each index
    /// page once for many rows.
    pub batch_size: usize,
    /// Longest a row waits before its batch is written (default 200 ms).
    pub flush_interval: Duration,
    /// Rows kept in memory before the excess goes to the spool (default 50 000).
    pub memory_limit: usize,
    /// Spool file; `None` keeps every row in memory instead (default `None`).
    pub spool_path: Option<PathBuf>,
    /// Longest pause between retries while the store fails (default 5 s).
    pub max_backoff: Duration,
    /// How long [`WriterHandle::shutdown`] keeps trying the store before it
    /// spools what is left (default 10 s).
    pub shutdown_timeout: Duration,
    /// Runs the writer and spool threads at the lowest CPU priority (default
    /// true): when the CPU is saturated, streams come first and rows wait in
    /// the queue (bounded by the spool) instead.
    pub low_priority: bool,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            batch_size: 5_000,
            flush_interval: Duration::from_millis(200),
            memory_limit: 50_000,
            spool_path: None,
            max_backoff: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            low_priority: true,
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
    /// Rows appended to the spool file so far.
    pub spooled: u64,
    /// Rows replayed from the spool into the store.
    pub replayed: u64,
    /// Failed store calls.
    pub failures: u64,
    /// Rows waiting in memory now.
    pub queued: u64,
}

#[derive(Default)]
struct Counters {
    recorded: AtomicU64,
    written: AtomicU64,
    spooled: AtomicU64,
    replayed: AtomicU64,
    failures: AtomicU64,
}

struct Queue {
    rows: VecDeque<WatchRecord>,
    // Batches that already have an id (a store call failed, perhaps after
    // committing): retried as they are, so the id keeps them idempotent.
    retry: VecDeque<WatchBatch>,
    closing: bool,
    // Set when the spool file holds rows not yet replayed.
    spool_dirty: bool,
    // Rows taken off the queue by the writer or the spooler and not yet
    // stored, spooled or put back.
    in_flight: usize,
}

impl Queue {
    /// Rows waiting in memory, new or to retry.
    fn queued(&self) -> usize {
        self.rows.len() + self.retry.iter().map(|b| b.records.len()).sum::<usize>()
    }
}

struct Shared {
    queue: Mutex<Queue>,
    // Wakes the writer: rows arrived, or shutdown.
    writer_wake: Condvar,
    // Wakes the spooler: the queue is over its bound, or shutdown.
    spool_wake: Condvar,
    spool: Option<Mutex<PathBuf>>,
    counters: Counters,
    config: WriterConfig,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue stays usable even if a thread panicked holding it.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
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
    /// Queues one row. Rows recorded after shutdown began are still queued
    /// and written by the final drain.
    pub fn record(&self, record: WatchRecord) {
        self.shared
            .counters
            .recorded
            .fetch_add(1, Ordering::Relaxed);
        let mut queue = self.shared.lock();
        queue.rows.push_back(record);
        let len = queue.rows.len();
        drop(queue);
        // Wake a thread only on the transition: a wake-up per request would
        // cost a system call each while the writer is busy.
        if len == self.shared.config.batch_size {
            self.shared.writer_wake.notify_one();
        }
        if len == self.shared.config.memory_limit + 1 {
            self.shared.spool_wake.notify_one();
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
        let spool_dirty = config
            .spool_path
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .is_some_and(|m| m.len() > 0);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                rows: VecDeque::new(),
                retry: VecDeque::new(),
                closing: false,
                spool_dirty,
                in_flight: 0,
            }),
            writer_wake: Condvar::new(),
            spool_wake: Condvar::new(),
            spool: config.spool_path.clone().map(Mutex::new),
            counters: Counters::default(),
            config,
        });
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("sage-stream-log-writer".into())
                .spawn(move || {
                    lower_priority(&shared.config);
                    run_writer(&shared, &store)
                })?
        };
        let spooler = if shared.spool.is_some() {
            let shared = Arc::clone(&shared);
            Some(
                std::thread::Builder::new()
                    .name("sage-stream-log-spool".into())
                    .spawn(move || {
                        lower_priority(&shared.config);
                        run_spooler(&shared)
                    })?,
            )
        } else {
            None
        };
        Ok((
            WatchLogSink {
                shared: Arc::clone(&shared),
            },
            WriterHandle {
                shared,
                writer: Some(writer),
                spooler,
            },
        ))
    }
}

/// Controls a running writer: statistics and shutdown.
pub struct WriterHandle {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    spooler: Option<JoinHandle<()>>,
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
        let c = &self.shared.counters;
        WriterStats {
            recorded: c.recorded.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            spooled: c.spooled.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            queued: self.shared.lock().queued() as u64,
        }
    }

    /// Blocks until every recorded row is in the store (queue, batch in
    /// flight and spool all empty) or `timeout` passes; returns whether it
    /// got there.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let queue = self.shared.lock();
                if queue.queued() == 0 && !queue.spool_dirty && queue.in_flight == 0 {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.shared.writer_wake.notify_one();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the writer: writes what is queued (trying the store for up to
    /// [`WriterConfig::shutdown_timeout`]), spools whatever the store would
    /// not take, and returns the final counters. Blocking.
    pub fn shutdown(mut self) -> WriterStats {
        self.shared.lock().closing = true;
        self.shared.writer_wake.notify_all();
        self.shared.spool_wake.notify_all();
        for thread in [self.writer.take(), self.spooler.take()]
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

fn lower_priority(config: &WriterConfig) {
    if config.low_priority {
        if let Err(err) =
            thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
        {
            tracing::debug!(?err, "could not lower the watch-log thread's priority");
        }
    }
}

/// Cuts rows into batches of at most `size` under fresh ids.
fn into_batches(rows: Vec<WatchRecord>, size: usize) -> Vec<WatchBatch> {
    let mut batches = Vec::with_capacity(rows.len().div_ceil(size.max(1)));
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        batches.push(WatchBatch::new(rows.by_ref().take(size.max(1)).collect()));
    }
    batches
}

fn run_writer<S: WatchLogStore>(shared: &Shared, store: &S) {
    let config = &shared.config;
    let mut backoff = Duration::ZERO;
    let mut closing_since: Option<Instant> = None;
    loop {
        // Wait for a full batch, the flush interval, or shutdown; then take
        // a batch to retry, else a new one.
        let (batch, closing, spool_dirty) = {
            let mut queue = shared.lock();
            // While backing off, wait the pause out even on shutdown, so a
            // dead store is not hammered; otherwise stop at a full batch.
            let pause = if backoff.is_zero() {
                config.flush_interval
            } else {
                backoff
            };
            let wait_until = Instant::now() + pause;
            loop {
                let ready =
                    backoff.is_zero() && (queue.closing || queue.rows.len() >= config.batch_size);
                let now = Instant::now();
                if ready || now >= wait_until {
                    break;
                }
                queue = shared
                    .writer_wake
                    .wait_timeout(queue, wait_until - now)
                    .map(|(q, _)| q)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            let batch = match queue.retry.pop_front() {
                Some(batch) => Some(batch),
                None if queue.rows.is_empty() => None,
                None => {
                    let take = queue.rows.len().min(config.batch_size.max(1));
                    Some(WatchBatch::new(queue.rows.drain(..take).collect()))
                }
            };
            queue.in_flight += batch.as_ref().map_or(0, |b| b.records.len());
            (batch, queue.closing, queue.spool_dirty)
        };
        if closing && closing_since.is_none() {
            closing_since = Some(Instant::now());
        }
        let give_up = closing_since.is_some_and(|t| t.elapsed() >= config.shutdown_timeout);

        let mut ok = true;
        if spool_dirty && !give_up {
            ok = replay_spool(shared, store);
        }
        // The batch counts as handled only once the store has taken it.
        let mut failed = None;
        if let Some(batch) = batch {
            if !ok || give_up {
                failed = Some(batch);
            } else {
                match store_batch(shared, store, &batch) {
                    Ok(()) => shared.lock().in_flight -= batch.records.len(),
                    Err(err) => {
                        ok = false;
                        tracing::warn!(%err, rows = batch.records.len(), "watch log write failed; will retry");
                        failed = Some(batch);
                    }
                }
            }
        }
        if give_up {
            // Out of time: everything left goes to the spool (or back into
            // memory, loudly, when there is none).
            let (batches, spilled) = {
                let mut queue = shared.lock();
                let taken = failed.as_ref().map_or(0, |b| b.records.len());
                let mut batches: Vec<WatchBatch> = failed.into_iter().collect();
                batches.extend(queue.retry.drain(..));
                let rows: Vec<WatchRecord> = queue.rows.drain(..).collect();
                batches.extend(into_batches(rows, config.batch_size));
                let total: usize = batches.iter().map(|b| b.records.len()).sum();
                queue.in_flight = queue.in_flight - taken + total;
                (batches, total)
            };
            if !batches.is_empty() {
                spill(shared, batches);
            }
            shared.lock().in_flight -= spilled;
            return;
        }
        let stored = failed.is_none();
        if let Some(batch) = failed {
            let mut queue = shared.lock();
            queue.in_flight -= batch.records.len();
            queue.retry.push_front(batch);
        }
        backoff = if ok && stored {
            Duration::ZERO
        } else {
            (backoff * 2).clamp(Duration::from_millis(50), config.max_backoff)
        };
        if closing && ok && stored {
            let queue = shared.lock();
            if queue.queued() == 0 && !queue.spool_dirty {
                return;
            }
        }
    }
}

/// One store call, counted: rows written, or a failure.
fn store_batch<S: WatchLogStore>(
    shared: &Shared,
    store: &S,
    batch: &WatchBatch,
) -> Result<(), super::StoreError> {
    match store.insert_batch(batch) {
        Ok(n) => {
            shared
                .counters
                .written
                .fetch_add(n as u64, Ordering::Relaxed);
            Ok(())
        }
        Err(err) => {
            shared.counters.failures.fetch_add(1, Ordering::Relaxed);
            Err(err)
        }
    }
}

fn run_spooler(shared: &Shared) {
    let limit = shared.config.memory_limit;
    loop {
        let excess = {
            let mut queue = shared.lock();
            while queue.rows.len() <= limit && !queue.closing {
                queue = shared
                    .spool_wake
                    .wait(queue)
                    .unwrap_or_else(|e| e.into_inner());
            }
            if queue.closing {
                return;
            }
            // Spill the newest rows down to half the bound, so spills are rare.
            let keep = limit / 2;
            let excess: Vec<WatchRecord> = queue.rows.drain(keep..).collect();
            queue.in_flight += excess.len();
            excess
        };
        let spilled = excess.len();
        spill(shared, into_batches(excess, shared.config.batch_size));
        shared.lock().in_flight -= spilled;
    }
}

/// Appends batches to the spool, one JSON line each; without a spool (or if
/// it cannot be written), keeps them in memory to retry.
fn spill(shared: &Shared, batches: Vec<WatchBatch>) {
    let rows: usize = batches.iter().map(|b| b.records.len()).sum();
    let Some(spool) = &shared.spool else {
        tracing::error!(
            rows,
            "watch log store unavailable and no spool file configured; rows kept in memory"
        );
        shared.lock().retry.extend(batches);
        return;
    };
    let path = spool.lock().unwrap_or_else(|e| e.into_inner());
    let written = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new().create(true).append(true).open(&*path)?;
        let mut buf = Vec::with_capacity(rows * 256);
        for batch in &batches {
            serde_json::to_writer(&mut buf, batch).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        file.write_all(&buf)?;
        file.sync_data()
    })();
    match written {
        Ok(()) => {
            shared
                .counters
                .spooled
                .fetch_add(rows as u64, Ordering::Relaxed);
            shared.lock().spool_dirty = true;
        }
        Err(err) => {
            tracing::error!(%err, path = %path.display(), "cannot write the watch-log spool; rows kept in memory");
            drop(path);
            shared.lock().retry.extend(batches);
        }
    }
}

/// Inserts every spooled batch, then empties the spool. Returns false if
/// the store failed (the spool is kept and replayed later; batches already
/// stored are then skipped by their ids).
fn replay_spool<S: WatchLogStore>(shared: &Shared, store: &S) -> bool {
    let Some(spool) = &shared.spool else {
        shared.lock().spool_dirty = false;
        return true;
    };
    let path = spool.lock().unwrap_or_else(|e| e.into_inner());
    let file = match File::open(&*path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            shared.lock().spool_dirty = false;
            return true;
        }
        Err(err) => {
            tracing::error!(%err, "cannot read the watch-log spool");
            return false;
        }
    };
    let mut replayed = 0u64;
    for line in BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        // A line cut by a crash mid-append does not parse: skip it.
        let Ok(batch) = serde_json::from_str::<WatchBatch>(&line) else {
            continue;
        };
        if let Err(err) = store_batch(shared, store, &batch) {
            tracing::warn!(%err, "watch-log spool replay failed; will retry");
            return false;
        }
        replayed += batch.records.len() as u64;
    }
    if let Err(err) = OpenOptions::new()
        .write(true)
        .open(&*path)
        .and_then(|f| f.set_len(0))
    {
        tracing::error!(%err, "cannot empty the watch-log spool; it will be replayed again (harmless)");
    }
    shared
        .counters
        .replayed
        .fetch_add(replayed, Ordering::Relaxed);
    shared.lock().spool_dirty = false;
    tracing::info!(rows = replayed, "watch-log spool replayed");
    true
}
