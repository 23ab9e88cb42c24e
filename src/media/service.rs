//! [`ServeMedia`], the terminal service.

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use tokio::task::JoinHandle;
use tower_service::Service;

use super::body::MediaBody;
use super::cache::{FileCache, DEFAULT_OPEN_FILE_CACHE};
use super::chunk::ChunkPool;
use super::mime::{parse_override, MimeTypes};
use super::path::MediaRoot;
use super::respond::{open_and_respond, respond, text, Job, ReadFirst};
use crate::error::ConfigError;
pub use crate::extension::DEFAULT_MAX_PATH_LEN;
use crate::extension::{MediaPathError, MediaPathSource, RangeRequest, VolumeCap};

/// The default size of one read from disk.
pub const DEFAULT_CHUNK_SIZE: usize = 128 * 1024;

#[derive(Clone, Debug)]
struct Config {
    root: Arc<MediaRoot>,
    source: MediaPathSource,
    chunk_size: usize,
    follow_symlinks: bool,
    etag_with_file_id: bool,
    mime: MimeTypes,
    cache_control: Option<HeaderValue>,
    open_file_cache: usize,
    open_file_cache_valid: Duration,
    // Built from the fields above: any change to them starts a new one.
    cache: Arc<FileCache>,
    // Chunk buffers reused across this service's responses (and clones').
    chunks: Arc<ChunkPool>,
}

/// Terminal service that answers GET and HEAD with bytes of a file under one
/// media root, with ranges and conditional requests as RFC 9110 defines them.
///
/// See the [module docs](crate::media) for the rules it enforces.
#[derive(Clone, Debug)]
pub struct ServeMedia {
    config: Arc<Config>,
}

impl ServeMedia {
    /// Serves files below `root`, named by the `path` query variable.
    ///
    /// The root is resolved (symlinks included) and, on Linux, opened once,
    /// here; it should exist. Files are opened below that directory handle,
    /// so renaming another directory over the root later takes a new
    /// service.
    pub fn new(root: impl AsRef<Path>) -> Self {
        let root = root.as_ref();
        let root: PathBuf = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let root = Arc::new(MediaRoot::new(root));
        Self {
            config: Arc::new(Config {
                root: Arc::clone(&root),
                source: MediaPathSource::default(),
                chunk_size: DEFAULT_CHUNK_SIZE,
                follow_symlinks: false,
                etag_with_file_id: false,
                mime: MimeTypes::default(),
                cache_control: None,
                open_file_cache: DEFAULT_OPEN_FILE_CACHE,
                open_file_cache_valid: Duration::ZERO,
                cache: Arc::new(FileCache::new(
                    DEFAULT_OPEN_FILE_CACHE,
                    Duration::ZERO,
                    root,
                )),
                chunks: Arc::default(),
            }),
        }
    }

    /// Applies `change` to this service's own copy of the configuration
    /// (clones made before keep theirs). The open-file cache stays shared:
    /// what it holds does not depend on the settings changed this way.
    fn configure(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(Arc::make_mut(&mut self.config));
        self
    }

    /// [`configure`](Self::configure) for a setting that changes how files
    /// are opened or described: this service gets a new, empty cache.
    fn reconfigure(self, change: impl FnOnce(&mut Config)) -> Self {
        self.configure(|config| {
            change(config);
            config.cache = Arc::new(FileCache::new(
                config.open_file_cache,
                config.open_file_cache_valid,
                Arc::clone(&config.root),
            ));
        })
    }

    /// Where requests name the media path (default: the `path` query
    /// variable), when no outer layer decided it. The answer of an outer
    /// layer (a [`MediaPath`](crate::extension::MediaPath) or the
    /// [`MediaPathError`](crate::extension::MediaPathError) it refused with,
    /// set by [`ResolveMediaPathLayer`](crate::media_path::ResolveMediaPathLayer))
    /// wins, so what is allowed, logged and served is one path.
    pub fn media_path(self, source: MediaPathSource) -> Self {
        self.configure(|c| c.source = source)
    }

