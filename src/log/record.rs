//! What the layer records: [`WatchRecord`], and the [`WatchBatch`] the
//! writer stores it in.

use chrono::{DateTime, Utc};
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
