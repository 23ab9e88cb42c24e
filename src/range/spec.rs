//! Parsing `Range` values into byte-range specs (their resolution against a
//! file length is shared with the file service: `extension::resolve_ranges`).

use crate::extension::{ByteRangeSpec, RangeRequest};

impl RangeRequest {
    /// Parses a `Range` header value with the RFC 9110 grammar.
    ///
    /// Returns `None` when the value is not a valid `bytes` range set or holds
    /// more than `max_ranges` specs; callers then ignore the header.
    pub fn parse(value: &str, max_ranges: usize) -> Option<Self> {
        let (unit, set) = value.split_once('=')?;
        if !unit.trim().eq_ignore_ascii_case("bytes") {
            return None;
        }
        let mut specs = Vec::new();
        // RFC 9110 §5.6.1: a list may contain empty elements, which are skipped.
        for element in set.split(',') {
            let element = element.trim_matches(|c| c == ' ' || c == '\t');
            if element.is_empty() {
                continue;
            }
            if specs.len() == max_ranges {
                return None;
            }
            specs.push(parse_spec(element)?);
        }
        Self::new(specs)
    }
}

fn parse_spec(spec: &str) -> Option<ByteRangeSpec> {
    let (first, last) = spec.split_once('-')?;
    if first.is_empty() {
        return Some(ByteRangeSpec::Last(parse_digits(last)?));
    }
    let first = parse_digits(first)?;
    if last.is_empty() {
        return Some(ByteRangeSpec::From(first));
    }
    let last = parse_digits(last)?;
    // RFC 9110 §14.1.1: last < first makes the whole header invalid.
    (first <= last).then_some(ByteRangeSpec::FromTo(first, last))
}

/// ASCII digits only; values too large for `u64` saturate, which keeps their
/// meaning ("past the end") without overflow.
pub(super) fn parse_digits(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use crate::extension::{resolve_ranges as resolve, Resolved};
    use ByteRangeSpec::*;

    #[test]
    fn parses_rfc_grammar() {
        let cases: &[(&str, Option<Vec<ByteRangeSpec>>)] = &[
            ("bytes=0-1", Some(vec![FromTo(0, 1)])),
            ("bytes=0-", Some(vec![From(0)])),
            ("bytes=-500", Some(vec![Last(500)])),
            ("BYTES = 1-2 , 4-", Some(vec![FromTo(1, 2), From(4)])),
            ("bytes=0-0,,-1", Some(vec![FromTo(0, 0), Last(1)])),
            ("bytes=99999999999999999999999-", Some(vec![From(u64::MAX)])),
            ("bytes=5-4", None),
            ("bytes=", None),
            ("bytes=-", None),
            ("bytes=a-b", None),
            ("bytes=1-2-3", None),
            ("bytes=+1-2", None),
            ("items=0-1", None),
            ("0-1", None),
            ("bytes=0-1,x", None),
        ];
        for (value, want) in cases {
            let got = RangeRequest::parse(value, 8).map(|r| r.specs().to_vec());
            assert_eq!(&got, want, "{value}");
        }
    }

    #[test]
    fn too_many_ranges_are_ignored() {
        let value = format!("bytes={}", ["0-0"; 9].join(","));
        assert!(RangeRequest::parse(&value, 8).is_none());
        assert!(RangeRequest::parse(&value, 9).is_some());
    }

    #[test]
    fn resolves_clamps_and_coalesces() {
        let cases: &[(&[ByteRangeSpec], u64, Option<u64>, Resolved)] = &[
            (&[FromTo(0, 1)], 10, None, Resolved::Ranges(vec![0..2])),
            (&[FromTo(5, 100)], 10, None, Resolved::Ranges(vec![5..10])),
            (&[From(3)], 10, None, Resolved::Ranges(vec![3..10])),
            (&[Last(4)], 10, None, Resolved::Ranges(vec![6..10])),
            (&[Last(40)], 10, None, Resolved::Ranges(vec![0..10])),
            (&[Last(0)], 10, None, Resolved::Unsatisfiable),
            (&[From(10)], 10, None, Resolved::Unsatisfiable),
            (&[From(0)], 0, None, Resolved::Unsatisfiable),
            (&[Last(1)], 0, None, Resolved::Unsatisfiable),
            (
                &[FromTo(0, 1), FromTo(2, 3)],
                10,
                None,
                Resolved::Ranges(vec![0..4]),
            ),
            (
                &[FromTo(6, 7), FromTo(0, 1)],
                10,
                None,
                Resolved::Ranges(vec![0..2, 6..8]),
            ),
            (&[From(0)], 100, Some(8), Resolved::Ranges(vec![0..8])),
            (
                &[FromTo(0, 3), FromTo(10, 20)],
                100,
                Some(6),
                Resolved::Ranges(vec![0..4, 10..12]),
            ),
            (&[FromTo(0, 1)], 100, Some(8), Resolved::Ranges(vec![0..2])),
        ];
        for (specs, len, cap, want) in cases {
            assert_eq!(
                &resolve(specs, *len, *cap),
                want,
                "{specs:?} len={len} cap={cap:?}"
            );
        }
    }

    #[test]
    fn thousands_of_overlaps_never_exceed_the_file() {
        let specs = vec![From(0); 10_000];
        assert_eq!(resolve(&specs, 1000, None), Resolved::Ranges(vec![0..1000]));
    }
}
