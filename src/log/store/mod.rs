//! Where watch-log rows are kept: the [`WatchLogStore`] trait, its
//! [`StoreError`], and the backends.
//!
//! The trait knows only the write model ([`WatchBatch`]) and the read models
//! of [`query`](super::query); nothing here depends on reporting. Each
//! backend is its own file: [`MemoryStore`] (`memory.rs`), `SqliteStore`
//! (`sqlite.rs`, feature `sqlite`) and `PgStore` (`postgres.rs`, feature
//! `postgres`); what the two diesel backends share is in `shared.rs`.
//!
//! # Example
//!
//! ```
//! use sage_stream::log::{open_store, LogFilter, WatchBatch, WatchLogStore};
//!
//! let store = open_store("memory://")?;
//! assert_eq!(store.insert_batch(&WatchBatch::new(Vec::new()))?, 0);
//! assert_eq!(store.count(&LogFilter::default())?, 0);
//! # Ok::<(), sage_stream::log::StoreError>(())
//! ```

use std::sync::Arc;

use chrono::NaiveDateTime;

use super::query::{Cursor, DayCount, LogFilter, Page, PathStats};
use super::record::WatchBatch;

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod schema;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod shared;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::PgStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// The cause of a [`StoreError`], kept for [`std::error::Error::source`].
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error of a store.
///
/// [`StoreError::is_unavailable`] tells a database that cannot take the call
/// now (retry the same call later) from one that refused the call itself
/// (the same data will fail again). The writer retries and spools on both.
/// Each message includes its cause, which [`source`](std::error::Error::source)
/// also returns.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not take the call now: no connection (down, pool
    /// exhausted), the connection was lost, or it is busy, locked or
    /// read-only. The same call may succeed later.
    #[error("watch-log database unavailable: {source}")]
    Unavailable {
        /// What failed.
        #[source]
        source: BoxError,
    },
    /// The database refused the call: a constraint, a value it cannot store
    /// or read back, a malformed query. Retrying the same data fails again.
    #[error("watch-log query failed: {source}")]
    Query {
        /// What the database answered.
        #[source]
        source: BoxError,
    },
    /// The migrations could not be run.
    #[error("watch-log migrations failed: {source}")]
    Migration {
        /// What failed.
        #[source]
        source: BoxError,
    },
    /// The database URL names no backend this crate knows.
    #[error(
        "unsupported database URL {:?}: use sqlite://PATH, postgres://... or memory://",
        scheme(url)
    )]
    UnsupportedUrl {
        /// The URL as given (the message shows only its scheme, `Debug`
        /// hides its password).
        url: String,
    },
    /// The URL names a backend this build leaves out.
    #[error("this build of sage-stream has no {feature} backend (Cargo feature `{feature}`)")]
    BackendDisabled {
        /// The Cargo feature that would add it: `sqlite` or `postgres`.
        feature: &'static str,
    },
}

impl std::fmt::Debug for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable { source } => f
                .debug_struct("Unavailable")
                .field("source", source)
                .finish(),
            Self::Query { source } => f.debug_struct("Query").field("source", source).finish(),
            Self::Migration { source } => {
                f.debug_struct("Migration").field("source", source).finish()
            }
            // The URL may carry a password.
            Self::UnsupportedUrl { url } => f
                .debug_struct("UnsupportedUrl")
                .field("url", &crate::redact_url(url))
                .finish(),
            Self::BackendDisabled { feature } => f
                .debug_struct("BackendDisabled")
                .field("feature", feature)
                .finish(),
        }
    }
}

impl StoreError {
    /// Whether the database could not take the call now (connection or
    /// availability), as opposed to refusing it (data, query, migration,
    /// configuration). A batch that failed so may be retried whole.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// [`StoreError::Unavailable`] caused by `source`.
    pub(crate) fn unavailable(source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            source: source.into(),
        }
    }
}

/// The URL up to its scheme, for a message about the scheme.
fn scheme(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://..."),
        None => crate::redact_url(url),
    }
}

