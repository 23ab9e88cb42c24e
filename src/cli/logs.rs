//! `sage-stream logs`: read the watch log from the terminal.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use sage_stream::log::export::escape_text as terminal_safe;
use sage_stream::log::{Cursor, LogFilter, PathStats, WatchLogEntry, WatchLogStore};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    Csv,
}

#[derive(clap::Args)]
pub(crate) struct LogsArgs {
    #[command(flatten)]
    pub(crate) database: super::DatabaseArgs,
    /// Only this media path.
    #[arg(long)]
    path: Option<String>,
    /// Only this user id.
    #[arg(long)]
    user: Option<String>,
    /// Only authenticated (true) or anonymous (false) requests.
    #[arg(long)]
    authenticated: Option<bool>,
    /// Only this client IP.
    #[arg(long)]
    ip: Option<String>,
    /// Only rows at or after this UTC time (2026-11-24 or 2026-11-24T10:00:00Z).
    #[arg(long, value_parser = parse_time)]
    since: Option<NaiveDateTime>,
    /// Only rows before this UTC time.
    #[arg(long, value_parser = parse_time)]
    until: Option<NaiveDateTime>,
    /// Only this status.
    #[arg(long)]
    status: Option<i32>,
    /// Substring of path, user id or IP.
    #[arg(long)]
    search: Option<String>,
    /// Rows to print (newest first).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Start after this cursor (printed by the previous page in table format).
    #[arg(long)]
    after: Option<String>,
    /// Per-path totals instead of rows.
    #[arg(long)]
    stats: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

fn parse_time(text: &str) -> Result<NaiveDateTime, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.naive_utc());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
        return Ok(t);
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN))
        .map_err(|_| {
            format!("bad time {text:?}: use 2026-11-24, \"2026-11-24 10:00:00\" or RFC 3339")
        })
}

pub(crate) fn run(args: LogsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let store = sage_stream::log::open_store(&args.database.url())?;
    let filter = LogFilter {
        path: args.path,
        user_id: args.user,
        authenticated: args.authenticated,
        ip: args.ip,
        since: args.since,
        until: args.until,
        status: args.status,
        search: args.search,
    };
    if args.stats {
        let stats = store.path_stats(&filter, args.limit)?;
        return emit(&render_stats(&stats, args.format)?);
    }
    let after = match args.after.as_deref() {
        Some(text) => Some(Cursor::decode(text).ok_or("bad --after cursor")?),
        None => None,
    };
    let page = store.query(&filter, after, args.limit)?;
    let mut out = render(&page.entries, args.format);
    if let (Format::Table, Some(next)) = (args.format, page.next) {
        out.push_str(&format!("more: --after {}\n", next.encode()));
    }
    emit(&out)
}

/// Writes `out` to standard output; a reader that went away (`logs | head`)
/// is not an error.
fn emit(out: &str) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(()),
    }
}

fn render(entries: &[WatchLogEntry], format: Format) -> String {
    match format {
        Format::Json => sage_stream::log::export::to_json(entries) + "\n",
        Format::Csv => sage_stream::log::export::to_csv(entries),
        Format::Table => {
            let mut out = format!(
                "{:<26} {:<28} {:<10} {:<5} {:<39} {:>6} {:>11} {:<4} {}\n",
                "created (UTC)", "path", "user", "auth", "ip", "status", "bytes", "done", "range"
            );
            for e in entries {
                out.push_str(&format!(
                    "{:<26} {:<28} {:<10} {:<5} {:<39} {:>6} {:>11} {:<4} {}\n",
                    e.created_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                    terminal_safe(&e.path),
                    terminal_safe(e.user_id.as_deref().unwrap_or("-")),
                    if e.is_authenticated { "yes" } else { "no" },
                    terminal_safe(e.ip.as_deref().unwrap_or("-")),
                    e.status,
                    e.bytes_sent,
                    if e.completed { "yes" } else { "no" },
                    terminal_safe(e.range_header.as_deref().unwrap_or("-")),
                ));
            }
            out
        }
    }
}

/// Every format escapes control characters (see
/// [`sage_stream::log::export`]): what a logged request put in a path or a
/// header never acts on the reader's terminal.
fn render_stats(stats: &[PathStats], format: Format) -> Result<String, serde_json::Error> {
    use std::fmt::Write as _;
    let mut out = String::new();
    match format {
        Format::Json => {
            let _ = writeln!(out, "{}", sage_stream::log::export::to_json_pretty(stats)?);
        }
        Format::Csv => {
            out.push_str("path,views,unique_viewers,bytes_sent\r\n");
            for s in stats {
                let _ = write!(
                    out,
                    "{},{},{},{}\r\n",
                    sage_stream::log::export::csv_field(&s.path),
                    s.views,
                    s.unique_viewers,
                    s.bytes_sent
                );
            }
        }
        Format::Table => {
            let _ = writeln!(
                out,
                "{:<40} {:>8} {:>8} {:>14}",
                "path", "views", "viewers", "bytes"
            );
            for s in stats {
                let _ = writeln!(
                    out,
                    "{:<40} {:>8} {:>8} {:>14}",
                    terminal_safe(&s.path),
                    s.views,
                    s.unique_viewers,
                    s.bytes_sent
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::terminal_safe;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(terminal_safe("clip.mp4"), "clip.mp4");
        assert_eq!(
            terminal_safe("\u{1b}]0;owned\u{7}\u{1b}[2J"),
            "\\x1b]0;owned\\x07\\x1b[2J"
        );
        assert_eq!(terminal_safe("a\nfake row"), "a\\nfake row");
        assert_eq!(terminal_safe("a\\x1b"), "a\\\\x1b");
        assert_eq!(terminal_safe("\u{9b}31m"), "\\x9b31m");
        assert_eq!(terminal_safe("a\u{2028}b\u{202e}"), "a\\u2028b\\u202e");
    }
}
