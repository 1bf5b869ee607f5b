//! One entry of `mounts`: create the target inside the rootfs, mount by fd, then apply the
//! remount flags, propagation and recursive attributes the options asked for.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

use super::options::{self, attr, Options};
use super::resolve::{self, Kind};
use super::RootfsError;
use crate::sys;

/// What every mount needs to know about the container.
pub struct Ctx<'a> {
    pub root: &'a OwnedFd,
    pub bundle: &'a Path,
    /// In a user namespace: mknod is refused and locked mount flags must be kept.
    pub userns: bool,
    pub cgroupns: bool,
    /// The container's user namespace, for idmapped mounts.
    pub userns_fd: Option<&'a OwnedFd>,
    /// Binds made ahead by the caller ([`crate::spec::Prepared`]), by destination.
    pub prepared: &'a [crate::spec::Prepared],
}

const OPEN_TREE_CLONE: u32 = 1;
const AT_RECURSIVE: u32 = 0x8000;
const AT_EMPTY_PATH: u32 = 0x1000;

fn err(m: &Mount, what: &str, e: impl std::fmt::Display) -> RootfsError {
    RootfsError::Mount {
        dest: m.destination().clone(),
        message: format!("{what}: {e}"),
    }
}

pub fn mount_one(cx: &Ctx, m: &Mount) -> Result<(), RootfsError> {
    let opts = options::parse(m.options().as_deref().unwrap_or_default())
        .map_err(|e| err(m, "options", e))?;
    let typ = m.typ().as_deref().unwrap_or("none");
    let dest = m.destination();
    if opts.is_bind() || typ == "bind" {
        bind(cx, m, &opts)
    } else if typ == "cgroup" || typ == "cgroup2" {
        super::cgroupfs::mount(cx, m, &opts)
    } else if opts.flags.contains(MsFlags::MS_REMOUNT) {
        let target = resolve::open(cx.root, dest).map_err(|e| err(m, "open target", e))?;
        remount(&target, opts.flags, &opts.data).map_err(|e| err(m, "remount", e))
    } else {
        // CVE-2023-27561: procfs or sysfs mounted where an image's symlink points would leave
        // the real path unmasked; refuse, as runc does.
        if matches!(typ, "proc" | "sysfs") && resolve::is_symlink(cx.root, dest) {
            return Err(err(
                m,
                "check target",
                "is a symlink in the rootfs (refused for proc and sysfs)",
            ));
        }
        let target =
            resolve::create(cx.root, dest, Kind::Dir).map_err(|e| err(m, "create target", e))?;
        let copy_from = if opts.tmpcopyup {
            Some(dup_dir(&target).map_err(|e| err(m, "open for tmpcopyup", e))?)
        } else {
            None
        };
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
        let data = opts.data.join(",");
        let flags = opts.flags & !(MsFlags::MS_REMOUNT);
        let r = mount(
            Some(&source),
            &sys::fd_path(&target),
            Some(typ),
            flags,
            Some(data.as_str()),
        );
        match r {
            Ok(()) => {}
            // sysfs can't be mounted in a user namespace without its own network namespace:
            // bind the host's instead, read-only, as runc does.
            Err(Errno::EPERM) if typ == "sysfs" && cx.userns => {
                mount(
                    Some("/sys"),
                    &sys::fd_path(&target),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| err(m, "bind /sys", e))?;
            }
            Err(e) => return Err(err(m, &format!("mount {typ}"), e)),
        }
        let mounted = resolve::open(cx.root, dest).map_err(|e| err(m, "reopen", e))?;
        if let Some(from) = copy_from {
            copy_tree(&sys::fd_path(&from), &sys::fd_path(&mounted))
                .map_err(|e| err(m, "tmpcopyup", e))?;
        }
        finish(&mounted, &opts).map_err(|e| err(m, "set mount attributes", e))
    }
}

