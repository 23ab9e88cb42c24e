//! What the two diesel backends share: the rows they write and read, the
//! SQL of the aggregates, the mapping of diesel's errors, and the migrations
//! run on the first connection that succeeds.
//!
//! The filter's SQL is written out in each backend: diesel's boxed
//! expressions cannot be built generically over the backend.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection, R2D2Connection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

use super::schema::{watch_log_batches, watch_logs};
use super::StoreError;
use crate::log::query::{Cursor, DayCount, Page, PathStats, WatchLogEntry};
use crate::log::record::{WatchBatch, WatchRecord};

/// The write model: one row to insert. `viewer_key` is not in it: the
/// database derives that column from `user_id` and `ip`.
#[derive(Insertable)]
#[diesel(table_name = watch_logs)]
// Every column is written, also when NULL (PostgreSQL's COPY needs that).
#[diesel(treat_none_as_default_value = false)]
pub(super) struct NewWatchLog<'a> {
    pub(super) created_at: NaiveDateTime,
    pub(super) path: &'a str,
    pub(super) user_id: Option<&'a str>,
    pub(super) is_authenticated: bool,
    pub(super) ip: Option<&'a str>,
    pub(super) method: &'a str,
    pub(super) status: i32,
    pub(super) range_header: Option<&'a str>,
    pub(super) bytes_sent: i64,
    pub(super) duration_ms: i64,
    pub(super) user_agent: Option<&'a str>,
    pub(super) completed: bool,
    pub(super) range_start: Option<i64>,
}

impl<'a> From<&'a WatchRecord> for NewWatchLog<'a> {
    fn from(r: &'a WatchRecord) -> Self {
        Self {
            created_at: r.created_at.naive_utc(),
            path: &r.path,
            user_id: r.user_id.as_deref(),
            is_authenticated: r.is_authenticated,
            ip: r.ip.as_deref(),
            method: &r.method,
            status: i32::from(r.status),
            range_header: r.range_header.as_deref(),
            bytes_sent: i64::try_from(r.bytes_sent).unwrap_or(i64::MAX),
            duration_ms: i64::try_from(r.duration_ms).unwrap_or(i64::MAX),
            user_agent: r.user_agent.as_deref(),
            completed: r.completed,
            range_start: r.range_start.and_then(|n| i64::try_from(n).ok()),
        }
    }
}

/// A `LIKE` pattern (escape `\\`) matching text that starts with `prefix`.
pub(super) fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The id row a batch leaves in `watch_log_batches`.
#[derive(Insertable)]
#[diesel(table_name = watch_log_batches)]
pub(super) struct NewBatch<'a> {
    batch_id: &'a str,
    row_count: i32,
    stored_at: NaiveDateTime,
}

impl<'a> From<&'a WatchBatch> for NewBatch<'a> {
    fn from(batch: &'a WatchBatch) -> Self {
        Self {
            batch_id: &batch.id,
            row_count: i32::try_from(batch.records.len()).unwrap_or(i32::MAX),
            stored_at: chrono::Utc::now().naive_utc(),
        }
    }
}

/// A stored row as diesel loads it; the stores hand out the plain
/// [`WatchLogEntry`] instead, so diesel stays out of the public API.
#[derive(Queryable, Selectable)]
#[diesel(table_name = watch_logs)]
pub(super) struct Row {
    id: i64,
    created_at: NaiveDateTime,
    path: String,
    user_id: Option<String>,
    is_authenticated: bool,
    viewer_key: String,
    ip: Option<String>,
    method: String,
    status: i32,
    range_header: Option<String>,
    bytes_sent: i64,
    duration_ms: i64,
    user_agent: Option<String>,
    completed: bool,
    range_start: Option<i64>,
}

