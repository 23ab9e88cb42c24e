//! What the layer records: [`WatchRecord`], and the [`WatchBatch`] the
//! writer stores it in.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::text::ip_text;
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
    /// Offset in the file of the first byte the body carried, as `ServeMedia`
    /// reported it ([`ServedFile::range_start`](crate::extension::ServedFile::range_start)):
    /// the row served `[range_start, range_start + bytes_sent)` of the file
    /// (for a multipart response, bytes counted from the first range's
    /// start, an estimate). `None` when no `ServeMedia` served the file (a
    /// refusal, another service inside the log, an imported row).
    // Absent from spool and journal lines written before it existed; left
    // out of them when unknown, so those lines stay as short as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_start: Option<u64>,
}

impl WatchRecord {
    /// Zeroes the host part of [`ip`](Self::ip), as
    /// [`WatchLogLayer::anonymize_ip`](super::WatchLogLayer::anonymize_ip)
    /// does, for rows made elsewhere (an import, your own sink calls). Text
    /// that is not an IP address is removed rather than kept.
    ///
    /// ```
    /// # use sage_stream::log::WatchRecord;
    /// # let mut record = WatchRecord {
    /// #     created_at: chrono::Utc::now(), path: "a.mp4".into(), user_id: None,
    /// #     is_authenticated: false, ip: None, method: "GET".into(), status: 200,
    /// #     range_header: None, bytes_sent: 0, duration_ms: 0, user_agent: None, completed: true,
    /// #     range_start: None,
    /// # };
    /// record.ip = Some("2001:db8:1:2:3:4:5:6".into());
    /// record.anonymize_ip();
    /// assert_eq!(record.ip.as_deref(), Some("2001:db8:1::"));
    /// record.ip = Some("::ffff:192.0.2.77".into());
    /// record.anonymize_ip();
    /// assert_eq!(record.ip.as_deref(), Some("192.0.2.0"));
    /// ```
    pub fn anonymize_ip(&mut self) {
        self.ip = self
            .ip
            .as_deref()
            .and_then(|text| text.parse::<std::net::IpAddr>().ok())
            .map(|ip| LogText::from_compact(ip_text(crate::extension::anonymize_ip(ip))));
    }

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
