//! The open-file cache: recently served files stay open, with what their
//! responses need (length, `ETag`, `Last-Modified`) worked out once, so a
//! request for one of them is answered on the worker without a hop to the
//! blocking pool (nginx's `open_file_cache`).
//!
//! # Staying correct when files change
//!
//! By default every hit is checked on the worker by one `stat` of the
//! requested path: its device, inode, size, modification and change times
//! must be those of the open handle, or the entry is dropped and the file
//! opened afresh on the pool, under the confinement rules ([`MediaRoot`]:
//! `openat2(RESOLVE_BENEATH)` on Linux). A file replaced (renamed over),
//! written in place, truncated, deleted, made unreadable (`chmod` changes
//! the change time) or reached through a retargeted symlink is therefore
//! seen at once, as without the cache. The `stat` follows symlinks freely,
//! and need not do more: it only decides whether to trust a handle that
//! was opened under the rules. A path that now leads out of the root (a
//! directory swapped for a symlink) names another file, so the entry goes
//! and the confined open refuses it; the cached handle itself is always
//! the file the rules allowed. (Resolving the path under the rules on each
//! hit instead, an `O_PATH` open, `fstat` and `close`, cut 64 KiB ranges
//! × 64 to 0.82× of the single `stat`'s requests a second in
//! `bench/perf.sh`.)
//!
//! That check does not wait for a disk on a local file system: the cached
//! handle holds the file's directory entry, and so every ancestor of it, in
//! the kernel's dentry cache, so the path walk is all in memory. On a
//! network file system a lookup may go to the server; there, set
//! [`ServeMedia::open_file_cache_valid`](super::ServeMedia::open_file_cache_valid)
//! to trust the path for a while without looking. Within that window only
//! the open handle is checked (an `fstat`, no path walk): if its size or
//! modification time changed (written in place), its bytes no longer match
//! its tag and the entry is dropped; renamed over or deleted, the old file
//! is unchanged and is still served, its bytes and tag together. A new
//! file at the path is seen once the window is over.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::path::MediaRoot;
use super::respond::OpenedFile;

/// The default number of files the cache keeps open.
pub const DEFAULT_OPEN_FILE_CACHE: usize = 256;

/// An entry unused this long is closed (at the next request after that, as
/// no task runs in the background), so a deleted file's space is not held
/// for long by a handle nobody uses.
const INACTIVE: Duration = Duration::from_secs(60);

/// Files kept open, by normalised relative path. Shared by the clones of
/// one [`ServeMedia`](super::ServeMedia); a builder call that changes how
/// files are opened or described gives the service a new, empty one.
pub(crate) struct FileCache {
    capacity: usize,
    valid_for: Duration,
    // Where entries were opened: the per-hit check stats the path there.
    root: Arc<MediaRoot>,
    entries: Mutex<HashMap<Box<str>, Arc<Entry>>>,
    // Times of use and of the last sweep for inactive entries, in
    // nanoseconds since `born`.
    born: Instant,
    last_sweep: AtomicU64,
}

struct Entry {
    opened: Arc<OpenedFile>,
    identity: Identity,
    opened_at: Instant,
    last_used: AtomicU64,
}

