//! `sage-stream import-django`: brings django-sage-streaming's watch history
//! (its `sage_stream_watchlog` table) into the watch log, resumably.
//!
//! A row that cannot be read (a `created` that is no time, a NULL where
//! Django has none) is skipped, named by id on stderr and counted in the
//! summary; the rest of its batch is stored. Every field is bounded as the
//! live log bounds it, in the query already, so a huge value never reaches
//! memory whole.

use chrono::{DateTime, NaiveDateTime, Utc};
use sage_stream::log::{LogText, WatchBatch, WatchLogStore, WatchRecord};

use super::DatabaseArgs;

/// What the imported rows say for the fields the Django app never recorded:
/// status 0 (shown as "unknown" in the admin), 0 bytes, not completed, and
/// this user agent.
const IMPORT_USER_AGENT: &str = "django-sage-streaming import";
const UNKNOWN_STATUS: u16 = 0;

/// Most bytes read of a stored time or IP: longer is not one anyway.
const SHORT_FIELD: usize = 64;

/// Most rows per transaction: with every field bounded, a batch holds at
/// most about 25 MB.
const MAX_BATCH: usize = 10_000;

/// Most skipped ids listed in the summary line (each is named on stderr).
const LISTED_IDS: usize = 20;

#[derive(clap::Args)]
pub(crate) struct ImportDjangoArgs {
    /// The Django database: postgres://USER@HOST/DB or sqlite://PATH
    #[arg(long = "from", env = "STREAM_IMPORT_FROM")]
    from: String,
    #[command(flatten)]
    database: DatabaseArgs,
    /// Prefix cut from the stored video_path (Django kept full server paths), e.g. /srv/site/media/
    #[arg(long = "strip-prefix", alias = "media-root")]
    media_root: Option<String>,
    /// Django's MEDIA_URL, also cut from the front of video_path (e.g. /media/)
    #[arg(long, env = "STREAM_MEDIA_URL")]
    media_url: Option<String>,
    /// The Django table
    #[arg(long, default_value = "sage_stream_watchlog")]
    table: String,
    /// Rows per transaction (at most 10000)
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Store the IPs with the last IPv4 octet / last 80 bits of IPv6 zeroed, as serve --anonymize-ip does
    #[arg(long, env = "STREAM_ANONYMIZE_IP", value_parser = clap::builder::BoolishValueParser::new())]
    anonymize_ip: bool,
}

/// One row of the Django table.
struct DjangoRow {
    video_path: String,
    user_id: Option<String>,
    is_authenticated: bool,
    ip: Option<String>,
    created: DateTime<Utc>,
}

