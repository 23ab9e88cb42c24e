//! CSV and JSON renderings of watch-log rows, for exports and the CLI.
//!
//! [`ExportEncoder`] writes either format a row at a time, so an export of
//! any size can stream in constant memory (the admin's does, page by page);
//! [`to_csv`] and [`to_json`] render a slice in one go, with the same bytes.
//!
//! Both are safe to print on a terminal: no control character (C0, DEL,
//! C1), line or paragraph separator (U+2028, U+2029) or bidirectional
//! formatting character leaves them raw, so a logged path or user agent
//! cannot retitle or clear the reader's terminal, or forge a row. JSON
//! writes them as `\u` escapes (the parsed values are exact); CSV, which
//! has no escapes of its own, writes the text as [`escape_text`] does.
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

use std::borrow::Cow;
use std::fmt::Write as _;

use super::query::WatchLogEntry;

/// The header line of the CSV export.
const CSV_HEADER: &str = "id,created_at,path,user_id,is_authenticated,ip,method,status,range,bytes_sent,duration_ms,completed,user_agent,range_start\r\n";

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
                let text = json_escape_rest(text.as_deref().unwrap_or("null"));
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

/// RFC 4180 CSV with a header line. Text cells are written as
/// [`escape_text`] writes them (control characters as `\x1b`, `\n`, …, a
/// backslash doubled), so each row is one line and nothing in it acts on a
/// terminal. Cells that a spreadsheet would run as a formula (leading `=`,
/// `+`, `-` or `@`) are prefixed with `'`.
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
    out.push(',');
    if let Some(start) = e.range_start {
        let _ = write!(out, "{start}");
    }
    out.push_str("\r\n");
}

/// One CSV cell: escaped as [`escape_text`] escapes, quoted when needed and
/// defused against formula injection.
pub fn csv_field(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    push_csv_field(&mut out, field);
    out
}

/// [`csv_field`], appended to `out`.
fn push_csv_field(out: &mut String, field: &str) {
    let field = &*escape_text(field);
    // TAB and CR too: spreadsheets strip them and then read what follows
    // (escaped above, so only a defence in depth).
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

/// `value` as pretty-printed JSON, with the characters that
/// [`escape_text`] escapes written as `\u` escapes: the same value once
/// parsed, and nothing in the text acts on a terminal.
pub fn to_json_pretty<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    serde_json::to_string_pretty(value).map(|text| json_escape_rest(&text).into_owned())
}

/// serde_json's output with what it leaves raw (DEL, C1, U+2028, U+2029,
/// bidirectional formatting) escaped. serde_json escapes C0 in strings, so
/// a C0 character left is the layout's own newline; and JSON's structure is
/// ASCII, so any other such character is inside a string, where `\uXXXX`
/// means the same.
fn json_escape_rest(json: &str) -> Cow<'_, str> {
    let escape = |c: char| c >= ' ' && needs_escape(c);
    if !json.chars().any(escape) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if escape(c) {
            // All of them are in the Basic Multilingual Plane.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether `c` must not reach a terminal raw: a control character (C0,
/// DEL, C1: ESC, BEL, CR, LF, CSI U+009B …), a line or paragraph separator,
/// or a bidirectional formatting character (which can make a row read as
/// something else).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `text` safe to print on a terminal, on one line: control characters,
/// separators and bidirectional formatting characters are written as
/// visible escapes (`\n`, `\r`, `\t`, `\x1b` below U+00A0, `\u2028`
/// above), and a backslash as `\\`, so the text can be read back exactly.
/// `sage-stream logs` prints every field so, and CSV cells are written so.
///
/// ```
/// use sage_stream::log::export::escape_text;
///
/// assert_eq!(escape_text("clip.mp4"), "clip.mp4");
/// assert_eq!(escape_text("a\u{1b}]0;x\u{7}\nb\\"), "a\\x1b]0;x\\x07\\nb\\\\");
/// assert_eq!(escape_text("\u{9b}2J\u{2028}"), "\\x9b2J\\u2028");
/// ```
pub fn escape_text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c == '\\' || needs_escape(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Every control character (Cc) is below U+00A0: two hex digits.
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
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
        assert_eq!(csv_field("\t=cmd()"), "\\t=cmd()");
        assert_eq!(csv_field("\r=cmd()"), "\\r=cmd()");
        assert_eq!(csv_field("a\nb,\u{1b}[2J"), "\"a\\nb,\\x1b[2J\"");
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
            range_start: (i % 4 != 0).then_some(i * 10),
        }
    }

    /// The format the exports had before they streamed: one `Vec` of
    /// fields per row (escaped), and serde_json's own pretty array.
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
                e.range_start.map(|n| n.to_string()).unwrap_or_default(),
            ];
            let line: Vec<String> = fields
                .iter()
                .map(|f| escape_text(f).into_owned())
                .map(|f| {
                    let risky = f.starts_with(['=', '+', '-', '@', '\t', '\r']);
                    let f = if risky && f.parse::<f64>().is_err() {
                        format!("'{f}")
                    } else {
                        f
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

    #[test]
    fn no_format_leaves_a_control_character_raw() {
        let hostile = "a\u{1b}]0;x\u{7}b\r\nFORGED\u{7f}\u{85}\u{9b}2J\u{2028}\u{2029}\u{202e}\\";
        let mut row = entry(1);
        row.path = hostile.to_owned();
        row.user_agent = Some(hostile.to_owned());
        let raw = |c: char| needs_escape(c) && c != '\n' && c != '\r';
        let csv = to_csv(std::slice::from_ref(&row));
        assert!(!csv.chars().any(raw), "{csv:?}");
        assert_eq!(
            csv.matches("\r\n").count(),
            2,
            "header and one row: {csv:?}"
        );
        assert_eq!(csv.matches('\r').count(), 2, "{csv:?}");
        assert_eq!(csv.matches('\n').count(), 2, "{csv:?}");
        assert!(
            csv.contains(
                ",a\\x1b]0;x\\x07b\\r\\nFORGED\\x7f\\x85\\x9b2J\\u2028\\u2029\\u202e\\\\,"
            ),
            "{csv}"
        );
        let json = to_json(std::slice::from_ref(&row));
        assert!(!json.chars().any(raw), "{json:?}");
        assert!(json.contains("\\u009b2J\\u2028\\u2029\\u202e"), "{json}");
        let parsed: Vec<WatchLogEntry> = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, vec![row.clone()], "exact once parsed");
        let value = to_json_pretty(&[&row.path]).unwrap();
        assert!(!value.chars().any(raw), "{value:?}");
        assert_eq!(
            serde_json::from_str::<Vec<String>>(&value).unwrap(),
            [hostile]
        );
    }
}
