//! The diesel backends: [`SqliteStore`] and [`PgStore`], pooled with r2d2.
//!
//! Both share one schema and one set of queries (generated per backend by
//! `diesel_store!`, since boxed diesel queries are backend-specific), and each
//! embeds its own migrations folder, run at start-up or, if the database is
//! down then, on the first connection that succeeds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel::sql_types::Bool;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::analytics::DayCount;
use super::record::{Cursor, LogFilter, Page, PathStats, WatchBatch, WatchLogEntry, WatchRecord};
use super::schema::{watch_log_batches, watch_logs};
use super::store::{StoreError, WatchLogStore};

/// The write model: one row to insert. `viewer_key` is not in it: the
/// database derives that column from `user_id` and `ip`.
#[derive(Insertable)]
#[diesel(table_name = watch_logs)]
// Every column is written, also when NULL (PostgreSQL's COPY needs that).
#[diesel(treat_none_as_default_value = false)]
struct NewWatchLog<'a> {
    created_at: NaiveDateTime,
    path: &'a str,
    user_id: Option<&'a str>,
    is_authenticated: bool,
    ip: Option<&'a str>,
    method: &'a str,
    status: i32,
    range_header: Option<&'a str>,
    bytes_sent: i64,
    duration_ms: i64,
    user_agent: Option<&'a str>,
    completed: bool,
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
        }
    }
}

/// The id row a batch leaves in `watch_log_batches`.
#[derive(Insertable)]
#[diesel(table_name = watch_log_batches)]
struct NewBatch<'a> {
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

/// A filter over `watch_logs` as one boxed SQL expression.
type Predicate<'a, DB> = Box<
    dyn BoxableExpression<watch_logs::table, DB, SqlType = diesel::sql_types::Nullable<Bool>> + 'a,
>;