fn bind(cx: &Ctx, m: &Mount, opts: &Options) -> Result<(), RootfsError> {
    let source = m
        .source()
        .as_deref()
        .ok_or_else(|| err(m, "bind", "no source"))?;
    let source = if source.is_absolute() {
        source.to_path_buf()
    } else {
        cx.bundle.join(source)
    };
    let meta = std::fs::metadata(&source).map_err(|e| err(m, &format!("source {source:?}"), e))?;
    let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
    let target =
        resolve::create(cx.root, m.destination(), kind).map_err(|e| err(m, "create target", e))?;
    let recursive = opts.flags.contains(MsFlags::MS_REC);
    let prepared = cx
        .prepared
        .iter()
        .find(|p| &p.destination == m.destination());
    if let Some(p) = prepared {
        sys::move_mount_fd(&p.tree, &target).map_err(|e| err(m, "attach the prepared mount", e))?;
    } else if let Some(rec_idmap) = opts.idmap.or(m.uid_mappings().as_ref().map(|_| false)) {
        let userns = cx
            .userns_fd
            .ok_or_else(|| err(m, "idmap", "needs the container to have a user namespace"))?;
        let tree = sys::open_tree(
            libc::AT_FDCWD,
            &source,
            OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | if recursive { AT_RECURSIVE } else { 0 },
        )
        .map_err(|e| err(m, "open_tree", e))?;
        let flags = AT_EMPTY_PATH
            | if rec_idmap || recursive {
                AT_RECURSIVE
            } else {
                0
            };
        sys::mount_setattr(
            tree.as_raw_fd(),
            Path::new(""),
            flags,
            attr::IDMAP,
            0,
            0,
            Some(userns.as_raw_fd()),
        )
        .map_err(|e| err(m, "idmap the mount", e))?;
        sys::move_mount_fd(&tree, &target).map_err(|e| err(m, "attach idmapped mount", e))?;
    } else {
        let flags = MsFlags::MS_BIND
            | if recursive {
                MsFlags::MS_REC
            } else {
                MsFlags::empty()
            };
        mount(
            Some(&source),
            &sys::fd_path(&target),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(|e| err(m, &format!("bind {source:?}"), e))?;
    }
    let mounted = resolve::open(cx.root, m.destination()).map_err(|e| err(m, "reopen", e))?;
    let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if !extra.is_empty() || !opts.cleared.is_empty() {
        // A bind mount ignores every flag but MS_BIND|MS_REC: the rest takes a remount, which
        // must keep the flags the kernel locked on the source (nosuid, nodev, ... in a user ns).
        let locked = if cx.userns {
            locked_flags(&mounted)
        } else {
            MsFlags::empty()
        };
        remount(&mounted, extra | locked, &[]).map_err(|e| err(m, "remount bind", e))?;
    }
    finish(&mounted, opts).map_err(|e| err(m, "set mount attributes", e))
}

/// MS_BIND|MS_REMOUNT with `flags` (the new complete flag set of this mount).
fn remount(target: &OwnedFd, flags: MsFlags, data: &[String]) -> Result<(), Errno> {
    let data = data.join(",");
    let flags = flags
        | MsFlags::MS_REMOUNT
        | if data.is_empty() {
            MsFlags::MS_BIND
        } else {
            MsFlags::empty()
        };
    mount(
        None::<&str>,
        &sys::fd_path(target),
        None::<&str>,
        flags,
        Some(data.as_str()),
    )
}

/// Propagation and recursive attributes, after the mount exists.
fn finish(target: &OwnedFd, opts: &Options) -> Result<(), Errno> {
    for p in &opts.propagation {
        mount(
            None::<&str>,
            &sys::fd_path(target),
            None::<&str>,
            *p,
            None::<&str>,
        )?;
    }
    if opts.rec_set != 0 || opts.rec_clear != 0 {
        sys::mount_setattr(
            target.as_raw_fd(),
            Path::new(""),
            AT_EMPTY_PATH | AT_RECURSIVE,
            opts.rec_set,
            opts.rec_clear,
            0,
            None,
        )?;
    }
    Ok(())
}

/// The mount flags of `target` that a user namespace may not drop.
pub fn locked_flags(target: &OwnedFd) -> MsFlags {
    use nix::sys::statvfs::{fstatvfs, FsFlags};
    let Ok(opened) = crate::sys::open(
        &sys::fd_path(target),
        nix::fcntl::OFlag::O_PATH,
        nix::sys::stat::Mode::empty(),
    ) else {
        return MsFlags::empty();
    };
    let Ok(vfs) = fstatvfs(&opened) else {
        return MsFlags::empty();
    };
    let f = vfs.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        // ST_RELATIME (1 << 12): the kernel's value; nix names it only for glibc.
        (FsFlags::from_bits_retain(1 << 12), MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

fn dup_dir(target: &OwnedFd) -> Result<OwnedFd, Errno> {
    crate::sys::open(
        &sys::fd_path(target),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

/// Copy a directory tree (for `tmpcopyup`), keeping modes, owners and symlinks.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let dst = to.join(entry.file_name());
        let ft = meta.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &dst)?;
        } else if ft.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_tree(&entry.path(), &dst)?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(meta.mode()))?;
        } else if ft.is_file() {
            std::fs::copy(entry.path(), &dst)?;
        } else {
            continue;
        }
        let _ = std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid()));
    }
    Ok(())
}
