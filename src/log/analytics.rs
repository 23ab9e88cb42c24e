//! Viewing sessions and daily counts derived from watch-log rows.
//!
//! Players fetch a video as many ranged requests; one viewer's requests for
//! one video belong to the same *viewing session* until a gap of more than
//! `gap` separates them. A session's coverage is the union of the byte
//! ranges actually sent, so seeking back and forth is not counted twice.

use std::collections::BTreeMap;
use std::ops::Range;

use chrono::NaiveDateTime;
use serde::Serialize;

/// Defined with the other read models; re-exported here, where it started.
pub use super::query::DayCount;
use super::query::WatchLogEntry;

/// One viewer watching one video without a long pause.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ViewingSession {
    /// `u:<user id>`, `ip:<address>` or `anonymous`.
    pub viewer_key: String,
    /// The user id, if any.
    pub user_id: Option<String>,
    /// The client IP of the first request.
    pub ip: Option<String>,
    /// Media path.
    pub path: String,
    /// First request.
    pub started: NaiveDateTime,
    /// Last request.
    pub ended: NaiveDateTime,
    /// Requests in the session.
    pub requests: usize,
    /// Body bytes sent in the session.
    pub bytes_sent: u64,
    /// One past the furthest byte sent.
    pub furthest_byte: u64,
    /// Distinct bytes of the file sent.
    pub covered_bytes: u64,
    /// `covered_bytes` as a share of the file, when its size is known.
    pub percent_watched: Option<f64>,
}

/// The byte range of the file a row sent, when it can be told.
///
/// The row's recorded [`range_start`](WatchLogEntry::range_start) (what
/// `ServeMedia` served) decides; the `Range` header is parsed only for rows
/// without it (written before the column existed, or imported). A multipart
/// response is counted from its first range's start, an estimate.
fn sent_range(entry: &WatchLogEntry, file_len: Option<u64>) -> Option<Range<u64>> {
    let sent = u64::try_from(entry.bytes_sent).ok().filter(|n| *n > 0)?;
    if !matches!(entry.status, 200 | 206) {
        return None;
    }
    let start = match entry.range_start {
        Some(start) => u64::try_from(start).ok()?,
        None => start_from_header(entry, sent, file_len)?,
    };
    Some(start..start.saturating_add(sent))
}

/// The fallback for rows without `range_start`: the start of the first
/// range the request's header named.
fn start_from_header(entry: &WatchLogEntry, sent: u64, file_len: Option<u64>) -> Option<u64> {
    if entry.status == 200 {
        return Some(0);
    }
    let spec = entry
        .range_header
        .as_deref()?
        .split_once('=')?
        .1
        .split(',')
        .next()?
        .trim();
    let (first, _) = spec.split_once('-')?;
    if first.trim().is_empty() {
        // Suffix range: it ends at the end of the file.
        file_len?.checked_sub(sent)
    } else {
        first.trim().parse().ok()
    }
}

/// Groups `entries` into sessions split by pauses longer than `gap`, newest
/// session first. `file_len` gives a media file's size for the percentage.
pub fn sessions(
    entries: &[WatchLogEntry],
    gap: chrono::Duration,
    file_len: impl Fn(&str) -> Option<u64>,
) -> Vec<ViewingSession> {
    let mut by_viewer: BTreeMap<(&str, &str), Vec<&WatchLogEntry>> = BTreeMap::new();
    for entry in entries {
        by_viewer
            .entry((&entry.viewer_key, &entry.path))
            .or_default()
            .push(entry);
    }
    let mut out = Vec::new();
    for ((_, path), mut rows) in by_viewer {
        rows.sort_by_key(|e| (e.created_at, e.id));
        let len = file_len(path);
        let mut current: Option<(ViewingSession, Vec<Range<u64>>)> = None;
        for row in rows {
            let split = current
                .as_ref()
                .is_some_and(|(s, _)| row.created_at - s.ended > gap);
            if split {
                out.extend(current.take().map(|(s, r)| finish(s, r, len)));
            }
            let (session, ranges) = current.get_or_insert_with(|| {
                (
                    ViewingSession {
                        viewer_key: row.viewer_key.clone(),
                        user_id: row.user_id.clone(),
                        ip: row.ip.clone(),
                        path: row.path.clone(),
                        started: row.created_at,
                        ended: row.created_at,
                        requests: 0,
                        bytes_sent: 0,
                        furthest_byte: 0,
                        covered_bytes: 0,
                        percent_watched: None,
                    },
                    Vec::new(),
                )
            });
            session.ended = row.created_at;
            session.requests += 1;
            session.bytes_sent += u64::try_from(row.bytes_sent).unwrap_or(0);
            if let Some(range) = sent_range(row, len) {
                session.furthest_byte = session.furthest_byte.max(range.end);
                ranges.push(range);
            }
        }
        out.extend(current.take().map(|(s, r)| finish(s, r, len)));
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.ended));
    out
}