/// Rows per chunk of [`WatchLogStore::prune`]: each chunk is one short
/// statement, so a large prune never holds the log's tables for long.
pub const PRUNE_CHUNK: usize = 5_000;

/// `cutoff` in whole microseconds, as both databases store time: a row
/// stored at the cutoff's microsecond is not older than it on any backend.
pub(super) fn cutoff(cutoff: NaiveDateTime) -> NaiveDateTime {
    chrono::SubsecRound::trunc_subsecs(cutoff, 6)
}

/// The cutoff that keeps `age` of history: now minus `age`, UTC, as
/// [`WatchLogStore::prune`] takes it. An age beyond the calendar keeps
/// everything.
pub fn retention_cutoff(age: std::time::Duration) -> NaiveDateTime {
    let now = chrono::Utc::now();
    chrono::TimeDelta::from_std(age)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .map_or(NaiveDateTime::MIN, |t| t.naive_utc())
}

/// What a prune deleted, or ([`WatchLogStore::prunable`]) would delete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Watch-log rows created before the cutoff.
    pub rows: u64,
    /// Batch ids (see [`WatchBatch`]) stored before the cutoff.
    pub batches: u64,
}

impl std::ops::AddAssign for Pruned {
    fn add_assign(&mut self, other: Self) {
        self.rows += other.rows;
        self.batches += other.batches;
    }
}

