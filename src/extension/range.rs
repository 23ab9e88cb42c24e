//! [`RangeRequest`]: the parsed `Range` header.

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