impl FileCache {
    /// A cache of at most `capacity` open files (0: none) from `root`, each
    /// trusted for `valid_for` without a look at its path (zero: checked on
    /// every hit).
    pub(crate) fn new(capacity: usize, valid_for: Duration, root: Arc<MediaRoot>) -> Self {
        Self {
            capacity,
            valid_for,
            root,
            entries: Mutex::new(HashMap::new()),
            born: Instant::now(),
            last_sweep: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Closes the entries unused for [`INACTIVE`], at most once per tenth
    /// of it.
    fn sweep(&self, now: u64) {
        let every = u64::try_from((INACTIVE / 10).as_nanos()).unwrap_or(u64::MAX);
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < every
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let inactive = u64::try_from(INACTIVE.as_nanos()).unwrap_or(u64::MAX);
        self.lock()
            .retain(|_, e| now.saturating_sub(e.last_used.load(Ordering::Relaxed)) < inactive);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, Arc<Entry>>> {
        // The map is left consistent at every step, so a panic elsewhere
        // while it was held does not make it unusable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The open file for `relative` if it is cached and still the file the
    /// path names. Runs on the worker: one `stat` at most (see the module
    /// docs), no blocking-pool hop.
    pub(crate) fn get(&self, relative: &str) -> Option<Arc<OpenedFile>> {
        if self.capacity == 0 {
            return None;
        }
        let now = self.now();
        self.sweep(now);
        let entry = self.lock().get(relative).cloned()?;
        let fresh = if self.valid_for.is_zero() {
            // One `stat` (see `stat_followed` for why it is enough).
            self.root
                .stat_followed(relative)
                .is_some_and(|now| Identity::of(&now) == entry.identity)
        } else {
            // Within the window the path is not looked at, but the open
            // file still is (an `fstat`, no path walk): written in place,
            // its bytes are no longer those its tag describes. Renamed
            // over or deleted, it is unchanged and still served.
            entry.opened_at.elapsed() < self.valid_for
                && entry
                    .opened
                    .metadata()
                    .is_ok_and(|now| Identity::of(&now).same_content(&entry.identity))
        };
        if !fresh {
            let mut entries = self.lock();
            // Another request may have put a new entry there meanwhile.
            if entries
                .get(relative)
                .is_some_and(|current| Arc::ptr_eq(current, &entry))
            {
                entries.remove(relative);
            }
            return None;
        }
        entry.last_used.store(now, Ordering::Relaxed);
        Some(Arc::clone(&entry.opened))
    }

    /// Keeps `opened` (just opened for `relative`, described by `metadata`
    /// of the handle), evicting the least recently used entry when full.
    pub(crate) fn insert(
        &self,
        relative: &str,
        metadata: &std::fs::Metadata,
        opened: Arc<OpenedFile>,
    ) {
        if self.capacity == 0 {
            return;
        }
        let now = self.now();
        self.sweep(now);
        let entry = Arc::new(Entry {
            opened,
            identity: Identity::of(metadata),
            opened_at: Instant::now(),
            last_used: AtomicU64::new(now),
        });
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(relative) {
            // A scan, but only when a new file arrives at a full cache; the
            // capacity is a few hundred.
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed))
                .map(|(key, _)| key.clone());
            if let Some(key) = oldest {
                entries.remove(&key);
            }
        }
        entries.insert(relative.into(), entry);
    }

    /// Closes the less recently used half of the entries: the process ran
    /// out of descriptors, and idle cached files should not keep it there.
    pub(crate) fn shed_half(&self) {
        let mut entries = self.lock();
        let mut uses: Vec<u64> = entries
            .values()
            .map(|e| e.last_used.load(Ordering::Relaxed))
            .collect();
        if uses.is_empty() {
            return;
        }
        uses.sort_unstable();
        // The newer half stays (the newer one more when the count is odd).
        let cut = uses[uses.len() / 2];
        entries.retain(|_, e| e.last_used.load(Ordering::Relaxed) >= cut);
    }

    /// How many files are open in the cache now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl fmt::Debug for FileCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCache")
            .field("capacity", &self.capacity)
            .field("valid_for", &self.valid_for)
            .field("open", &self.len())
            .finish()
    }
}

/// What must not change for a cached handle to still be the file a path
/// names, unchanged: which file (device and inode), its size, and its
/// modification and change times (the change time moves on every write,
/// truncation, `chmod` and rename of the file itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    unix: (u64, u64, i64, i64),
}

impl Identity {
    /// Whether the open file still has the size and modification time its
    /// `ETag` was built from (so its bytes are still those the tag names,
    /// as far as any tag can tell). The change time is left out: it also
    /// moves when the file is renamed over or deleted, which leaves its
    /// bytes alone.
    fn same_content(&self, other: &Self) -> bool {
        self.len == other.len && self.modified == other.modified
    }

    fn of(metadata: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            #[cfg(unix)]
            unix: (
                metadata.dev(),
                metadata.ino(),
                metadata.ctime(),
                metadata.ctime_nsec(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_sheds_the_older_half() {
        let dir = tempfile::tempdir().unwrap();
        let root = Arc::new(MediaRoot::new(dir.path().canonicalize().unwrap()));
        let cache = FileCache::new(8, Duration::ZERO, root);
        for i in 0..4 {
            let path = dir.path().join(format!("f{i}"));
            std::fs::write(&path, b"x").unwrap();
            let file = std::fs::File::open(&path).unwrap();
            let metadata = file.metadata().unwrap();
            let opened = OpenedFile::new(file, &metadata, false).unwrap();
            cache.insert(&format!("f{i}"), &metadata, Arc::new(opened));
        }
        // f0 used last: it stays, with the newest of the others.
        assert!(cache.get("f0").is_some());
        cache.shed_half();
        assert_eq!(cache.len(), 2);
        assert!(cache.get("f0").is_some());
        assert!(cache.get("f3").is_some());
        assert!(cache.get("f1").is_none());
    }
}
