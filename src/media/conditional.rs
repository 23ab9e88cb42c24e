//! Preconditions of RFC 9110 §13.2.2, evaluated in the order it gives.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{header, HeaderMap, Method};

/// What the preconditions decide for a request on an existing file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Go on; `honour_range` is false when `If-Range` did not match.
    Proceed { honour_range: bool },
    /// `304 Not Modified`.
    NotModified,
    /// `412 Precondition Failed`.
    Failed,
}

/// The validators of one file.
pub(crate) struct Validators<'a> {
    /// Strong entity tag, quotes included.
    pub(crate) etag: &'a str,
    /// Modification time truncated to whole seconds, as HTTP dates carry.
    pub(crate) modified: Option<SystemTime>,
    /// The modification time as the file system keeps it.
    pub(crate) modified_exact: Option<SystemTime>,
    /// When this response is made (its `Date`).
    pub(crate) now: SystemTime,
}

pub(crate) fn evaluate(method: &Method, headers: &HeaderMap, v: &Validators<'_>) -> Outcome {
    let get_or_head = matches!(*method, Method::GET | Method::HEAD);
    // Step 1 and 2: If-Match, else If-Unmodified-Since.
    if let Some(value) = header_str(headers, header::IF_MATCH) {
        if !etag_list_matches(&value, v.etag, true) {
            return Outcome::Failed;
        }
    } else if let (Some(since), Some(modified)) = (
        header_date(headers, header::IF_UNMODIFIED_SINCE),
        v.modified,
    ) {
        if modified > since {
            return Outcome::Failed;
        }
    }
    // Step 3 and 4: If-None-Match, else If-Modified-Since (GET/HEAD only).
    if let Some(value) = header_str(headers, header::IF_NONE_MATCH) {
        if etag_list_matches(&value, v.etag, false) {
            return if get_or_head {
                Outcome::NotModified
            } else {
                Outcome::Failed
            };
        }
    } else if get_or_head {
        if let (Some(since), Some(modified)) =
            (header_date(headers, header::IF_MODIFIED_SINCE), v.modified)
        {
            if modified <= since {
                return Outcome::NotModified;
            }
        }
    }
    // Step 5: If-Range decides whether a Range applies. RFC 9110 speaks of
    // GET; HEAD must answer with GET's headers, so it is judged the same.
    let honour_range = match header_str(headers, header::IF_RANGE) {
        None => true,
        Some(_) if !get_or_head => true,
        Some(value) => if_range_matches(value.trim(), v),
    };
    Outcome::Proceed { honour_range }
}

fn if_range_matches(value: &str, v: &Validators<'_>) -> bool {
    if value.starts_with('"') || value.starts_with("W/") {
        // Weak tags never match: If-Range needs a strong comparison.
        return value == v.etag;
    }
    // A date is a strong validator only if the file cannot have changed
    // twice within the second it names (RFC 9110 §13.1.5, §8.8.2.2): it
    // was last modified at least a second before this response. Otherwise
    // a same-second, same-size replacement would match the old copy's
    // date and splice two files.
    let strong = v
        .modified_exact
        .and_then(|exact| exact.checked_add(Duration::from_secs(1)))
        .is_some_and(|settled| settled <= v.now);
    match (httpdate::parse_http_date(value).ok(), v.modified) {
        (Some(date), Some(modified)) => strong && date == modified,
        _ => false,
    }
}

/// A list header's field lines joined with commas (RFC 9110 §5.3).
fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<Cow<'_, str>> {
    let mut values = headers.get_all(name).iter();
    // An unreadable value counts as present but matching nothing.
    let first = values.next()?.to_str().unwrap_or("");
    let mut joined = Cow::Borrowed(first);
    for value in values {
        let joined = joined.to_mut();
        joined.push_str(", ");
        joined.push_str(value.to_str().unwrap_or(""));
    }
    Some(joined)
}

fn header_date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    // An invalid date is ignored, as RFC 9110 §13.1.3 and §13.1.4 require.
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
}

