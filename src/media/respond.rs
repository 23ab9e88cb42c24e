//! Building the response for one file: for a file the open-file cache
//! holds, on the worker with no hop; otherwise on a blocking thread, where
//! opening, `stat`, preconditions and the first read cost one hop.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::body::{read_exact_at, MediaBody, Segment};
use super::cache::FileCache;
use super::chunk::ChunkPool;
use super::conditional::{evaluate, whole_seconds, Outcome, Validators};
use super::path::{MediaRoot, OpenFailure};
use super::ServedFile;
use crate::extension::{resolve_ranges as resolve, RangeRequest, Resolved};

/// What [`ServeMedia`](super::ServeMedia) hands over for one request.
pub(crate) struct Job {
    pub(crate) root: Arc<MediaRoot>,
    pub(crate) relative: String,
    pub(crate) follow_symlinks: bool,
    pub(crate) chunk_size: usize,
    pub(crate) method: Method,
    pub(crate) headers: HeaderMap,
    pub(crate) range: Option<RangeRequest>,
    pub(crate) cap: Option<u64>,
    pub(crate) etag_with_file_id: bool,
    pub(crate) content_type: HeaderValue,
    pub(crate) cache_control: Option<HeaderValue>,
    pub(crate) cache: Arc<FileCache>,
    /// The service's chunk buffers.
    pub(crate) chunks: Arc<ChunkPool>,
    /// The connection sends placeholders with `sendfile` (`region.rs`).
    pub(crate) zero_copy: bool,
}

/// An open media file and what every response from it says about it,
/// worked out once per open (the open-file cache keeps it).
pub(crate) struct OpenedFile {
    file: Arc<std::fs::File>,
    len: u64,
    etag: HeaderValue,
    // Whole seconds, as HTTP dates carry.
    modified: Option<SystemTime>,
    // As the file system keeps it: whether that date names one version
    // depends on how long ago it was.
    modified_exact: Option<SystemTime>,
    last_modified: Option<HeaderValue>,
}

impl OpenedFile {
    pub(crate) fn new(
        file: std::fs::File,
        metadata: &std::fs::Metadata,
        with_file_id: bool,
    ) -> Option<Self> {
        let len = metadata.len();
        let file_id = with_file_id.then(|| file_id(metadata)).flatten();
        let etag = entity_tag(len, metadata.modified().ok(), file_id);
        let modified = whole_seconds(metadata.modified());
        Some(Self {
            file: Arc::new(file),
            len,
            etag: HeaderValue::from_str(&etag).ok()?,
            modified,
            modified_exact: metadata.modified().ok(),
            last_modified: modified
                .map(httpdate::fmt_http_date)
                .and_then(|date| HeaderValue::from_str(&date).ok()),
        })
    }
}

impl OpenedFile {
    /// The open file's metadata now (an `fstat`: no path walk).
    pub(crate) fn metadata(&self) -> std::io::Result<std::fs::Metadata> {
        self.file.metadata()
    }
}

