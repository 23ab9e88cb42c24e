//! Experimental zero-copy sending (Linux, this crate's own server loop,
//! HTTP/1.x only; off by default): a file chunk leaves [`MediaBody`] as a
//! *placeholder* — [`Bytes`] that point into a reserved, never-written
//! arena — and the connection's writer, seeing a write of placeholder
//! memory, sends that region of the file with `sendfile(2)` instead. The
//! file's bytes are never copied into user space.
//!
//! Everything above the socket sees a body of the right length: the volume
//! cap (which keeps a prefix: a slice of a placeholder names the matching
//! part of its region) and the watch log's byte counts work unchanged. The
//! send timeout counts a body poll as progress, and a placeholder stands
//! for up to 1 MiB, so it ends only clients slower than about 10 KiB/s over
//! the default 60 s (about 2 KiB/s when copying 128 KiB chunks).
//!
//! A placeholder's memory is not the file's, so a body made of them is
//! made only on request: the server offers it per HTTP/1.x request with the
//! [`ZeroCopy`](crate::extension::ZeroCopy) extension, and a layer that
//! reads or transforms body bytes withdraws the offer
//! ([`NoZeroCopyLayer`](crate::extension::NoZeroCopyLayer)) and gets the
//! file's real bytes. HTTP/2 requests never get placeholders.
//!
//! [`MediaBody`]: super::MediaBody

// Without the server, nothing offers `ZeroCopy` or reads regions back.
#![cfg_attr(not(feature = "server"), allow(dead_code))]

use std::fs::File;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

/// The largest region one placeholder stands for.
pub(crate) const SLOT: usize = 1024 * 1024;
/// Placeholders in flight at once, across the process; beyond, chunks are
/// read as usual.
const SLOTS: usize = 64;

/// A region of a file a placeholder stands for.
#[derive(Clone)]
pub(crate) struct Region {
    pub(crate) file: Arc<File>,
    pub(crate) offset: u64,
    pub(crate) len: usize,
}

struct Arena {
    // Zeroed once by the allocator (fresh pages from the kernel: no memory
    // is used until touched), never written; only its addresses matter.
    memory: Box<[u8]>,
    table: Mutex<Table>,
}

struct Table {
    free: Vec<usize>,
    regions: Vec<Option<Region>>,
}

static ARENA: OnceLock<Arena> = OnceLock::new();

fn arena() -> &'static Arena {
    ARENA.get_or_init(|| Arena {
        memory: vec![0u8; SLOT * SLOTS].into_boxed_slice(),
        table: Mutex::new(Table {
            free: (0..SLOTS).rev().collect(),
            regions: vec![None; SLOTS],
        }),
    })
}

fn table(arena: &Arena) -> std::sync::MutexGuard<'_, Table> {
    arena
        .table
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A placeholder for `len` bytes (at most [`SLOT`]) of `file` at `offset`,
/// or `None` when every slot is in flight.
pub(crate) fn placeholder(file: &Arc<File>, offset: u64, len: usize) -> Option<Bytes> {
    let len = len.min(SLOT);
    let arena = arena();
    let slot = {
        let mut table = table(arena);
        let slot = table.free.pop()?;
        table.regions[slot] = Some(Region {
            file: Arc::clone(file),
            offset,
            len,
        });
        slot
    };
    Some(Bytes::from_owner(Placeholder { slot, len }))
}

/// The owner behind a placeholder: frees its slot when the last reference
/// goes.
struct Placeholder {
    slot: usize,
    len: usize,
}

impl AsRef<[u8]> for Placeholder {
    fn as_ref(&self) -> &[u8] {
        let start = self.slot * SLOT;
        &arena().memory[start..start + self.len]
    }
}

impl Drop for Placeholder {
    fn drop(&mut self) {
        let arena = arena();
        let mut table = table(arena);
        table.regions[self.slot] = None;
        table.free.push(self.slot);
    }
}

/// The file region that `bytes` (about to be written) stands for, if it is
/// placeholder memory: from where it starts, at most its length.
pub(crate) fn region_at(bytes: &[u8]) -> Option<Region> {
    let arena = ARENA.get()?;
    let base = arena.memory.as_ptr() as usize;
    let at = (bytes.as_ptr() as usize).checked_sub(base)?;
    if at >= arena.memory.len() || bytes.is_empty() {
        return None;
    }
    let (slot, within) = (at / SLOT, at % SLOT);
    let region = table(arena).regions[slot].clone()?;
    if within >= region.len {
        return None;
    }
    Some(Region {
        offset: region.offset + within as u64,
        len: (region.len - within).min(bytes.len()),
        file: region.file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_name_their_region_and_free_their_slot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 4096]).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let bytes = placeholder(&file, 100, 3000).unwrap();
        assert_eq!(bytes.len(), 3000);
        let region = region_at(&bytes).unwrap();
        assert_eq!((region.offset, region.len), (100, 3000));
        // A write that resumes inside the placeholder.
        let rest = bytes.slice(1000..);
        let region = region_at(&rest).unwrap();
        assert_eq!((region.offset, region.len), (1100, 2000));
        // Ordinary memory is not a placeholder.
        assert!(region_at(&[1, 2, 3]).is_none());
        drop((bytes, rest));
        // Every slot can be taken, and then none more.
        let all: Vec<_> = (0..SLOTS)
            .map_while(|_| placeholder(&file, 0, 10))
            .collect();
        assert!(placeholder(&file, 0, 10).is_none());
        drop(all);
        assert!(placeholder(&file, 0, 10).is_some());
    }
}