    /// Bytes per read from disk (default 128 KiB); at most two such chunks of
    /// one response are in memory at a time.
    pub fn chunk_size(self, bytes: usize) -> Self {
        self.configure(|c| c.chunk_size = bytes.max(1))
    }

    /// Allows symlinks under the root to point outside it (default: refused
    /// with 404).
    pub fn follow_symlinks_outside_root(self, allow: bool) -> Self {
        self.reconfigure(|c| c.follow_symlinks = allow)
    }

    /// Longest accepted media path in bytes after decoding (default 1024),
    /// when this service decodes the path itself: the same as
    /// [`MediaPathSource::max_len`] on its source.
    pub fn max_path_len(self, bytes: usize) -> Self {
        self.configure(|c| c.source = c.source.clone().max_len(bytes))
    }

    /// Adds the file's device and inode to its `ETag` (default: no). The
    /// default tag (size and nanosecond modification time) already changes
    /// when a file is replaced, and agrees across nodes that copied the
    /// media with its timestamps; the file id also guards against a tool
    /// that restores an old timestamp, at the price of a different tag on
    /// every node. Use it on a single node.
    pub fn etag_with_file_id(self, on: bool) -> Self {
        self.reconfigure(|c| c.etag_with_file_id = on)
    }

    /// Serves files ending in `.EXTENSION` (any case; a leading `.` is
    /// dropped) as `content_type`, over the built-in table
    /// ([`STREAMING_TYPES`](super::STREAMING_TYPES): `.m3u8`, `.ts`, `.m4s`,
    /// `.mpd`, `.vtt`) and `mime_guess`.
    ///
    /// ```
    /// use sage_stream::media::ServeMedia;
    ///
    /// # fn main() -> Result<(), sage_stream::ConfigError> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let svc = ServeMedia::new(dir.path())
    ///     .mime_type("m3u8", "application/x-mpegURL")?
    ///     .mime_type("mkv", "video/x-matroska")?;
    /// assert!(ServeMedia::new(dir.path()).mime_type("m3u8", "not a type").is_err());
    /// # let _ = svc;
    /// # Ok(()) }
    /// ```
    pub fn mime_type(self, extension: &str, content_type: &str) -> Result<Self, ConfigError> {
        let (extension, value) = parse_override(extension, content_type).map_err(|reason| {
            ConfigError::InvalidSetting {
                name: "mime_type",
                value: format!("{extension}={content_type}"),
                reason: reason.to_owned(),
            }
        })?;
        Ok(self.configure(|c| c.mime.insert(extension, value)))
    }

    /// Sends `Cache-Control: value` with the file's answers (`200`, `206`
    /// and `304`); refusals and errors never carry it (default: none).
    ///
    /// ```
    /// use http::HeaderValue;
    /// use sage_stream::media::ServeMedia;
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// let svc = ServeMedia::new(dir.path())
    ///     .cache_control(HeaderValue::from_static("public, max-age=3600"));
    /// # let _ = svc;
    /// ```
    pub fn cache_control(self, value: HeaderValue) -> Self {
        self.configure(|c| c.cache_control = Some(value))
    }

    /// Keeps up to `files` recently served files open (default 256; 0 turns
    /// the cache off), so that a request for one of them is answered
    /// without a hop to the blocking pool: no `open`, no path resolution,
    /// the `ETag` and dates built once. Each cached file holds a file
    /// descriptor.
    ///
    /// Every hit is checked on the worker by looking the path up again,
    /// under the same confinement as the open, and comparing (see
    /// [`open_file_cache_valid`](Self::open_file_cache_valid)), so a
    /// replaced, changed, deleted or retargeted file is seen at once.
    pub fn open_file_cache(self, files: usize) -> Self {
        self.reconfigure(|c| c.open_file_cache = files)
    }

