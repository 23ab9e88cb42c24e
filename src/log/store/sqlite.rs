//! [`SqliteStore`]: the watch log in an SQLite file, pooled with r2d2.
//!
//! Writes are the hot path: a batch's rows go in 32 per prepared statement
//! with their timestamps formatted by hand (see [`insert_rows`]), under the
//! batch's id in the same transaction.

use std::path::Path;
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel::sql_types::{Bool, Nullable};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};

use super::schema::{watch_log_batches, watch_logs};
use super::shared::{self, Migrated, NewBatch, NewWatchLog, PathStatsRow, Row};
use super::{Pruned, StoreError, WatchLogStore};
use crate::log::query::{Cursor, DayCount, LogFilter, Page, PathStats};
use crate::log::record::{WatchBatch, WatchRecord};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Watch log in an SQLite file (bundled SQLite, nothing to install), in WAL
/// mode with a 5 s busy timeout, 16 KiB pages and an 8 MiB page cache per
/// connection. Cheap to clone: clones share one pool.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Pool<ConnectionManager<SqliteConnection>>,
    migrated: Migrated,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("pool", &self.pool.state())
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and runs its
    /// migrations. Blocking.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let url = path.as_ref().to_string_lossy().into_owned();
        let pool = Pool::builder()
            .max_size(4)
            .connection_timeout(Duration::from_secs(5))
            .connection_customizer(Box::new(SqlitePragmas))
            .build(ConnectionManager::<SqliteConnection>::new(url))
            .map_err(StoreError::unavailable)?;
        let store = Self {
            pool,
            migrated: Migrated::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    fn conn(&self) -> Result<PooledConnection<ConnectionManager<SqliteConnection>>, StoreError> {
        shared::connection(&self.pool, &self.migrated, MIGRATIONS)
    }
}

impl WatchLogStore for SqliteStore {
    fn migrate(&self) -> Result<(), StoreError> {
        self.conn().map(drop)
    }

    fn insert_batch(&self, batch: &WatchBatch) -> Result<usize, StoreError> {
        if batch.records.is_empty() {
            return Ok(0);
        }
        self.conn()?
            .transaction(|conn| insert_rows(conn, batch))
            .map_err(|e| self.migrated.query_error(e))
    }

    fn query(
        &self,
        filter: &LogFilter,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        use watch_logs::dsl;
        let mut predicate = predicate(filter);
        if let Some(cursor) = after {
            predicate = Box::new(predicate.and(rows_after(cursor)));
        }
        let rows: Vec<Row> = watch_logs::table
            .filter(predicate)
            .order((dsl::created_at.desc(), dsl::id.desc()))
            .limit(shared::fetch_limit(limit))
            .select(Row::as_select())
            .load(&mut self.conn()?)
            .map_err(|e| self.migrated.query_error(e))?;
        Ok(shared::page(rows, limit))
    }

    fn last_batch_id(&self, prefix: &str) -> Result<Option<String>, StoreError> {
        use diesel::dsl::max;
        watch_log_batches::table
            .filter(
                watch_log_batches::batch_id
                    .like(shared::like_prefix(prefix))
                    .escape('\\'),
            )
            .select(max(watch_log_batches::batch_id))
            .first(&mut self.conn()?)
            .map_err(|e| self.migrated.query_error(e))
    }

