//! `kill`: a signal to the init, or with `--all` to every process of the container, and to no
//! process that is not its own.

use std::path::Path;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use oci_spec::runtime::LinuxNamespaceType;

use super::{load, ContainerError, Loaded, Status};

/// A signal by name (`KILL`, `SIGKILL`, case-insensitive) or number.
pub fn parse_signal(s: &str) -> Result<Signal, ContainerError> {
    let bad = || ContainerError::Invalid(format!("invalid signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

pub fn kill(root: &Path, id: &str, sig: Signal, all: bool) -> Result<(), ContainerError> {
    let c = load(root, id, false)?;
    if !c.status.can_kill() {
        return Err(ContainerError::WrongStatus {
            action: "kill",
            id: id.to_string(),
            status: c.status,
            hint: ": container not running",
        });
    }
    let private = private_pid_ns(&c.state.config);
    // runc: SIGKILL to a container sharing a pid namespace reaches all its processes, as the
    // kernel does by itself for one with its own (killing its init kills the namespace).
    if all || (sig == Signal::SIGKILL && !private) {
        for p in own_pids(root, &c)? {
            let _ = signal::kill(Pid::from_raw(p), sig);
        }
    }
    let res = signal::kill(Pid::from_raw(c.state.pid), sig);
    if sig == Signal::SIGKILL && c.status == Status::Paused {
        // A frozen task dies only once thawed; runc thaws after SIGKILL too.
        c.cgroup().thaw()?;
    }
    match res {
        // The init may be gone already while others of --all were still there.
        Err(_) if all => Ok(()),
        r => r.map_err(|source| ContainerError::Sys {
            step: format!("send {sig} to container {id}"),
            source,
        }),
    }
}

/// True when the container has a pid namespace of its own (one it made, not one it joined).
pub(crate) fn private_pid_ns(spec: &oci_spec::runtime::Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none())
}

/// The container's own processes, and none of anyone else's: with a pid namespace of its own,
/// the processes of its cgroup that are in its init's namespace; without one, every process of
/// its cgroup (its own: `create` refuses a cgroup in use), less the cgroups of other containers
/// of this root nested below it. None for a cgroup that can't be its own (`/husk`, `/`).
pub(crate) fn own_pids(root: &Path, c: &Loaded) -> Result<Vec<i32>, ContainerError> {
    let cg = c.cgroup();
    if cg.is_none() || cg.is_shared() || c.state.pid <= 0 {
        return Ok(Vec::new());
    }
    let nested = if cg.has_children() {
        super::status::other_cgroups(root, &c.state.id)
    } else {
        Vec::new()
    };
    if private_pid_ns(&c.state.config) {
        let Some(ns) = pid_ns(c.state.pid) else {
            return Ok(Vec::new());
        };
        Ok(cg.own_pids(&nested, &|p| pid_ns(p).as_ref() != Some(&ns))?)
    } else {
        Ok(cg.own_pids(&nested, &|_| false)?)
    }
}

/// The pid namespace of `pid` (`pid:[inode]`), `None` once it is gone.
pub(crate) fn pid_ns(pid: i32) -> Option<std::ffi::OsString> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|p| p.into_os_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_and_numbers() {
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("FOO").is_err());
        assert!(parse_signal("999").is_err());
    }
}
