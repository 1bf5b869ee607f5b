//! The one path that turns the calling process into the OCI `process`, shared by the container
//! init ([`crate::init`]), `husk exec` ([`crate::process::join`]) and the sandbox's batch jobs.
//!
//! ```text
//!  prepare():  rlimits, I/O priority, scheduler, memory policy, initial CPU affinity
//!              bounding set, groups, gid, uid, capabilities
//!              umask, chdir to cwd + the CVE-2024-21626 check, no_new_privs, final affinity
//!              executable lookup, argv/env built
//!  -- the caller's own part: the init's Ready + exec.fifo barrier + startContainer hooks,
//!     exec's Ready --
//!  Prepared::exec():  signal state reset, descriptors marked close-on-exec,
//!              seccomp filter, (the final capset when the filter needed CAP_SYS_ADMIN), execve
//! ```
//! After the filter is installed nothing runs but what the filter itself implies (handing a
//! SCMP_ACT_NOTIFY descriptor to the agent, dropping CAP_SYS_ADMIN kept to install a filter
//! without no_new_privs) and `execve`, so a profile that allows only the program's own calls
//! never breaks husk's set-up. Every failure is a [`ChildError`], which travels to the parent as
//! a [`sync::Failure`] (step, errno, message).
//!
//! Below both halves of the runtime: `process` (the parent) and `init` (the container side) use
//! this module and never each other.

pub mod cpuset;
mod exec;
pub mod ns;
pub mod process;
pub mod sync;

pub use exec::Prepared;
pub use process::{env, find_executable, set_oom_score_adj};

use oci_spec::runtime::{Linux, Process, State};
use std::os::fd::OwnedFd;

/// What failed on the way to `execve`.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("{step}: {source}")]
    Step {
        step: String,
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    Caps(#[from] crate::capabilities::CapsError),
    #[error(transparent)]
    Rlimit(#[from] crate::rlimits::RlimitError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    Sync(#[from] sync::SyncError),
    /// `args[0]` can't be run; worded as runc words it (engines map these to exit codes).
    #[error("exec: {arg0:?}: {reason}")]
    Lookup {
        arg0: String,
        reason: String,
        errno: nix::Error,
    },
    /// `execve` itself failed (`hint`: a seccomp filter was in place and may be the cause).
    #[error("exec {program}: {}{hint}", errno.desc().to_lowercase())]
    Exec {
        program: String,
        errno: nix::Error,
        hint: &'static str,
    },
    #[error("{0}")]
    Other(String),
}

impl ChildError {
    /// The errno behind the failure, where there is one.
    pub fn errno(&self) -> i32 {
        match self {
            ChildError::Step { source, .. } => *source as i32,
            ChildError::Exec { errno, .. } => *errno as i32,
            ChildError::Lookup { errno, .. } => *errno as i32,
            other => sync::errno_of(other),
        }
    }

    /// The stage that failed, for [`sync::Failure::step`].
    pub fn stage(&self) -> &'static str {
        match self {
            ChildError::Lookup { .. } => "find the program",
            ChildError::Exec { .. } => "exec",
            _ => "become the container process",
        }
    }
}

/// `map_err` helper: a failed syscall of a named step.
pub fn step(step: impl Into<String>) -> impl FnOnce(nix::Error) -> ChildError {
    let step = step.into();
    move |source| ChildError::Step { step, source }
}

/// An error and its sources, joined with ": " (each layer names its own object; a layer that
/// repeats the end of the text so far is not repeated).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The `process` to become, and what around it shapes how.
pub struct Become<'a> {
    pub process: &'a Process,
    pub linux: Option<&'a Linux>,
    pub seccomp: Option<&'a crate::seccomp::Compiled>,
    /// In a user namespace (setgroups may be denied there).
    pub userns: bool,
    /// Descriptors 3.. that stay open (`--preserve-fds`, `LISTEN_FDS`).
    pub preserve_fds: u32,
    /// The seccomp agent's connected socket and the state it gets with the notify fd.
    pub listener: Option<(OwnedFd, State)>,
}

/// Everything up to the barrier: after this only [`Prepared::exec`] is left.
pub fn prepare(b: Become) -> Result<Prepared, ChildError> {
    let p = b.process;
    process::limits(p, b.linux)?;
    // Without no_new_privs a filter needs CAP_SYS_ADMIN to go in, and it goes in last: keep
    // that capability until then when the configured sets don't have it.
    let nnp = p.no_new_privileges().unwrap_or(false);
    let keep_admin = b.seccomp.is_some() && !nnp;
    let final_caps = process::user_and_caps(p, b.userns, keep_admin)?;
    process::cwd_and_privs(p)?;
    let program = find_executable(p)?;
    Prepared::new(
        p,
        &program,
        b.preserve_fds,
        b.seccomp,
        b.listener,
        final_caps,
    )
}