    fn count(&self, filter: &LogFilter) -> Result<u64, StoreError> {
        let count: i64 = watch_logs::table
            .filter(predicate(filter))
            .count()
            .get_result(&mut self.conn()?)
            .map_err(|e| self.migrated.query_error(e))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn path_stats(&self, filter: &LogFilter, limit: usize) -> Result<Vec<PathStats>, StoreError> {
        use diesel::dsl::{count_star, sql};
        use diesel::sql_types::BigInt;
        use watch_logs::dsl;
        let rows: Vec<PathStatsRow> = watch_logs::table
            .filter(predicate(filter))
            .group_by(dsl::path)
            .select((
                dsl::path,
                count_star(),
                sql::<BigInt>(shared::DISTINCT_VIEWERS),
                sql::<BigInt>(shared::BYTES_SENT),
            ))
            .order((count_star().desc(), dsl::path.asc()))
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .load(&mut self.conn()?)
            .map_err(|e| self.migrated.query_error(e))?;
        Ok(shared::path_stats(rows))
    }

    fn views_per_day(&self, filter: &LogFilter) -> Result<Vec<DayCount>, StoreError> {
        use diesel::dsl::{count_star, sql};
        use diesel::sql_types::Text;
        let rows: Vec<(String, i64)> = watch_logs::table
            .filter(predicate(filter))
            .group_by(sql::<Text>(shared::DAY))
            .select((sql::<Text>(shared::DAY), count_star()))
            .order(sql::<Text>(shared::DAY).asc())
            .load(&mut self.conn()?)
            .map_err(|e| self.migrated.query_error(e))?;
        Ok(shared::days(rows))
    }

    /// Through the `created_at` index (whose keys end with the rowid), then
    /// by rowid.
    fn prune_chunk(&self, cutoff: NaiveDateTime, limit: usize) -> Result<Pruned, StoreError> {
        use diesel::sql_types::{BigInt, Text, Timestamp};
        let cutoff = super::cutoff(cutoff);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.conn()?;
        // Rows hold their time in their own text form (see `created_at`);
        // batch ids hold diesel's, written by its insert.
        let rows = diesel::sql_query(
            "DELETE FROM watch_logs WHERE id IN \
             (SELECT id FROM watch_logs WHERE created_at < ? ORDER BY created_at LIMIT ?)",
        )
        .bind::<Text, _>(time_text(&cutoff))
        .bind::<BigInt, _>(limit)
        .execute(&mut conn)
        .map_err(|e| self.migrated.query_error(e))?;
        let batches = diesel::sql_query(
            "DELETE FROM watch_log_batches WHERE batch_id IN \
             (SELECT batch_id FROM watch_log_batches WHERE stored_at < ? \
              ORDER BY stored_at LIMIT ?)",
        )
        .bind::<Timestamp, _>(cutoff)
        .bind::<BigInt, _>(limit)
        .execute(&mut conn)
        .map_err(|e| self.migrated.query_error(e))?;
        Ok(Pruned {
            rows: rows as u64,
            batches: batches as u64,
        })
    }

    fn prunable(&self, cutoff: NaiveDateTime) -> Result<Pruned, StoreError> {
        let cutoff = super::cutoff(cutoff);
        let mut conn = self.conn()?;
        let rows: i64 = watch_logs::table
            .filter(created_at("<", &cutoff))
            .count()
            .get_result(&mut conn)
            .map_err(|e| self.migrated.query_error(e))?;
        let batches: i64 = watch_log_batches::table
            .filter(watch_log_batches::stored_at.lt(cutoff))
            .count()
            .get_result(&mut conn)
            .map_err(|e| self.migrated.query_error(e))?;
        Ok(Pruned {
            rows: u64::try_from(rows).unwrap_or(0),
            batches: u64::try_from(batches).unwrap_or(0),
        })
    }
}

/// A filter over `watch_logs` as one boxed SQL expression.
type Predicate<'a> =
    Box<dyn BoxableExpression<watch_logs::table, Sqlite, SqlType = Nullable<Bool>> + 'a>;

/// `filter` as one boxed SQL predicate, usable in grouped queries too
/// (boxed *queries* cannot be grouped).
fn predicate(filter: &LogFilter) -> Predicate<'_> {
    use watch_logs::dsl;
    let mut terms: Vec<Predicate<'_>> = Vec::new();
    if let Some(path) = &filter.path {
        terms.push(Box::new(dsl::path.eq(path).nullable()));
    }
    if let Some(user) = &filter.user_id {
        terms.push(Box::new(dsl::user_id.eq(user)));
    }
    if let Some(authenticated) = filter.authenticated {
        terms.push(Box::new(dsl::is_authenticated.eq(authenticated).nullable()));
    }
    if let Some(ip) = &filter.ip {
        terms.push(Box::new(dsl::ip.eq(ip)));
    }
    if let Some(since) = filter.since {
        terms.push(created_at(">=", &since));
    }
    if let Some(until) = filter.until {
        terms.push(created_at("<", &until));
    }
    if let Some(status) = filter.status {
        terms.push(Box::new(dsl::status.eq(status).nullable()));
    }
    if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
        let pattern = shared::like_pattern(search);
        terms.push(Box::new(
            dsl::path
                .like(pattern.clone())
                .escape('\\')
                .nullable()
                .or(dsl::user_id.like(pattern.clone()).escape('\\'))
                .or(dsl::ip.like(pattern).escape('\\')),
        ));
    }
    let all: Predicate<'_> = Box::new(true.into_sql::<Bool>().nullable());
    terms
        .into_iter()
        .fold(all, |all, term| Box::new(all.and(term)))
}

