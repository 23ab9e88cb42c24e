//! Turning a requested media path into a file confined to the media root.

use std::io;
use std::path::{Path, PathBuf};

/// Why a requested path was refused before touching the file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PathRefusal {
    Missing,
    Empty,
    NotUtf8,
    TooLong,
    ControlCharacter,
    Backslash,
    Absolute,
    DrivePrefix,
    ParentComponent,
}

impl PathRefusal {
    /// A short reason for the client; it never echoes the path.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing media path",
            Self::Empty => "empty media path",
            Self::NotUtf8 => "media path is not valid UTF-8",
            Self::TooLong => "media path too long",
            Self::ControlCharacter => "media path contains a control character",
            Self::Backslash => "media path contains a backslash",
            Self::Absolute => "absolute media paths are not allowed",
            Self::DrivePrefix => "drive prefixes are not allowed",
            Self::ParentComponent => "'..' is not allowed in media paths",
        }
    }
}

/// Checks a decoded, requested path and returns it normalised as
/// `dir/sub/file` (empty and `.` segments dropped).
///
/// This is purely lexical; symlinks are checked later by [`open_confined`].
pub(crate) fn normalise(raw: &str, max_len: usize) -> Result<String, PathRefusal> {
    if raw.is_empty() {
        return Err(PathRefusal::Empty);
    }
    if raw.len() > max_len {
        return Err(PathRefusal::TooLong);
    }
    if raw.chars().any(char::is_control) {
        return Err(PathRefusal::ControlCharacter);
    }
    if raw.contains('\\') {
        return Err(PathRefusal::Backslash);
    }
    if raw.starts_with('/') {
        return Err(PathRefusal::Absolute);
    }
    let mut out = String::with_capacity(raw.len());
    for segment in raw.split('/') {
        match segment {
            "" | "." => continue,
            ".." => return Err(PathRefusal::ParentComponent),
            _ => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(segment);
            }
        }
    }
    if out.is_empty() {
        return Err(PathRefusal::Empty);
    }
    // Judged on the result: `./c:/x` must not become the drive path `c:/x`
    // (found by the `path` fuzz target).
    let bytes = out.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(PathRefusal::DrivePrefix);
    }
    Ok(out)
}

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

    #[test]
    fn normalises_or_refuses() {
        assert_eq!(normalise("a/./b//c.mp4", 100), Ok("a/b/c.mp4".into()));
        assert_eq!(normalise("clip:1.mp4", 100), Ok("clip:1.mp4".into()));
        assert_eq!(normalise("", 100), Err(PathRefusal::Empty));
        assert_eq!(normalise("./", 100), Err(PathRefusal::Empty));
        assert_eq!(normalise("a/../b", 100), Err(PathRefusal::ParentComponent));
        assert_eq!(normalise("/etc/passwd", 100), Err(PathRefusal::Absolute));
        assert_eq!(normalise("C:/x", 100), Err(PathRefusal::DrivePrefix));
        assert_eq!(normalise("./c:/x", 100), Err(PathRefusal::DrivePrefix));
        assert_eq!(
            normalise(".//r:sentinel", 100),
            Err(PathRefusal::DrivePrefix)
        );
        assert_eq!(normalise("a\\b", 100), Err(PathRefusal::Backslash));
        assert_eq!(normalise("a\0b", 100), Err(PathRefusal::ControlCharacter));
        assert_eq!(normalise(&"a".repeat(101), 100), Err(PathRefusal::TooLong));
    }
}
