//! The container lifecycle: Creating → Created → Running → (Paused) → Stopped, one file per verb.
//! Each verb checks the derived status first (`can_*`) and fails with the status it found.

mod create;
mod delete;
mod exec;
mod kill;
mod ops;
mod run;
mod start;
mod status;

use std::path::PathBuf;

pub(crate) use create::{cgroup_for, initial_state};
pub use create::{create, CgroupManager, CreateOptions};
pub use delete::delete;
pub use exec::{exec, ExecOptions};
pub use kill::{kill, kill_leftovers, parse_signal};
pub use ops::{events, pause, pids, resume, update};
pub(crate) use run::forwardable;
pub use run::{run, wait_exit};
pub use start::start;
pub use status::{list, load, Listed, Loaded};

use crate::cgroups::CgroupError;
use crate::process::ProcessError;
use crate::spec::SpecError;
use crate::state::StateError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }

    pub fn oci(self) -> oci_spec::runtime::ContainerState {
        use oci_spec::runtime::ContainerState as S;
        match self {
            Status::Creating => S::Creating,
            Status::Created => S::Created,
            // The OCI state has no "paused"; a paused container is still running.
            Status::Running | Status::Paused => S::Running,
            Status::Stopped => S::Stopped,
        }
    }

    pub fn can_start(self) -> bool {
        self == Status::Created
    }

    pub fn can_kill(self) -> bool {
        matches!(self, Status::Created | Status::Running | Status::Paused)
    }

    pub fn can_delete(self) -> bool {
        matches!(self, Status::Stopped | Status::Created | Status::Creating)
    }

    pub fn can_exec(self) -> bool {
        matches!(self, Status::Created | Status::Running)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error("cannot {action} container {id}: it is {status}{hint}")]
    WrongStatus {
        action: &'static str,
        id: String,
        status: Status,
        hint: &'static str,
    },
    #[error("{what} {path:?}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{step}")]
    Sys {
        step: String,
        #[source]
        source: nix::Error,
    },
}

/// Socket activation (`LISTEN_FDS`): the process learns how many descriptors it got from 3 on,
/// and that they are its own (`LISTEN_PID=1`, as runc sets it; sd_listen_fds compares it with
/// getpid(), which is 1 for a pid namespace's init and the value runc has always used).
fn add_listen_env(p: &mut oci_spec::runtime::Process, n: u32) {
    if n == 0 {
        return;
    }
    let mut env = p.env().clone().unwrap_or_default();
    env.retain(|e| !e.starts_with("LISTEN_FDS=") && !e.starts_with("LISTEN_PID="));
    env.push(format!("LISTEN_FDS={n}"));
    env.push("LISTEN_PID=1".into());
    p.set_env(Some(env));
}

#[cfg(test)]
mod tests {
    use super::Status::*;

    #[test]
    fn permission_matrix() {
        assert!(Created.can_start());
        for s in [Running, Paused, Stopped, Creating] {
            assert!(!s.can_start(), "{s}");
        }
        assert!(!Stopped.can_kill());
        assert!(Running.can_kill() && Paused.can_kill() && Created.can_kill());
        assert!(!Running.can_delete() && !Paused.can_delete());
        assert!(Stopped.can_delete());
    }
}
