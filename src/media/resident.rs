//! Reading file bytes that are already in the page cache without a hop to
//! the blocking pool: `preadv2(RWF_NOWAIT)` (Linux 4.14+), through rustix's
//! safe wrapper, returns what the cache holds and never waits for a disk.
//!
//! Whatever it cannot give (pages not resident, a file system without
//! `RWF_NOWAIT`, another OS) is read on the pool as before, so this is only
//! ever a shortcut: the bytes are the same either way.

use std::fs::File;

use bytes::Bytes;

/// Up to `n` bytes at `offset` if the page cache holds them now; `None` when
/// none are resident (or the OS cannot tell without waiting). A shorter
/// result holds the resident start of the range.
#[cfg(target_os = "linux")]
pub(crate) fn read_resident(
    chunks: &std::sync::Arc<super::chunk::ChunkPool>,
    file: &File,
    offset: u64,
    n: usize,
) -> Option<Bytes> {
    use std::sync::atomic::{AtomicBool, Ordering};

    use rustix::io::{preadv2, Errno, ReadWriteFlags};

    // Set once the kernel or file system refuses the flag, so later reads
    // go straight to the pool instead of paying for a failed call.
    static UNSUPPORTED: AtomicBool = AtomicBool::new(false);
    if n == 0 || UNSUPPORTED.load(Ordering::Relaxed) {
        return None;
    }
    let mut chunk = super::chunk::ChunkBuf::new(chunks, n);
    let read = preadv2(
        file,
        &mut [std::io::IoSliceMut::new(chunk.as_mut(n))],
        offset,
        ReadWriteFlags::NOWAIT,
    );
    match read {
        Ok(0) => None,
        Ok(k) => Some(chunk.freeze(k)),
        Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => {
            UNSUPPORTED.store(true, Ordering::Relaxed);
            None
        }
        // EAGAIN (not resident), EINTR, or an I/O error: the pool's read
        // retries or reports it.
        Err(_) => None,
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn read_resident(
    _chunks: &std::sync::Arc<super::chunk::ChunkPool>,
    _file: &File,
    _offset: u64,
    _n: usize,
) -> Option<Bytes> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn resident_bytes_are_the_files_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let chunks = std::sync::Arc::default();
        // Just written: in the page cache (unless the file system has no
        // RWF_NOWAIT, where nothing is returned and the pool reads).
        if let Some(bytes) = read_resident(&chunks, &file, 1000, 100_000) {
            assert!(!bytes.is_empty() && bytes.len() <= 100_000);
            assert_eq!(bytes, data[1000..1000 + bytes.len()]);
        }
        // Past the end: nothing.
        assert!(read_resident(&chunks, &file, 400_000, 10).is_none());
        // At the end: only what is there.
        if let Some(bytes) = read_resident(&chunks, &file, 299_990, 100) {
            assert_eq!(bytes, data[299_990..]);
        }
    }
}
