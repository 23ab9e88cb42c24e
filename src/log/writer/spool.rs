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
//!
//! A write that fails (the disk is full before the bound, an I/O error)
//! leaves no partial line behind: the file is cut back to its last whole
//! line, or, if even that fails, the next append first ends the cut line
//! with a byte that keeps it unparseable, so no later line is lost with it.
//! The rows not written go back to the queue, which drops (and counts) its
//! oldest rows over its bound and leaves the spool alone for a backoff
//! ([`Queue::spill_failed`]); the error log gets the first failure at once
//! and a sum per period after that.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::backoff::Throttle;
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
    // Rows deleted to keep within `max_bytes`, or that a failed write
    // could not hold.
    dropped: AtomicU64,
    // Error-log rate limits: spool writes that failed, rows dropped to keep
    // within the bound, replays the spool's own I/O stopped.
    write_failures: Mutex<Throttle>,
    bound_drops: Mutex<Throttle>,
    read_failures: Mutex<Throttle>,
}

/// What became of rows handed to [`Spool::journal`].
#[derive(Debug, Default)]
pub(super) struct Journaled {
    /// Rows in the journal.
    pub(super) written: usize,
    /// Rows the journal could not write (logged, the queue told): the
    /// caller's to keep.
    pub(super) failed: Vec<WatchRecord>,
}

/// Why a replay stopped.
#[derive(Debug)]
pub(super) enum ReplayError {
    /// The store refused a batch: try again later, in order.
    Store,
    /// The spool itself could not be read or set aside (logged).
    Io,
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
    // The open file ends in part of a line that a failed write left and
    // could not cut off.
    torn: bool,
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
            write_failures: Mutex::default(),
            bound_drops: Mutex::default(),
            read_failures: Mutex::default(),
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

    /// Appends `batches`, one JSON line each (fsynced only at shutdown: see
    /// [`Spool::sync`]); marks the queue's spool dirty. Makes room first by dropping the oldest segments; what
    /// still does not fit is the oldest batches of this append, dropped
    /// too. If a line cannot be written, it and the rest go back to the
    /// queue (`keep`: new rows, to be kept within its bound) or are counted
    /// as dropped (the end of shutdown), and the queue leaves the spool
    /// alone for a while (see the module's docs). Returns how many rows
    /// were spooled.
    pub(super) fn append(
        &self,
        queue: &Queue,
        batches: InFlight<Vec<WatchBatch>>,
        keep: bool,
    ) -> usize {
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
        // Line by line, so that a failure leaves exactly the rows not
        // written.
        let (mut rows, mut failed) = (0u64, None);
        for (i, (line, line_rows)) in lines.iter().enumerate().skip(skip) {
            if let Err(err) = self.write(&mut files, line) {
                let unwritten: u64 = lines[i..].iter().map(|(_, rows)| rows).sum();
                failed = Some((err, i, unwritten));
                break;
            }
            rows += line_rows;
            files.current_rows += line_rows;
        }
        if rows > 0 {
            // The `write` is what keeps rows through a kill; the fsync, for
            // a power loss, is the writer's before each replay (not here,
            // where it would hold up the next hand-off or a request), but
            // for the last append of a shutdown.
            if !keep {
                if let Some(Err(err)) = files.file.as_ref().map(File::sync_data) {
                    tracing::warn!(%err, path = %self.path.display(), "cannot fsync the watch-log spool");
                }
            }
            self.rotate(&mut files);
        }
        let failed = match failed {
            Some((err, at, unwritten)) => {
                queue.spill_failed(batches, at, rows > 0, keep);
                Some((err, unwritten))
            }
            None => {
                queue.spooled(batches);
                None
            }
        };
        drop(files);
        if cut_rows > 0 {
            self.report_dropped(cut_rows, "rows that do not fit in the spool");
        }
        match failed {
            Some((err, unwritten)) => self.write_failed(&err, unwritten, keep),
            None => queue.spool_succeeded(),
        }
        rows as usize
    }

    /// A write failed, leaving `rows` unwritten (kept in memory, or, at the
    /// end of shutdown, dropped, by the queue): the error log is told at
    /// once for the first failure, then in one line per period.
    fn write_failed(&self, err: &std::io::Error, rows: u64, kept: bool) {
        let report = self
            .write_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .note(rows);
        if let Some((failures, rows)) = report {
            let what = if kept {
                "kept in memory within its bound (the oldest dropped and counted)"
            } else {
                "dropped and counted"
            };
            tracing::error!(
                %err,
                failures,
                rows,
                path = %self.path.display(),
                "cannot write the watch-log spool (disk full?): the rows not written are {what}; the spool is left alone for a backoff"
            );
        }
    }