impl From<Row> for WatchLogEntry {
    fn from(row: Row) -> Self {
        Self {
            id: row.id,
            created_at: row.created_at,
            path: row.path,
            user_id: row.user_id,
            is_authenticated: row.is_authenticated,
            viewer_key: row.viewer_key,
            ip: row.ip,
            method: row.method,
            status: row.status,
            range_header: row.range_header,
            bytes_sent: row.bytes_sent,
            duration_ms: row.duration_ms,
            user_agent: row.user_agent,
            completed: row.completed,
            range_start: row.range_start,
        }
    }
}

/// Rows per page plus one: the extra row tells whether a next page exists.
pub(super) fn fetch_limit(limit: usize) -> i64 {
    i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)
}

/// A page from up to `limit + 1` rows loaded newest first.
pub(super) fn page(rows: Vec<Row>, limit: usize) -> Page {
    let more = rows.len() > limit;
    let entries: Vec<WatchLogEntry> = rows
        .into_iter()
        .take(limit)
        .map(WatchLogEntry::from)
        .collect();
    let next = if more {
        entries.last().map(Cursor::after)
    } else {
        None
    };
    Page { entries, next }
}

/// Distinct viewers of a group, by the generated `viewer_key`.
pub(super) const DISTINCT_VIEWERS: &str = "COUNT(DISTINCT viewer_key)";
/// Bytes sent in a group. SUM of BIGINT is NUMERIC on PostgreSQL: cast back.
pub(super) const BYTES_SENT: &str = "CAST(COALESCE(SUM(bytes_sent), 0) AS BIGINT)";
/// A row's UTC day. DATE() is SQLite's function and PostgreSQL's cast
/// syntax; as text both read YYYY-MM-DD.
pub(super) const DAY: &str = "CAST(DATE(created_at) AS TEXT)";

/// `(path, views, unique viewers, bytes sent)` as the stats query loads it.
pub(super) type PathStatsRow = (String, i64, i64, i64);

/// [`PathStats`] from the stats query's rows.
pub(super) fn path_stats(rows: Vec<PathStatsRow>) -> Vec<PathStats> {
    rows.into_iter()
        .map(|(path, views, unique_viewers, bytes_sent)| PathStats {
            path,
            views,
            unique_viewers,
            bytes_sent,
        })
        .collect()
}

/// [`DayCount`]s from `(YYYY-MM-DD, views)` rows.
pub(super) fn days(rows: Vec<(String, i64)>) -> Vec<DayCount> {
    rows.into_iter()
        .filter_map(|(day, views)| {
            chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d")
                .ok()
                .map(|day| DayCount { day, views })
        })
        .collect()
}

/// A `LIKE` pattern (escape `\`) matching text that contains `text`.
pub(super) fn like_pattern(text: &str) -> String {
    format!("%{}", like_prefix(text))
}

/// A diesel error as a [`StoreError`]: [`StoreError::Unavailable`] when the
/// connection, not the call, failed.
pub(super) fn query_error(err: DieselError) -> StoreError {
    if connection_failed(&err) {
        StoreError::Unavailable {
            source: Box::new(err),
        }
    } else {
        StoreError::Query {
            source: Box::new(err),
        }
    }
}

/// SQLite's messages for a database that cannot take a call now; diesel
/// reports them all as [`DatabaseErrorKind::Unknown`].
const SQLITE_UNAVAILABLE: [&str; 6] = [
    "database is locked",
    "database table is locked",
    "disk I/O error",
    "database or disk is full",
    "unable to open database file",
    "attempt to write a readonly database",
];

fn connection_failed(err: &DieselError) -> bool {
    match err {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::ReadOnlyTransaction
            | DatabaseErrorKind::SerializationFailure,
            _,
        )
        | DieselError::BrokenTransactionManager => true,
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            SQLITE_UNAVAILABLE
                .iter()
                .any(|message| info.message().starts_with(message))
                // PostgreSQL's missing privilege: an operator's fix, not the
                // rows' fault, so they wait instead of being quarantined.
                || info.message().starts_with("permission denied")
        }
        DieselError::RollbackErrorOnCommit { commit_error, .. } => connection_failed(commit_error),
        _ => false,
    }
}