/// Opens the job's file and answers: on the blocking pool, for a file the
/// cache does not hold. The file goes into the cache.
pub(crate) fn open_and_respond(job: Job) -> Response<MediaBody> {
    let (file, metadata) = match job.root.open(&job.relative, job.follow_symlinks) {
        Ok(opened) => opened,
        Err(OpenFailure::NotFound) => return text(StatusCode::NOT_FOUND, "media not found"),
        Err(OpenFailure::Forbidden) => return text(StatusCode::FORBIDDEN, "media not readable"),
        Err(OpenFailure::Exhausted) => {
            job.cache.shed_half();
            let mut response = text(StatusCode::SERVICE_UNAVAILABLE, "too many open files");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
    };
    let Some(opened) = OpenedFile::new(file, &metadata, job.etag_with_file_id) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    let opened = Arc::new(opened);
    job.cache
        .insert(&job.relative, &metadata, Arc::clone(&opened));
    // Already on a blocking thread: read the first chunk here, so a short
    // response needs no second hop.
    respond(job, &opened, ReadFirst::Now)
}

/// Whether [`respond`] reads the first chunk itself (on a blocking
/// thread) or leaves every read to the body (on the worker).
pub(crate) enum ReadFirst {
    Now,
    InBody,
}

/// The response to `job` from the open file `opened`. Blocks only with
/// [`ReadFirst::Now`].
pub(crate) fn respond(
    mut job: Job,
    opened: &OpenedFile,
    read_first: ReadFirst,
) -> Response<MediaBody> {
    let cache_control = job.cache_control.take();
    let mut response = answer(job, opened, read_first);
    // Only the file's own answers may be cached; a refusal must not be.
    if let Some(value) = cache_control {
        if matches!(
            response.status(),
            StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        ) {
            response.headers_mut().insert(header::CACHE_CONTROL, value);
        }
    }
    response
}

fn answer(job: Job, opened: &OpenedFile, read_first: ReadFirst) -> Response<MediaBody> {
    let len = opened.len;
    let content_type = job
        .content_type
        .to_str()
        .unwrap_or("application/octet-stream");

    let mut builder = Response::builder()
        .header(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"))
        .header(header::ETAG, opened.etag.clone());
    if let Some(date) = &opened.last_modified {
        builder = builder.header(header::LAST_MODIFIED, date.clone());
    }
    // Without a start until the body is known to carry the file.
    builder = builder.extension(ServedFile::new(job.relative.clone(), len));

    let validators = Validators {
        // Built from a `String`, so always text.
        etag: opened.etag.to_str().unwrap_or_default(),
        modified: opened.modified,
        modified_exact: opened.modified_exact,
        now: SystemTime::now(),
    };
    let honour_range = match evaluate(&job.method, &job.headers, &validators) {
        Outcome::Proceed { honour_range } => honour_range,
        Outcome::NotModified => {
            return finish(builder.status(StatusCode::NOT_MODIFIED), MediaBody::empty());
        }
        Outcome::Failed => {
            return finish(
                builder
                    .status(StatusCode::PRECONDITION_FAILED)
                    .header(header::CONTENT_TYPE, TEXT_PLAIN),
                MediaBody::full("precondition failed"),
            );
        }
    };
    let head = job.method == Method::HEAD;

    let ranges = match job.range.filter(|_| honour_range) {
        None => None,
        Some(request) => match resolve(request.specs(), len, job.cap) {
            Resolved::Unsatisfiable => {
                return finish(
                    builder
                        .status(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                        .header(header::CONTENT_TYPE, TEXT_PLAIN),
                    MediaBody::full("range not satisfiable"),
                );
            }
            Resolved::Ranges(ranges) => Some(ranges),
        },
    };

    let (builder, body_len, mut segments) = match ranges.as_deref() {
        None => {
            let segments = file_segments(0..len);
            (
                builder
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, job.content_type.clone()),
                len,
                segments,
            )
        }
        Some([range]) => (
            builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_TYPE, job.content_type.clone())
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {}-{}/{len}", range.start, range.end - 1),
                ),
            range.end - range.start,
            file_segments(range.clone()),
        ),
        Some(ranges) => {
            let boundary = boundary();
            let (segments, total) = multipart_segments(ranges, len, content_type, &boundary);
            (
                builder.status(StatusCode::PARTIAL_CONTENT).header(
                    header::CONTENT_TYPE,
                    format!("multipart/byteranges; boundary={boundary}"),
                ),
                total,
                segments,
            )
        }
    };
    // Ranges are sorted, so the first is the lowest.
    let start = ranges
        .as_deref()
        .and_then(<[_]>::first)
        .map_or(0, |r| r.start);
    let mut builder = builder.header(header::CONTENT_LENGTH, body_len);
    if let Some(served) = builder
        .extensions_mut()
        .and_then(|e| e.get_mut::<ServedFile>())
    {
        served.range_start = Some(start);
    }
    if head || body_len == 0 {
        return finish(builder, MediaBody::empty());
    }
    if let ReadFirst::Now = read_first {
        read_ahead(&job.chunks, &opened.file, job.chunk_size, &mut segments);
    }
    finish(
        builder,
        MediaBody::file(
            Arc::clone(&opened.file),
            Arc::clone(&job.chunks),
            job.chunk_size,
            segments,
            job.zero_copy,
        ),
    )
}

pub(crate) const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// A plain-text refusal with a short reason.
pub(crate) fn text(status: StatusCode, reason: &'static str) -> Response<MediaBody> {
    let mut response = Response::new(MediaBody::full(reason));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    set_length(&mut response);
    harden(&mut response);
    response
}

/// Media is data, never a page of this origin: an `.html` or `.svg` file in
/// the root must not run script beside the admin. `nosniff` stops browsers
/// guessing an active type; `sandbox` gives a document opened anyway a
/// unique origin with no script.
fn harden(response: &mut Response<MediaBody>) {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
}

