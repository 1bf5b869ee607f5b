//! No write escapes the rootfs.
//!
//! Every path from an image (a tar entry, a hard link target, a whiteout) goes through two
//! checks. [`relative`] cleans the name as Go's archive/tar users do (a leading `/` is the root,
//! `a/..` cancels) and refuses a `..` that climbs above the root. [`Root::dir`] then
//! resolves the parent directory with `openat2(RESOLVE_BENEATH)`, which fails with `EXDEV` when a
//! symlink on the way is absolute or climbs above the root; on that slow path [`Root::dir`] walks
//! the symlinks itself and refuses the path if one of them climbs out ([`ConfineError::SymlinkEscape`]),
//! while an absolute symlink (`/var/run -> /run`, common in images) is followed inside the root with
//! `RESOLVE_IN_ROOT`, as the container itself would see it. The final component is never followed:
//! callers create it with `O_EXCL|O_NOFOLLOW`, `mknodat`, `symlinkat`, `linkat` without
//! `AT_SYMLINK_FOLLOW`, relative to the resolved parent's descriptor. So every write lands on a
//! descriptor the kernel resolved inside the root, and a planted symlink can only redirect it
//! within the root.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::UnlinkatFlags;

/// Longest entry name accepted (bytes). Bounds the depth of the trees `remove_all` recurses into.
pub const MAX_PATH: usize = 4096;

/// Symlinks followed while resolving one path before giving up, as the kernel's limit.
const MAX_LINKS: u32 = 40;

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("path {path:?} has a \"..\" component that climbs out of the rootfs")]
    DotDot { path: PathBuf },
    #[error("path of {len} bytes is longer than {MAX_PATH}")]
    TooLong { len: usize },
    #[error("path {path:?} goes through the symlink {link:?} -> {target:?}, which leads out of the rootfs")]
    SymlinkEscape {
        path: PathBuf,
        link: PathBuf,
        target: PathBuf,
    },
    #[error("resolve {path:?} inside the rootfs")]
    Resolve {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("open rootfs {path:?}")]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: Errno,
    },
}

/// `name` as components below the root, cleaned as Go's `path.Clean` does for archive/tar
/// users (containerd, umoci): a leading `/` is relative to the root, `.` and empty components
/// drop out, `a/..` cancels; a `..` that would climb above the root is refused. The result is
/// empty for the root itself (`/`, `.`, `./`).
pub fn relative(name: &Path) -> Result<PathBuf, ConfineError> {
    let len = name.as_os_str().len();
    if len > MAX_PATH {
        return Err(ConfineError::TooLong { len });
    }
    // Rooted ("/..") a ".." at the root stays there, as in Go's path.Clean; relative ("..")
    // it would climb out.
    let rooted = name.has_root();
    let mut out: Vec<&OsStr> = Vec::new();
    for c in name.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if out.pop().is_none() && !rooted {
                    return Err(ConfineError::DotDot {
                        path: name.to_path_buf(),
                    });
                }
            }
        }
    }
    Ok(out.iter().collect())
}

/// `path` as an argument for the `*at` calls: "." for the root itself.
fn arg(path: &Path) -> &Path {
    if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    }
}