/// The rows after `cursor` in newest-first order.
fn rows_after<'a>(cursor: Cursor) -> Predicate<'a> {
    let tied = created_at("=", &cursor.created_at).and(watch_logs::id.lt(cursor.id));
    Box::new(created_at("<", &cursor.created_at).or(tied))
}

/// `created_at <op> t`, with `t` bound as the text the rows hold
/// (`%F %T%.6f`, see [`TimestampTexts`]). SQLite compares these columns as
/// text, and diesel's own binding writes `12:00:00` for `12:00:00.000000`
/// and `.5` for `.500000`: `=` then never matched such a row, and keyset
/// pages skipped rows tied with the last one of a page.
fn created_at<'a>(op: &str, t: &NaiveDateTime) -> Predicate<'a> {
    use diesel::dsl::sql;
    use diesel::sql_types::Text;
    Box::new(
        sql::<Nullable<Bool>>(&format!("watch_logs.created_at {op} "))
            .bind::<Text, _>(time_text(t)),
    )
}

/// `t` as SQLite holds a row's `created_at`.
fn time_text(t: &NaiveDateTime) -> String {
    let mut text = String::with_capacity(TimestampTexts::LEN);
    push_timestamp_text(t, &mut text);
    text
}

/// Sets WAL mode (readers never block the writer), a busy timeout, a
/// 8 MiB page cache and, for a new database, 16 KiB pages on every
/// pooled connection.
#[derive(Debug)]
struct SqlitePragmas;

