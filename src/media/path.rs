//! Opening a normalised media path (see
//! [`MediaPathSource`](crate::extension::MediaPathSource)) as a file confined
//! to the media root.

use std::io;
use std::path::{Path, PathBuf};

/// Why a normalised path could not be opened.
#[derive(Debug)]
pub(crate) enum OpenFailure {
    /// Missing, a directory, not a regular file, or outside the root.
    NotFound,
    /// The file exists but this process may not read it.
    Forbidden,
    /// The process (or system) is out of file descriptors: a moment's
    /// overload, not a missing file.
    Exhausted,
}

/// Opens `root/relative` for reading, resolving symlinks and refusing any
/// target outside `root` unless `follow_outside` is set. Blocking.
pub(crate) fn open_confined(
    root: &Path,
    relative: &str,
    follow_outside: bool,
) -> Result<(std::fs::File, std::fs::Metadata), OpenFailure> {
    let joined: PathBuf = root.join(relative);
    let resolved = std::fs::canonicalize(&joined).map_err(classify)?;
    if !follow_outside && !resolved.starts_with(root) {
        return Err(OpenFailure::NotFound);
    }
    // Check the type before opening so a FIFO or device is never opened.
    let metadata = std::fs::metadata(&resolved).map_err(classify)?;
    if !metadata.is_file() {
        return Err(OpenFailure::NotFound);
    }
    let file = std::fs::File::open(&resolved).map_err(classify)?;
    // Re-read from the open handle: size and time must describe what we stream.
    let metadata = file.metadata().map_err(classify)?;
    if !metadata.is_file() {
        return Err(OpenFailure::NotFound);
    }
    Ok((file, metadata))
}

fn classify(err: io::Error) -> OpenFailure {
    match err.kind() {
        io::ErrorKind::PermissionDenied => OpenFailure::Forbidden,
        _ if out_of_descriptors(&err) => OpenFailure::Exhausted,
        _ => OpenFailure::NotFound,
    }
}

#[cfg(target_os = "linux")]
fn out_of_descriptors(err: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(Errno::from_io_error(err), Some(Errno::MFILE | Errno::NFILE))
}

#[cfg(not(target_os = "linux"))]
fn out_of_descriptors(_: &io::Error) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_is_not_a_missing_file() {
        let kind = |err| match classify(err) {
            OpenFailure::NotFound => "not found",
            OpenFailure::Forbidden => "forbidden",
            OpenFailure::Exhausted => "exhausted",
        };
        assert_eq!(kind(io::ErrorKind::NotFound.into()), "not found");
        assert_eq!(kind(io::ErrorKind::PermissionDenied.into()), "forbidden");
        #[cfg(target_os = "linux")]
        for errno in [rustix::io::Errno::MFILE, rustix::io::Errno::NFILE] {
            let err = io::Error::from_raw_os_error(errno.raw_os_error());
            assert_eq!(kind(err), "exhausted");
        }
    }
}