/// Storage for watch-log rows.
///
/// Methods **block** (they do database I/O): call them from a blocking
/// thread, as the [writer](super::WatchLogWriter) does, or through
/// `tokio::task::spawn_blocking`.
pub trait WatchLogStore: Send + Sync + 'static {
    /// Runs pending migrations.
    fn migrate(&self) -> Result<(), StoreError>;

    /// Stores the batch's rows and its id in one transaction. A batch whose
    /// id is already stored is skipped, so retrying a batch never duplicates
    /// rows. Returns how many rows this call stored (0 for a repeat).
    fn insert_batch(&self, batch: &WatchBatch) -> Result<usize, StoreError>;

    /// Rows matching `filter`, newest first (`created_at`, then `id`),
    /// starting after `after`, at most `limit`.
    fn query(
        &self,
        filter: &LogFilter,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// How many rows match `filter`.
    fn count(&self, filter: &LogFilter) -> Result<u64, StoreError>;

    /// Totals per path for rows matching `filter`, most viewed first.
    fn path_stats(&self, filter: &LogFilter, limit: usize) -> Result<Vec<PathStats>, StoreError>;

    /// Rows matching `filter` per UTC day, oldest first.
    fn views_per_day(&self, filter: &LogFilter) -> Result<Vec<DayCount>, StoreError>;

    /// The greatest stored batch id (compared as text) that starts with
    /// `prefix`, if any. An import that names its batches by a zero-padded
    /// position resumes after it (`sage-stream import-django` does).
    fn last_batch_id(&self, prefix: &str) -> Result<Option<String>, StoreError>;

    /// Checks that the store answers, for readiness probes. The default
    /// runs [`migrate`](Self::migrate), which for the diesel stores checks
    /// out a pooled connection (r2d2 tests it with a query first, within
    /// the pool's connection timeout).
    fn ping(&self) -> Result<(), StoreError> {
        self.migrate()
    }

    /// Deletes at most `limit` rows created before `cutoff` (UTC), oldest
    /// first, and at most `limit` batch ids stored before it, each through
    /// the table's time index in a statement of its own; returns how many
    /// went. [`WatchLogStore::prune`] repeats it until nothing is left.
    ///
    /// A batch id only guards against storing the same batch twice, and a
    /// batch is stored after its rows were recorded: one stored before the
    /// cutoff holds only rows that are older still, so it goes with them.
    fn prune_chunk(&self, cutoff: NaiveDateTime, limit: usize) -> Result<Pruned, StoreError>;

    /// How many rows and batch ids [`WatchLogStore::prune`] would delete
    /// for `cutoff`.
    fn prunable(&self, cutoff: NaiveDateTime) -> Result<Pruned, StoreError>;

    /// Deletes every row created before `cutoff` (UTC) and every batch id
    /// stored before it, [`PRUNE_CHUNK`] at a time so that writers wait
    /// for one short statement at most; returns how many went.
    fn prune(&self, cutoff: NaiveDateTime) -> Result<Pruned, StoreError> {
        let mut total = Pruned::default();
        loop {
            let chunk = self.prune_chunk(cutoff, PRUNE_CHUNK)?;
            total += chunk;
            if chunk.rows < PRUNE_CHUNK as u64 && chunk.batches < PRUNE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}

impl<T: WatchLogStore + ?Sized> WatchLogStore for Arc<T> {
    fn migrate(&self) -> Result<(), StoreError> {
        (**self).migrate()
    }
    fn insert_batch(&self, batch: &WatchBatch) -> Result<usize, StoreError> {
        (**self).insert_batch(batch)
    }
    fn query(
        &self,
        filter: &LogFilter,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        (**self).query(filter, after, limit)
    }
    fn count(&self, filter: &LogFilter) -> Result<u64, StoreError> {
        (**self).count(filter)
    }
    fn last_batch_id(&self, prefix: &str) -> Result<Option<String>, StoreError> {
        (**self).last_batch_id(prefix)
    }
    fn ping(&self) -> Result<(), StoreError> {
        (**self).ping()
    }
    fn path_stats(&self, filter: &LogFilter, limit: usize) -> Result<Vec<PathStats>, StoreError> {
        (**self).path_stats(filter, limit)
    }
    fn views_per_day(&self, filter: &LogFilter) -> Result<Vec<DayCount>, StoreError> {
        (**self).views_per_day(filter)
    }
    fn prune_chunk(&self, cutoff: NaiveDateTime, limit: usize) -> Result<Pruned, StoreError> {
        (**self).prune_chunk(cutoff, limit)
    }
    fn prunable(&self, cutoff: NaiveDateTime) -> Result<Pruned, StoreError> {
        (**self).prunable(cutoff)
    }
    fn prune(&self, cutoff: NaiveDateTime) -> Result<Pruned, StoreError> {
        (**self).prune(cutoff)
    }
}

/// Opens the store a URL names: `sqlite://PATH` with feature `sqlite`,
/// `postgres://...` or `postgresql://...` with feature `postgres`, or
/// `memory://` (a [`MemoryStore`]: nothing survives a restart). Runs
/// migrations (for PostgreSQL, later if the server is down now). Blocking.
pub fn open_store(url: &str) -> Result<Arc<dyn WatchLogStore>, StoreError> {
    if url == "memory://" {
        return Ok(Arc::new(MemoryStore::new()));
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        #[cfg(feature = "sqlite")]
        return Ok(Arc::new(SqliteStore::open(path)?));
        #[cfg(not(feature = "sqlite"))]
        {
            let _ = path;
            return Err(StoreError::BackendDisabled { feature: "sqlite" });
        }
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return Ok(Arc::new(PgStore::connect(url)?));
        #[cfg(not(feature = "postgres"))]
        return Err(StoreError::BackendDisabled {
            feature: "postgres",
        });
    }
    Err(StoreError::UnsupportedUrl {
        url: url.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn errors_keep_their_source_and_hide_passwords() {
        let err = StoreError::unavailable("connection refused");
        assert!(err.is_unavailable());
        assert_eq!(
            err.to_string(),
            "watch-log database unavailable: connection refused"
        );
        assert_eq!(
            err.source().map(ToString::to_string).as_deref(),
            Some("connection refused")
        );
        let Err(err) = open_store("mysql://me:secret@db/log") else {
            panic!("mysql is not a backend");
        };
        assert!(!err.is_unavailable());
        assert!(!err.to_string().contains("secret"), "{err}");
        // The URL is kept (for the caller), never shown.
        assert!(!format!("{err:?}").contains("secret"), "{err:?}");
        assert!(
            format!("{err:?}").contains("mysql://me:***@db/log"),
            "{err:?}"
        );
        assert!(matches!(err, StoreError::UnsupportedUrl { url } if url.contains("secret")));
    }
}
