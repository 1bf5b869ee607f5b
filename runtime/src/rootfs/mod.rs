//! The container's filesystem: propagation, the mounts of `config.json` in order, `/dev`,
//! pivot_root, then masked and read-only paths. Every path inside the rootfs is resolved with
//! [`resolve`] and mounted through its descriptor.

pub mod cgroupfs;
pub mod detach;
pub mod devices;
pub mod mount;
pub mod options;
pub mod paths;
pub mod resolve;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount as sys_mount, MsFlags};
use oci_spec::runtime::Spec;

use crate::spec::Plan;
use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("mount {dest:?}: {message}")]
    Mount { dest: PathBuf, message: String },
    #[error("device {path:?}: {message}")]
    Device { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Path { path: String, message: String },
    /// The init's cgroup join failed (its message names the join).
    #[error("{0}")]
    Cgroup(String),
    #[error("{step}: {source}")]
    Step {
        step: &'static str,
        #[source]
        source: nix::Error,
    },
}

fn step(step: &'static str) -> impl FnOnce(nix::Error) -> RootfsError {
    move |source| RootfsError::Step { step, source }
}

/// The container's `/dev` is ours to fill when the config mounts a fresh filesystem there
/// (not when it binds the host's).
fn owns_dev(spec: &Spec) -> bool {
    spec.mounts().iter().flatten().any(|m| {
        m.destination() == Path::new("/dev")
            && m.typ().as_deref() != Some("bind")
            && !m
                .options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind")
    })
}

/// Everything before pivot_root, in the container's new mount namespace.
pub fn prepare(
    plan: &Plan,
    userns: bool,
    cgroupns: bool,
    userns_fd: Option<&OwnedFd>,
    terminal: bool,
    enter_cgroup: &mut dyn FnMut() -> Result<(), String>,
) -> Result<(), RootfsError> {
    let linux = plan.spec.linux().as_ref();
    // Nothing the container mounts may propagate back to the host: slave by default, or what
    // rootfsPropagation says. Unbindable would forbid the bind of the rootfs below: until
    // pivot_root it is slave, and `finish` makes the new `/` unbindable.
    let prop = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(options::propagation)
        .filter(|p| !p.contains(MsFlags::MS_UNBINDABLE))
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    sys_mount(
        None::<&str>,
        "/",
        None::<&str>,
        prop | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(step("set propagation of /"))?;
    // pivot_root refuses a new root whose parent mount is shared, and a shared parent would
    // carry the bind below back to the host. Only a shared `/` leaves one shared: slave and
    // private (recursive) made every mount of the namespace unshared, and reading the mount
    // table to find none is a walk of every mount.
    if prop.contains(MsFlags::MS_SHARED) {
        make_parent_private(&plan.rootfs)?;
    }
    sys_mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(step("bind the rootfs onto itself"))?;
    let root = resolve::open_root(&plan.rootfs).map_err(step("open the rootfs"))?;
    let cx = mount::Ctx {
        root: &root,
        bundle: &plan.bundle,
        userns,
        cgroupns,
        userns_fd,
        prepared: &plan.prepared,
    };
    for m in plan.spec.mounts().iter().flatten() {
        // The container's view of cgroups needs it to be in its cgroup (and namespace) first;
        // the mounts before it overlap with the parent's cgroup join.
        if matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            enter_cgroup().map_err(RootfsError::Cgroup)?;
        }
        mount::mount_one(&cx, m)?;
    }
    if owns_dev(&plan.spec) {
        let extra = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
        devices::create(&root, &devices::nodes(&extra, true), userns)?;
        devices::links(&root)?;
        if terminal {
            resolve::create(&root, Path::new("/dev/console"), resolve::Kind::File)
                .map_err(step("create /dev/console"))?;
        }
    } else if let Some(devs) = linux.and_then(|l| l.devices().as_ref()) {
        devices::create(&root, &devices::nodes(devs, false), userns)?;
    }
    Ok(())
}

