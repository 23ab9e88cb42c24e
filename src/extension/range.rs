//! [`RangeRequest`]: the parsed `Range` header, and [`resolve`]: its
//! resolution against a file length, shared by the range layer and the
//! file service.

use std::ops::Range;

/// One `byte-range-spec` of a `Range` header, before the length of the
/// representation is known (RFC 9110 §14.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRangeSpec {
    /// `first-last`, both inclusive.
    FromTo(u64, u64),
    /// `first-`: from `first` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Last(u64),
}

/// A valid byte-range request, inserted into request extensions by
/// [`ParseRangeLayer`](crate::range::ParseRangeLayer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeRequest {
    pub(crate) specs: Vec<ByteRangeSpec>,
}

impl RangeRequest {
    /// A request for these specs, in the order the client sent them.
    ///
    /// Returns `None` for an empty list, which is not a valid range request.
    pub fn new(specs: Vec<ByteRangeSpec>) -> Option<Self> {
        if specs.is_empty() {
            None
        } else {
            Some(Self { specs })
        }
    }

    /// The specs in the order the client sent them.
    pub fn specs(&self) -> &[ByteRangeSpec] {
        &self.specs
    }
}

/// The outcome of resolving a [`RangeRequest`] against a file length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// No spec overlaps the file: answer `416` with `Content-Range: bytes */len`.
    Unsatisfiable,
    /// Sorted, non-overlapping, non-adjacent half-open byte ranges, never empty.
    Ranges(Vec<Range<u64>>),
}

/// Resolves specs against a file of `len` bytes: ends past the file are
/// clamped, unsatisfiable specs dropped, overlapping or adjacent ranges
/// coalesced (RFC 9110 §14.3 allows it) and, when `cap` is given, the total
/// cut to at most `cap` bytes, keeping the earliest bytes.
///
/// The work is `O(n log n)` in the number of specs, and the total of the
/// result never exceeds `len`, however the specs overlap.
pub fn resolve(specs: &[ByteRangeSpec], len: u64, cap: Option<u64>) -> Resolved {
    let mut ranges: Vec<Range<u64>> = specs
        .iter()
        .filter_map(|spec| match *spec {
            ByteRangeSpec::FromTo(first, last) if first < len => {
                Some(first..last.saturating_add(1).min(len))
            }
            ByteRangeSpec::From(first) if first < len => Some(first..len),
            ByteRangeSpec::Last(n) if n > 0 && len > 0 => Some(len.saturating_sub(n)..len),
            _ => None,
        })
        .collect();
    if ranges.is_empty() {
        return Resolved::Unsatisfiable;
    }
    ranges.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    if let Some(cap) = cap {
        let mut budget = cap;
        merged.retain_mut(|range| {
            if budget == 0 {
                return false;
            }
            let take = (range.end - range.start).min(budget);
            range.end = range.start + take;
            budget -= take;
            true
        });
        if merged.is_empty() {
            // Only a zero cap gets here; the layers never pass one.
            return Resolved::Unsatisfiable;
        }
    }
    Resolved::Ranges(merged)
}
