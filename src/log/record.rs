//! What the watch log stores and how it is queried.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use super::LogText;
use crate::extension::ViewerKey;

/// One logged response, as the layer produces it (the write model).
///
/// Text fields are [`LogText`]s: read them as `&str`
/// (`record.path.as_str()`); build them with `.into()` from a `&str` or a
/// `String`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRecord {
    /// When the request arrived.
    pub created_at: DateTime<Utc>,
    /// Media path relative to the root (never a server path).
    pub path: LogText,
    /// User id from the [`Viewer`](crate::extension::Viewer), if any.
    pub user_id: Option<LogText>,
    /// Whether the viewer was authenticated.
    pub is_authenticated: bool,
    /// Client IP, if known and valid.
    pub ip: Option<LogText>,
    /// Request method.
    pub method: LogText,
    /// Response status.
    pub status: u16,
    /// The request's `Range` header, cut to a bounded length.
    pub range_header: Option<LogText>,
    /// Body bytes actually handed to the connection.
    pub bytes_sent: u64,
    /// From the request's arrival to the end of the body, in milliseconds.
    pub duration_ms: u64,
    /// `User-Agent`, cut to a bounded length.
    pub user_agent: Option<LogText>,
    /// Whether the whole body was sent (false: the client went away or the
    /// stream failed).
    pub completed: bool,
}

impl WatchRecord {
    /// Who watched, for grouping, by the one [`ViewerKey`] rule:
    /// `u:<user id>`, else `ip:<address>`, else `anonymous`.
    pub fn viewer_key(&self) -> String {
        ViewerKey::from_stored(self.user_id.as_deref(), self.ip.as_deref()).into()
    }
}

/// Rows stored together in one transaction, under an id that makes storing
/// them idempotent.
///
/// A store records the id of every batch it commits and skips a batch whose
/// id it has already committed, so retrying after an ambiguous commit (the
/// connection died during `COMMIT`) or replaying a spool file never stores a
/// row twice. One id per batch instead of one per row keeps that guarantee
/// off the per-row cost of a write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchBatch {
    /// Unique id of the batch (a random UUID by default).
    pub id: String,
    /// The rows, in the order they were recorded.
    pub records: Vec<WatchRecord>,
}

impl WatchBatch {
    /// A batch of `records` under a fresh random id.
    pub fn new(records: Vec<WatchRecord>) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            records,
        }
    }
}

/// A stored row (the read model).
#[derive(
    Clone, Debug, PartialEq, Eq, Serialize, Deserialize, diesel::Queryable, diesel::Selectable,
)]
#[diesel(table_name = super::schema::watch_logs)]
pub struct WatchLogEntry {
    /// Row id.
    pub id: i64,
    /// When the request arrived, UTC.
    pub created_at: NaiveDateTime,
    /// Media path relative to the root.
    pub path: String,
    /// User id, if any.
    pub user_id: Option<String>,
    /// Whether the viewer was authenticated.
    pub is_authenticated: bool,
    /// `u:<user id>`, `ip:<address>` or `anonymous`.
    pub viewer_key: String,
    /// Client IP.
    pub ip: Option<String>,
    /// Request method.
    pub method: String,
    /// Response status.
    pub status: i32,
    /// The request's `Range` header.
    pub range_header: Option<String>,
    /// Body bytes sent.
    pub bytes_sent: i64,
    /// Duration in milliseconds.
    pub duration_ms: i64,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// Whether the body was sent in full.
    pub completed: bool,
}

/// Which rows a query returns; every field narrows, `Default` matches all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFilter {
    /// Exact media path.
    pub path: Option<String>,
    /// Exact user id.
    pub user_id: Option<String>,
    /// Authenticated or not.
    pub authenticated: Option<bool>,
    /// Exact client IP.
    pub ip: Option<String>,
    /// Rows at or after this time (UTC).
    pub since: Option<NaiveDateTime>,
    /// Rows before this time (UTC).
    pub until: Option<NaiveDateTime>,
    /// Exact status.
    pub status: Option<i32>,
    /// Substring of path, user id or IP (case-sensitive on PostgreSQL).
    pub search: Option<String>,
}

/// Position after the last row of a page, for keyset pagination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// `created_at` of the last row.
    pub created_at: NaiveDateTime,
    /// `id` of the last row.
    pub id: i64,
}

impl Cursor {
    /// The cursor after `entry`.
    pub fn after(entry: &WatchLogEntry) -> Self {
        Self {
            created_at: entry.created_at,
            id: entry.id,
        }
    }

    /// A compact text form for URLs: `<micros>.<id>`.
    pub fn encode(&self) -> String {
        format!(
            "{}.{}",
            self.created_at.and_utc().timestamp_micros(),
            self.id
        )
    }

    /// Parses [`Cursor::encode`]'s form.
    pub fn decode(text: &str) -> Option<Self> {
        let (micros, id) = text.split_once('.')?;
        let created_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?.naive_utc();
        Some(Self {
            created_at,
            id: id.parse().ok()?,
        })
    }
}

/// One page of rows, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The rows.
    pub entries: Vec<WatchLogEntry>,
    /// Where the next page starts, if there is one.
    pub next: Option<Cursor>,
}

/// Per-path totals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStats {
    /// Media path.
    pub path: String,
    /// Logged responses.
    pub views: i64,
    /// Distinct viewers (by user id, else IP).
    pub unique_viewers: i64,
    /// Body bytes sent in total.
    pub bytes_sent: i64,
}

impl LogFilter {
    /// Whether `entry` passes this filter (the in-memory twin of the SQL).
    pub fn matches(&self, entry: &WatchLogEntry) -> bool {
        let eq = |want: &Option<String>, got: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == got)
        };
        eq(&self.path, Some(&entry.path))
            && eq(&self.user_id, entry.user_id.as_deref())
            && eq(&self.ip, entry.ip.as_deref())
            && self
                .authenticated
                .is_none_or(|a| a == entry.is_authenticated)
            && self.status.is_none_or(|s| s == entry.status)
            && self.since.is_none_or(|t| entry.created_at >= t)
            && self.until.is_none_or(|t| entry.created_at < t)
            && self.search.as_deref().is_none_or(|q| {
                entry.path.contains(q)
                    || entry.user_id.as_deref().is_some_and(|u| u.contains(q))
                    || entry.ip.as_deref().is_some_and(|i| i.contains(q))
            })
    }
}