/// The mount at or above `rootfs` (under containerd the rootfs is itself a mount point), made
/// private when it is shared, as runc's `rootfsParentMountPrivate` does.
fn make_parent_private(rootfs: &Path) -> Result<(), RootfsError> {
    let info = crate::sys::read_proc("/proc/self/mountinfo").unwrap_or_default();
    let Some((mount_point, shared)) = mount_at_or_above(&info, rootfs) else {
        return Ok(());
    };
    if !shared {
        return Ok(());
    }
    sys_mount(
        None::<&str>,
        &mount_point,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(step("make the rootfs parent mount private"))
}

/// The last-mounted of the longest mount points that are `path` or one of its parents, and
/// whether it is shared (a `shared:N` optional field). Mount points are octal-escaped in
/// mountinfo (`\040` for a space).
fn mount_at_or_above(mountinfo: &str, path: &Path) -> Option<(PathBuf, bool)> {
    let mut best: Option<(PathBuf, bool)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(mp) = fields.get(4).map(|m| PathBuf::from(unescape(m))) else {
            continue;
        };
        if !path.starts_with(&mp) {
            continue;
        }
        let optional = fields
            .iter()
            .skip(6)
            .take_while(|f| **f != "-")
            .any(|f| f.starts_with("shared:"));
        // Later lines are mounted on top: at equal length the last one is the visible one.
        if best
            .as_ref()
            .is_none_or(|(b, _)| mp.as_os_str().len() >= b.as_os_str().len())
        {
            best = Some((mp, optional));
        }
    }
    best
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Make the rootfs `/`: pivot_root (the old root is detached), or with `--no-pivot` move it
/// over `/` and chroot (for ramfs roots where pivot_root is refused). The old root's detach
/// may still be under way on return: nothing of the container may run before
/// [`detach::Detaching::wait`].
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<detach::Detaching, RootfsError> {
    nix::unistd::chdir(rootfs).map_err(step("chdir to the rootfs"))?;
    let detaching = if no_pivot {
        sys_mount(
            Some(rootfs),
            "/",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(step("move the rootfs to /"))?;
        nix::unistd::chroot(".").map_err(step("chroot"))?;
        detach::Detaching::done()
    } else {
        // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
        // the new root alone without needing a directory to put the old one in. The old root
        // is reached through a descriptor taken before: "." is the new root, and making that
        // tree slave would cut the container's shared volumes off the host (as runc, which
        // fchdirs to the old root for the same reason).
        let old_root = sys::open(
            "/",
            nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(step("open the old root"))?;
        nix::unistd::pivot_root(".", ".").map_err(step("pivot_root"))?;
        nix::unistd::fchdir(std::os::fd::AsRawFd::as_raw_fd(&old_root))
            .map_err(step("chdir to the old root"))?;
        drop(old_root);
        sys_mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(step("make the old root a slave"))?;
        detach::start().map_err(step("detach the old root"))?
    };
    nix::unistd::chdir("/").map_err(step("chdir to /"))?;
    Ok(detaching)
}

/// After pivot_root: rootfsPropagation on the new `/`, masked and read-only paths, and a
/// read-only root last (so the steps before can still write).
pub fn finish(spec: &Spec, userns: bool) -> Result<(), RootfsError> {
    let root = resolve::open_root(Path::new("/")).map_err(step("open /"))?;
    if let Some(l) = spec.linux() {
        if let Some(p) = l
            .rootfs_propagation()
            .as_deref()
            .and_then(options::propagation)
        {
            sys_mount(None::<&str>, "/", None::<&str>, p, None::<&str>)
                .map_err(step("set rootfsPropagation"))?;
        }
        paths::readonly(
            &root,
            l.readonly_paths().as_deref().unwrap_or_default(),
            userns,
        )?;
        paths::mask(&root, l.masked_paths().as_deref().unwrap_or_default())?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        let locked = if userns {
            mount::locked_flags(&root)
        } else {
            MsFlags::empty()
        };
        sys_mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked,
            None::<&str>,
        )
        .map_err(step("remount / read-only"))?;
    }
    Ok(())
}

/// Bind the terminal's slave over `/dev/console`.
pub fn bind_console(slave_path: &Path) -> Result<(), RootfsError> {
    let root = resolve::open_root(Path::new("/")).map_err(step("open /"))?;
    // CVE-2025-52565: the image's /dev/console must be a plain file (or absent), never a link
    // that would carry the terminal's bind elsewhere.
    let console = Path::new("/dev/console");
    if resolve::is_symlink(&root, console) {
        return Err(RootfsError::Path {
            path: "/dev/console".into(),
            message: "is a symlink in the rootfs; refusing to bind the terminal through it".into(),
        });
    }
    let target = resolve::create(&root, console, resolve::Kind::File)
        .map_err(step("create /dev/console"))?;
    let st = resolve::stat(&target).map_err(step("stat /dev/console"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG && st.st_mode & libc::S_IFMT != libc::S_IFCHR {
        return Err(RootfsError::Path {
            path: "/dev/console".into(),
            message: "is neither a file nor a character device".into(),
        });
    }
    sys_mount(
        Some(slave_path),
        &sys::fd_path(&target),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(step("bind the terminal on /dev/console"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mount_at_or_above_the_rootfs() {
        let info = "\
22 1 0:21 / / rw shared:1 - ext4 /dev/vda rw
30 22 0:30 / /run rw,nosuid shared:5 - tmpfs tmpfs rw
41 30 0:41 / /run/c/my\\040root rw master:7 - overlay overlay rw
42 30 0:42 / /run/c/b/rootfs rw shared:9 - overlay overlay rw
";
        // The rootfs is a mount point itself (containerd's overlay): that mount, shared.
        assert_eq!(
            mount_at_or_above(info, Path::new("/run/c/b/rootfs")),
            Some((PathBuf::from("/run/c/b/rootfs"), true))
        );
        // A plain directory: the mount above it; "rootfs2" is not under "rootfs".
        assert_eq!(
            mount_at_or_above(info, Path::new("/run/c/b/rootfs2")),
            Some((PathBuf::from("/run"), true))
        );
        // Escaped mount points, and a slave (master:N) mount is not shared.
        assert_eq!(
            mount_at_or_above(info, Path::new("/run/c/my root/x")),
            Some((PathBuf::from("/run/c/my root"), false))
        );
    }
}