pub(crate) fn run(args: ImportDjangoArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.table.is_empty()
        || !args
            .table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!("--table {:?}: letters, digits and _ only", args.table).into());
    }
    let store = sage_stream::log::open_store(&args.database.url())?;
    store.migrate()?;
    // Each batch is named by the last Django id it holds, zero-padded, so
    // the greatest name is where a rerun resumes.
    let prefix = format!("django-import:{}:", args.table);
    let resume_after: i64 = store
        .last_batch_id(&prefix)?
        .and_then(|id| id[prefix.len()..].parse().ok())
        .unwrap_or(0);
    let mut source = Source::open(&args.from)?;
    let users = source.has_table("auth_user")?;
    let batch = args.batch.clamp(1, MAX_BATCH);
    // Enough of a path for the prefixes to be cut and the live bound to
    // remain, plus a character cut in two.
    let path_bytes = LogText::MAX_PATH_BYTES
        + args.media_root.as_deref().map_or(0, str::len)
        + args.media_url.as_deref().map_or(0, str::len)
        + 8;
    let bounds = Bounds {
        path: path_bytes,
        user: LogText::MAX_PATH_BYTES + 8,
        short: SHORT_FIELD,
    };
    let (mut read, mut written, mut last) = (0u64, 0u64, resume_after);
    let mut skipped: Vec<i64> = Vec::new();
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    loop {
        let rows = source.rows_after(&args.table, users, last, batch, &bounds)?;
        let Some(tail) = rows.last() else { break };
        last = tail.id;
        read += rows.len() as u64;
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let id = row.id;
            match DjangoRow::read(row) {
                Ok(row) => records.push(record(&row, &args)),
                Err(reason) => {
                    // The progress line, if any, is cleared first.
                    let clear = if progress { "\r\x1b[K" } else { "" };
                    eprintln!("{clear}import-django: skipped row {id}: {reason}");
                    skipped.push(id);
                }
            }
        }
        let batch = WatchBatch {
            id: format!("{prefix}{last:020}"),
            records,
        };
        written += store.insert_batch(&batch)? as u64;
        if progress {
            eprint!("\rimport-django: {read} rows read, {written} written, up to id {last}");
        }
    }
    if progress && read > 0 {
        eprintln!();
    }
    println!(
        "import-django: {read} rows read from {}, {written} written, {}{}",
        args.table,
        skipped_summary(&skipped),
        if resume_after > 0 {
            format!(" (rows up to id {resume_after} were imported before and skipped)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `2 skipped (ids 2, 7)`; past [`LISTED_IDS`], the rest as a count.
fn skipped_summary(ids: &[i64]) -> String {
    if ids.is_empty() {
        return "0 skipped".to_owned();
    }
    let listed: Vec<String> = ids.iter().take(LISTED_IDS).map(i64::to_string).collect();
    let more = match ids.len().saturating_sub(LISTED_IDS) {
        0 => String::new(),
        n => format!(" and {n} more, each named above"),
    };
    format!("{} skipped (ids {}{more})", ids.len(), listed.join(", "))
}

/// The watch-log row for a Django row, every field bounded as the live
/// log bounds it.
fn record(row: &DjangoRow, args: &ImportDjangoArgs) -> WatchRecord {
    let mut path = row.video_path.as_str();
    for prefix in [args.media_root.as_deref(), args.media_url.as_deref()]
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty())
    {
        let prefix = prefix.trim_end_matches('/');
        if let Some(rest) = path.strip_prefix(prefix) {
            if let Some(rest) = rest.strip_prefix('/') {
                path = rest;
            }
        }
    }
    let mut record = WatchRecord {
        created_at: row.created,
        path: LogText::bounded(path, LogText::MAX_PATH_BYTES),
        user_id: row
            .user_id
            .as_deref()
            .map(|u| LogText::bounded(u, LogText::MAX_PATH_BYTES)),
        is_authenticated: row.is_authenticated,
        // As the live log: an address, else nothing.
        ip: row.ip.as_deref().and_then(|ip| {
            // PostgreSQL's inet prints its mask: 192.0.2.1/32.
            let ip = ip.split('/').next().unwrap_or(ip);
            let ip: std::net::IpAddr = ip.trim().parse().ok()?;
            Some(ip.to_string().into())
        }),
        method: "GET".into(),
        status: UNKNOWN_STATUS,
        range_header: None,
        bytes_sent: 0,
        duration_ms: 0,
        user_agent: Some(IMPORT_USER_AGENT.into()),
        completed: false,
        range_start: None,
    };
    if args.anonymize_ip {
        record.anonymize_ip();
    }
    record
}

/// How many bytes of each text column a query reads.
struct Bounds {
    path: usize,
    user: usize,
    short: usize,
}

impl DjangoRow {
    /// The row, or why it cannot be imported. Text that is not UTF-8 is
    /// read with U+FFFD in place of the bad bytes, as the live log reads a
    /// header.
    fn read(row: SourceRow) -> Result<Self, String> {
        let text = |bytes: Vec<u8>| match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        };
        let created = text(row.created.ok_or("created is NULL")?);
        let created = parse_created(&created)
            .ok_or_else(|| format!("created {created:?} is not a date and time"))?;
        Ok(Self {
            video_path: text(row.video_path.ok_or("video_path is NULL")?),
            user_id: row.user_id.map(text),
            is_authenticated: row.is_authenticated.ok_or("is_authenticated is NULL")?,
            ip: row.ip.map(text).filter(|ip| !ip.is_empty()),
            created,
        })
    }
}

/// The Django database.
enum Source {
    #[cfg(feature = "postgres")]
    Postgres(diesel::PgConnection),
    #[cfg(feature = "sqlite")]
    Sqlite(diesel::SqliteConnection),
}

/// A row as read: text as bytes (a row that is not UTF-8 must not fail the
/// whole batch), each cut to its [`Bounds`]; NULL where Django has none is
/// read too, to be reported rather than fail the batch.
#[derive(diesel::QueryableByName)]
struct SourceRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Binary>)]
    video_path: Option<Vec<u8>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Binary>)]
    user_id: Option<Vec<u8>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Bool>)]
    is_authenticated: Option<bool>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Binary>)]
    ip: Option<Vec<u8>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Binary>)]
    created: Option<Vec<u8>>,
}