/// Whether a comma-separated list of entity tags (or `*`) matches `ours`.
/// `strong` selects strong comparison (If-Match) over weak (If-None-Match).
fn etag_list_matches(list: &str, ours: &str, strong: bool) -> bool {
    if list.trim() == "*" {
        return true;
    }
    let ours_opaque = ours;
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let weak = rest.starts_with("W/");
        if weak {
            rest = &rest[2..];
        }
        if !rest.starts_with('"') {
            return false;
        }
        // The opaque tag runs to the next quote; commas inside it are allowed.
        let Some(close) = rest[1..].find('"') else {
            return false;
        };
        let opaque = &rest[..close + 2];
        if opaque == ours_opaque && !(strong && weak) {
            return true;
        }
        rest = &rest[close + 2..];
    }
}

/// A modification time cut to whole seconds, or `None` when the platform
/// gives none or it lies before 1970.
pub(crate) fn whole_seconds(time: std::io::Result<SystemTime>) -> Option<SystemTime> {
    let secs = time.ok()?.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const TAG: &str = "\"5f-10\"";

    /// The file's modification time: 0.7 s into a second.
    fn modified_exact() -> SystemTime {
        UNIX_EPOCH + Duration::new(1_700_000_000, 700_000_000)
    }

    fn outcome(method: Method, pairs: &[(header::HeaderName, &str)]) -> Outcome {
        // An hour after the modification: its date is a strong validator.
        outcome_at(method, pairs, modified_exact() + Duration::from_secs(3600))
    }

    fn outcome_at(
        method: Method,
        pairs: &[(header::HeaderName, &str)],
        now: SystemTime,
    ) -> Outcome {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        let exact = modified_exact();
        evaluate(
            &method,
            &headers,
            &Validators {
                etag: TAG,
                modified: whole_seconds(Ok(exact)),
                modified_exact: Some(exact),
                now,
            },
        )
    }

    /// `If-Range` with a date honours the range only when the file was
    /// modified at least a second before the response: a second in which
    /// it may have changed twice does not name one version.
    #[test]
    fn if_range_date_is_strong_only_a_second_after_the_change() {
        let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let pairs = [(header::IF_RANGE, date.as_str())];
        let at = |after_ms: u64| {
            outcome_at(
                Method::GET,
                &pairs,
                modified_exact() + Duration::from_millis(after_ms),
            )
        };
        let honour = |honour_range| Outcome::Proceed { honour_range };
        // The same second as the change.
        assert_eq!(at(0), honour(false));
        assert_eq!(at(200), honour(false));
        // The next second by the clock (`Date` one second later), but
        // only half a second after the change: still not strong.
        assert_eq!(at(500), honour(false));
        assert_eq!(at(999), honour(false));
        assert_eq!(at(1000), honour(true));
        assert_eq!(at(60_000), honour(true));
        // A modification time in the future (clock skew) is never settled.
        assert_eq!(
            outcome_at(
                Method::GET,
                &pairs,
                modified_exact() - Duration::from_secs(5)
            ),
            honour(false)
        );
        // The tag needs no such wait; other date headers compare as before
        // (If-Modified-Since is a weak comparison).
        assert_eq!(
            outcome_at(Method::GET, &[(header::IF_RANGE, TAG)], modified_exact()),
            honour(true)
        );
        assert_eq!(
            outcome_at(
                Method::GET,
                &[(header::IF_MODIFIED_SINCE, date.as_str())],
                modified_exact()
            ),
            Outcome::NotModified
        );
    }

    #[test]
    fn rfc_9110_precondition_order() {
        use header::*;
        let old = "Mon, 01 Jan 2001 00:00:00 GMT";
        let same = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let later = "Fri, 01 Jan 2100 00:00:00 GMT";
        let go = Outcome::Proceed { honour_range: true };
        let no_range = Outcome::Proceed {
            honour_range: false,
        };
        let cases: Vec<(Method, Vec<(HeaderName, &str)>, Outcome)> = vec![
            (Method::GET, vec![], go),
            (
                Method::GET,
                vec![(IF_MATCH, TAG)],
                Outcome::Proceed { honour_range: true },
            ),
            (
                Method::GET,
                vec![(IF_MATCH, "*")],
                Outcome::Proceed { honour_range: true },
            ),
            (
                Method::GET,
                vec![(IF_MATCH, "\"x\", \"5f-10\"")],
                Outcome::Proceed { honour_range: true },
            ),
            (
                Method::GET,
                vec![(IF_MATCH, "W/\"5f-10\"")],
                Outcome::Failed,
            ),
            (Method::GET, vec![(IF_MATCH, "\"other\"")], Outcome::Failed),
            (
                Method::GET,
                vec![(IF_UNMODIFIED_SINCE, old)],
                Outcome::Failed,
            ),
            (
                Method::GET,
                vec![(IF_UNMODIFIED_SINCE, later)],
                Outcome::Proceed { honour_range: true },
            ),
            (
                Method::GET,
                vec![(IF_UNMODIFIED_SINCE, "garbage")],
                Outcome::Proceed { honour_range: true },
            ),
            // If-Match takes precedence over If-Unmodified-Since.
            (
                Method::GET,
                vec![(IF_MATCH, TAG), (IF_UNMODIFIED_SINCE, old)],
                Outcome::Proceed { honour_range: true },
            ),
            (
                Method::GET,
                vec![(IF_NONE_MATCH, TAG)],
                Outcome::NotModified,
            ),
            (
                Method::HEAD,
                vec![(IF_NONE_MATCH, "W/\"5f-10\"")],
                Outcome::NotModified,
            ),
            (
                Method::GET,
                vec![(IF_NONE_MATCH, "*")],
                Outcome::NotModified,
            ),
            (Method::DELETE, vec![(IF_NONE_MATCH, TAG)], Outcome::Failed),
            (
                Method::GET,
                vec![(IF_NONE_MATCH, "\"x\"")],
                Outcome::Proceed { honour_range: true },
            ),
            (
                Method::GET,
                vec![(IF_MODIFIED_SINCE, same.as_str())],
                Outcome::NotModified,
            ),
            (
                Method::GET,
                vec![(IF_MODIFIED_SINCE, later)],
                Outcome::NotModified,
            ),
            (
                Method::GET,
                vec![(IF_MODIFIED_SINCE, old)],
                Outcome::Proceed { honour_range: true },
            ),
            // If-None-Match takes precedence over If-Modified-Since.
            (
                Method::GET,
                vec![(IF_NONE_MATCH, "\"x\""), (IF_MODIFIED_SINCE, later)],
                Outcome::Proceed { honour_range: true },
            ),
            (
                Method::GET,
                vec![(IF_RANGE, TAG)],
                Outcome::Proceed { honour_range: true },
            ),
            (
                Method::GET,
                vec![(IF_RANGE, "W/\"5f-10\"")],
                Outcome::Proceed {
                    honour_range: false,
                },
            ),
            (
                Method::GET,
                vec![(IF_RANGE, "\"old\"")],
                Outcome::Proceed {
                    honour_range: false,
                },
            ),
            (
                Method::GET,
                vec![(IF_RANGE, same.as_str())],
                Outcome::Proceed { honour_range: true },
            ),
            (Method::GET, vec![(IF_RANGE, later)], no_range),
        ];
        for (method, headers, want) in cases {
            assert_eq!(
                outcome(method.clone(), &headers),
                want,
                "{method} {headers:?}"
            );
        }
    }

    #[test]
    fn etag_list_allows_commas_inside_tags() {
        assert!(etag_list_matches("\"a,b\", \"5f-10\"", TAG, true));
        assert!(!etag_list_matches("\"a,b\"", TAG, true));
        assert!(!etag_list_matches("garbage", TAG, false));
        assert!(!etag_list_matches("\"unterminated", TAG, false));
    }
}
