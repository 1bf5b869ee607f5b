//! Namespace helpers both halves use: the parent (joined pid/time namespaces, for its children)
//! and the init (the rest, user first).

use std::os::fd::AsFd;

use nix::sched::CloneFlags;

use super::ChildError;

/// setns into the namespace at `path`; the kernel checks it is of the expected type.
pub fn setns_path(path: &std::path::Path, flag: CloneFlags) -> Result<(), ChildError> {
    let join = |source| ChildError::Step {
        step: format!("join namespace {path:?}"),
        source,
    };
    let fd = crate::sys::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(join)?;
    nix::sched::setns(fd.as_fd(), flag).map_err(join)
}
