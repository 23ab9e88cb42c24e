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

/// The media root: its canonical path and, on Linux, a handle on the
/// directory, opened once, from which every file is opened.
///
/// On Linux the kernel enforces confinement: a file is opened with
/// `openat2(RESOLVE_BENEATH)` from the root handle, or, where that is
/// refused (an absolute symlink, which may still point inside the root; a
/// kernel before 5.6), by a walk one component at a time with `O_NOFOLLOW`
/// that resolves each symlink itself and keeps `..` below the root. Either
/// way what is checked is what is opened: no second path walk that a rename
/// could redirect. Elsewhere the path is resolved, checked and then opened,
/// which a concurrent rename inside the root can race.
#[derive(Debug)]
pub(crate) struct MediaRoot {
    path: PathBuf,
    // `None` when the root could not be opened at construction: it is then
    // tried again on each use.
    #[cfg(target_os = "linux")]
    dir: Option<std::os::fd::OwnedFd>,
}

impl MediaRoot {
    /// The root at `path` (which should be canonical: an absolute symlink
    /// counts as inside when its target starts with it). Blocking.
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            #[cfg(target_os = "linux")]
            dir: linux::open_root(&path).ok(),
            path,
        }
    }

    /// The root's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `relative` (normalised) for reading, refusing anything that is
    /// not a regular file below the root, unless `follow_outside` lets
    /// symlinks lead anywhere. Blocking.
    pub(crate) fn open(
        &self,
        relative: &str,
        follow_outside: bool,
    ) -> Result<(std::fs::File, std::fs::Metadata), OpenFailure> {
        let file = self.open_file(relative, follow_outside).map_err(classify)?;
        // Read from the open handle: size and time must describe what we
        // stream, and a FIFO or device is refused before any read.
        let metadata = file.metadata().map_err(classify)?;
        if !metadata.is_file() {
            return Err(OpenFailure::NotFound);
        }
        // Opened non-blocking so that a FIFO could not hang the open; a
        // regular file's reads do not need it.
        #[cfg(target_os = "linux")]
        {
            let flags = rustix::fs::fcntl_getfl(&file).map_err(|e| classify(e.into()))?;
            rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)
                .map_err(|e| classify(e.into()))?;
        }
        Ok((file, metadata))
    }

    /// What `relative` names now, symlinks followed wherever they lead: one
    /// `stat`. Enough for the open-file cache's check, since it only
    /// decides whether to trust a handle that [`open`](Self::open) opened
    /// under the rules: a path that now leads elsewhere (a directory
    /// swapped for a symlink out of the root) names another file, so the
    /// check fails and the file is opened again, under the rules.
    pub(crate) fn stat_followed(&self, relative: &str) -> Option<std::fs::Metadata> {
        std::fs::metadata(self.path.join(relative)).ok()
    }

    #[cfg(target_os = "linux")]
    fn open_file(&self, relative: &str, follow_outside: bool) -> io::Result<std::fs::File> {
        use rustix::fs::OFlags;
        // Non-blocking so that a FIFO does not hang the open (see `open`).
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd =
            self.with_dir(|dir| linux::open_at(dir, &self.path, relative, flags, follow_outside))?;
        Ok(std::fs::File::from(fd))
    }

    #[cfg(target_os = "linux")]
    fn with_dir<T>(
        &self,
        f: impl FnOnce(std::os::fd::BorrowedFd<'_>) -> io::Result<T>,
    ) -> io::Result<T> {
        use std::os::fd::AsFd;
        match &self.dir {
            Some(dir) => f(dir.as_fd()),
            None => f(linux::open_root(&self.path)?.as_fd()),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn open_file(&self, relative: &str, follow_outside: bool) -> io::Result<std::fs::File> {
        let resolved = self.resolve(relative, follow_outside)?;
        // Check the type before opening so a FIFO or device is never opened.
        if !std::fs::metadata(&resolved)?.is_file() {
            return Err(io::ErrorKind::NotFound.into());
        }
        std::fs::File::open(&resolved)
    }

    #[cfg(not(target_os = "linux"))]
    fn resolve(&self, relative: &str, follow_outside: bool) -> io::Result<PathBuf> {
        let resolved = std::fs::canonicalize(self.path.join(relative))?;
        if !follow_outside && !resolved.starts_with(&self.path) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(resolved)
    }
}

/// Opens `root/relative` for reading under [`MediaRoot`]'s rules, with a
/// handle on `root` opened for this one call. Blocking.
pub(crate) fn open_confined(
    root: &Path,
    relative: &str,
    follow_outside: bool,
) -> Result<(std::fs::File, std::fs::Metadata), OpenFailure> {
    MediaRoot::new(root.to_path_buf()).open(relative, follow_outside)
}

/// Opening below a directory handle without leaving it.
#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, CWD};
    use rustix::io::Errno;

    /// Symlinks followed in one lookup at most, as the kernel's own limit.
    const MAX_LINKS: usize = 40;

    /// Set once `openat2` turns out to be missing (Linux before 5.6, or a
    /// seccomp filter that answers `ENOSYS`): the walk is used from then on.
    static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

    pub(super) fn open_root(path: &Path) -> io::Result<OwnedFd> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        Ok(rustix::fs::openat(CWD, path, flags, Mode::empty())?)
    }

    /// Opens `relative` below `dir` (whose path is `root`) with `flags`.
    /// With `follow_outside` symlinks lead anywhere, as configured;
    /// otherwise nothing outside `dir` is ever opened.
    pub(super) fn open_at(
        dir: BorrowedFd<'_>,
        root: &Path,
        relative: &str,
        flags: OFlags,
        follow_outside: bool,
    ) -> io::Result<OwnedFd> {
        let flags = flags | OFlags::CLOEXEC;
        if follow_outside {
            return Ok(rustix::fs::openat(dir, relative, flags, Mode::empty())?);
        }
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(dir, relative, flags, Mode::empty(), resolve) {
                Ok(fd) => return Ok(fd),
                // EXDEV: an absolute symlink or a `..` that climbs out; the
                // walk tells an absolute link into the root from one out of
                // it. EAGAIN: a rename raced the lookup.
                // EPERM: older container seccomp profiles refuse syscalls
                // they do not know this way; the walk needs only `openat`
                // and gives a real EPERM again if there is one.
                Err(Errno::XDEV | Errno::AGAIN | Errno::PERM) => {}
                Err(Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
                Err(err) => return Err(err.into()),
            }
        }
        walk(dir, root, relative, flags)
    }

    /// Resolves `relative` one component at a time from `root_fd`, never
    /// following a symlink in the kernel (`O_NOFOLLOW`): each one is read
    /// and its target resolved here, an absolute one only when it names a
    /// path under `root`, and `..` goes back to a directory already
    /// entered, never above `root_fd`. Every step is relative to a handle
    /// held, so renames meanwhile cannot move the walk outside.
    pub(super) fn walk(
        root_fd: BorrowedFd<'_>,
        root: &Path,
        relative: &str,
        flags: OFlags,
    ) -> io::Result<OwnedFd> {
        // The directories entered below the root, innermost last.
        let mut dirs: Vec<OwnedFd> = Vec::new();
        // The components still to resolve, the next one last.
        let mut todo: Vec<Vec<u8>> = Vec::new();
        push_components(&mut todo, relative.as_bytes());
        let mut links = 0;
        while let Some(name) = todo.pop() {
            if name == b".." {
                if dirs.pop().is_none() {
                    return Err(Errno::XDEV.into());
                }
                continue;
            }
            let at = dirs.last().map_or(root_fd, AsFd::as_fd);
            let last = todo.is_empty();
            // Directories on the way are only looked at (`O_PATH`); a
            // symlink is then opened as itself and read below.
            let open_flags = if last {
                flags
            } else {
                OFlags::PATH | OFlags::CLOEXEC
            };
            let opened = rustix::fs::openat(
                at,
                name.as_slice(),
                open_flags | OFlags::NOFOLLOW,
                Mode::empty(),
            );
            let fd = match opened {
                Ok(fd) => fd,
                // The last component is a symlink (`O_NOFOLLOW` without
                // `O_PATH`); read it by name. Should it have stopped being
                // one meanwhile, the name is tried again (EINVAL).
                Err(Errno::LOOP) => {
                    links += 1;
                    match rustix::fs::readlinkat(at, name.as_slice(), Vec::new()) {
                        Ok(target) => splice(&mut todo, &mut dirs, root, target.as_bytes())?,
                        Err(Errno::INVAL) => todo.push(name),
                        Err(err) => return Err(err.into()),
                    }
                    if links > MAX_LINKS {
                        return Err(Errno::LOOP.into());
                    }
                    continue;
                }
                Err(err) => return Err(err.into()),
            };
            let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
            if kind == FileType::Symlink {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Errno::LOOP.into());
                }
                let target = rustix::fs::readlinkat(&fd, "", Vec::new())?;
                splice(&mut todo, &mut dirs, root, target.as_bytes())?;
                continue;
            }
            if last {
                return Ok(fd);
            }
            if kind != FileType::Directory {
                return Err(Errno::NOTDIR.into());
            }
            dirs.push(fd);
        }
        // The path ended on a directory (`a/..`), which is never a file.
        Err(Errno::ISDIR.into())
    }

    /// Puts a symlink's target in front of the components still to do: a
    /// relative one from the directory holding the link, an absolute one
    /// from the root if it lies under `root`'s path, else refused.
    fn splice(
        todo: &mut Vec<Vec<u8>>,
        dirs: &mut Vec<OwnedFd>,
        root: &Path,
        target: &[u8],
    ) -> io::Result<()> {
        if target.first() == Some(&b'/') {
            let inside = Path::new(std::ffi::OsStr::from_bytes(target))
                .strip_prefix(root)
                .map_err(|_| io::Error::from(Errno::XDEV))?;
            dirs.clear();
            push_components(todo, inside.as_os_str().as_bytes());
        } else {
            push_components(todo, target);
        }
        Ok(())
    }

    /// Pushes the components of `path` so that the first is popped first;
    /// empty and `.` components mean nothing.
    fn push_components(todo: &mut Vec<Vec<u8>>, path: &[u8]) {
        todo.extend(
            path.split(|&b| b == b'/')
                .filter(|c| !c.is_empty() && *c != b".")
                .rev()
                .map(<[u8]>::to_vec),
        );
    }
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

    /// The walk that stands in for `openat2` (taken on `EXDEV`, or always
    /// on an old kernel) keeps every `openat2` rule and also lets an
    /// absolute symlink into the root through.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_walk_stays_below_the_root() {
        use std::io::Read;
        use std::os::fd::AsFd;
        use std::os::unix::fs::symlink;

        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), b"inside").unwrap();
        std::fs::write(base.join("secret"), b"outside").unwrap();
        symlink(root.join("a/b/f"), root.join("abs_in")).unwrap();
        symlink(base.join("secret"), root.join("abs_out")).unwrap();
        symlink("../../b/f", root.join("a/b/rel_in_up")).unwrap();
        symlink("b", root.join("a/dirlink")).unwrap();
        symlink("../../secret", root.join("a/rel_out")).unwrap();
        symlink(&base, root.join("a/abs_dir_out")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        let fd = linux::open_root(&root).unwrap();
        let flags = rustix::fs::OFlags::RDONLY;
        let read = |relative: &str| {
            let file = linux::walk(fd.as_fd(), &root, relative, flags).map(std::fs::File::from);
            file.and_then(|mut f| {
                let mut out = String::new();
                f.read_to_string(&mut out).map(|_| out)
            })
            .map_err(|e| e.raw_os_error())
        };
        use rustix::io::Errno;
        fn errno<T>(e: Errno) -> Result<T, Option<i32>> {
            Err(Some(e.raw_os_error()))
        }
        assert_eq!(read("a/b/f"), Ok("inside".into()));
        assert_eq!(read("abs_in"), Ok("inside".into()));
        assert_eq!(read("a/dirlink/f"), Ok("inside".into()));
        assert_eq!(read("a/dirlink/rel_in_up"), errno(Errno::NOENT));
        assert_eq!(read("a/b/rel_in_up"), errno(Errno::NOENT));
        std::fs::create_dir(root.join("b")).unwrap();
        std::fs::write(root.join("b/f"), b"up").unwrap();
        assert_eq!(read("a/b/rel_in_up"), Ok("up".into()));
        assert_eq!(read("abs_out"), errno(Errno::XDEV));
        assert_eq!(read("a/rel_out"), errno(Errno::XDEV));
        assert_eq!(read("a/abs_dir_out/secret"), errno(Errno::XDEV));
        assert_eq!(read("loop"), errno(Errno::LOOP));
        assert_eq!(read("a/b/f/x"), errno(Errno::NOTDIR));
        // O_PATH, as the cache's check opens: the same rules.
        let stat = |relative: &str| {
            linux::walk(fd.as_fd(), &root, relative, rustix::fs::OFlags::PATH)
                .map(|fd| std::fs::File::from(fd).metadata().unwrap().len())
                .map_err(|e| e.raw_os_error())
        };
        assert_eq!(stat("abs_in"), Ok(6));
        assert_eq!(stat("abs_out"), errno(Errno::XDEV));
    }

    /// The walk under the exchange race of issue 20 (a directory swapped
    /// with a symlink out of the root): it opens the inside file or
    /// nothing, never the outside one.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_walk_never_leaves_the_root_under_a_rename_race() {
        use std::io::Read;
        use std::os::fd::AsFd;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        use rustix::fs::{renameat_with, RenameFlags, CWD};

        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), b"inside").unwrap();
        std::fs::create_dir(base.join("out")).unwrap();
        std::fs::write(base.join("out/f"), b"outside").unwrap();
        std::os::unix::fs::symlink(base.join("out"), root.join("swap")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let exchanger = {
            let (stop, d, swap) = (Arc::clone(&stop), root.join("d"), root.join("swap"));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    renameat_with(CWD, &d, CWD, &swap, RenameFlags::EXCHANGE).unwrap();
                }
            })
        };
        let fd = linux::open_root(&root).unwrap();
        let (mut inside, mut refused) = (0, 0);
        let until = std::time::Instant::now() + std::time::Duration::from_millis(700);
        while std::time::Instant::now() < until {
            match linux::walk(fd.as_fd(), &root, "d/f", rustix::fs::OFlags::RDONLY) {
                Ok(fd) => {
                    let mut bytes = String::new();
                    std::fs::File::from(fd).read_to_string(&mut bytes).unwrap();
                    assert_eq!(bytes, "inside");
                    inside += 1;
                }
                Err(_) => refused += 1,
            }
        }
        stop.store(true, Ordering::Relaxed);
        exchanger.join().unwrap();
        assert!(
            inside > 0 && refused > 0,
            "{inside} inside, {refused} refused"
        );
    }

    /// A FIFO in the root is refused at once: the open does not wait for
    /// a writer.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_fifo_is_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("pipe"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .unwrap();
        std::fs::write(root.join("file"), b"x").unwrap();
        let media = MediaRoot::new(root);
        assert!(matches!(
            media.open("pipe", false),
            Err(OpenFailure::NotFound)
        ));
        assert!(matches!(
            media.open("pipe", true),
            Err(OpenFailure::NotFound)
        ));
        // A regular file's handle is left blocking, as `File::open` gives.
        let Ok((file, _)) = media.open("file", false) else {
            panic!("a regular file opens");
        };
        let flags = rustix::fs::fcntl_getfl(&file).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK));
    }
}