fn query_error(err: diesel::result::Error) -> StoreError {
    StoreError::Query(err.to_string())
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `\` as escape.
fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

macro_rules! diesel_store {
    ($(#[$meta:meta])* $name:ident, $conn:ty, $backend:ty, $migrations:expr, $insert:expr) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name {
            pool: Pool<ConnectionManager<$conn>>,
            migrated: Arc<AtomicBool>,
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).field("pool", &self.pool.state()).finish()
            }
        }

        impl $name {
            /// A store over an existing pool. Call [`WatchLogStore::migrate`]
            /// or let the first write run the migrations.
            pub fn from_pool(pool: Pool<ConnectionManager<$conn>>) -> Self {
                Self { pool, migrated: Arc::new(AtomicBool::new(false)) }
            }

            /// The pool, for your own queries.
            pub fn pool(&self) -> &Pool<ConnectionManager<$conn>> {
                &self.pool
            }

            fn conn(&self) -> Result<PooledConnection<ConnectionManager<$conn>>, StoreError> {
                let mut conn = self.pool.get().map_err(|e| StoreError::Unavailable(e.to_string()))?;
                if !self.migrated.load(Ordering::Acquire) {
                    conn.run_pending_migrations($migrations)
                        .map_err(|e| StoreError::Migration(e.to_string()))?;
                    self.migrated.store(true, Ordering::Release);
                }
                Ok(conn)
            }

            /// The filter as one boxed SQL predicate, usable in grouped
            /// queries too (boxed *queries* cannot be grouped).
            fn predicate<'a>(filter: &'a LogFilter) -> Predicate<'a, $backend> {
                use watch_logs::dsl;
                let mut predicate: Predicate<'a, $backend> = Box::new(true.into_sql::<Bool>().nullable());
                macro_rules! and {
                    ($expr:expr) => {
                        predicate = Box::new(predicate.and($expr))
                    };
                }
                if let Some(path) = &filter.path {
                    and!(dsl::path.eq(path).nullable());
                }
                if let Some(user) = &filter.user_id {
                    and!(dsl::user_id.eq(user));
                }
                if let Some(authenticated) = filter.authenticated {
                    and!(dsl::is_authenticated.eq(authenticated).nullable());
                }
                if let Some(ip) = &filter.ip {
                    and!(dsl::ip.eq(ip));
                }
                if let Some(since) = filter.since {
                    and!(dsl::created_at.ge(since).nullable());
                }
                if let Some(until) = filter.until {
                    and!(dsl::created_at.lt(until).nullable());
                }
                if let Some(status) = filter.status {
                    and!(dsl::status.eq(status).nullable());
                }
                if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
                    let pattern = like_pattern(search);
                    and!(dsl::path
                        .like(pattern.clone())
                        .escape('\\')
                        .nullable()
                        .or(dsl::user_id.like(pattern.clone()).escape('\\'))
                        .or(dsl::ip.like(pattern).escape('\\')));
                }
                predicate
            }
        }

        impl WatchLogStore for $name {
            fn migrate(&self) -> Result<(), StoreError> {
                self.conn().map(drop)
            }

            fn insert_batch(&self, batch: &WatchBatch) -> Result<usize, StoreError> {
                if batch.records.is_empty() {
                    return Ok(0);
                }
                let mut conn = self.conn()?;
                conn.transaction(|conn| $insert(conn, batch)).map_err(query_error)
            }

            fn query(&self, filter: &LogFilter, after: Option<Cursor>, limit: usize) -> Result<Page, StoreError> {
                use watch_logs::dsl;
                let mut predicate = Self::predicate(filter);
                if let Some(cursor) = after {
                    predicate = Box::new(predicate.and(
                        dsl::created_at
                            .lt(cursor.created_at)
                            .or(dsl::created_at.eq(cursor.created_at).and(dsl::id.lt(cursor.id)))
                            .nullable(),
                    ));
                }
                let query = watch_logs::table.filter(predicate);
                let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
                let mut entries: Vec<WatchLogEntry> = query
                    .order((dsl::created_at.desc(), dsl::id.desc()))
                    .limit(fetch)
                    .select(WatchLogEntry::as_select())
                    .load(&mut self.conn()?)
                    .map_err(query_error)?;
                let more = entries.len() > limit;
                entries.truncate(limit);
                let next = if more { entries.last().map(Cursor::after) } else { None };
                Ok(Page { entries, next })
            }

            fn count(&self, filter: &LogFilter) -> Result<u64, StoreError> {
                let count: i64 = watch_logs::table
                    .filter(Self::predicate(filter))
                    .count()
                    .get_result(&mut self.conn()?)
                    .map_err(query_error)?;
                Ok(u64::try_from(count).unwrap_or(0))
            }

            fn path_stats(&self, filter: &LogFilter, limit: usize) -> Result<Vec<PathStats>, StoreError> {
                use diesel::dsl::{count_star, sql};
                use diesel::sql_types::BigInt;
                use watch_logs::dsl;
                let rows: Vec<(String, i64, i64, i64)> = watch_logs::table
                    .filter(Self::predicate(filter))
                    .group_by(dsl::path)
                    .select((
                        dsl::path,
                        count_star(),
                        sql::<BigInt>("COUNT(DISTINCT viewer_key)"),
                        // SUM of BIGINT is NUMERIC on PostgreSQL: cast back.
                        sql::<BigInt>("CAST(COALESCE(SUM(bytes_sent), 0) AS BIGINT)"),
                    ))
                    .order((count_star().desc(), dsl::path.asc()))
                    .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                    .load(&mut self.conn()?)
                    .map_err(query_error)?;
                Ok(rows
                    .into_iter()
                    .map(|(path, views, unique_viewers, bytes_sent)| PathStats { path, views, unique_viewers, bytes_sent })
                    .collect())
            }

            fn views_per_day(&self, filter: &LogFilter) -> Result<Vec<DayCount>, StoreError> {
                use diesel::dsl::{count_star, sql};
                use diesel::sql_types::Text;
                // DATE() is SQLite's function and PostgreSQL's cast syntax;
                // as text both read YYYY-MM-DD.
                const DAY: &str = "CAST(DATE(created_at) AS TEXT)";
                let rows: Vec<(String, i64)> = watch_logs::table
                    .filter(Self::predicate(filter))
                    .group_by(sql::<Text>(DAY))
                    .select((sql::<Text>(DAY), count_star()))
                    .order(sql::<Text>(DAY).asc())
                    .load(&mut self.conn()?)
                    .map_err(query_error)?;
                Ok(rows
                    .into_iter()
                    .filter_map(|(day, views)| {
                        chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d").ok().map(|day| DayCount { day, views })
                    })
                    .collect())
            }
        }
    };
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use diesel::connection::SimpleConnection;
    use diesel::sqlite::{Sqlite, SqliteConnection};
    use std::path::Path;
    use std::time::Duration;

    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

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

    diesel_store!(
        /// Watch log in an SQLite file (bundled SQLite, nothing to install),
        /// in WAL mode with a 5 s busy timeout, 16 KiB pages and an 8 MiB
        /// page cache per connection.
        SqliteStore,
        SqliteConnection,
        Sqlite,
        MIGRATIONS,
        insert_rows
    );

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
                 method, status, range_header, bytes_sent, duration_ms, user_agent, completed) VALUES ",
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
                out.push_sql(")");
            }
            Ok(())
        }
    }

    impl<const N: usize> RunQueryDsl<SqliteConnection> for InsertRows<'_, N> {}

    impl SqliteStore {
        /// Opens (creating if needed) the database file at `path` and runs
        /// its migrations.
        pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
            let url = path.as_ref().to_string_lossy().into_owned();
            let pool = Pool::builder()
                .max_size(4)
                .connection_timeout(Duration::from_secs(5))
                .connection_customizer(Box::new(SqlitePragmas))
                .build(ConnectionManager::<SqliteConnection>::new(url))
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            let store = Self::from_pool(pool);
            store.migrate()?;
            Ok(store)
        }
    }

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
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use diesel::pg::{Pg, PgConnection};
    use std::time::Duration;

    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

    diesel_store!(
        /// Watch log in PostgreSQL, so that many stream nodes share one log.
        PgStore,
        PgConnection,
        Pg,
        MIGRATIONS,
        insert_rows
    );

    /// Stores the batch's id, then (if it was new) its rows with one binary
    /// `COPY`: far less work for the server than parsing and planning a
    /// multi-row `INSERT`. Runs inside the transaction `insert_batch` opened.
    fn insert_rows(conn: &mut PgConnection, batch: &WatchBatch) -> QueryResult<usize> {
        let new_batch = diesel::insert_into(watch_log_batches::table)
            .values(NewBatch::from(batch))
            .on_conflict_do_nothing()
            .execute(conn)?;
        if new_batch == 0 {
            return Ok(0);
        }
        let rows: Vec<NewWatchLog<'_>> = batch.records.iter().map(NewWatchLog::from).collect();
        diesel::copy_from(watch_logs::table)
            .from_insertable(&rows)
            .execute(conn)
    }

    impl PgStore {
        /// Connects to `url` (`postgres://...`). The pool is built without
        /// waiting for the server, so a node can start while the database is
        /// down; migrations run now if it is up, else on the first write.
        pub fn connect(url: &str) -> Result<Self, StoreError> {
            let pool = Pool::builder()
                .max_size(8)
                .min_idle(Some(0))
                .connection_timeout(Duration::from_secs(2))
                .build_unchecked(ConnectionManager::<PgConnection>::new(url));
            let store = Self::from_pool(pool);
            match store.migrate() {
                Ok(()) | Err(StoreError::Unavailable(_)) => Ok(store),
                Err(err) => Err(err),
            }
        }
    }
}

#[cfg(feature = "postgres")]
pub use postgres::PgStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
