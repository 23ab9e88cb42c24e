//! The contract between layers: typed request and response extensions.
//!
//! Layers never import each other or the server; when two of them need the
//! same fact, one computes it and puts it here, and the other reads it.
//!
//! | extension | on | set by | read by |
//! |---|---|---|---|
//! | [`PeerAddr`] | request | `server::serve` (or axum's `ConnectInfo`, feature `axum`) | [`ClientIp::resolve`] |
//! | [`ClientIp`] | request | `ResolveClientIpLayer` at the edge, after the trusted-proxy walk | the watch log, the stream limit ([`ViewerKey`]), metrics, through [`ClientIp::of`] |
//! | [`Viewer`] | request | authentication (`BearerAuthLayer`, yours) | permissions, stream limit, watch log |
//! | [`MediaPath`] (or the [`MediaPathError`] refusing it) | request | `ResolveMediaPathLayer` at the edge, through [`MediaPathSource`] (the watch log and `ServeMedia` decode it themselves when no edge layer ran) | permissions, the watch log, `ServeMedia` |
//! | [`RangeRequest`] | request | `ParseRangeLayer` | `ServeMedia` |
//! | [`VolumeCap`] | request | `CapVolumeLayer` | `ServeMedia` |
//! | [`ServedFile`] | response | `ServeMedia` | the watch log, analytics |
//! | [`ZeroCopy`] | request | `server::serve` (zero-copy HTTP/1.x connections); withdrawn by [`NoZeroCopyLayer`] | `ServeMedia` (placeholder chunks only when offered) |
//!
//! Two rules live here once: [`MediaPathSource`] (which media path a
//! request names) and [`ViewerKey`] (whom a request counts as).

mod client_ip;
mod media_path;
mod peer;
mod range;
mod viewer;
mod zero_copy;

pub use client_ip::{anonymize_ip, ClientIp, InvalidIpNet, IpNet};
pub(crate) use media_path::normalise;
pub use media_path::{
    MediaPath, MediaPathError, MediaPathSource, PathSignature, DEFAULT_MAX_PATH_LEN,
    DEFAULT_PATH_VAR, PATH_SIGNATURE_SEGMENT,
};
pub use peer::PeerAddr;
pub use range::{resolve as resolve_ranges, ByteRangeSpec, RangeRequest, Resolved};
pub(crate) use viewer::ANONYMOUS;
pub use viewer::{Viewer, ViewerKey};
pub use zero_copy::{NoZeroCopy, NoZeroCopyLayer, ZeroCopy};

/// Request extension: the most bytes the response to this request may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeCap(u64);

impl VolumeCap {
    /// A cap of `bytes` (at least 1).
    pub const fn new(bytes: u64) -> Self {
        Self(if bytes == 0 { 1 } else { bytes })
    }

    /// A cap of `mib` mebibytes (1 MiB = 1 048 576 bytes), as
    /// `STREAM_MAX_LOAD_VOLUME` counts.
    pub const fn from_mib(mib: u64) -> Self {
        Self::new(mib.saturating_mul(1024 * 1024))
    }

    /// The cap in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

/// Response extension set by `ServeMedia` whenever it found the file: the
/// media path relative to the root, as normalised, the file's length, and
/// where in the file the body starts.
///
/// Outer layers (the watch log) read it instead of parsing the request again.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServedFile {
    /// Path relative to the media root, `/`-separated.
    pub path: String,
    /// Length of the file in bytes.
    pub len: u64,
    /// Offset in the file of the first byte the body carries: 0 for a full
    /// `200`, the range's start for a single-range `206`, the first
    /// (lowest) range's start for a `multipart/byteranges` one. `None` when
    /// the body carries none of the file (`304`, `412`, `416`).
    pub range_start: Option<u64>,
}

impl ServedFile {
    /// The file at `path` (relative to the root, `/`-separated), `len` bytes
    /// long.
    pub fn new(path: impl Into<String>, len: u64) -> Self {
        Self {
            path: path.into(),
            len,
            range_start: None,
        }
    }

    /// The same, with the body starting at byte `start` of the file (see
    /// [`range_start`](Self::range_start)).
    #[must_use]
    pub fn with_range_start(mut self, start: u64) -> Self {
        self.range_start = Some(start);
        self
    }
}