impl Source {
    fn open(url: &str) -> Result<Self, Box<dyn std::error::Error>> {
        use diesel::Connection;
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            return Ok(Self::Postgres(diesel::PgConnection::establish(url)?));
            #[cfg(not(feature = "postgres"))]
            return Err("this binary was built without the postgres feature".into());
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            if !std::path::Path::new(path).is_file() {
                return Err(format!("--from {url}: no such file").into());
            }
            #[cfg(feature = "sqlite")]
            return Ok(Self::Sqlite(diesel::SqliteConnection::establish(path)?));
            #[cfg(not(feature = "sqlite"))]
            return Err("this binary was built without the sqlite feature".into());
        }
        Err(format!("--from {url:?}: expected postgres://… or sqlite://PATH").into())
    }

    /// Whether the Django database has `table`.
    fn has_table(&mut self, table: &str) -> Result<bool, Box<dyn std::error::Error>> {
        use diesel::sql_types::Text;
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Found {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let found: Found = match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(conn) => diesel::sql_query(
                "SELECT count(*)::bigint AS n FROM information_schema.tables WHERE table_name = $1",
            )
            .bind::<Text, _>(table)
            .get_result(conn)?,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(conn) => diesel::sql_query(
                "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?",
            )
            .bind::<Text, _>(table)
            .get_result(conn)?,
        };
        Ok(found.n > 0)
    }

    /// Up to `limit` rows with ids above `after`, in id order; the user as
    /// `auth_user.username` when `users` (the table exists), else its id.
    /// Text is read as bytes and cut to `bounds` by the database, so a
    /// 5 MiB path costs the import no more than a short one.
    fn rows_after(
        &mut self,
        table: &str,
        users: bool,
        after: i64,
        limit: usize,
        bounds: &Bounds,
    ) -> Result<Vec<SourceRow>, Box<dyn std::error::Error>> {
        use diesel::sql_types::BigInt;
        use diesel::RunQueryDsl;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (join, user) = if users {
            (
                "LEFT JOIN auth_user u ON u.id = w.user_id",
                "COALESCE(u.username, CAST(w.user_id AS TEXT))",
            )
        } else {
            ("", "CAST(w.user_id AS TEXT)")
        };
        let Bounds {
            path,
            user: user_bytes,
            short,
        } = bounds;
        let rows: Vec<SourceRow> = match self {
            // `left` counts characters, at least as many bytes.
            #[cfg(feature = "postgres")]
            Self::Postgres(conn) => diesel::sql_query(format!(
                "SELECT w.id::bigint AS id, \
                 convert_to(left(w.video_path::text, {path}), 'UTF8') AS video_path, \
                 convert_to(left(({user})::text, {user_bytes}), 'UTF8') AS user_id, \
                 w.is_authenticated, convert_to(left(w.ip::text, {short}), 'UTF8') AS ip, \
                 convert_to(to_char(w.created AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), 'UTF8') AS created \
                 FROM \"{table}\" w {join} WHERE w.id > $1 ORDER BY w.id LIMIT $2"
            ))
            .bind::<BigInt, _>(after)
            .bind::<BigInt, _>(limit)
            .load(conn)?,
            // `substr` of a blob counts bytes.
            #[cfg(feature = "sqlite")]
            Self::Sqlite(conn) => diesel::sql_query(format!(
                "SELECT w.id AS id, \
                 substr(CAST(w.video_path AS BLOB), 1, {path}) AS video_path, \
                 substr(CAST({user} AS BLOB), 1, {user_bytes}) AS user_id, \
                 w.is_authenticated AS is_authenticated, \
                 substr(CAST(w.ip AS BLOB), 1, {short}) AS ip, \
                 substr(CAST(w.created AS BLOB), 1, {short}) AS created \
                 FROM \"{table}\" w {join} WHERE w.id > ? ORDER BY w.id LIMIT ?"
            ))
            .bind::<BigInt, _>(after)
            .bind::<BigInt, _>(limit)
            .load(conn)?,
        };
        Ok(rows)
    }
}

/// Django's stored times: `2024-05-01 10:00:00[.123456][+00:00]` (UTC when
/// `USE_TZ`, which the Django app's `timezone.now()` assumes).
fn parse_created(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imported_ips_are_anonymized_when_asked() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            import: ImportDjangoArgs,
        }
        let args = |extra: &[&str]| {
            let mut argv = vec!["import", "--from", "sqlite://x", "--database", "sqlite://y"];
            argv.extend_from_slice(extra);
            Cli::parse_from(argv).import
        };
        let row = |ip: &str| DjangoRow {
            video_path: "a.mp4".to_owned(),
            user_id: None,
            is_authenticated: false,
            ip: Some(ip.to_owned()),
            created: Utc::now(),
        };
        let (plain, anonymized) = (args(&[]), args(&["--anonymize-ip"]));
        for (ip, kept, stored) in [
            ("192.0.2.1/32", "192.0.2.1", "192.0.2.0"),
            ("2001:db8:1:2::9", "2001:db8:1:2::9", "2001:db8:1::"),
            ("::ffff:192.0.2.9", "::ffff:192.0.2.9", "192.0.2.0"),
        ] {
            assert_eq!(record(&row(ip), &plain).ip.as_deref(), Some(kept));
            assert_eq!(record(&row(ip), &anonymized).ip.as_deref(), Some(stored));
        }
    }

    #[test]
    fn django_times_read_as_utc() {
        for text in [
            "2024-05-01 10:00:00",
            "2024-05-01 10:00:00.000000",
            "2024-05-01 12:00:00+02:00",
            "2024-05-01T10:00:00Z",
        ] {
            assert_eq!(
                parse_created(text).map(|t| t.to_rfc3339()),
                Some("2024-05-01T10:00:00+00:00".to_owned()),
                "{text}"
            );
        }
        assert!(parse_created("yesterday").is_none());
    }
}
