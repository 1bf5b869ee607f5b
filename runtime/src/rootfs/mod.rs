//! The container's filesystem: propagation, the mounts of `config.json` in order, `/dev`,
//! pivot_root, then masked and read-only paths. Every path inside the rootfs is resolved with
//! [`resolve`] and mounted through its descriptor.

pub mod cgroupfs;
pub mod devices;
pub mod mount;
pub mod options;
pub mod paths;
pub mod resolve;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount as sys_mount, umount2, MntFlags, MsFlags};
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
    #[error("join the container's cgroup: {0}")]
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
    // rootfsPropagation says.
    let prop = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(options::propagation)
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    sys_mount(
        None::<&str>,
        "/",
        None::<&str>,
        prop | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(step("set propagation of /"))?;
    // pivot_root needs the new root's parent mount to be private when / is shared.
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

fn make_parent_private(rootfs: &Path) -> Result<(), RootfsError> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let parent = rootfs.parent().unwrap_or(Path::new("/"));
    let best = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| parent.starts_with(mp))
        .max_by_key(|mp| mp.len())
        .unwrap_or("/");
    sys_mount(
        None::<&str>,
        best,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(step("make the rootfs parent mount private"))
}

/// Make the rootfs `/`: pivot_root (the old root is detached), or with `--no-pivot` move it
/// over `/` and chroot (for ramfs roots where pivot_root is refused).
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    nix::unistd::chdir(rootfs).map_err(step("chdir to the rootfs"))?;
    if no_pivot {
        sys_mount(
            Some(rootfs),
            "/",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(step("move the rootfs to /"))?;
        nix::unistd::chroot(".").map_err(step("chroot"))?;
    } else {
        // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
        // the new root alone without needing a directory to put the old one in.
        nix::unistd::pivot_root(".", ".").map_err(step("pivot_root"))?;
        sys_mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(step("make the old root a slave"))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(step("detach the old root"))?;
    }
    nix::unistd::chdir("/").map_err(step("chdir to /"))
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
