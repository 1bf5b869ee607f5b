//! Joining a cgroup without the slow path.
//!
//! Writing a pid to `cgroup.procs` takes the kernel's global cgroup_threadgroup_rwsem for
//! writing, whose first writer after an idle spell waits for an RCU grace period: 7 ms here,
//! per container, measured (DESIGN §9). Two ways around it, both opened by the parent:
//! - v2 (pure, or the hybrid cgroup2): `clone3(CLONE_INTO_CGROUP)` puts the child there at birth;
//! - v1: the child moves itself by writing "0" to each hierarchy's `tasks` file, which moves one
//!   thread (the whole single-threaded init) and skips the global lock (kernel ≥ 6.0). The files
//!   are opened by the parent, so the write is checked against its credentials and also works
//!   from inside a new user namespace.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use super::layout::{Layout, Mode};
use super::{Cgroup, CgroupError};
use crate::sys;

/// Descriptors that let a new process join the cgroup.
#[derive(Debug)]
pub struct Join {
    /// The v2 directory for `CLONE_INTO_CGROUP`.
    pub into: Option<OwnedFd>,
    /// v1 `tasks` files the child writes "0" to.
    pub tasks: Vec<OwnedFd>,
}

impl Cgroup {
    /// Open what a new process needs to join this (existing) cgroup.
    pub fn open_join(&self) -> Result<Join, CgroupError> {
        self.need("joining the container's cgroup")?;
        open_join_in(&self.layout()?, self.path(), true, true)
    }

    /// Only the `CLONE_INTO_CGROUP` directory (after [`Cgroup::create_early`]).
    pub fn open_into(&self) -> Result<Join, CgroupError> {
        self.need("joining the container's cgroup")?;
        open_join_in(&self.layout()?, self.path(), true, false)
    }

    /// Only the v1 `tasks` files (after [`Cgroup::create_late`]), for a child that is already
    /// running: they travel to it over the sync socket.
    pub fn open_tasks(&self) -> Result<Vec<OwnedFd>, CgroupError> {
        self.need("joining the container's cgroup")?;
        Ok(open_join_in(&self.layout()?, self.path(), false, true)?.tasks)
    }
}

fn open_join_in(
    layout: &Layout,
    path: &Path,
    into: bool,
    tasks: bool,
) -> Result<Join, CgroupError> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode as M;
    let open = |p: &Path, flags: OFlag| {
        sys::open(p, flags | OFlag::O_CLOEXEC, M::empty()).map_err(|e| CgroupError::Io {
            op: "open",
            path: p.to_path_buf(),
            source: e.into(),
        })
    };
    let rel = path.strip_prefix("/").unwrap_or(path);
    let mut join = Join {
        into: None,
        tasks: Vec::new(),
    };
    match &layout.mode {
        Mode::V2 { root, .. } => {
            if into {
                join.into = Some(open(&root.join(rel), OFlag::O_RDONLY | OFlag::O_DIRECTORY)?)
            }
        }
        Mode::V1 { unified, .. } => {
            for dir in layout.dirs(path) {
                if unified.as_ref().is_some_and(|u| dir.starts_with(u)) {
                    if into {
                        join.into = Some(open(&dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?);
                    }
                } else if tasks {
                    join.tasks.push(open(&dir.join("tasks"), OFlag::O_WRONLY)?);
                }
            }
        }
    }
    Ok(join)
}

impl Join {
    /// In the child: move the calling (single-threaded) process into every v1 hierarchy.
    pub fn enter_v1(&self) -> std::io::Result<()> {
        enter_v1(&self.tasks)
    }
}

/// Fork a child (clone3 with namespace `flags`, fork-like: see [`sys::clone3_fork`]) that
/// joins `join`'s cgroup the cheap way: born into its v2 directory, and the v1 hierarchies
/// left to the child ([`Join::enter_v1`], with the join returned to it). Without
/// `CLONE_INTO_CGROUP` (an old kernel, a cgroup it refuses) the child is forked plainly and
/// the join dropped: `None` tells the parent to move the child itself (`cgroup.procs`).
///
/// # Safety
/// As [`sys::clone3_fork`]: the caller must be single-threaded.
pub unsafe fn fork_joining(
    flags: u64,
    join: Option<Join>,
) -> (Result<libc::pid_t, nix::errno::Errno>, Option<Join>) {
    use std::os::fd::AsRawFd;
    let into = join
        .as_ref()
        .and_then(|j| j.into.as_ref())
        .map(|fd| fd.as_raw_fd());
    // SAFETY: the caller is single-threaded (this function's contract).
    let forked = unsafe { sys::clone3_fork(flags, into) };
    if forked.is_err() && into.is_some() {
        // SAFETY: as above.
        let forked = unsafe { sys::clone3_fork(flags, None) };
        return (forked, None);
    }
    (forked, join)
}

/// Write "0" (the calling thread) to each `tasks` file.
pub fn enter_v1(tasks: &[OwnedFd]) -> std::io::Result<()> {
    for fd in tasks {
        nix::unistd::write(fd.as_fd(), b"0")?;
    }
    Ok(())
}
