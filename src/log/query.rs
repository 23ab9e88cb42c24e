//! The read models: what a store returns ([`WatchLogEntry`], [`Page`],
//! [`PathStats`], [`DayCount`]) and how it is asked ([`LogFilter`],
//! [`Cursor`]).
//!
//! Plain data with no database types in it: the stores map their rows into
//! these, and reporting ([`analytics`](super::analytics),
//! [`export`](super::export)) reads them.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

/// A stored row (the read model).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Offset in the file of the first byte served (see
    /// [`WatchRecord::range_start`](super::WatchRecord::range_start)); `None`
    /// for rows stored before the column existed, imported rows, and rows of
    /// responses `ServeMedia` did not serve.
    #[serde(default)]
    pub range_start: Option<i64>,
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

/// Views per day, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DayCount {
    /// The UTC day.
    pub day: NaiveDate,
    /// Logged responses that day.
    pub views: i64,
}
