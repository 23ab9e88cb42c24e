//! The spool file: rows the store could not take yet, one JSON line per
//! batch, appended, and replayed (also after a restart) once the store
//! answers.
//!
//! A replay first renames the file aside (`<spool>.<time>.<id>.replay`), so
//! appends go on into a fresh file while the renamed one is stored at
//! leisure, and a renamed file never changes again. Lines that carry no
//! batch id (rows journaled one at a time by a durable log) are grouped into
//! batches named after the renamed file and their first line, so a replay
//! interrupted by a crash groups and names them the same way next time and
//! the store skips what it already holds.
//!
//! One lock covers the open file and the queue's spool flag: a replay that
//! finds the spool empty cannot clear the flag an append after it set.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::queue::{InFlight, Queue};
use crate::log::record::{WatchBatch, WatchRecord};

/// The spool file at one path, and the files renamed aside for replay.
#[derive(Debug)]
pub(super) struct Spool {
    path: PathBuf,
    // The file appends go to, opened on the first append after a rename.
    file: Mutex<Option<File>>,
}

impl Spool {
    /// The spool at `path` (created on the first append). A file an earlier
    /// run left there is renamed aside at once: its last line may have been
    /// cut by a crash, and a new append must not continue it.
    pub(super) fn new(path: PathBuf) -> Self {
        let spool = Self {
            path,
            file: Mutex::new(None),
        };
        let mut file = spool.lock();
        if let Err(err) = spool.rename_aside(&mut file) {
            tracing::error!(%err, path = %spool.path.display(), "cannot set the watch-log spool aside for replay");
        }
        drop(file);
        spool
    }

    /// Whether the spool at `path`, or a file renamed aside from it, holds
    /// rows (left by an earlier run).
    pub(super) fn has_rows(path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| m.len() > 0) || !renamed_aside(path).is_empty()
    }

    /// Bytes in the file and in files set aside for replay.
    pub(super) fn bytes(&self) -> u64 {
        std::iter::once(self.path.clone())
            .chain(renamed_aside(&self.path))
            .filter_map(|path| std::fs::metadata(path).ok())
            .map(|meta| meta.len())
            .sum()
    }

    fn lock(&self) -> MutexGuard<'_, Option<File>> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `batches`, one JSON line each, and fsyncs; marks the queue's
    /// spool dirty. If the file cannot be written the batches go back into
    /// memory, to retry. Returns how many rows were spooled.
    pub(super) fn append(&self, queue: &Queue, batches: InFlight<Vec<WatchBatch>>) -> usize {
        let rows = batches.rows();
        let mut buf = Vec::with_capacity(rows * 256);
        for batch in batches.iter() {
            // Serialising plain data into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut buf, batch);
            buf.push(b'\n');
        }
        let mut file = self.lock();
        match self.write(&mut file, &buf).and_then(|f| f.sync_data()) {
            Ok(()) => {
                queue.spooled(batches);
                rows
            }
            Err(err) => {
                drop(file);
                tracing::error!(%err, path = %self.path.display(), "cannot write the watch-log spool; rows kept in memory");
                queue.requeue_all(batches);
                0
            }
        }
    }

    /// Journals one row (a line without a batch id) with a single `write`,
    /// without waiting for the disk: once this returns, the row survives the
    /// process being killed. [`Spool::sync`] makes it survive a power loss.
    pub(super) fn journal(&self, queue: &Queue, record: &WatchRecord) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(320);
        line.extend_from_slice(br#"{"id":"","records":["#);
        serde_json::to_writer(&mut line, record).map_err(std::io::Error::other)?;
        line.extend_from_slice(b"]}\n");
        let mut file = self.lock();
        self.write(&mut file, &line)?;
        queue.journaled();
        Ok(())
    }

    /// Flushes journaled rows to the disk (off the lock, on a duplicate of
    /// the handle, so that requests journaling meanwhile do not wait).
    pub(super) fn sync(&self) {
        let file = self.lock().as_ref().map(File::try_clone);
        if let Some(Err(err)) | Some(Ok(Err(err))) = file.map(|f| f.map(|f| f.sync_data())) {
            tracing::warn!(%err, "cannot fsync the watch-log journal");
        }
    }

    /// Writes `buf` at the end of the open file (opening it if needed).
    fn write<'a>(&self, file: &'a mut Option<File>, buf: &[u8]) -> std::io::Result<&'a mut File> {
        let file = match file {
            Some(file) => file,
            None => file.insert(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            ),
        };
        file.write_all(buf)?;
        Ok(file)
    }

    /// Renames a non-empty spool file aside, for replay; the next append
    /// opens a new one.
    fn rename_aside(&self, file: &mut Option<File>) -> std::io::Result<()> {
        match std::fs::metadata(&self.path) {
            Ok(meta) if meta.len() > 0 => {}
            Ok(_) => return Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err),
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let id = uuid::Uuid::new_v4().simple().to_string();
        let aside = PathBuf::from(format!(
            "{}.{nanos:020}.{}.replay",
            self.path.display(),
            &id[..12]
        ));
        std::fs::rename(&self.path, aside)?;
        *file = None;
        Ok(())
    }

    /// Hands every spooled batch to `store`, oldest file first, deleting
    /// each file once stored; clears the queue's spool flag when nothing is
    /// left. Stops at the first batch `store` refuses (returns false) and
    /// keeps that file, to replay later: batches already stored are then
    /// skipped by their ids. Returns the rows replayed, or `None` if the
    /// replay must be tried again.
    pub(super) fn replay(
        &self,
        queue: &Queue,
        batch_size: usize,
        mut store: impl FnMut(&WatchBatch) -> bool,
    ) -> Option<u64> {
        // Files set aside earlier (a replay the store interrupted) go first;
        // only then is the current file set aside, so that an outage leaves
        // one file aside, not one per attempt.
        let mut aside = renamed_aside(&self.path);
        if aside.is_empty() {
            if let Err(err) = self.rename_aside(&mut self.lock()) {
                tracing::error!(%err, "cannot set the watch-log spool aside for replay");
                return None;
            }
            aside = renamed_aside(&self.path);
        }
        let mut replayed = 0u64;
        for aside in aside {
            let file = match File::open(&aside) {
                Ok(file) => file,
                Err(err) => {
                    tracing::error!(%err, path = %aside.display(), "cannot read the watch-log spool");
                    return None;
                }
            };
            let name = aside
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            replayed += replay_file(file, &name, batch_size.max(1), &mut store)?;
            if let Err(err) = std::fs::remove_file(&aside) {
                tracing::error!(%err, path = %aside.display(), "cannot remove a replayed watch-log spool; it will be replayed again (harmless)");
            }
        }
        let file = self.lock();
        let empty = std::fs::metadata(&self.path).map_or(true, |m| m.len() == 0);
        if empty && renamed_aside(&self.path).is_empty() {
            queue.spool_replayed();
        }
        drop(file);
        if replayed > 0 {
            tracing::info!(rows = replayed, "watch-log spool replayed");
        }
        Some(replayed)
    }
}

