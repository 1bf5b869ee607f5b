//! The end of the child path: from a prepared process to `execve`, with the seccomp filter as
//! late as it can go.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::Path;

use oci_spec::runtime::{Process, State};

use super::{step, ChildError};
use crate::seccomp::Compiled;
use crate::sys;

/// A process that is the OCI `process` in all but the filter and the exec: what is left needs
/// no allocation and no lookup.
pub struct Prepared<'a> {
    program: CString,
    shown: String,
    _args: Vec<CString>,
    _env: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    preserve_fds: u32,
    seccomp: Option<&'a Compiled>,
    listener: Option<(OwnedFd, State)>,
    final_caps: Option<crate::capabilities::Final>,
}

fn cstrings<'s>(v: impl Iterator<Item = &'s String>) -> Result<Vec<CString>, ChildError> {
    v.map(|s| {
        CString::new(s.as_bytes())
            .map_err(|_| ChildError::Other(format!("{s:?} contains a NUL byte")))
    })
    .collect()
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

impl<'a> Prepared<'a> {
    pub(super) fn new(
        p: &Process,
        program: &Path,
        preserve_fds: u32,
        seccomp: Option<&'a Compiled>,
        listener: Option<(OwnedFd, State)>,
        final_caps: Option<crate::capabilities::Final>,
    ) -> Result<Self, ChildError> {
        let args = cstrings(p.args().iter().flatten())?;
        let env = cstrings(super::env(p).iter())?;
        let argv = null_terminated(&args);
        let envp = null_terminated(&env);
        Ok(Self {
            program: sys::cstr(program).map_err(step("program path"))?,
            shown: program.display().to_string(),
            _args: args,
            _env: env,
            argv,
            envp,
            preserve_fds,
            seccomp,
            listener,
            final_caps,
        })
    }

    /// Reset the signal state, mark descriptors close-on-exec, install the filter, execve.
    /// Returns only on failure.
    pub fn exec(&self) -> ChildError {
        // The container starts with the signal state of a fresh process: nothing blocked (husk
        // run blocks signals to read them from a signalfd) and SIGPIPE at its default (the Rust
        // runtime ignores it, and an ignored signal stays ignored across execve).
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
        // --preserve-fds range stay open across exec. Before the filter: close_range may not be
        // in the profile.
        if let Err(e) = sys::cloexec_from(3 + self.preserve_fds) {
            return step("mark descriptors close-on-exec")(e);
        }
        if let Some(f) = self.seccomp {
            if let Err(e) = install(f, self.listener.as_ref()) {
                return e;
            }
        }
        if let Some(caps) = &self.final_caps {
            if let Err(e) = caps.apply() {
                return step("drop CAP_SYS_ADMIN kept for the seccomp filter")(e);
            }
        }
        // SAFETY: argv and envp are NULL-terminated arrays of pointers into `_args`/`_env`,
        // which `self` keeps alive across the call; execve only returns on failure.
        unsafe {
            libc::execve(
                self.program.as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            )
        };
        let errno = nix::Error::last();
        let filtered =
            self.seccomp.is_some() && matches!(errno, nix::Error::EPERM | nix::Error::ENOSYS);
        ChildError::Exec {
            program: self.shown.clone(),
            errno,
            hint: if filtered {
                " (the seccomp profile may deny execve/execveat)"
            } else {
                ""
            },
        }
    }
}

fn install(f: &Compiled, listener: Option<&(OwnedFd, State)>) -> Result<(), ChildError> {
    let notify = crate::seccomp::install(f)?;
    if let (Some(fd), Some((sock, state)), Some(l)) = (notify, listener, f.listener()) {
        use std::os::fd::AsFd;
        crate::seccomp::send_on(
            sock.as_fd(),
            &l.path,
            fd.as_fd(),
            state,
            l.metadata.as_deref(),
        )?;
    }
    Ok(())
}