impl diesel::r2d2::CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(
            // busy_timeout first: switching to WAL takes a lock that
            // the pool's other new connections then wait for. The page
            // size only applies to a database not yet written: 16 KiB
            // pages cut the writer's CPU per row by ~14 % against the
            // default 4 KiB (fewer pages to balance, checksum and write
            // per appended row); 32 and 64 KiB cost more on spread
            // index inserts. The cache (2 MiB by default) holds the
            // index pages that rows for many videos and users land on:
            // 8 MiB cut the CPU per such row by ~17 %; 32 MiB was no
            // better and added 40 MiB of peak RSS in bench/run.sh.
            "PRAGMA busy_timeout = 5000; PRAGMA page_size = 16384; \
             PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA cache_size = -8192;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Rows per multi-row `INSERT`; the rest of a batch goes one row per
/// statement. Both statements are prepared once per connection.
const ROWS_PER_STATEMENT: usize = 32;

/// Stores the batch's id, then (if it was new) its rows. Runs inside the
/// transaction `insert_batch` opened.
fn insert_rows(conn: &mut SqliteConnection, batch: &WatchBatch) -> QueryResult<usize> {
    let new_batch = diesel::insert_or_ignore_into(watch_log_batches::table)
        .values(NewBatch::from(batch))
        .execute(conn)?;
    if new_batch == 0 {
        return Ok(0);
    }
    // Each row with `created_at` as text, the form SQLite stores.
    let texts = TimestampTexts::new(&batch.records);
    let rows: Vec<(NewWatchLog<'_>, &str)> = batch
        .records
        .iter()
        .map(NewWatchLog::from)
        .zip(texts.iter())
        .collect();
    let mut chunks = rows.chunks_exact(ROWS_PER_STATEMENT);
    for chunk in &mut chunks {
        InsertRows::<ROWS_PER_STATEMENT>::new(chunk)?.execute(conn)?;
    }
    for row in chunks.remainder() {
        InsertRows::<1>::new(std::slice::from_ref(row))?.execute(conn)?;
    }
    Ok(rows.len())
}

/// A batch's `created_at` values as the text diesel reads back
/// (`%F %T%.f`, six fractional digits), all in one buffer: one
/// allocation per batch, and digits written by hand (`format!` cost
/// more than SQLite's own work for the row).
struct TimestampTexts {
    text: String,
    // Where each record's text ends in `text`.
    ends: Vec<usize>,
}

impl TimestampTexts {
    /// The length of every text in the four-digit year range.
    const LEN: usize = "2026-11-24 10:44:20.123456".len();

    fn new(records: &[WatchRecord]) -> Self {
        let mut text = String::with_capacity(records.len() * Self::LEN);
        let ends = records
            .iter()
            .map(|record| {
                push_timestamp_text(&record.created_at.naive_utc(), &mut text);
                text.len()
            })
            .collect();
        Self { text, ends }
    }

    /// The texts, in the order of the records.
    fn iter(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            // Every piece was pushed whole, so it ends on a char boundary.
            let piece = self.text.get(start..end).unwrap_or_default();
            start = end;
            piece
        })
    }
}

fn push_timestamp_text(t: &NaiveDateTime, out: &mut String) {
    use chrono::{Datelike, Timelike};
    let Ok(year @ 0..=9999) = u32::try_from(t.year()) else {
        // Outside four digits: chrono's general form.
        out.push_str(&t.format("%F %T%.6f").to_string());
        return;
    };
    let mut text = *b"0000-00-00 00:00:00.000000";
    // chrono keeps a leap second as second 59 with nanoseconds past 1e9
    // and writes it as second 60, as diesel's own text does.
    let leap = u32::from(t.nanosecond() >= 1_000_000_000);
    let fields = [
        (0, 4, year),
        (5, 2, t.month()),
        (8, 2, t.day()),
        (11, 2, t.hour()),
        (14, 2, t.minute()),
        (17, 2, t.second() + leap),
        (20, 6, t.nanosecond() % 1_000_000_000 / 1_000),
    ];
    for (at, width, value) in fields {
        let mut rest = value;
        for digit in text[at..at + width].iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
    }
    // Only ASCII digits and separators were written.
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// `INSERT INTO watch_logs ... VALUES` for exactly `N` rows, as a query
/// with a static id: diesel prepares it once per connection and then
/// only binds, where its insert DSL rebuilds and hashes the SQL text of
/// every statement (more than half the cost of a row).
struct InsertRows<'a, const N: usize> {
    rows: &'a [(NewWatchLog<'a>, &'a str); N],
}

impl<'a, const N: usize> InsertRows<'a, N> {
    fn new(rows: &'a [(NewWatchLog<'a>, &'a str)]) -> QueryResult<Self> {
        let rows = rows.try_into().map_err(|_| {
            diesel::result::Error::QueryBuilderError("batch chunk of the wrong length".into())
        })?;
        Ok(Self { rows })
    }
}

/// The query id of [`InsertRows`]: one prepared statement per `N`.
struct InsertRowsId<const N: usize>;

