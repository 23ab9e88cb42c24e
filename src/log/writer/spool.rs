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
//!
//! The spool is bounded (`WriterConfig::spool_max_bytes`, counting the
//! current file and every file set aside). The current file is set aside
//! whenever it passes a sixteenth of the bound, so the spool is a row of
//! segments, oldest first; an append that would pass the bound deletes the
//! oldest segments (never the one being replayed) until it fits, counting
//! their rows as dropped and saying so in the error log. Should even an
//! empty spool be too small, the oldest batches of the append itself go.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::queue::{InFlight, Queue};
use crate::log::record::{WatchBatch, WatchRecord};

/// The spool file at one path, and the files renamed aside for replay.
#[derive(Debug)]
pub(super) struct Spool {
    path: PathBuf,
    // Most bytes in the current file and the files set aside together.
    max_bytes: u64,
    // Size past which the current file is set aside as a segment.
    segment_bytes: u64,
    files: Mutex<Files>,
    // Rows deleted to keep within `max_bytes`.
    dropped: AtomicU64,
}

/// The open file and what the spool holds, under the spool's lock.
#[derive(Debug, Default)]
struct Files {
    // The file appends go to, opened on the first append after a rename.
    file: Option<File>,
    // Bytes and rows in the current file.
    current_bytes: u64,
    current_rows: u64,
    // Bytes in the files set aside, and the rows of those this process set
    // aside (a file left by an earlier run is counted if it is dropped).
    aside_bytes: u64,
    aside_rows: HashMap<PathBuf, u64>,
    // The file being replayed: a drop leaves it alone.
    replaying: Option<PathBuf>,
}

impl Files {
    fn total(&self) -> u64 {
        self.current_bytes + self.aside_bytes
    }
}

impl Spool {
    /// The spool at `path` (created on the first append), holding at most
    /// `max_bytes`. A file an earlier run left there is renamed aside at
    /// once: its last line may have been cut by a crash, and a new append
    /// must not continue it.
    pub(super) fn new(path: PathBuf, max_bytes: u64) -> Self {
        let spool = Self {
            path,
            max_bytes,
            segment_bytes: (max_bytes / 16).max(4096),
            files: Mutex::new(Files::default()),
            dropped: AtomicU64::new(0),
        };
        let mut files = spool.lock();
        if let Err(err) = spool.rename_aside(&mut files) {
            tracing::error!(%err, path = %spool.path.display(), "cannot set the watch-log spool aside for replay");
        }
        // Its rows were not counted by this process.
        files.aside_rows.clear();
        spool.recount(&mut files);
        drop(files);
        spool
    }

