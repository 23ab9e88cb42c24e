//! [`WatchLogWriter`]: takes rows off the request path and into the store.
//!
//! Requests hand rows to a [`WatchLogSink`]: a short push onto an in-memory
//! queue (or, with [`WriterConfig::durable`], onto the journal thread's
//! inbox) and nothing more — no I/O on the request's thread. A writer thread
//! takes batches (size- and time-bounded) and inserts each in one
//! transaction; when the store fails it keeps the rows and retries with
//! exponential backoff. A spool thread keeps the queue under its memory
//! bound by appending the excess to a local append-only spool file (JSON
//! lines, one batch per line), and appends the rows the writer has not
//! taken a quarter of a flush interval late (it is in a long transaction,
//! backing off, or starved of CPU), so that what a `kill -9` loses stays
//! bounded; the writer replays the spool once the store answers again.
//! With `durable`, a journal thread appends each row to the spool as its
//! response ends, before the response completes. Every batch carries an id
//! the store commits with its rows, and a batch keeps its id through
//! retries and the spool, so a replay or a retry after an ambiguous commit
//! never duplicates a row.
//!
//! All are bounded: over `memory_limit` rows in memory (the spool thread
//! fell behind, or there is no spool, or it cannot be written), and over
//! `spool_max_bytes` in the spool, the oldest rows are dropped and counted
//! ([`WriterStats::rows_dropped`]). With [`WriterConfig::retention`] another
//! thread deletes rows older than it.
//!
//! The parts: `config.rs` (the public tuning and counters), `sink.rs` (the
//! request's side), `loops.rs` (the writer's, spooler's and journal's
//! threads), `queue.rs` (the rows in memory, the count of rows in flight
//! and the memory bound), `journal.rs` (the durable journal's bounded
//! hand-off), `spool.rs` (the spool file and its bound), `retention.rs`
//! (the pruning thread), `backoff.rs` (the pause between failing rounds);
//! this file holds the shared state, the spawn and the handle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::store::WatchLogStore;

mod backoff;
mod config;
mod journal;
mod loops;
mod queue;
mod retention;
mod sink;
mod spool;

pub use config::{WriterConfig, WriterStats};
pub use sink::WatchLogSink;

use journal::Journal;
use loops::{run_journal, run_spooler, run_writer};
use queue::Queue;
use retention::{run_retention, Stop};
use spool::Spool;

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
    pub(super) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

struct Shared {
    queue: Queue,
    spool: Option<Spool>,
    // With `durable` and a spool: the journal thread's inbox.
    journal: Option<Journal>,
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
            journal_pending: self.journal.as_ref().map_or(0, Journal::pending) as u64,
            queued_peak: self.queue.peak() as u64,
            pruned: c.pruned.load(Ordering::Relaxed),
            rows_dropped: self.queue.dropped() + self.spool.as_ref().map_or(0, Spool::dropped),
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
/// id it keeps through retries and the spool ([`WatchBatch`](super::WatchBatch)), so a replay or
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
            journal: (config.durable && config.spool_path.is_some())
                .then(|| Journal::new(config.memory_limit)),
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
        // Responses wait for it: normal priority, as the spooler.
        let journal = match shared.journal {
            Some(_) => Some(spawn_named(
                "sage-stream-log-journal",
                false,
                &shared,
                run_journal,
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
                journal,
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
    journal: Option<JoinHandle<()>>,
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
            let journal_idle = self.shared.journal.as_ref().is_none_or(Journal::is_idle);
            // The journal first: its rows move on to the spool.
            if journal_idle && self.shared.queue.is_idle() {
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
        // The journal thread writes what waits for it first, so that the
        // writer's last rounds see it in the spool; rows recorded from now
        // on are queued in memory for the final drain.
        if let Some(journal) = &self.shared.journal {
            journal.close();
        }
        if let Some(thread) = self.journal.take() {
            if thread.join().is_err() {
                tracing::error!("watch-log journal thread panicked");
            }
        }
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