impl<const N: usize> diesel::query_builder::QueryId for InsertRows<'_, N> {
    type QueryId = InsertRowsId<N>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<const N: usize> diesel::query_builder::QueryFragment<Sqlite> for InsertRows<'_, N> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, Sqlite>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Integer, Nullable, Text};
        out.push_sql(
            "INSERT INTO watch_logs (created_at, path, user_id, is_authenticated, ip, \
             method, status, range_header, bytes_sent, duration_ms, user_agent, completed, \
             range_start) VALUES ",
        );
        for (i, (row, created_at)) in self.rows.iter().enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            out.push_bind_param::<Text, _>(created_at)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(row.path)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&row.user_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Bool, _>(&row.is_authenticated)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&row.ip)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(row.method)?;
            out.push_sql(", ");
            out.push_bind_param::<Integer, _>(&row.status)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&row.range_header)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&row.bytes_sent)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&row.duration_ms)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&row.user_agent)?;
            out.push_sql(", ");
            out.push_bind_param::<Bool, _>(&row.completed)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<BigInt>, _>(&row.range_start)?;
            out.push_sql(")");
        }
        Ok(())
    }
}

impl<const N: usize> RunQueryDsl<SqliteConnection> for InsertRows<'_, N> {}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, NaiveTime};

    #[test]
    fn timestamp_text_is_chronos_form() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let times = [
            NaiveDateTime::new(
                day(2026, 11, 24),
                NaiveTime::from_hms_micro_opt(10, 4, 5, 7).unwrap(),
            ),
            NaiveDateTime::new(day(1, 1, 1), NaiveTime::MIN),
            NaiveDateTime::new(
                day(9999, 12, 31),
                NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap(),
            ),
            NaiveDateTime::new(
                day(1970, 1, 1),
                NaiveTime::from_hms_nano_opt(0, 0, 0, 123_456_789).unwrap(),
            ),
            // A leap second.
            NaiveDateTime::new(
                day(2016, 12, 31),
                NaiveTime::from_hms_micro_opt(23, 59, 59, 1_250_000).unwrap(),
            ),
            // Out of the four-digit fast path.
            NaiveDateTime::new(day(12026, 3, 4), NaiveTime::MIN),
            NaiveDateTime::new(day(-44, 3, 15), NaiveTime::MIN),
        ];
        for t in times {
            let mut text = String::new();
            push_timestamp_text(&t, &mut text);
            assert_eq!(text, t.format("%F %T%.6f").to_string());
        }
    }

    /// The settings the store promises, read on one of its own pooled
    /// connections (the cache size is per connection): WAL, 16 KiB pages,
    /// an 8 MiB cache, and SQLite built multi-threaded by this repository's
    /// build settings (`.cargo/config.toml`: no per-call mutex).
    #[test]
    fn pooled_connections_have_the_promised_settings() {
        use diesel::sql_types::{BigInt, Text};
        #[derive(QueryableByName)]
        struct PageSize {
            #[diesel(sql_type = BigInt)]
            page_size: i64,
        }
        #[derive(QueryableByName)]
        struct CacheSize {
            #[diesel(sql_type = BigInt)]
            cache_size: i64,
        }
        #[derive(QueryableByName)]
        struct JournalMode {
            #[diesel(sql_type = Text)]
            journal_mode: String,
        }
        #[derive(QueryableByName)]
        struct CompileOption {
            #[diesel(sql_type = Text)]
            compile_options: String,
        }
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("log.db")).unwrap();
        let mut conn = store.conn().unwrap();
        let size: PageSize = diesel::sql_query("PRAGMA page_size")
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(size.page_size, 16384);
        let cache: CacheSize = diesel::sql_query("PRAGMA cache_size")
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(cache.cache_size, -8192, "8 MiB, in KiB");
        let mode: JournalMode = diesel::sql_query("PRAGMA journal_mode")
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(mode.journal_mode, "wal");
        let options: Vec<CompileOption> = diesel::sql_query("PRAGMA compile_options")
            .load(&mut conn)
            .unwrap();
        let options: Vec<&str> = options.iter().map(|o| o.compile_options.as_str()).collect();
        assert!(options.contains(&"THREADSAFE=2"), "{options:?}");
    }
}