    /// Trusts a cached file's path for `valid` without looking it up again
    /// on each hit (default zero: look on every hit). For network file
    /// systems, where a lookup may wait on the server: a file renamed over,
    /// deleted or retargeted is then seen within `valid`, and until then
    /// the old file's bytes and `ETag` are served, consistently (nginx's
    /// `open_file_cache_valid`). The open file itself is still checked
    /// (an `fstat`): one written in place is opened afresh at once, so new
    /// bytes never go out under the old tag.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sage_stream::media::ServeMedia;
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// let svc = ServeMedia::new(dir.path())
    ///     .open_file_cache(1000)
    ///     .open_file_cache_valid(Duration::from_secs(5));
    /// # let _ = svc;
    /// ```
    pub fn open_file_cache_valid(self, valid: Duration) -> Self {
        self.reconfigure(|c| c.open_file_cache_valid = valid)
    }

    /// The resolved media root.
    pub fn root(&self) -> &Path {
        self.config.root.path()
    }

    fn requested_path<B>(&self, req: &Request<B>) -> Result<String, MediaPathError> {
        self.config
            .source
            .resolve(req.extensions(), req.uri())
            .map(std::borrow::Cow::into_owned)
    }
}

impl<B> Service<Request<B>> for ServeMedia {
    type Response = Response<MediaBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return ResponseFuture::ready(res);
        }
        let relative = match self.requested_path(&req) {
            Ok(relative) => relative,
            Err(refusal) => return ResponseFuture::ready(text(refusal.status(), refusal.reason())),
        };
        let (mut parts, _body) = req.into_parts();
        let zero_copy = zero_copy(&parts);
        let job = Job {
            content_type: self.config.mime.content_type(&relative),
            cache_control: self.config.cache_control.clone(),
            root: Arc::clone(&self.config.root),
            relative,
            follow_symlinks: self.config.follow_symlinks,
            chunk_size: self.config.chunk_size,
            range: parts.extensions.remove::<RangeRequest>(),
            cap: parts.extensions.get::<VolumeCap>().map(|c| c.bytes()),
            etag_with_file_id: self.config.etag_with_file_id,
            method: parts.method,
            headers: parts.headers,
            cache: Arc::clone(&self.config.cache),
            chunks: Arc::clone(&self.config.chunks),
            zero_copy,
        };
        if let Some(opened) = self.config.cache.get(&job.relative) {
            return ResponseFuture::ready(respond(job, &opened, ReadFirst::InBody));
        }
        ResponseFuture {
            state: State::Blocking(tokio::task::spawn_blocking(move || open_and_respond(job))),
        }
    }
}

/// Whether this request's connection sends file regions with `sendfile`:
/// only this crate's server makes the offer, on HTTP/1.x, and a layer that
/// reads the body withdraws it (`NoZeroCopyLayer`).
#[cfg(target_os = "linux")]
fn zero_copy(parts: &http::request::Parts) -> bool {
    parts.version <= http::Version::HTTP_11
        && parts
            .extensions
            .get::<crate::extension::ZeroCopy>()
            .is_some()
}

#[cfg(not(target_os = "linux"))]
fn zero_copy(_: &http::request::Parts) -> bool {
    false
}

/// Response future of [`ServeMedia`].
pub struct ResponseFuture {
    state: State,
}

// A cache hit is the common case: its response stays inline rather than
// costing an allocation per request to shrink the rarer variant's future.
#[allow(clippy::large_enum_variant)]
enum State {
    Ready(Option<Response<MediaBody>>),
    Blocking(JoinHandle<Response<MediaBody>>),
}

impl ResponseFuture {
    fn ready(response: Response<MediaBody>) -> Self {
        Self {
            state: State::Ready(Some(response)),
        }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<MediaBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            State::Ready(response) => Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                text(StatusCode::INTERNAL_SERVER_ERROR, "polled after completion")
            }))),
            State::Blocking(handle) => Pin::new(handle).poll(cx).map(|joined| {
                Ok(joined
                    .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")))
            }),
        }
    }
}
