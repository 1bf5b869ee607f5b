//! The last steps: the `exec.fifo` start barrier, closing what isn't passed on, `execve`.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use oci_spec::runtime::Process;

use super::{step, InitError};
use crate::sys;

/// Block until `husk start` opens the fifo for reading, run `then` (the startContainer hooks),
/// and report to `start`: "0" to go on, or "1" and the error.
pub(super) fn wait_for_start(
    fifo: OwnedFd,
    then: impl FnOnce() -> Result<(), String>,
) -> Result<(), InitError> {
    // Reopen the O_PATH descriptor for writing through /proc: the fifo's path is in the host's
    // mount namespace, which the init no longer sees. This open blocks until a reader comes.
    let path = sys::fd_path(&fifo);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| InitError::Other(format!("open exec fifo {path:?}: {e}")))?;
    let r = then();
    let msg = match &r {
        Ok(()) => "0".to_string(),
        Err(e) => format!("1{e}"),
    };
    f.write_all(msg.as_bytes())
        .map_err(|e| InitError::Other(format!("write exec fifo: {e}")))?;
    r.map_err(InitError::Other)
}

fn cstrings<'a>(v: impl Iterator<Item = &'a String>) -> Result<Vec<CString>, InitError> {
    v.map(|s| {
        CString::new(s.as_bytes())
            .map_err(|_| InitError::Other(format!("{s:?} contains a NUL byte")))
    })
    .collect()
}

pub fn exec(
    program: &Path,
    p: &Process,
    preserve_fds: u32,
) -> Result<std::convert::Infallible, InitError> {
    let args = cstrings(p.args().iter().flatten())?;
    let env = cstrings(super::process::env(p).iter())?;
    let prog = sys::cstr(program).map_err(step("program path"))?;
    // The container starts with the signal state of a fresh process: nothing blocked (husk run
    // blocks signals to read them from a signalfd) and SIGPIPE at its default (the Rust runtime
    // ignores it, and an ignored signal stays ignored across execve).
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    // SAFETY: restoring the default disposition installs no handler code.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    // CVE-2024-21626: nothing of the runtime's may reach the container; only stdio and the
    // --preserve-fds range stay open across exec.
    sys::cloexec_from(3 + preserve_fds).map_err(step("mark descriptors close-on-exec"))?;
    let e = nix::unistd::execve(&prog, &args, &env).unwrap_err();
    Err(InitError::Step {
        step: format!("exec {program:?}"),
        source: e,
    })
}
