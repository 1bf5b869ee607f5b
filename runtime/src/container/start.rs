//! `start`: release the init from the `exec.fifo` barrier, then run poststart hooks.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{load, ContainerError, Status};
use crate::hooks::{self, HookKind};
use crate::state::proc_start_time;

pub fn start(root: &Path, id: &str) -> Result<(), ContainerError> {
    let c = load(root, id, true)?;
    if !c.status.can_start() {
        return Err(ContainerError::WrongStatus {
            action: "start",
            id: id.to_string(),
            status: c.status,
            hint: ", not created",
        });
    }
    let fifo = c.dir.fifo_path();
    // Non-blocking open: a reader may open a fifo without a writer. The init's blocking open
    // for writing then completes, and it writes one byte once it is past the barrier.
    let fd = crate::sys::open(
        &fifo,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|source| ContainerError::Sys {
        step: format!("open {fifo:?}"),
        source,
    })?;
    let mut file = std::fs::File::from(fd);
    // The init's report: "0" once the startContainer hooks passed (then end-of-file when its
    // execve succeeded, as the fifo is close-on-exec, or "1<error>" when it failed), "1<error>"
    // when a hook failed, or nothing at all when it died.
    let mut report = Vec::new();
    loop {
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(n) if n > 0 => {
                if drain(&mut file, &mut report) && !report.is_empty() {
                    break;
                }
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(source) => {
                return Err(ContainerError::Sys {
                    step: "wait for the container init".into(),
                    source,
                })
            }
        }
        // The init died before reaching the barrier: don't wait forever.
        match proc_start_time(c.state.pid) {
            Some((t, false)) if t == c.state.start_time => {}
            _ => {
                drain(&mut file, &mut report);
                if report.is_empty() {
                    let _ = std::fs::remove_file(&fifo);
                    return Err(ContainerError::Invalid(format!(
                        "container {id}: the init process exited before start"
                    )));
                }
                break;
            }
        }
    }
    let _ = std::fs::remove_file(&fifo);
    let failure = match report.strip_prefix(b"0") {
        Some(rest) => rest.strip_prefix(b"1"),
        None => Some(report.strip_prefix(b"1").unwrap_or(&report[..])),
    };
    if let Some(message) = failure {
        return Err(ContainerError::Invalid(
            String::from_utf8_lossy(message).into_owned(),
        ));
    }
    poststart(&c.state, Status::Running);
    Ok(())
}

/// Read what is there without blocking; true at end-of-file (every writer closed).
fn drain(file: &mut std::fs::File, into: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return true,
            // The report is a status byte and one error message: bounded like the sync socket.
            Ok(n) if into.len() < 64 * 1024 => into.extend_from_slice(&buf[..n]),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Poststart hooks: a failure is reported but doesn't undo the start (runtime-spec: "the
/// runtime MUST log a warning").
pub(crate) fn poststart(st: &crate::state::State, status: Status) {
    if let Some(h) = st.config.hooks() {
        let oci = st.oci(status);
        if let Err(e) = hooks::run(HookKind::Poststart, HookKind::Poststart.select(h), &oci) {
            crate::logging::warn(&crate::init::chain(&e));
        }
    }
}
