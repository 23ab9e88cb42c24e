//! The terminal service: [`ServeMedia`] turns a request into file bytes.
//!
//! # What it enforces
//!
//! - **One media root.** The path comes from a query variable (default
//!   `path`) or from the URI path below a mount prefix. It is
//!   percent-decoded once; `..` components, absolute paths, drive prefixes,
//!   backslashes, control characters (NUL included), empty and over-long
//!   paths are refused with `400`. Symlinks are resolved and a target outside
//!   the root is answered `404` unless
//!   [`ServeMedia::follow_symlinks_outside_root`] allows it. On Linux the
//!   kernel enforces this: files are opened below a handle on the root
//!   (`openat2(RESOLVE_BENEATH)`, or an `O_NOFOLLOW` walk), so a rename
//!   racing the request cannot lead the open outside. Directories and
//!   missing files are `404`, unreadable files `403`. No response names a
//!   server path.
//! - **GET and HEAD only**; other methods get `405` with `Allow`. HEAD gets
//!   exactly GET's headers and no body.
//! - **RFC 9110 semantics**: `Accept-Ranges`, `Content-Type` from the
//!   extension (streaming formats by [`STREAMING_TYPES`], overridable with
//!   [`ServeMedia::mime_type`]), `Content-Length`, a strong `ETag` built
//!   from size and modification time only (replicas on several nodes agree),
//!   `Last-Modified`, the preconditions of §13.2.2 in order (`412`, `304`),
//!   and `If-Range`.
//! - **Ranges** from the [`RangeRequest`](crate::range::RangeRequest)
//!   extension: single ranges get `206` with `Content-Range`, several get
//!   `multipart/byteranges` with an exact `Content-Length`, none satisfiable
//!   `416` with `Content-Range: bytes */LEN`. A [`VolumeCap`](crate::cap::VolumeCap)
//!   extension cuts the total.
//! - **Streaming** in bounded chunks on Tokio's blocking pool, see
//!   [`MediaBody`]. It must run inside a Tokio runtime.
//!
//! # Example
//!
//! ```
//! use http::{Request, StatusCode};
//! use sage_stream::media::ServeMedia;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("clip.mp4"), b"0123456789").unwrap();
//!
//! let svc = ServeMedia::new(dir.path());
//! let req = Request::get("/api/stream?path=clip.mp4").body(()).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()["content-type"], "video/mp4");
//! assert_eq!(res.headers()["content-length"], "10");
//! # }
//! ```

pub(crate) mod body;
mod cache;
mod chunk;
pub(crate) mod conditional;
mod mime;
pub(crate) mod path;
#[cfg(target_os = "linux")]
pub(crate) mod region;
mod resident;
pub(crate) mod respond;
mod service;

pub use crate::extension::ServedFile;
pub use body::MediaBody;
pub use cache::DEFAULT_OPEN_FILE_CACHE;
pub use mime::STREAMING_TYPES;
pub use service::{ResponseFuture, ServeMedia, DEFAULT_CHUNK_SIZE, DEFAULT_MAX_PATH_LEN};

/// The length of `relative` under `root` under the same confinement rules
/// as [`ServeMedia`] (no escape, no symlink out of the root), or `None`.
/// `root` should be canonical. Blocking.
pub fn file_len_under(root: &std::path::Path, relative: &str) -> Option<u64> {
    let relative = crate::extension::normalise(relative, DEFAULT_MAX_PATH_LEN).ok()?;
    path::open_confined(root, &relative, false)
        .ok()
        .map(|(_, meta)| meta.len())
}

/// Whether `EXT=TYPE` is a usable content-type override (the reason if not).
pub(crate) fn check_mime_override(extension: &str, content_type: &str) -> Result<(), &'static str> {
    mime::parse_override(extension, content_type).map(|_| ())
}