/// Stores the batches of one renamed-aside file; `None` if `store` refused
/// one.
fn replay_file(
    file: File,
    name: &str,
    batch_size: usize,
    store: &mut impl FnMut(&WatchBatch) -> bool,
) -> Option<u64> {
    let mut replayed = 0u64;
    // Journaled rows waiting to be grouped, named after the line the group
    // began at.
    let mut group = WatchBatch {
        id: String::new(),
        records: Vec::new(),
    };
    let mut stored = |batch: &WatchBatch, replayed: &mut u64| {
        *replayed += batch.records.len() as u64;
        batch.records.is_empty() || store(batch)
    };
    for (line_no, line) in BufReader::new(file).lines().enumerate() {
        let Ok(line) = line else { break };
        // A line cut by a crash mid-append does not parse: skip it.
        let Ok(batch) = serde_json::from_str::<WatchBatch>(&line) else {
            continue;
        };
        if !batch.id.is_empty() {
            // A spilled batch keeps its own id; the journaled rows before it
            // are stored first, to keep the order.
            if !stored(&group, &mut replayed) || !stored(&batch, &mut replayed) {
                return None;
            }
            group.records.clear();
            continue;
        }
        if group.records.is_empty() {
            group.id = format!("{name}:{line_no}");
        }
        group.records.extend(batch.records);
        if group.records.len() >= batch_size {
            if !stored(&group, &mut replayed) {
                return None;
            }
            group.records.clear();
        }
    }
    stored(&group, &mut replayed).then_some(replayed)
}

/// The files renamed aside from the spool at `path`, oldest first.
fn renamed_aside(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().map(|n| n.to_string_lossy()).is_some_and(|n| {
                n.starts_with(&prefix) && n.ends_with(".replay") && n.len() > prefix.len()
            })
        })
        .collect();
    // The names carry the time of the rename, zero-padded: sorting by name
    // is sorting by age.
    found.sort();
    found
}
