//! The retention thread: deletes rows older than
//! [`WriterConfig::retention`](super::WriterConfig::retention) (and the
//! batch ids stored before the same cutoff) when the writer starts and then
//! every `retention_interval`, a chunk at a time, at the writer's priority.
//!
//! A thread of its own rather than a turn of the writer's loop: a first
//! prune of a large backlog takes many chunks, and rows keep being written
//! meanwhile (each chunk is one short statement, so the two interleave).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::{Counters, Shared};
use crate::log::store::{retention_cutoff, Pruned, StoreError, WatchLogStore, PRUNE_CHUNK};

/// Longest wait before a prune that failed (the store was down) is tried
/// again, when the interval is longer.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Tells the retention thread to stop, waking it from its wait.
#[derive(Debug, Default)]
pub(super) struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    /// Stops the thread at its next check: during its wait, or between two
    /// chunks of a prune.
    pub(super) fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }

    fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits `pause` or until stopped; returns whether it was stopped.
    fn wait(&self, pause: Duration) -> bool {
        let stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        let (stopped, _) = self
            .wake
            .wait_timeout_while(stopped, pause, |stopped| !*stopped)
            .unwrap_or_else(|e| e.into_inner());
        *stopped
    }
}

/// The thread's loop: a prune now, then one per `interval` until stopped.
pub(super) fn run_retention<S: WatchLogStore>(shared: &Shared, store: &S, keep: Duration) {
    let stop = &shared.retention;
    let interval = shared.config.retention_interval;
    loop {
        let cutoff = retention_cutoff(keep);
        let pause = match prune(shared, store, cutoff) {
            Ok(Some(pruned)) => {
                tracing::info!(
                    rows = pruned.rows,
                    batch_ids = pruned.batches,
                    "watch-log retention: pruned {} rows created before {} UTC",
                    pruned.rows,
                    cutoff.format("%Y-%m-%d %H:%M:%S")
                );
                interval
            }
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(%err, "watch-log retention: prune failed; will retry");
                interval.min(RETRY_AFTER)
            }
        };
        if stop.wait(pause) {
            return;
        }
    }
}

/// Prunes chunk by chunk, counting each as it goes; `None` if stopped
/// between two chunks.
fn prune<S: WatchLogStore>(
    shared: &Shared,
    store: &S,
    cutoff: chrono::NaiveDateTime,
) -> Result<Option<Pruned>, StoreError> {
    let mut total = Pruned::default();
    loop {
        if shared.retention.is_stopped() {
            return Ok(None);
        }
        let chunk = store.prune_chunk(cutoff, PRUNE_CHUNK)?;
        Counters::add(&shared.counters.pruned, chunk.rows as usize);
        total += chunk;
        if chunk.rows < PRUNE_CHUNK as u64 && chunk.batches < PRUNE_CHUNK as u64 {
            return Ok(Some(total));
        }
    }
}
