//! [`MediaBody`]: streams byte ranges of a file without blocking the runtime.

use super::chunk::ChunkPool;
use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

/// One piece of a response body, in order.
#[derive(Debug)]
pub(crate) enum Segment {
    /// Bytes known up front (multipart headers, a chunk read ahead).
    Static(Bytes),
    /// `len` bytes of the file from `offset`.
    File { offset: u64, len: u64 },
}

/// Response body of [`ServeMedia`](super::ServeMedia).
///
/// File bytes are read with positional reads on Tokio's blocking pool, one
/// chunk at a time, and the next chunk is read while the current one is being
/// written, so at most two chunks per response are in memory. If the file
/// turns out shorter than its size promised, the body ends with an error
/// rather than sending wrong bytes; dropping the body (the client went away)
/// stops the reads.
pub struct MediaBody {
    kind: Kind,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Stream(FileStream),
}

struct FileStream {
    file: Arc<File>,
    // Where this response's chunk buffers come from and return to.
    chunks: Arc<ChunkPool>,
    chunk_size: usize,
    // Not yet scheduled.
    segments: VecDeque<Segment>,
    // Scheduled, in output order; at most one `Read` at a time.
    ahead: VecDeque<Ahead>,
    remaining: u64,
    // Chunks leave as placeholders the connection sends with `sendfile`
    // (see `region.rs`).
    zero_copy: bool,
}

enum Ahead {
    /// Bytes known up front (multipart headers, the chunk read with the open).
    Bytes(Bytes),
    /// File bytes read from the page cache on the worker, on demand.
    Resident(Bytes),
    /// A read on the blocking pool, of this many bytes.
    Read(JoinHandle<io::Result<Bytes>>, usize),
}

impl fmt::Debug for MediaBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, remaining) = match &self.kind {
            Kind::Empty => ("empty", 0),
            Kind::Full(b) => ("full", b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(s) => ("file", s.remaining),
        };
        f.debug_struct("MediaBody")
            .field("kind", &kind)
            .field("remaining", &remaining)
            .finish()
    }
}

impl Default for MediaBody {
    fn default() -> Self {
        Self::empty()
    }
}

impl MediaBody {
    /// A body with no bytes.
    pub fn empty() -> Self {
        Self { kind: Kind::Empty }
    }

    /// A body of bytes already in memory.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Self::empty();
        }
        Self {
            kind: Kind::Full(Some(bytes)),
        }
    }

    pub(crate) fn file(
        file: Arc<File>,
        chunks: Arc<ChunkPool>,
        chunk_size: usize,
        segments: VecDeque<Segment>,
        zero_copy: bool,
    ) -> Self {
        let remaining = segments
            .iter()
            .map(|s| match s {
                Segment::Static(b) => b.len() as u64,
                Segment::File { len, .. } => *len,
            })
            .sum();
        Self {
            kind: Kind::Stream(FileStream {
                file,
                chunks,
                chunk_size: chunk_size.max(1),
                segments,
                ahead: VecDeque::with_capacity(2),
                remaining,
                zero_copy,
            }),
        }
    }
}

impl FileStream {
    /// Schedules segments until one file chunk is ahead (or none are left):
    /// from the page cache when it holds the chunk (no thread hop), else
    /// as a read on the blocking pool. At most one file chunk waits here
    /// besides the one the server is writing.
    fn schedule(&mut self) {
        while !self
            .ahead
            .iter()
            .any(|a| matches!(a, Ahead::Read(..) | Ahead::Resident(_)))
        {
            match self.segments.pop_front() {
                None => return,
                Some(Segment::Static(bytes)) => self.ahead.push_back(Ahead::Bytes(bytes)),
                Some(Segment::File { offset, len }) => {
                    if let Some(bytes) = self.placeholder(offset, len) {
                        let n = bytes.len() as u64;
                        if len > n {
                            self.segments.push_front(Segment::File {
                                offset: offset + n,
                                len: len - n,
                            });
                        }
                        self.ahead.push_back(Ahead::Resident(bytes));
                        continue;
                    }
                    // `n` fits in usize: it is at most `chunk_size`.
                    let n = len.min(self.chunk_size as u64) as usize;
                    let read = super::resident::read_resident(&self.chunks, &self.file, offset, n);
                    let (n, ahead) = match read {
                        // A partial hit sends what is resident; the rest
                        // is the next chunk's business.
                        Some(bytes) => (bytes.len(), Ahead::Resident(bytes)),
                        None => {
                            let file = Arc::clone(&self.file);
                            let chunks = Arc::clone(&self.chunks);
                            let handle = tokio::task::spawn_blocking(move || {
                                read_exact_at(&chunks, &file, offset, n)
                            });
                            (n, Ahead::Read(handle, n))
                        }
                    };
                    if len > n as u64 {
                        self.segments.push_front(Segment::File {
                            offset: offset + n as u64,
                            len: len - n as u64,
                        });
                    }
                    self.ahead.push_back(ahead);
                }
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn placeholder(&self, offset: u64, len: u64) -> Option<Bytes> {
        if !self.zero_copy {
            return None;
        }
        let n = usize::try_from(len.min(super::region::SLOT as u64)).ok()?;
        super::region::placeholder(&self.file, offset, n)
    }

    #[cfg(not(target_os = "linux"))]
    fn placeholder(&self, _offset: u64, _len: u64) -> Option<Bytes> {
        None
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        self.schedule();
        let bytes = match self.ahead.front_mut() {
            None => return Poll::Ready(None),
            Some(Ahead::Bytes(_) | Ahead::Resident(_)) => match self.ahead.pop_front() {
                // Resident chunks are read on demand, not ahead: the next
                // poll reads the next one (so a slow reader holds one).
                Some(Ahead::Bytes(bytes) | Ahead::Resident(bytes)) => bytes,
                _ => return Poll::Ready(None),
            },
            Some(Ahead::Read(handle, expected)) => {
                let expected = *expected;
                let result = ready!(Pin::new(handle).poll(cx));
                self.ahead.pop_front();
                let bytes = match result {
                    Ok(Ok(bytes)) => bytes,
                    Ok(Err(err)) => return self.fail(err),
                    Err(join) => return self.fail(io::Error::other(join)),
                };
                if bytes.len() != expected {
                    return self.fail(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "media file shrank while it was being streamed",
                    ));
                }
                // Read the next chunk while this one is being written.
                self.schedule();
                bytes
            }
        };
        self.remaining = self.remaining.saturating_sub(bytes.len() as u64);
        Poll::Ready(Some(Ok(bytes)))
    }

    fn fail(&mut self, err: io::Error) -> Poll<Option<io::Result<Bytes>>> {
        self.segments.clear();
        self.ahead.clear();
        self.remaining = 0;
        Poll::Ready(Some(Err(err)))
    }
}

/// Reads exactly `n` bytes at `offset`, or fewer only at end of file.
pub(crate) fn read_exact_at(
    chunks: &Arc<ChunkPool>,
    file: &File,
    offset: u64,
    n: usize,
) -> io::Result<Bytes> {
    let mut chunk = super::chunk::ChunkBuf::new(chunks, n);
    let buf = chunk.as_mut(n);
    let mut filled = 0;
    while filled < n {
        match read_at(file, &mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(chunk.freeze(filled))
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

impl Body for MediaBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(stream) => stream.poll_next(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(stream) => stream.remaining == 0 && stream.ahead.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(stream) => SizeHint::with_exact(stream.remaining),
        }
    }
}
