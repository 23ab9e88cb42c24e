//! Chunk buffers that are reused: a chunk read from a file goes out as
//! [`Bytes`] whose memory, once the server has written it and dropped the
//! last reference, returns to its [`ChunkPool`] instead of to the
//! allocator. A new chunk then costs neither an allocation of 128 KiB (which
//! glibc may serve with `mmap`) nor zeroing it.
//!
//! Each `ServeMedia` owns its pool (its clones share it); nothing is
//! process-wide. A pool is bounded ([`MAX_IDLE`] buffers), so idle memory
//! stays small; buffers beyond it are freed as usual. Small reads are not
//! pooled.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Idle buffers kept for reuse, at most (8 MiB at the default chunk size).
const MAX_IDLE: usize = 64;
/// Reads shorter than this are allocated as usual.
const MIN_POOLED: usize = 16 * 1024;
/// Reads longer than this are allocated as usual (and never kept).
const MAX_POOLED: usize = 4 * 1024 * 1024;

/// Idle chunk buffers of one `ServeMedia` (and its clones).
#[derive(Debug, Default)]
pub(crate) struct ChunkPool {
    idle: Mutex<Vec<Vec<u8>>>,
}

impl ChunkPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn give_back(&self, buf: Vec<u8>) {
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(buf);
        }
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.lock().len()
    }
}

/// A buffer of at least `n` initialized bytes, to be read into and then
/// [`freeze`](ChunkBuf::freeze)d.
pub(crate) struct ChunkBuf {
    buf: Vec<u8>,
    // The pool it returns to; `None` for sizes not pooled.
    pool: Option<Arc<ChunkPool>>,
}

impl ChunkBuf {
    pub(crate) fn new(pool: &Arc<ChunkPool>, n: usize) -> Self {
        if !(MIN_POOLED..=MAX_POOLED).contains(&n) {
            return Self {
                buf: vec![0; n],
                pool: None,
            };
        }
        let reused = pool.lock().pop();
        let buf = match reused {
            Some(buf) if buf.len() >= n => buf,
            // Too small (another chunk size): let it go.
            _ => vec![0; n],
        };
        Self {
            buf,
            pool: Some(Arc::clone(pool)),
        }
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
        match self.pool.take() {
            None => {
                buf.truncate(len);
                Bytes::from(buf)
            }
            Some(pool) => Bytes::from_owner(Filled { buf, len, pool }),
        }
    }
}

/// A buffer never frozen (the page cache did not hold the chunk, or the
/// read failed) goes back to the stack too.
impl Drop for ChunkBuf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            if !self.buf.is_empty() {
                pool.give_back(std::mem::take(&mut self.buf));
            }
        }
    }
}

/// The owner behind pooled [`Bytes`].
struct Filled {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<ChunkPool>,
}

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Filled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_return_to_their_own_pool() {
        let (a, b) = (
            Arc::new(ChunkPool::default()),
            Arc::new(ChunkPool::default()),
        );
        let bytes = ChunkBuf::new(&a, 64 * 1024).freeze(10);
        assert_eq!((a.idle(), b.idle()), (0, 0), "in use");
        drop(bytes);
        assert_eq!((a.idle(), b.idle()), (1, 0), "back to its pool only");
        // Never frozen: back as well. Not pooled sizes: never kept.
        drop(ChunkBuf::new(&b, 64 * 1024));
        drop(ChunkBuf::new(&b, 100).freeze(100));
        assert_eq!((a.idle(), b.idle()), (1, 1));
    }

    #[test]
    fn reused_buffers_hold_only_the_new_bytes() {
        let pool = Arc::new(ChunkPool::default());
        let mut first = ChunkBuf::new(&pool, 64 * 1024);
        first.as_mut(64 * 1024).fill(0xAA);
        let bytes = first.freeze(64 * 1024);
        assert!(bytes.iter().all(|&b| b == 0xAA));
        drop(bytes);
        // Possibly the same memory again: only what was filled shows.
        let mut second = ChunkBuf::new(&pool, 40 * 1024);
        second.as_mut(40 * 1024)[..10].copy_from_slice(b"0123456789");
        let bytes = second.freeze(10);
        assert_eq!(&bytes[..], b"0123456789");
        // Slices keep the buffer alive; it returns when the last one goes.
        let head = bytes.slice(0..4);
        drop(bytes);
        assert_eq!(&head[..], b"0123");
        // Small and large reads are not pooled but read the same way.
        let mut small = ChunkBuf::new(&pool, 100);
        small.as_mut(100).fill(1);
        assert_eq!(small.freeze(50).len(), 50);
    }
}