    /// Counts `rows` as dropped to keep within the bound, and says so (at
    /// once for the first drop, then one line per period).
    fn report_dropped(&self, rows: u64, what: &str) {
        self.dropped.fetch_add(rows, Ordering::Relaxed);
        let report = self
            .bound_drops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .note(rows);
        if let Some((_, rows)) = report {
            tracing::error!(
                rows,
                total_dropped = self.dropped(),
                max_bytes = self.max_bytes,
                path = %self.path.display(),
                "watch-log spool full: dropped {what}"
            );
        }
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

    /// Journals rows (a line each, without a batch id) with a single
    /// `write` for them all, without waiting for the disk: once this
    /// returns, the rows written survive the process being killed.
    /// [`Spool::sync`] makes them survive a power loss. Runs on the journal
    /// thread, never on a request's.
    ///
    /// Rows that do not fit within the bound even after the oldest segments
    /// went are dropped, oldest first, and counted. A write that fails
    /// writes nothing (see [`Spool::write`]): it is logged (rate-limited),
    /// the queue is told to leave the spool alone for a while, and the rows
    /// are given back, for the caller to keep in memory.
    pub(super) fn journal(&self, queue: &Queue, rows: Vec<WatchRecord>) -> Journaled {
        let mut buf = Vec::with_capacity(rows.len() * 320);
        let mut ends = Vec::with_capacity(rows.len());
        for record in &rows {
            buf.extend_from_slice(br#"{"id":"","records":["#);
            // Serialising plain data into a Vec cannot fail; should it, the
            // line is left unparseable (skipped at replay) by the newline.
            let _ = serde_json::to_writer(&mut buf, record);
            buf.extend_from_slice(b"]}\n");
            ends.push(buf.len());
        }
        let mut files = self.lock();
        self.make_room(&mut files, buf.len() as u64);
        let room = self.max_bytes.saturating_sub(files.total());
        // The oldest lines that do not fit go.
        let (mut skip, mut from) = (0, 0);
        while (buf.len() - from) as u64 > room && skip < rows.len() {
            from = ends[skip];
            skip += 1;
        }
        let mut written = 0;
        let mut failed = Vec::new();
        if skip < rows.len() {
            match self.write(&mut files, &buf[from..]) {
                Ok(()) => {
                    written = rows.len() - skip;
                    files.current_rows += written as u64;
                    self.rotate(&mut files);
                    queue.journaled();
                }
                Err(err) => {
                    drop(files);
                    failed = rows.into_iter().skip(skip).collect();
                    queue.spool_failed();
                    self.write_failed(&err, failed.len() as u64, true);
                    files = self.lock();
                }
            }
        }
        drop(files);
        if skip > 0 {
            self.report_dropped(skip as u64, "rows that do not fit in the journal");
        }
        if written > 0 {
            queue.spool_succeeded();
        }
        // Rows that did not fit even with the oldest segments gone were
        // dropped and counted above.
        Journaled { written, failed }
    }

    /// Flushes what was appended (journaled rows, hand-offs, spills) to the
    /// disk, off the lock, on a duplicate of the handle, so that requests
    /// and the spool thread writing meanwhile do not wait.
    pub(super) fn sync(&self) {
        let file = self.lock().file.as_ref().map(File::try_clone);
        if let Some(Err(err)) | Some(Ok(Err(err))) = file.map(|f| f.map(|f| f.sync_data())) {
            tracing::warn!(%err, "cannot fsync the watch-log spool");
        }
    }

    /// Writes `buf` (whole lines) at the end of the open file, opening it
    /// if needed, and counts its bytes. All or nothing: a write that fails
    /// part-way is cut off again, and if that fails too the file is marked
    /// torn, so that the next write first ends the partial line with a
    /// byte that keeps it unparseable (its rows were counted as lost).
    fn write(&self, files: &mut Files, buf: &[u8]) -> std::io::Result<()> {
        if files.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            files.current_bytes = file.metadata()?.len();
            files.file = Some(file);
        }
        let file = files
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("spool file not open"))?;
        if files.torn {
            file.write_all(b"!\n")?;
            files.torn = false;
            files.current_bytes = file.metadata().map_or(files.current_bytes + 2, |m| m.len());
        }
        match file.write_all(buf) {
            Ok(()) => {
                files.current_bytes += buf.len() as u64;
                Ok(())
            }
            Err(err) => {
                if file.set_len(files.current_bytes).is_err() {
                    files.torn = true;
                    files.current_bytes = file.metadata().map_or(files.current_bytes, |m| m.len());
                }
                Err(err)
            }
        }
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
        // A partial line at its end stays the last line there: unparseable,
        // skipped by the replay, its rows counted when it was cut.
        files.torn = false;
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
    /// skipped by their ids. Returns the rows replayed, or why the replay
    /// must be tried again.
    pub(super) fn replay(
        &self,
        queue: &Queue,
        batch_size: usize,
        mut store: impl FnMut(&WatchBatch) -> bool,
    ) -> Result<u64, ReplayError> {
        // Files set aside earlier (a replay the store interrupted) go first;
        // only then is the current file set aside, so that an outage leaves
        // one file aside, not one per attempt.
        let mut aside = renamed_aside(&self.path);
        if aside.is_empty() {
            if let Err(err) = self.rename_aside(&mut self.lock()) {
                self.read_failed(&err, "cannot set the watch-log spool aside for replay");
                return Err(ReplayError::Io);
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
                        self.read_failed(&err, "cannot read the watch-log spool");
                        return Err(ReplayError::Io);
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
            replayed += stored.ok_or(ReplayError::Store)?;
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
        Ok(replayed)
    }

    /// The spool could not be read or set aside for a replay: logged at
    /// once, then once per period (the writer tries every round).
    fn read_failed(&self, err: &std::io::Error, what: &str) {
        let report = self
            .read_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .note(0);
        if let Some((failures, _)) = report {
            tracing::error!(%err, failures, path = %self.path.display(), "{what}; new rows are stored meanwhile");
        }
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
    for (line_no, line) in split_lines(file).enumerate() {
        // A line cut by a crash mid-append (perhaps inside a UTF-8
        // sequence) does not parse: skip it, and only it.
        let Ok(batch) = serde_json::from_slice::<WatchBatch>(&line) else {
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
    split_lines(file)
        .filter_map(|line| serde_json::from_slice::<WatchBatch>(&line).ok())
        .map(|batch| batch.records.len() as u64)
        .sum()
}

/// The lines of a spool file as bytes (a cut line need not be UTF-8), until
/// the end or a read error.
fn split_lines(file: File) -> impl Iterator<Item = Vec<u8>> {
    BufReader::new(file).split(b'\n').map_while(Result::ok)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue for replays: room for every test's rows, nothing timed.
    fn replay_queue() -> Queue {
        Queue::new(
            10,
            100,
            true,
            true,
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(3600),
        )
    }

    fn batch_line(id: &str, bytes_sent: u64) -> String {
        let mut line = format!(
            r#"{{"id":"{id}","records":[{{"created_at":"2026-01-01T00:00:00Z","path":"a.mp4","user_id":null,"is_authenticated":false,"ip":null,"method":"GET","status":200,"range_header":null,"bytes_sent":{bytes_sent},"duration_ms":0,"user_agent":null,"completed":true}}]}}"#
        );
        line.push('\n');
        line
    }

    #[test]
    fn a_line_cut_inside_a_utf8_sequence_loses_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.spool");
        // A crash cut the middle line inside a two-byte character; the
        // lines before and after it are whole.
        let mut text = batch_line("a", 1).into_bytes();
        text.extend_from_slice(b"{\"id\":\"b\",\"records\":[{\"path\":\"caf\xc3");
        text.push(b'\n');
        text.extend_from_slice(batch_line("c", 3).as_bytes());
        std::fs::write(&path, text).unwrap();
        let spool = Spool::new(path, 1 << 20);
        let queue = replay_queue();
        let mut stored = Vec::new();
        let replayed = spool.replay(&queue, 10, |batch| {
            stored.push(batch.records[0].bytes_sent);
            true
        });
        assert_eq!(replayed.ok(), Some(2));
        assert_eq!(stored, [1, 3], "the line after the cut one is replayed");
    }

    #[test]
    fn a_torn_line_is_closed_off_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.spool");
        let spool = Spool::new(path.clone(), 1 << 20);
        let whole = batch_line("a", 1);
        let mut files = spool.lock();
        // As if a failed write had left a whole batch but its newline, and
        // could not cut it off.
        spool
            .write(&mut files, whole.trim_end().as_bytes())
            .unwrap();
        files.torn = true;
        spool
            .write(&mut files, batch_line("b", 2).as_bytes())
            .unwrap();
        drop(files);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.ends_with(&format!("}}!\n{}", batch_line("b", 2))),
            "{text}"
        );
        let queue = replay_queue();
        let mut stored = Vec::new();
        spool
            .replay(&queue, 10, |batch| {
                stored.push(batch.id.clone());
                true
            })
            .unwrap();
        assert_eq!(stored, ["b"], "the torn line, counted as lost, stays lost");
    }
}