    /// Rows deleted so far to keep the spool within its bound.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether the spool at `path`, or a file renamed aside from it, holds
    /// rows (left by an earlier run).
    pub(super) fn has_rows(path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| m.len() > 0) || !renamed_aside(path).is_empty()
    }

    /// Bytes in the spool's files now (the current one and those set aside).
    pub(super) fn bytes(&self) -> u64 {
        self.lock().total()
    }

    fn lock(&self) -> MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `batches`, one JSON line each, and fsyncs; marks the queue's
    /// spool dirty. Makes room first by dropping the oldest segments; what
    /// still does not fit is the oldest batches of this append, dropped
    /// too. If the file cannot be written the batches go back into memory,
    /// to retry. Returns how many rows were spooled.
    pub(super) fn append(&self, queue: &Queue, batches: InFlight<Vec<WatchBatch>>) -> usize {
        let lines: Vec<(Vec<u8>, u64)> = batches
            .iter()
            .map(|batch| {
                // Serialising plain data into a Vec cannot fail.
                let mut line = serde_json::to_vec(batch).unwrap_or_default();
                line.push(b'\n');
                (line, batch.records.len() as u64)
            })
            .collect();
        let need: u64 = lines.iter().map(|(line, _)| line.len() as u64).sum();
        let mut files = self.lock();
        self.make_room(&mut files, need);
        let room = self.max_bytes.saturating_sub(files.total());
        let (mut skip, mut left, mut cut_rows) = (0, need, 0);
        while left > room && skip < lines.len() {
            left -= lines[skip].0.len() as u64;
            cut_rows += lines[skip].1;
            skip += 1;
        }
        let kept = &lines[skip..];
        let buf: Vec<u8> = kept
            .iter()
            .flat_map(|(line, _)| line.iter().copied())
            .collect();
        let rows: u64 = kept.iter().map(|(_, rows)| rows).sum();
        let written = if buf.is_empty() {
            Ok(())
        } else {
            self.write(&mut files, &buf).and_then(|f| f.sync_data())
        };
        match written {
            Ok(()) => {
                files.current_bytes += buf.len() as u64;
                files.current_rows += rows;
                self.rotate(&mut files);
                queue.spooled(batches);
                drop(files);
                if cut_rows > 0 {
                    self.report_dropped(cut_rows, "rows that do not fit in the spool");
                }
                rows as usize
            }
            Err(err) => {
                drop(files);
                tracing::error!(%err, path = %self.path.display(), "cannot write the watch-log spool; rows kept in memory");
                queue.requeue_all(batches);
                0
            }
        }
    }

    /// Counts `rows` as dropped, loudly.
    fn report_dropped(&self, rows: u64, what: &str) {
        self.dropped.fetch_add(rows, Ordering::Relaxed);
        tracing::error!(
            rows,
            max_bytes = self.max_bytes,
            path = %self.path.display(),
            "watch-log spool full: dropped {what}"
        );
    }

    /// Deletes the oldest segments (not the one being replayed), setting
    /// the current file aside if it is all there is, until `need` more
    /// bytes fit within the bound or nothing is left to delete.
    fn make_room(&self, files: &mut Files, need: u64) {
        if files.total().saturating_add(need) <= self.max_bytes {
            return;
        }
        // Sizes from the directory itself, in case they drifted.
        self.recount(files);
        while files.total().saturating_add(need) > self.max_bytes {
            let oldest = renamed_aside(&self.path)
                .into_iter()
                .find(|aside| files.replaying.as_ref() != Some(aside));
            match oldest {
                Some(aside) => {
                    if !self.drop_segment(files, &aside) {
                        return;
                    }
                }
                None if files.current_bytes > 0 => {
                    if self.rename_aside(files).is_err() || files.current_bytes > 0 {
                        return;
                    }
                }
                None => return,
            }
        }
    }

    /// Deletes one segment, counting its rows as dropped.
    fn drop_segment(&self, files: &mut Files, aside: &Path) -> bool {
        let bytes = std::fs::metadata(aside).map_or(0, |m| m.len());
        let rows = match files.aside_rows.remove(aside) {
            Some(rows) => rows,
            None => count_rows(aside),
        };
        match std::fs::remove_file(aside) {
            Ok(()) => {
                files.aside_bytes = files.aside_bytes.saturating_sub(bytes);
                self.report_dropped(rows, "the oldest spooled rows");
                true
            }
            Err(err) => {
                tracing::error!(%err, path = %aside.display(), "cannot delete a watch-log spool segment to make room");
                false
            }
        }
    }

    /// Sets the current file aside once it is a full segment.
    fn rotate(&self, files: &mut Files) {
        if files.current_bytes >= self.segment_bytes {
            if let Err(err) = self.rename_aside(files) {
                tracing::error!(%err, path = %self.path.display(), "cannot set a full watch-log spool segment aside");
            }
        }
    }

    /// The sizes of the current file and the files set aside, read again.
    fn recount(&self, files: &mut Files) {
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        files.current_bytes = size(&self.path);
        files.aside_bytes = renamed_aside(&self.path).iter().map(|p| size(p)).sum();
    }

    /// Journals one row (a line without a batch id) with a single `write`,
    /// without waiting for the disk: once this returns, the row survives the
    /// process being killed. [`Spool::sync`] makes it survive a power loss.
    ///
    /// Returns false if the row was dropped instead: the spool is full and
    /// nothing older could make room.
    pub(super) fn journal(&self, queue: &Queue, record: &WatchRecord) -> std::io::Result<bool> {
        let mut line = Vec::with_capacity(320);
        line.extend_from_slice(br#"{"id":"","records":["#);
        serde_json::to_writer(&mut line, record).map_err(std::io::Error::other)?;
        line.extend_from_slice(b"]}\n");
        let mut files = self.lock();
        self.make_room(&mut files, line.len() as u64);
        if files.total() + line.len() as u64 > self.max_bytes {
            drop(files);
            self.report_dropped(1, "a row that does not fit in the journal");
            return Ok(false);
        }
        self.write(&mut files, &line)?;
        files.current_bytes += line.len() as u64;
        files.current_rows += 1;
        self.rotate(&mut files);
        queue.journaled();
        Ok(true)
    }

    /// Flushes journaled rows to the disk (off the lock, on a duplicate of
    /// the handle, so that requests journaling meanwhile do not wait).
    pub(super) fn sync(&self) {
        let file = self.lock().file.as_ref().map(File::try_clone);
        if let Some(Err(err)) | Some(Ok(Err(err))) = file.map(|f| f.map(|f| f.sync_data())) {
            tracing::warn!(%err, "cannot fsync the watch-log journal");
        }
    }

    /// Writes `buf` at the end of the open file (opening it if needed).
    fn write<'a>(&self, files: &'a mut Files, buf: &[u8]) -> std::io::Result<&'a mut File> {
        if files.file.is_none() {
            files.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let file = files
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("spool file not open"))?;
        file.write_all(buf)?;
        Ok(file)
    }

    /// Renames a non-empty spool file aside (a segment, for replay); the
    /// next append opens a new one.
    fn rename_aside(&self, files: &mut Files) -> std::io::Result<()> {
        let bytes = match std::fs::metadata(&self.path) {
            Ok(meta) if meta.len() > 0 => meta.len(),
            Ok(_) => {
                files.current_bytes = 0;
                return Ok(());
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                files.current_bytes = 0;
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        // Journaled rows are flushed before their file changes name (the
        // writer's periodic fsync only sees the current file).
        if let Some(Err(err)) = files.file.as_ref().map(File::sync_data) {
            tracing::warn!(%err, "cannot fsync the watch-log spool before setting it aside");
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
        std::fs::rename(&self.path, &aside)?;
        files.file = None;
        files.aside_bytes += bytes;
        files.current_bytes = 0;
        files
            .aside_rows
            .insert(aside, std::mem::take(&mut files.current_rows));
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
            // Marked under the lock, so that no drop deletes it meanwhile;
            // one already dropped to make room is skipped.
            let file = {
                let mut files = self.lock();
                match File::open(&aside) {
                    Ok(file) => {
                        files.replaying = Some(aside.clone());
                        file
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => {
                        tracing::error!(%err, path = %aside.display(), "cannot read the watch-log spool");
                        return None;
                    }
                }
            };
            let name = aside
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let stored = replay_file(file, &name, batch_size.max(1), &mut store);
            let mut files = self.lock();
            files.replaying = None;
            replayed += stored?;
            let bytes = std::fs::metadata(&aside).map_or(0, |m| m.len());
            match std::fs::remove_file(&aside) {
                Ok(()) => {
                    files.aside_bytes = files.aside_bytes.saturating_sub(bytes);
                    files.aside_rows.remove(&aside);
                }
                Err(err) => {
                    tracing::error!(%err, path = %aside.display(), "cannot remove a replayed watch-log spool; it will be replayed again (harmless)");
                }
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

/// The rows a spool file holds (for one an earlier run left, when it is
/// dropped); lines that do not parse hold none.
fn count_rows(path: &Path) -> u64 {
    let Ok(file) = File::open(path) else {
        return 0;
    };
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<WatchBatch>(&line).ok())
        .map(|batch| batch.records.len() as u64)
        .sum()
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
