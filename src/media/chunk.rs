//! Chunk buffers that are reused: a chunk read from a file goes out as
//! [`Bytes`] whose memory, once the server has written it and dropped the
//! last reference, returns to a small shared stack instead of to the
//! allocator. A new chunk then costs neither an allocation of 128 KiB (which
//! glibc may serve with `mmap`) nor zeroing it.
//!
//! The stack is bounded ([`MAX_IDLE`] buffers), so idle memory stays small;
//! buffers beyond it are freed as usual. Small reads are not pooled.

use std::sync::Mutex;

use bytes::Bytes;

/// Idle buffers kept for reuse, at most (8 MiB at the default chunk size).
const MAX_IDLE: usize = 64;
/// Reads shorter than this are allocated as usual.
const MIN_POOLED: usize = 16 * 1024;
/// Reads longer than this are allocated as usual (and never kept).
const MAX_POOLED: usize = 4 * 1024 * 1024;

static IDLE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer of at least `n` initialized bytes, to be read into and then
/// [`freeze`](ChunkBuf::freeze)d.
pub(crate) struct ChunkBuf {
    buf: Vec<u8>,
    pooled: bool,
}

impl ChunkBuf {
    pub(crate) fn new(n: usize) -> Self {
        if !(MIN_POOLED..=MAX_POOLED).contains(&n) {
            return Self {
                buf: vec![0; n],
                pooled: false,
            };
        }
        let reused = {
            let mut idle = IDLE
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            idle.pop()
        };
        let buf = match reused {
            Some(buf) if buf.len() >= n => buf,
            // Too small (another chunk size): let it go.
            _ => vec![0; n],
        };
        Self { buf, pooled: true }
    }

    /// The first `n` bytes to read into (`n` as given to [`new`](Self::new)).
    pub(crate) fn as_mut(&mut self, n: usize) -> &mut [u8] {
        let n = n.min(self.buf.len());
        &mut self.buf[..n]
    }

    /// The first `len` bytes as [`Bytes`]; the buffer returns to the stack
    /// when the last reference to them is dropped.
    pub(crate) fn freeze(mut self, len: usize) -> Bytes {
        let mut buf = std::mem::take(&mut self.buf);
        let len = len.min(buf.len());
        if !self.pooled {
            buf.truncate(len);
            return Bytes::from(buf);
        }
        Bytes::from_owner(Filled { buf, len })
    }
}

/// A buffer never frozen (the page cache did not hold the chunk, or the
/// read failed) goes back to the stack too.
impl Drop for ChunkBuf {
    fn drop(&mut self) {
        if self.pooled && !self.buf.is_empty() {
            give_back(std::mem::take(&mut self.buf));
        }
    }
}

fn give_back(buf: Vec<u8>) {
    let mut idle = IDLE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if idle.len() < MAX_IDLE {
        idle.push(buf);
    }
}

/// The owner behind pooled [`Bytes`].
struct Filled {
    buf: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Filled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let mut idle = IDLE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_buffers_hold_only_the_new_bytes() {
        let mut first = ChunkBuf::new(64 * 1024);
        first.as_mut(64 * 1024).fill(0xAA);
        let bytes = first.freeze(64 * 1024);
        assert!(bytes.iter().all(|&b| b == 0xAA));
        drop(bytes);
        // Possibly the same memory again: only what was filled shows.
        let mut second = ChunkBuf::new(40 * 1024);
        second.as_mut(40 * 1024)[..10].copy_from_slice(b"0123456789");
        let bytes = second.freeze(10);
        assert_eq!(&bytes[..], b"0123456789");
        // Slices keep the buffer alive; it returns when the last one goes.
        let head = bytes.slice(0..4);
        drop(bytes);
        assert_eq!(&head[..], b"0123");
        // Small and large reads are not pooled but read the same way.
        let mut small = ChunkBuf::new(100);
        small.as_mut(100).fill(1);
        assert_eq!(small.freeze(50).len(), 50);
    }
}
