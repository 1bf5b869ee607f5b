//! Paths inside the container's root, resolved the way the container would resolve them
//! (`openat2` with `RESOLVE_IN_ROOT`), so a symlink planted in the image can never point a mount
//! or a write outside the rootfs (CVE-2021-30465, CVE-2023-27561).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;

use crate::sys;

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// What to create at a path that doesn't exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// The components of `path` below the root, with `.` dropped and `..` applied lexically (the
/// root's parent is the root), so a name handed to `mkdirat` is always one plain component.
pub fn clean(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(PathBuf::from(n)),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Open the rootfs directory itself.
pub fn open_root(rootfs: &Path) -> Result<OwnedFd, Errno> {
    crate::sys::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// An `O_PATH` descriptor for `path` inside `root`.
pub fn open(root: &OwnedFd, path: &Path) -> Result<OwnedFd, Errno> {
    sys::openat2(
        root.as_raw_fd(),
        &rel(path),
        libc::O_PATH | libc::O_CLOEXEC,
        0,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
}

/// Open `path` inside `root` with `flags` (e.g. `O_WRONLY` for a /proc file).
pub fn open_with(root: &OwnedFd, path: &Path, flags: i32) -> Result<OwnedFd, Errno> {
    sys::openat2(
        root.as_raw_fd(),
        &rel(path),
        flags | libc::O_CLOEXEC,
        0,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
}

fn rel(path: &Path) -> PathBuf {
    let comps = clean(path);
    if comps.is_empty() {
        PathBuf::from(".")
    } else {
        comps.iter().collect()
    }
}

/// Open `path` inside `root`, creating it (and missing parents as directories) as `kind`.
pub fn create(root: &OwnedFd, path: &Path, kind: Kind) -> Result<OwnedFd, Errno> {
    create_at_depth(root, path, kind, 0)
}

fn create_at_depth(root: &OwnedFd, path: &Path, kind: Kind, depth: u32) -> Result<OwnedFd, Errno> {
    match open(root, path) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let comps = clean(path);
    let Some((last, parents)) = comps.split_last() else {
        return open(root, Path::new("."));
    };
    let mut prefix = PathBuf::new();
    let mut dir = open(root, Path::new("."))?;
    for (i, c) in parents.iter().enumerate() {
        prefix.push(c);
        dir = match open(root, &prefix) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                mkdirat(&dir, c)?;
                match open(root, &prefix) {
                    Ok(fd) => fd,
                    // A dangling symlink: follow it the way the container would (inside the
                    // root) and create what it points to instead.
                    Err(Errno::ENOENT) => {
                        return follow_dangling(root, &dir, &prefix, &comps[i + 1..], kind, depth)
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
    }
    // The path didn't resolve, so a symlink as its last component dangles.
    if nix::fcntl::readlinkat(Some(dir.as_raw_fd()), last.as_path()).is_ok() {
        prefix.push(last);
        return follow_dangling(root, &dir, &prefix, &[], kind, depth);
    }
    match kind {
        Kind::Dir => mkdirat(&dir, last)?,
        Kind::File => {
            let r = crate::sys::openat(
                dir.as_raw_fd(),
                last.as_path(),
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            );
            match r {
                Ok(fd) => drop(fd),
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
    }
    prefix.push(last);
    open(root, &prefix)
}

/// `link` (inside `root`, in directory `dir`) is a symlink to something that doesn't exist:
/// create its target, resolved as the container would resolve it, then `rest` below it.
fn follow_dangling(
    root: &OwnedFd,
    dir: &OwnedFd,
    link: &Path,
    rest: &[PathBuf],
    kind: Kind,
    depth: u32,
) -> Result<OwnedFd, Errno> {
    // As the kernel's ELOOP: a chain of links never ends in a loop here.
    if depth >= 40 {
        return Err(Errno::ELOOP);
    }
    let name = link.file_name().map(PathBuf::from).ok_or(Errno::ENOENT)?;
    let target = nix::fcntl::readlinkat(Some(dir.as_raw_fd()), name.as_path())?;
    let target = Path::new(&target);
    let mut next = if target.is_absolute() {
        PathBuf::from(target)
    } else {
        link.parent().unwrap_or(Path::new("")).join(target)
    };
    for r in rest {
        next.push(r);
    }
    create_at_depth(root, &next, kind, depth + 1)
}

fn mkdirat(dir: &OwnedFd, name: &Path) -> Result<(), Errno> {
    match nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// True when `path` exists in `root` and its last component is a symlink (parents resolved
/// inside the root).
pub fn is_symlink(root: &OwnedFd, path: &Path) -> bool {
    sys::openat2(
        root.as_raw_fd(),
        &rel(path),
        libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        0,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
    .ok()
    .and_then(|fd| stat(&fd).ok())
    .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK)
}

/// `fstat` of an `O_PATH` descriptor.
pub fn stat(fd: &OwnedFd) -> Result<nix::sys::stat::FileStat, Errno> {
    nix::sys::stat::fstatat(Some(fd.as_raw_fd()), "", AtFlags::AT_EMPTY_PATH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("husk-resolve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn clean_stays_below_root() {
        assert_eq!(
            clean(Path::new("/../../etc/./passwd")),
            vec![PathBuf::from("etc"), PathBuf::from("passwd")]
        );
    }

    #[test]
    fn symlink_escape_stays_inside() {
        let d = tmp("escape");
        let root = d.join("root");
        std::fs::create_dir_all(root.join("a")).unwrap();
        // A hostile image: /a/evil -> /../../../outside
        std::os::unix::fs::symlink("/../../../outside", root.join("a/evil")).unwrap();
        let rfd = open_root(&root).unwrap();
        let fd = create(&rfd, Path::new("/a/evil/x"), Kind::Dir).unwrap();
        drop(fd);
        assert!(root.join("outside/x").is_dir(), "created inside the root");
        assert!(!d.join("outside").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn creates_files_and_parents() {
        let d = tmp("files");
        let rfd = open_root(&d).unwrap();
        create(&rfd, Path::new("/x/y/z"), Kind::File).unwrap();
        assert!(d.join("x/y/z").is_file());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
