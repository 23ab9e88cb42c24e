//! `sage-stream import-django`: brings django-sage-streaming's watch history
//! (its `sage_stream_watchlog` table) into the watch log, resumably.

use chrono::{DateTime, NaiveDateTime, Utc};
use sage_stream::log::{WatchBatch, WatchLogStore, WatchRecord};

use super::DatabaseArgs;

/// What the imported rows say for the fields the Django app never recorded:
/// status 0 (shown as "unknown" in the admin), 0 bytes, not completed, and
/// this user agent.
const IMPORT_USER_AGENT: &str = "django-sage-streaming import";
const UNKNOWN_STATUS: u16 = 0;

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
    /// Rows per transaction
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Store the IPs with the last IPv4 octet / last 80 bits of IPv6 zeroed, as serve --anonymize-ip does
    #[arg(long, env = "STREAM_ANONYMIZE_IP", value_parser = clap::builder::BoolishValueParser::new())]
    anonymize_ip: bool,
}

/// One row of the Django table.
struct DjangoRow {
    id: i64,
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
    let batch = args.batch.clamp(1, 50_000);
    let (mut read, mut written, mut last) = (0u64, 0u64, resume_after);
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    loop {
        let rows = source.rows_after(&args.table, users, last, batch)?;
        let Some(tail) = rows.last() else { break };
        last = tail.id;
        read += rows.len() as u64;
        let records = rows.iter().map(|row| record(row, &args)).collect();
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
        "import-django: {read} rows read from {}, {written} written{}",
        args.table,
        if resume_after > 0 {
            format!(" (rows up to id {resume_after} were imported before and skipped)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// The watch-log row for a Django row.
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
    let text = |s: &str| s.replace('\0', "\u{fffd}");
    let mut record = WatchRecord {
        created_at: row.created,
        path: text(path).into(),
        user_id: row.user_id.as_deref().map(|u| text(u).into()),
        is_authenticated: row.is_authenticated,
        ip: row.ip.as_deref().map(|ip| {
            // PostgreSQL's inet prints its mask: 192.0.2.1/32.
            let ip = ip.split('/').next().unwrap_or(ip);
            text(ip).into()
        }),
        method: "GET".into(),
        status: UNKNOWN_STATUS,
        range_header: None,
        bytes_sent: 0,
        duration_ms: 0,
        user_agent: Some(IMPORT_USER_AGENT.into()),
        completed: false,
    };
    if args.anonymize_ip {
        record.anonymize_ip();
    }
    record
}

/// The Django database.
enum Source {
    #[cfg(feature = "postgres")]
    Postgres(diesel::PgConnection),
    #[cfg(feature = "sqlite")]
    Sqlite(diesel::SqliteConnection),
}

#[derive(diesel::QueryableByName)]
struct SourceRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    video_path: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    user_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    is_authenticated: bool,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    ip: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    created: String,
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
    fn rows_after(
        &mut self,
        table: &str,
        users: bool,
        after: i64,
        limit: usize,
    ) -> Result<Vec<DjangoRow>, Box<dyn std::error::Error>> {
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
        let rows: Vec<SourceRow> = match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(conn) => diesel::sql_query(format!(
                "SELECT w.id::bigint AS id, w.video_path::text AS video_path, {user}::text AS user_id, \
                 w.is_authenticated, w.ip::text AS ip, \
                 to_char(w.created AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS created \
                 FROM \"{table}\" w {join} WHERE w.id > $1 ORDER BY w.id LIMIT $2"
            ))
            .bind::<BigInt, _>(after)
            .bind::<BigInt, _>(limit)
            .load(conn)?,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(conn) => diesel::sql_query(format!(
                "SELECT w.id AS id, w.video_path AS video_path, {user} AS user_id, \
                 w.is_authenticated AS is_authenticated, CAST(w.ip AS TEXT) AS ip, \
                 CAST(w.created AS TEXT) AS created \
                 FROM \"{table}\" w {join} WHERE w.id > ? ORDER BY w.id LIMIT ?"
            ))
            .bind::<BigInt, _>(after)
            .bind::<BigInt, _>(limit)
            .load(conn)?,
        };
        rows.into_iter()
            .map(|row| {
                let created = parse_created(&row.created).ok_or_else(|| {
                    format!("row {}: cannot read created {:?}", row.id, row.created)
                })?;
                Ok(DjangoRow {
                    id: row.id,
                    video_path: row.video_path,
                    user_id: row.user_id,
                    is_authenticated: row.is_authenticated,
                    ip: row.ip.filter(|ip| !ip.is_empty()),
                    created,
                })
            })
            .collect()
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
            id: 1,
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
