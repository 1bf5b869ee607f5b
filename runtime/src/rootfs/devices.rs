//! `/dev`: the default devices every container gets, `linux.devices`, and the standard links.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::resolve::{self, Kind};
use super::RootfsError;
use crate::sys;

const DEFAULTS: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The devices of the runtime spec's "Default Devices" (when `defaults`), then `linux.devices`
/// (which win).
pub fn nodes(extra: &[LinuxDevice], defaults: bool) -> Vec<Node> {
    let defaults: &[(&str, u64, u64)] = if defaults { &DEFAULTS } else { &[] };
    let mut out: Vec<Node> = defaults
        .iter()
        .map(|&(n, major, minor)| Node {
            path: PathBuf::from("/dev").join(n),
            kind: SFlag::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect();
    for d in extra {
        let kind = match d.typ() {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        let node = Node {
            path: d.path().clone(),
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        };
        out.retain(|n| n.path != node.path);
        out.push(node);
    }
    out
}

/// Create the device nodes; in a user namespace (where mknod is refused) bind the host's.
pub fn create(root: &OwnedFd, nodes: &[Node], userns: bool) -> Result<(), RootfsError> {
    // A node mknod made in the container's own /dev tmpfs is exact already when the umask is
    // 0 (the init's) and it is to be owned by who makes it: then it needs no chmod and chown
    // (two path walks each). Elsewhere a directory's default ACL or setgid bit could have
    // changed its mode or group, so they are always applied.
    let umask = nix::sys::stat::umask(Mode::empty());
    nix::sys::stat::umask(umask);
    let (euid, egid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    // The parent directory (and whether it is a fresh /dev) of the last node: most share it.
    let mut last: Option<(PathBuf, OwnedFd, bool)> = None;
    for n in nodes {
        let e = |what: &str, err: Errno| RootfsError::Device {
            path: n.path.clone(),
            message: format!("{what}: {err}"),
        };
        let parent = n.path.parent().unwrap_or(Path::new("/"));
        if last.as_ref().is_none_or(|(p, _, _)| p != parent) {
            let dir =
                resolve::create(root, parent, Kind::Dir).map_err(|err| e("create parent", err))?;
            let tmpfs = nix::sys::statfs::fstatfs(&dir)
                .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
            last = Some((parent.to_path_buf(), dir, tmpfs));
        }
        let Some((_, dir, tmpfs)) = last.as_ref() else {
            continue;
        };
        let fresh = *tmpfs && lexically_in_dev(&n.path);
        let name = n.path.file_name().map(PathBuf::from).unwrap_or_default();
        if userns {
            let target = resolve::create(root, &n.path, Kind::File)
                .map_err(|err| e("create bind target", err))?;
            mount(
                Some(&n.path),
                &sys::fd_path(&target),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|err| e("bind host device", err))?;
            continue;
        }
        // What is already at this path decides. In a `/dev` that is a tmpfs of the container's
        // own, an entry is replaced: the container gets the device the config names, not what
        // an image planted (a symlink to a host path included). Anywhere else it is the
        // rootfs on disk (or a volume), which husk never unlinks: the same device already
        // there is done, anything else is an error (runc leaves any existing file and goes on
        // silently; a device the container asked for that it does not get is an error here).
        match nix::sys::stat::fstatat(
            Some(dir.as_raw_fd()),
            name.as_path(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(_) if fresh => {
                let _ = nix::unistd::unlinkat(
                    Some(dir.as_raw_fd()),
                    name.as_path(),
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                );
            }
            Ok(st) if is_node(&st, n) => continue,
            Ok(st) => {
                return Err(RootfsError::Device {
                    path: n.path.clone(),
                    message: format!(
                        "linux.devices: the rootfs already has {} there, not this device; \
                         husk replaces no file outside a /dev tmpfs (remove it from the image, \
                         or give the device another path)",
                        kind_of(st.st_mode)
                    ),
                })
            }
            Err(Errno::ENOENT) => {}
            Err(err) => return Err(e("inspect", err)),
        }
        mknodat(
            Some(dir.as_raw_fd()),
            name.as_path(),
            n.kind,
            Mode::from_bits_truncate(n.mode),
            makedev(n.major, n.minor),
        )
        .map_err(|err| e("mknod", err))?;
        if fresh && umask.is_empty() && (n.uid, n.gid) == (euid, egid) {
            continue;
        }
        let fd = crate::sys::openat(
            dir.as_raw_fd(),
            name.as_path(),
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| e("open", err))?;
        // fchmodat/fchownat on an O_PATH fd via /proc/self/fd: umask must not trim the mode.
        let p = sys::fd_path(&fd);
        nix::sys::stat::fchmodat(
            None,
            &p,
            Mode::from_bits_truncate(n.mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|err| e("chmod", err))?;
        nix::unistd::chown(&p, Some(n.uid.into()), Some(n.gid.into()))
            .map_err(|err| e("chown", err))?;
    }
    Ok(())
}

/// True when `path` is lexically under `/dev`: with its resolved parent on a tmpfs, the `/dev`
/// the container mounted for itself, where nothing of the image's can be lost.
fn lexically_in_dev(path: &Path) -> bool {
    use std::path::Component;
    path.starts_with("/dev")
        && !path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
}

/// True when `st` is the device node `n` describes (type and numbers).
fn is_node(st: &nix::sys::stat::FileStat, n: &Node) -> bool {
    st.st_mode & libc::S_IFMT == n.kind.bits() && st.st_rdev == makedev(n.major, n.minor)
}

fn kind_of(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symlink",
        libc::S_IFCHR => "another character device",
        libc::S_IFBLK => "another block device",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        _ => "a file",
    }
}

/// `/dev/fd`, `/dev/std{in,out,err}`, `/dev/core` and `/dev/ptmx` (to the devpts instance).
pub fn links(root: &OwnedFd) -> Result<(), RootfsError> {
    let mut links: Vec<(&str, &str)> = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    let dev =
        resolve::create(root, Path::new("/dev"), Kind::Dir).map_err(|err| RootfsError::Device {
            path: PathBuf::from("/dev"),
            message: err.to_string(),
        })?;
    // /dev/ptmx must be the container's devpts multiplexer, not a host node the image shipped.
    let _ = nix::unistd::unlinkat(
        Some(dev.as_raw_fd()),
        "ptmx",
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    );
    links.push(("pts/ptmx", "ptmx"));
    for (target, name) in links {
        match nix::unistd::symlinkat(target, Some(dev.as_raw_fd()), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(err) => {
                return Err(RootfsError::Device {
                    path: PathBuf::from("/dev").join(name),
                    message: format!("symlink to {target}: {err}"),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_devices_override_defaults() {
        let d: LinuxDevice = serde_json::from_str(
            r#"{"path":"/dev/null","type":"c","major":1,"minor":3,"fileMode":384}"#,
        )
        .unwrap();
        let n = nodes(&[d], true);
        assert_eq!(n.len(), 6);
        let null = n.iter().find(|n| n.path == Path::new("/dev/null")).unwrap();
        assert_eq!(null.mode, 0o600);
    }
}