/// The directory everything is confined to, held open.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    pub fn open(path: &Path) -> Result<Root, ConfineError> {
        let fd = openat(
            libc::AT_FDCWD,
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        )
        .map_err(|source| ConfineError::OpenRoot {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An `O_PATH` descriptor of the directory `rel` (already [`relative`]), resolved inside the
    /// root; with `create`, missing directories are made (mode 0755, as tar and umoci do).
    pub fn dir(&self, rel: &Path, create: bool) -> Result<OwnedFd, ConfineError> {
        let err = |source| ConfineError::Resolve {
            path: rel.to_path_buf(),
            source,
        };
        match self.resolve(rel, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Err(ConfineError::Resolve {
                source: Errno::ENOENT,
                ..
            }) if create => {}
            other => return other,
        }
        // Slow path: make the missing components one at a time, each inside its resolved parent.
        let mut parent = self.resolve(Path::new(""), OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        let mut prefix = PathBuf::new();
        for c in rel.components() {
            prefix.push(c);
            parent = match self.resolve(&prefix, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(ConfineError::Resolve {
                    source: Errno::ENOENT,
                    ..
                }) => {
                    match mkdirat(parent.as_fd(), c.as_os_str(), 0o755) {
                        // EEXIST here means a dangling symlink: resolve below reports it.
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(err(e)),
                    }
                    self.resolve(&prefix, OFlag::O_PATH | OFlag::O_DIRECTORY)?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(parent)
    }

    /// Open `rel` inside the root with `flags`, following symlinks only where they stay inside.
    pub fn resolve(&self, rel: &Path, flags: OFlag) -> Result<OwnedFd, ConfineError> {
        let err = |source| ConfineError::Resolve {
            path: rel.to_path_buf(),
            source,
        };
        let beneath = ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        match openat2(self.fd.as_fd(), arg(rel), flags, beneath) {
            Ok(fd) => Ok(fd),
            Err(Errno::EXDEV) => {
                if let Some((link, target)) = self.find_escape(rel).map_err(err)? {
                    return Err(ConfineError::SymlinkEscape {
                        path: rel.to_path_buf(),
                        link,
                        target,
                    });
                }
                let in_root = ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS;
                openat2(self.fd.as_fd(), arg(rel), flags, in_root).map_err(err)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Open a file inside the root for reading, resolved as the container would (used for
    /// `/etc/passwd` and `/etc/group`: a symlink there must not read a host file).
    pub fn read_file(&self, rel: &Path) -> Result<File, ConfineError> {
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let how = ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        openat2(self.fd.as_fd(), arg(rel), flags, how)
            .map(File::from)
            .map_err(|source| ConfineError::Resolve {
                path: rel.to_path_buf(),
                source,
            })
    }

    /// Walk `rel` symlink by symlink and return the first link whose target climbs above the
    /// root (relative `..` past it, or `/..`): the link and its target, for the error message.
    fn find_escape(&self, rel: &Path) -> Result<Option<(PathBuf, PathBuf)>, Errno> {
        let mut stack: Vec<(OsString, OwnedFd)> = Vec::new();
        let mut todo: VecDeque<OsString> =
            rel.components().map(|c| c.as_os_str().to_owned()).collect();
        let mut last_link: Option<(PathBuf, PathBuf)> = None;
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            if c == "." || c.is_empty() {
                continue;
            }
            if c == ".." {
                if stack.pop().is_none() {
                    return Ok(Some(last_link.unwrap_or_default()));
                }
                continue;
            }
            let parent = stack.last().map_or(self.fd.as_fd(), |(_, fd)| fd.as_fd());
            match readlinkat(parent, &c) {
                Ok(target) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Errno::ELOOP);
                    }
                    let target = PathBuf::from(target);
                    let mut link: PathBuf = stack.iter().map(|(n, _)| n.as_os_str()).collect();
                    link.push(&c);
                    if target.is_absolute() {
                        stack.clear();
                    }
                    for t in target.components().rev() {
                        if !matches!(t, Component::RootDir) {
                            todo.push_front(t.as_os_str().to_owned());
                        }
                    }
                    last_link = Some((link, target));
                }
                Err(Errno::EINVAL) => {
                    let fd = openat(
                        parent.as_raw_fd(),
                        Path::new(&c),
                        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    )?;
                    stack.push((c, fd));
                }
                // What does not exist cannot lead anywhere.
                Err(Errno::ENOENT) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// `openat` returning an owned descriptor.
pub fn openat(dir: RawFd, path: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let fd = nix::fcntl::openat(Some(dir), path, flags | OFlag::O_CLOEXEC, Mode::empty())?;
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat` creating a new file (`O_EXCL|O_NOFOLLOW`: never reuses or follows what is there).
pub fn create_file(dir: BorrowedFd<'_>, name: &OsStr) -> Result<File, Errno> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        flags,
        Mode::from_bits_truncate(0o600),
    )?;
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn openat2(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: OFlag,
    resolve: ResolveFlag,
) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(resolve);
    // openat2 returns EAGAIN when a concurrent rename might have raced the lookup; nothing else
    // renames inside a rootfs being unpacked, so a few retries settle it.
    let mut tries = 0;
    loop {
        match nix::fcntl::openat2(dir.as_raw_fd(), path, how) {
            // SAFETY: openat2 just returned this descriptor and nothing else owns it.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(Errno::EAGAIN) if tries < 8 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

pub fn readlinkat(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OsString, Errno> {
    nix::fcntl::readlinkat(Some(dir.as_raw_fd()), name)
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> Result<(), Errno> {
    nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(mode))
}

/// What is at `name` in `dir`, not following a symlink; `None` if nothing.
pub fn kind_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<SFlag>, Errno> {
    match nix::sys::stat::fstatat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(st) => Ok(Some(SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Remove `name` in `dir` and, for a directory, everything below it, never following a symlink.
/// Nothing there is not an error.
pub fn remove_all(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    match kind_at(dir, name)? {
        None => Ok(()),
        Some(SFlag::S_IFDIR) => {
            let sub = openat(
                dir.as_raw_fd(),
                Path::new(name),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            )?;
            clear_dir(sub, &mut |_| false)?;
            unlinkat(dir, name, true)
        }
        Some(_) => unlinkat(dir, name, false),
    }
}

/// Remove every entry of the directory `dir` (opened for reading) for which `keep` says no.
pub fn clear_dir(dir: OwnedFd, keep: &mut dyn FnMut(&OsStr) -> bool) -> Result<(), Errno> {
    let raw = dir.into_raw_fd();
    let mut d = nix::dir::Dir::from_fd(raw)?;
    let mut names: Vec<OsString> = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = OsStr::from_bytes(e.file_name().to_bytes());
        if n != "." && n != ".." && !keep(n) {
            names.push(n.to_owned());
        }
    }
    // SAFETY: `raw` stays open while `d` lives; the borrow ends before `d` is dropped.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    for n in &names {
        remove_all(fd, n)?;
    }
    drop(d);
    Ok(())
}

pub fn unlinkat(dir: BorrowedFd<'_>, name: &OsStr, is_dir: bool) -> Result<(), Errno> {
    let flag = if is_dir {
        UnlinkatFlags::RemoveDir
    } else {
        UnlinkatFlags::NoRemoveDir
    };
    nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, flag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, Root) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("r")).unwrap();
        let r = Root::open(&t.path().join("r")).unwrap();
        (t, r)
    }

    #[test]
    fn relative_cleans_reroots_and_refuses_escaping_dotdot() {
        assert_eq!(
            relative(Path::new("./a/./b/")).unwrap(),
            PathBuf::from("a/b")
        );
        assert_eq!(relative(Path::new("./")).unwrap(), PathBuf::new());
        assert_eq!(
            relative(Path::new("/etc/passwd")).unwrap(),
            PathBuf::from("etc/passwd")
        );
        assert_eq!(
            relative(Path::new("a/b/../c")).unwrap(),
            PathBuf::from("a/c")
        );
        assert_eq!(relative(Path::new("/")).unwrap(), PathBuf::new());
        assert_eq!(relative(Path::new("a/..")).unwrap(), PathBuf::new());
        assert_eq!(
            relative(Path::new("/../../etc")).unwrap(),
            PathBuf::from("etc")
        );
        assert!(matches!(
            relative(Path::new("a/../../b")),
            Err(ConfineError::DotDot { .. })
        ));
        let long = "a/".repeat(3000);
        assert!(matches!(
            relative(Path::new(&long)),
            Err(ConfineError::TooLong { .. })
        ));
    }

    #[test]
    fn follows_inside_links_and_absolute_links_in_root() {
        let (t, r) = root();
        let base = t.path().join("r");
        std::fs::create_dir_all(base.join("usr/lib")).unwrap();
        std::fs::create_dir_all(base.join("run")).unwrap();
        symlink("usr/lib", base.join("lib")).unwrap();
        symlink("/run", base.join("varrun")).unwrap();
        let fd = r.dir(Path::new("lib"), false).unwrap();
        create_file(fd.as_fd(), OsStr::new("x")).unwrap();
        assert!(base.join("usr/lib/x").exists());
        let fd = r.dir(Path::new("varrun"), false).unwrap();
        create_file(fd.as_fd(), OsStr::new("y")).unwrap();
        assert!(base.join("run/y").exists());
    }

    #[test]
    fn refuses_links_that_climb_out() {
        let (t, r) = root();
        let base = t.path().join("r");
        std::fs::create_dir_all(base.join("a")).unwrap();
        symlink("../../..", base.join("a/up")).unwrap();
        symlink("/../etc", base.join("abs_up")).unwrap();
        for p in ["a/up", "a/up/tmp", "abs_up"] {
            let e = r.dir(Path::new(p), true).unwrap_err();
            assert!(matches!(e, ConfineError::SymlinkEscape { .. }), "{p}: {e}");
        }
        // Nothing was created next to the root.
        let names: Vec<_> = std::fs::read_dir(t.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn creates_missing_parents_and_removes_trees_without_following() {
        let (t, r) = root();
        let base = t.path().join("r");
        let fd = r.dir(Path::new("x/y/z"), true).unwrap();
        create_file(fd.as_fd(), OsStr::new("f")).unwrap();
        let outside = t.path().join("keep");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("k"), "k").unwrap();
        symlink(&outside, base.join("x/y/out")).unwrap();
        remove_all(r.fd(), OsStr::new("x")).unwrap();
        assert!(!base.join("x").exists());
        assert!(outside.join("k").exists());
    }
}
