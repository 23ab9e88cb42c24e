//! The [`WatchLogStore`] trait: all the logging layer and the tools know.

use super::analytics::DayCount;
use super::record::{Cursor, LogFilter, Page, PathStats, WatchBatch};

/// An error of a store; the writer retries and spools on any of them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had (database down, pool exhausted).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A query failed.
    #[error("database error: {0}")]
    Query(String),
    /// Migrations could not be run.
    #[error("migration failed: {0}")]
    Migration(String),
    /// The database URL is not understood.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    Url(String),
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
}

impl<T: WatchLogStore + ?Sized> WatchLogStore for std::sync::Arc<T> {
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
    fn path_stats(&self, filter: &LogFilter, limit: usize) -> Result<Vec<PathStats>, StoreError> {
        (**self).path_stats(filter, limit)
    }
    fn views_per_day(&self, filter: &LogFilter) -> Result<Vec<DayCount>, StoreError> {
        (**self).views_per_day(filter)
    }
}
