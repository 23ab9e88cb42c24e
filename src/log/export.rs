//! CSV and JSON renderings of watch-log rows, for exports and the CLI.
//!
//! [`ExportEncoder`] writes either format a row at a time, so an export of
//! any size can stream in constant memory (the admin's does, page by page);
//! [`to_csv`] and [`to_json`] render a slice in one go, with the same bytes.
//!
//! ```
//! use sage_stream::log::export::{to_json, ExportEncoder, ExportFormat};
//!
//! let rows = Vec::new(); // Pages of `WatchLogEntry`s from a store.
//! let mut encoder = ExportEncoder::new(ExportFormat::Json);
//! let mut out = String::new();
//! encoder.begin(&mut out);
//! for row in &rows {
//!     encoder.row(row, &mut out); // Send `out` on whenever it is large enough.
//! }
//! encoder.end(&mut out);
//! assert_eq!(out, to_json(&rows));
//! assert_eq!(out, "[]");
//! ```

use std::fmt::Write as _;

use super::query::WatchLogEntry;

/// The header line of the CSV export.
const CSV_HEADER: &str = "id,created_at,path,user_id,is_authenticated,ip,method,status,range,bytes_sent,duration_ms,completed,user_agent\r\n";

/// An export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportFormat {
    /// RFC 4180 CSV with a header line (see [`to_csv`]).
    Csv,
    /// A pretty-printed JSON array of rows (see [`to_json`]).
    Json,
}

/// Writes rows in an [`ExportFormat`] piece by piece: [`begin`](Self::begin),
/// [`row`](Self::row) for each row, then [`end`](Self::end). The pieces,
/// concatenated, are what [`to_csv`] or [`to_json`] return for the same
/// rows, so a streamed export is byte for byte the one-piece export.
#[derive(Clone, Debug)]
pub struct ExportEncoder {
    format: ExportFormat,
    rows: u64,
}

impl ExportEncoder {
    /// An encoder for `format`, before its first piece.
    pub fn new(format: ExportFormat) -> Self {
        Self { format, rows: 0 }
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Appends what comes before the first row: the CSV header, or `[`.
    pub fn begin(&mut self, out: &mut String) {
        out.push_str(match self.format {
            ExportFormat::Csv => CSV_HEADER,
            ExportFormat::Json => "[",
        });
    }

    /// Appends one row.
    pub fn row(&mut self, entry: &WatchLogEntry, out: &mut String) {
        match self.format {
            ExportFormat::Csv => csv_row(entry, out),
            ExportFormat::Json => {
                out.push_str(if self.rows == 0 { "\n" } else { ",\n" });
                // As an element of a pretty-printed array: every line one
                // level in. JSON strings escape their newlines, so each line
                // of the rendering is structure.
                let text = serde_json::to_string_pretty(entry);
                let text = text.as_deref().unwrap_or("null");
                for (i, line) in text.split('\n').enumerate() {
                    if i > 0 {
                        out.push('\n');
                    }
                    out.push_str("  ");
                    out.push_str(line);
                }
            }
        }
        self.rows += 1;
    }

    /// Appends what comes after the last row (for JSON, the closing `]`).
    pub fn end(self, out: &mut String) {
        if self.format == ExportFormat::Json {
            out.push_str(if self.rows == 0 { "]" } else { "\n]" });
        }
    }
}

/// All of `entries` in `format`.
fn render(format: ExportFormat, entries: &[WatchLogEntry]) -> String {
    let mut encoder = ExportEncoder::new(format);
    let mut out = String::new();
    encoder.begin(&mut out);
    for entry in entries {
        encoder.row(entry, &mut out);
    }
    encoder.end(&mut out);
    out
}

/// RFC 4180 CSV with a header line. Cells that a spreadsheet would run as a
/// formula (leading `=`, `+`, `-`, `@`, TAB or CR) are prefixed with `'`.
pub fn to_csv(entries: &[WatchLogEntry]) -> String {
    render(ExportFormat::Csv, entries)
}

/// One CSV line, `\r\n` included.
fn csv_row(e: &WatchLogEntry, out: &mut String) {
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{},{},",
        e.id,
        e.created_at.format("%Y-%m-%dT%H:%M:%S%.6fZ")
    );
    push_csv_field(out, &e.path);
    out.push(',');
    push_csv_field(out, e.user_id.as_deref().unwrap_or_default());
    let _ = write!(out, ",{},", e.is_authenticated);
    push_csv_field(out, e.ip.as_deref().unwrap_or_default());
    out.push(',');
    push_csv_field(out, &e.method);
    let _ = write!(out, ",{},", e.status);
    push_csv_field(out, e.range_header.as_deref().unwrap_or_default());
    let _ = write!(out, ",{},{},{},", e.bytes_sent, e.duration_ms, e.completed);
    push_csv_field(out, e.user_agent.as_deref().unwrap_or_default());
    out.push_str("\r\n");
}