fn finish(
    mut session: ViewingSession,
    mut ranges: Vec<Range<u64>>,
    len: Option<u64>,
) -> ViewingSession {
    ranges.sort_by_key(|r| r.start);
    let mut covered = 0u64;
    let mut reach = 0u64;
    for range in ranges {
        let start = range.start.max(reach);
        if range.end > start {
            covered += range.end - start;
        }
        reach = reach.max(range.end);
    }
    session.covered_bytes = covered;
    session.percent_watched = len
        .filter(|l| *l > 0)
        .map(|l| (covered.min(l) as f64 * 100.0 / l as f64 * 10.0).round() / 10.0);
    session
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn row(
        id: i64,
        viewer: &str,
        path: &str,
        minute: i64,
        status: i32,
        range: Option<&str>,
        sent: i64,
    ) -> WatchLogEntry {
        WatchLogEntry {
            id,
            created_at: NaiveDate::from_ymd_opt(2026, 11, 24)
                .unwrap()
                .and_hms_opt(10, 0, 0)
                .unwrap()
                + chrono::Duration::minutes(minute),
            path: path.into(),
            user_id: None,
            is_authenticated: false,
            viewer_key: viewer.into(),
            ip: Some("127.0.0.1".into()),
            method: "GET".into(),
            status,
            range_header: range.map(Into::into),
            bytes_sent: sent,
            duration_ms: 1,
            user_agent: None,
            completed: true,
            range_start: None,
        }
    }

    #[test]
    fn groups_by_viewer_path_and_gap_and_measures_coverage() {
        let rows = vec![
            row(1, "ip:a", "v.mp4", 0, 206, Some("bytes=0-"), 400),
            row(2, "ip:a", "v.mp4", 1, 206, Some("bytes=200-"), 400), // overlaps 200..400
            row(3, "ip:a", "v.mp4", 2, 206, Some("bytes=-100"), 100), // 900..1000
            row(4, "ip:a", "v.mp4", 60, 206, Some("bytes=0-99"), 100), // new session
            row(5, "ip:b", "v.mp4", 1, 200, None, 1000),
            row(6, "ip:a", "w.mp4", 1, 404, None, 15),
        ];
        let sessions = sessions(&rows, chrono::Duration::minutes(30), |p| {
            (p == "v.mp4").then_some(1000)
        });
        assert_eq!(sessions.len(), 4);
        let first_a = sessions
            .iter()
            .find(|s| s.viewer_key == "ip:a" && s.requests == 3)
            .unwrap();
        assert_eq!(first_a.covered_bytes, 700);
        assert_eq!(first_a.furthest_byte, 1000);
        assert_eq!(first_a.bytes_sent, 900);
        assert_eq!(first_a.percent_watched, Some(70.0));
        let later_a = sessions
            .iter()
            .find(|s| s.viewer_key == "ip:a" && s.requests == 1 && s.path == "v.mp4")
            .unwrap();
        assert_eq!(later_a.percent_watched, Some(10.0));
        let b = sessions.iter().find(|s| s.viewer_key == "ip:b").unwrap();
        assert_eq!(b.percent_watched, Some(100.0));
        let w = sessions.iter().find(|s| s.path == "w.mp4").unwrap();
        assert_eq!((w.covered_bytes, w.percent_watched), (0, None));
        assert_eq!(sessions[0].path, "v.mp4", "newest first");
    }

    #[test]
    fn the_recorded_start_wins_over_the_header() {
        // The header says 0-, but ServeMedia served from 500 (say a layer
        // rewrote the range): the row's own start decides.
        let mut served = row(1, "ip:a", "v.mp4", 0, 206, Some("bytes=0-"), 100);
        served.range_start = Some(500);
        // An old row without the column still falls back to its header.
        let old = row(2, "ip:a", "v.mp4", 1, 206, Some("bytes=800-"), 100);
        assert_eq!(sent_range(&served, Some(1000)), Some(500..600));
        assert_eq!(sent_range(&old, Some(1000)), Some(800..900));
        let sessions = sessions(&[served, old], chrono::Duration::minutes(30), |_| {
            Some(1000)
        });
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].covered_bytes, 200);
        assert_eq!(sessions[0].furthest_byte, 900);
        assert_eq!(sessions[0].percent_watched, Some(20.0));
    }

    #[test]
    fn a_full_response_recorded_from_zero_and_a_refusal_covers_nothing() {
        let mut full = row(1, "ip:a", "v.mp4", 0, 200, None, 1000);
        full.range_start = Some(0);
        assert_eq!(sent_range(&full, Some(1000)), Some(0..1000));
        let refused = row(2, "ip:a", "v.mp4", 0, 416, Some("bytes=5000-"), 21);
        assert_eq!(sent_range(&refused, Some(1000)), None);
    }
}
