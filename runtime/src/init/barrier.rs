//! The `exec.fifo` start barrier: the init blocks until `husk start` opens the fifo, runs the
//! startContainer hooks, reports "0" (or "1" and the error), and keeps the fifo open
//! close-on-exec, so `start` sees end-of-file once `execve` succeeded, or "1" and the error
//! when it failed.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};

use super::InitError;
use crate::sys;

/// The write end of the barrier, held until the exec.
pub(super) struct Started(std::fs::File);

/// Block until `husk start` opens the fifo for reading, run `then` (the startContainer hooks),
/// and report how they went. `fd_dir` is an `O_PATH` descriptor of the init's `/proc/self/fd`
/// when the container has no `/proc` of its own to reopen the fifo through (no mount
/// namespace: the host's /proc is outside the chroot).
pub(super) fn wait_for_start(
    fifo: OwnedFd,
    fd_dir: Option<&OwnedFd>,
    then: impl FnOnce() -> Result<(), String>,
) -> Result<Started, InitError> {
    // Reopen the O_PATH descriptor for writing: the fifo's path is in the host's mount
    // namespace, which the init no longer sees. This open blocks until a reader comes.
    let opened = match fd_dir {
        Some(dir) => sys::openat(
            dir.as_raw_fd(),
            fifo.as_raw_fd().to_string().as_str(),
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map(std::fs::File::from)
        .map_err(std::io::Error::from),
        None => std::fs::OpenOptions::new()
            .write(true)
            .open(sys::fd_path(&fifo)),
    };
    let mut f = opened.map_err(|e| InitError::Other(format!("open exec fifo: {e}")))?;
    drop(fifo);
    let r = then();
    let msg = match &r {
        Ok(()) => "0".to_string(),
        Err(e) => format!("1{e}"),
    };
    f.write_all(msg.as_bytes())
        .map_err(|e| InitError::Other(format!("write exec fifo: {e}")))?;
    r.map_err(InitError::Other)?;
    Ok(Started(f))
}

impl Started {
    /// The exec failed: tell `start`.
    pub(super) fn failed(mut self, message: &str) {
        let _ = self.0.write_all(format!("1{message}").as_bytes());
    }

    pub(super) fn fd(&self) -> i32 {
        self.0.as_raw_fd()
    }
}