/// One CSV cell, quoted when needed and defused against formula injection.
pub fn csv_field(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    push_csv_field(&mut out, field);
    out
}

/// [`csv_field`], appended to `out`.
fn push_csv_field(out: &mut String, field: &str) {
    // TAB and CR too: spreadsheets strip them and then read what follows.
    let risky = field.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let defuse = risky && field.parse::<f64>().is_err();
    let quote = field.contains([',', '"', '\r', '\n']);
    if quote {
        out.push('"');
    }
    if defuse {
        out.push('\'');
    }
    if quote {
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// A JSON array of rows.
pub fn to_json(entries: &[WatchLogEntry]) -> String {
    render(ExportFormat::Json, entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("\t=cmd()"), "'\t=cmd()");
        assert_eq!(csv_field("\r=cmd()"), "\"'\r=cmd()\"");
        assert_eq!(csv_field("-5"), "-5");
        assert_eq!(csv_field("=\"x\",y"), "\"'=\"\"x\"\",y\"");
    }

    fn entry(i: i64) -> WatchLogEntry {
        WatchLogEntry {
            id: i,
            created_at: chrono::DateTime::from_timestamp_micros(1_795_000_000_000_000 + i)
                .unwrap()
                .naive_utc(),
            path: ["a.mp4", "dir/b, \"c\".webm", "=1+2", "vidéo\nline.mp4"][i as usize % 4].into(),
            user_id: (i % 2 == 0).then(|| format!("user{i}")),
            is_authenticated: i % 2 == 0,
            viewer_key: format!("u:user{i}"),
            ip: (i % 3 != 0).then(|| "2001:db8::1".to_owned()),
            method: "GET".into(),
            status: 206,
            range_header: Some(format!("bytes={i}-")),
            bytes_sent: i * 1000,
            duration_ms: i,
            user_agent: (i % 5 != 0).then(|| "Mozilla/5.0 \"quoted\" \u{1b}[31m".to_owned()),
            completed: i % 2 == 1,
        }
    }

    /// The format the exports had before they streamed: one `Vec` of
    /// fields per row, and serde_json's own pretty array.
    fn csv_before(entries: &[WatchLogEntry]) -> String {
        let mut out = CSV_HEADER.to_owned();
        for e in entries {
            let fields = [
                e.id.to_string(),
                e.created_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                e.path.clone(),
                e.user_id.clone().unwrap_or_default(),
                e.is_authenticated.to_string(),
                e.ip.clone().unwrap_or_default(),
                e.method.clone(),
                e.status.to_string(),
                e.range_header.clone().unwrap_or_default(),
                e.bytes_sent.to_string(),
                e.duration_ms.to_string(),
                e.completed.to_string(),
                e.user_agent.clone().unwrap_or_default(),
            ];
            let line: Vec<String> = fields
                .iter()
                .map(|f| {
                    let risky = f.starts_with(['=', '+', '-', '@', '\t', '\r']);
                    let f = if risky && f.parse::<f64>().is_err() {
                        format!("'{f}")
                    } else {
                        f.clone()
                    };
                    if f.contains([',', '"', '\r', '\n']) {
                        format!("\"{}\"", f.replace('"', "\"\""))
                    } else {
                        f
                    }
                })
                .collect();
            out.push_str(&line.join(","));
            out.push_str("\r\n");
        }
        out
    }

    #[test]
    fn pieces_make_the_format_of_before() {
        for n in [0, 1, 2, 7] {
            let entries: Vec<WatchLogEntry> = (0..n).map(entry).collect();
            assert_eq!(to_csv(&entries), csv_before(&entries), "{n} rows");
            assert_eq!(
                to_json(&entries),
                serde_json::to_string_pretty(&entries).unwrap(),
                "{n} rows"
            );
            let parsed: Vec<WatchLogEntry> = serde_json::from_str(&to_json(&entries)).unwrap();
            assert_eq!(parsed, entries);
        }
    }
}
