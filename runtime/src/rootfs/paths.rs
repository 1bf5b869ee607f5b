//! `linux.maskedPaths` and `linux.readonlyPaths`, applied after pivot_root.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::SFlag;

use super::resolve;
use super::RootfsError;
use crate::sys;

fn e(path: &str, what: &str, err: Errno) -> RootfsError {
    RootfsError::Path {
        path: path.into(),
        message: format!("{what}: {err}"),
    }
}

/// Hide each path: directories under an empty read-only tmpfs, files under `/dev/null`.
pub fn mask(root: &OwnedFd, paths: &[String]) -> Result<(), RootfsError> {
    if paths.is_empty() {
        return Ok(());
    }
    // CVE-2025-31133: bind only the real /dev/null (char 1:3), never a symlink or file the
    // container could have put there.
    let null =
        resolve::open(root, Path::new("/dev/null")).map_err(|err| e("/dev/null", "open", err))?;
    let st = resolve::stat(&null).map_err(|err| e("/dev/null", "stat", err))?;
    let is_null = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
        && nix::sys::stat::major(st.st_rdev) == 1
        && nix::sys::stat::minor(st.st_rdev) == 3;
    if !is_null {
        return Err(e("/dev/null", "check", Errno::ENODEV));
    }
    for p in paths {
        let target = match resolve::open(root, Path::new(p)) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(err) => return Err(e(p, "open", err)),
        };
        let st = resolve::stat(&target).map_err(|err| e(p, "stat", err))?;
        let r = if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            mount(
                Some("tmpfs"),
                &sys::fd_path(&target),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
        } else {
            mount(
                Some(&sys::fd_path(&null)),
                &sys::fd_path(&target),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        r.map_err(|err| e(p, "mask", err))?;
    }
    Ok(())
}

/// Make each path read-only (a recursive bind of itself, remounted read-only).
pub fn readonly(root: &OwnedFd, paths: &[String], userns: bool) -> Result<(), RootfsError> {
    for p in paths {
        let target = match resolve::open(root, Path::new(p)) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(err) => return Err(e(p, "open", err)),
        };
        let fdp = sys::fd_path(&target);
        mount(
            Some(&fdp),
            &fdp,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|err| e(p, "bind", err))?;
        let mounted = resolve::open(root, Path::new(p)).map_err(|err| e(p, "reopen", err))?;
        let locked = if userns {
            super::mount::locked_flags(&mounted)
        } else {
            MsFlags::empty()
        };
        mount(
            None::<&str>,
            &sys::fd_path(&mounted),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC | locked,
            None::<&str>,
        )
        .map_err(|err| e(p, "remount read-only", err))?;
    }
    Ok(())
}