fn finish(builder: http::response::Builder, body: MediaBody) -> Response<MediaBody> {
    // Every header above is built from validated values; a failure here is a
    // bug, answered as 500 rather than a panic.
    let mut response = builder
        .body(body)
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "internal error"));
    set_length(&mut response);
    harden(&mut response);
    response
}

/// Gives in-memory bodies (refusals) an explicit `Content-Length`, so the
/// header does not depend on the server filling it in.
fn set_length(response: &mut Response<MediaBody>) {
    if response.status() == StatusCode::NOT_MODIFIED
        || response.headers().contains_key(header::CONTENT_LENGTH)
    {
        return;
    }
    if let Some(len) = http_body::Body::size_hint(response.body()).exact() {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
}

/// Strong validator from size and modification time only, so that copies of
/// one file on several nodes get the same tag.
/// A strong tag from the size and the modification time to the nanosecond,
/// so a same-size file replaced within the same second gets a new tag (and
/// `If-Range` with the old one a full `200`, never a splice of the two).
/// Copies on several nodes agree when their timestamps were kept
/// (`rsync -t`, `cp --preserve=timestamps`). With `file_id` the device and
/// inode are added too: safe even against a tool that restores the old
/// timestamp, but different on every node.
fn entity_tag(
    len: u64,
    modified: Option<std::time::SystemTime>,
    file_id: Option<(u64, u64)>,
) -> String {
    let since = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    let (secs, nanos) = (since.as_secs(), since.subsec_nanos());
    match file_id {
        None => format!("\"{secs:x}.{nanos:x}-{len:x}\""),
        Some((dev, ino)) => format!("\"{dev:x}.{ino:x}-{secs:x}.{nanos:x}-{len:x}\""),
    }
}

/// The device and inode of a file, where the platform has them.
#[cfg(unix)]
fn file_id(metadata: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

fn file_segments(range: Range<u64>) -> VecDeque<Segment> {
    let mut segments = VecDeque::with_capacity(2);
    if range.end > range.start {
        segments.push_back(Segment::File {
            offset: range.start,
            len: range.end - range.start,
        });
    }
    segments
}

/// The parts of a `multipart/byteranges` body and its exact length.
pub(crate) fn multipart_segments(
    ranges: &[Range<u64>],
    len: u64,
    content_type: &str,
    boundary: &str,
) -> (VecDeque<Segment>, u64) {
    let mut segments = VecDeque::with_capacity(ranges.len() * 2 + 1);
    let mut total = 0u64;
    for (i, range) in ranges.iter().enumerate() {
        let mut head = String::with_capacity(96);
        if i > 0 {
            head.push_str("\r\n");
        }
        // Writing to a String cannot fail.
        let _ = write!(
            head,
            "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{len}\r\n\r\n",
            range.start,
            range.end - 1
        );
        total += head.len() as u64 + (range.end - range.start);
        segments.push_back(Segment::Static(Bytes::from(head)));
        segments.push_back(Segment::File {
            offset: range.start,
            len: range.end - range.start,
        });
    }
    let tail = format!("\r\n--{boundary}--\r\n");
    total += tail.len() as u64;
    segments.push_back(Segment::Static(Bytes::from(tail)));
    (segments, total)
}

/// Reads the first chunk of the first file segment while still on the
/// blocking thread, so short responses need no further hop.
fn read_ahead(
    chunks: &Arc<ChunkPool>,
    file: &std::fs::File,
    chunk_size: usize,
    segments: &mut VecDeque<Segment>,
) {
    let Some(index) = segments
        .iter()
        .position(|s| matches!(s, Segment::File { .. }))
    else {
        return;
    };
    let Some(Segment::File { offset, len }) = segments.get(index) else {
        return;
    };
    let (offset, len) = (*offset, *len);
    let n = len.min(chunk_size.max(1) as u64) as usize;
    // On error or a short read leave the segment alone: the body's own read
    // will report it.
    if let Ok(bytes) = read_exact_at(chunks, file, offset, n) {
        if bytes.len() == n {
            let rest = Segment::File {
                offset: offset + n as u64,
                len: len - n as u64,
            };
            segments[index] = Segment::Static(bytes);
            if len > n as u64 {
                segments.insert(index + 1, rest);
            }
        }
    }
}

/// A boundary that is unique per response and unlikely in media bytes.
fn boundary() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("sage-stream-{:016x}", hasher.finish())
}
