//! The spool file: batches the store could not take yet, one JSON line
//! each, appended and fsynced, replayed (also after a restart) once the
//! store answers.
//!
//! One lock covers the file and the queue's spool flag: an append and a
//! replay never interleave, and a replay that empties the file cannot clear
//! the flag an append after it set.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::queue::{InFlight, Queue};
use crate::log::record::WatchBatch;

/// The spool file at one path.
#[derive(Debug)]
pub(super) struct Spool {
    path: Mutex<PathBuf>,
}

impl Spool {
    /// The spool at `path` (created on the first append).
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path: Mutex::new(path),
        }
    }

    /// Whether a spool file at `path` holds rows (left by an earlier run).
    pub(super) fn has_rows(path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
    }

    fn lock(&self) -> MutexGuard<'_, PathBuf> {
        self.path.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `batches`, one JSON line each, and fsyncs; marks the queue's
    /// spool dirty. If the file cannot be written the batches go back into
    /// memory, to retry. Returns how many rows were spooled.
    pub(super) fn append(&self, queue: &Queue, batches: InFlight<Vec<WatchBatch>>) -> usize {
        let rows = batches.rows();
        let path = self.lock();
        match write_lines(&path, &batches) {
            Ok(()) => {
                queue.spooled(batches);
                rows
            }
            Err(err) => {
                tracing::error!(%err, path = %path.display(), "cannot write the watch-log spool; rows kept in memory");
                drop(path);
                queue.requeue_all(batches);
                0
            }
        }
    }

    /// Hands every spooled batch to `store` in order, then empties the file
    /// and clears the queue's spool flag. Stops at the first batch `store`
    /// refuses (returns false) and keeps the file, to replay later: batches
    /// already stored are then skipped by their ids. Returns the rows
    /// replayed, or `None` if the replay must be tried again.
    pub(super) fn replay(
        &self,
        queue: &Queue,
        mut store: impl FnMut(&WatchBatch) -> bool,
    ) -> Option<u64> {
        let path = self.lock();
        let file = match File::open(&*path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                queue.spool_replayed();
                return Some(0);
            }
            Err(err) => {
                tracing::error!(%err, "cannot read the watch-log spool");
                return None;
            }
        };
        let mut replayed = 0u64;
        for line in BufReader::new(file).lines() {
            let Ok(line) = line else { break };
            // A line cut by a crash mid-append does not parse: skip it.
            let Ok(batch) = serde_json::from_str::<WatchBatch>(&line) else {
                continue;
            };
            if !store(&batch) {
                return None;
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
        queue.spool_replayed();
        tracing::info!(rows = replayed, "watch-log spool replayed");
        Some(replayed)
    }
}

fn write_lines(path: &Path, batches: &[WatchBatch]) -> std::io::Result<()> {
    let rows: usize = batches.iter().map(|b| b.records.len()).sum();
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut buf = Vec::with_capacity(rows * 256);
    for batch in batches {
        serde_json::to_writer(&mut buf, batch).map_err(std::io::Error::other)?;
        buf.push(b'\n');
    }
    file.write_all(&buf)?;
    file.sync_data()
}