/// Whether a store's migrations have run; shared by the store's clones.
#[derive(Clone, Debug, Default)]
pub(super) struct Migrated(Arc<AtomicBool>);

impl Migrated {
    /// [`query_error`], and when the log's tables are gone (the database was
    /// dropped and created again, say) the migrations run again on the next
    /// connection; meanwhile the store counts as unavailable, so the writer
    /// keeps the rows and retries instead of failing them.
    pub(super) fn query_error(&self, err: DieselError) -> StoreError {
        if !schema_missing(&err) {
            return query_error(err);
        }
        if self.0.swap(false, Ordering::AcqRel) {
            tracing::warn!(%err, "watch-log tables are missing; running the migrations again");
        }
        StoreError::Unavailable {
            source: Box::new(err),
        }
    }
}

/// PostgreSQL's `relation "…" does not exist` (SQLSTATE 42P01) and SQLite's
/// `no such table`, for the log's own tables.
fn schema_missing(err: &DieselError) -> bool {
    let message = match err {
        DieselError::DatabaseError(_, info) => info.message(),
        DieselError::RollbackErrorOnCommit { commit_error, .. } => {
            return schema_missing(commit_error)
        }
        _ => return false,
    };
    let ours = message.contains("watch_logs") || message.contains("watch_log_batches");
    ours && (message.contains("does not exist") || message.starts_with("no such table"))
}

/// A pooled connection, after running `migrations` on it if no connection
/// has yet: a store opened while its database was down migrates on the
/// first connection that succeeds.
pub(super) fn connection<C>(
    pool: &Pool<ConnectionManager<C>>,
    migrated: &Migrated,
    migrations: EmbeddedMigrations,
) -> Result<PooledConnection<ConnectionManager<C>>, StoreError>
where
    C: R2D2Connection + MigrationHarness<C::Backend> + 'static,
{
    let mut conn = pool.get().map_err(StoreError::unavailable)?;
    if !migrated.0.load(Ordering::Acquire) {
        conn.run_pending_migrations(migrations)
            .map_err(|source| StoreError::Migration { source })?;
        migrated.0.store(true, Ordering::Release);
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tables_rerun_the_migrations() {
        let migrated = Migrated::default();
        migrated.0.store(true, Ordering::Release);
        let gone = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("relation \"watch_log_batches\" does not exist".to_owned()),
        );
        assert!(migrated.query_error(gone).is_unavailable());
        assert!(!migrated.0.load(Ordering::Acquire), "migrations run again");
        let other = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("relation \"elsewhere\" does not exist".to_owned()),
        );
        migrated.0.store(true, Ordering::Release);
        assert!(!migrated.query_error(other).is_unavailable());
        assert!(migrated.0.load(Ordering::Acquire));
    }

    #[test]
    fn connection_failures_are_unavailable_and_refusals_are_query_errors() {
        let db =
            |kind, message: &str| DieselError::DatabaseError(kind, Box::new(message.to_owned()));
        for lost in [
            db(
                DatabaseErrorKind::ClosedConnection,
                "server closed the connection",
            ),
            db(DatabaseErrorKind::Unknown, "database is locked"),
            DieselError::BrokenTransactionManager,
        ] {
            assert!(query_error(lost).is_unavailable());
        }
        for refused in [
            db(
                DatabaseErrorKind::NotNullViolation,
                "NOT NULL constraint failed",
            ),
            db(
                DatabaseErrorKind::Unknown,
                "invalid byte sequence for encoding \"UTF8\": 0x00",
            ),
            DieselError::NotFound,
        ] {
            let err = query_error(refused);
            assert!(matches!(err, StoreError::Query { .. }), "{err}");
        }
    }

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(like_pattern(r"100%_a\b"), r"%100\%\_a\\b%");
    }
}
