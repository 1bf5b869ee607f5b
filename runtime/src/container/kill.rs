//! `kill`: a signal to the init, or with `--all` to every process of the container, and to no
//! process that is not its own.

use std::path::Path;

use oci_spec::runtime::LinuxNamespaceType;

use super::{load, ContainerError, Loaded, Status};
use crate::signal::{self, Sig};

/// A signal by name (`KILL`, `SIGKILL`, `SIGRTMIN+3`, case-insensitive) or number (1-64).
pub fn parse_signal(s: &str) -> Result<Sig, ContainerError> {
    signal::parse(s).map_err(|e| ContainerError::Invalid(e.to_string()))
}

pub fn kill(root: &Path, id: &str, sig: Sig, all: bool) -> Result<(), ContainerError> {
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
    let sigkill = sig.number() == libc::SIGKILL;
    if sigkill && !private {
        kill_cgroup(root, &c)?;
    } else if all {
        for p in own_pids(root, &c)? {
            let _ = sig.send(p);
        }
    }
    let res = sig.send(c.state.pid);
    if sigkill && c.status == Status::Paused {
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

/// `kill --all` of a stopped container: whatever of its own is still running (processes it
/// left in its cgroup) gets the signal; nothing of anyone else's.
pub fn kill_leftovers(root: &Path, id: &str, sig: Sig) -> Result<(), ContainerError> {
    let c = load(root, id, false)?;
    if sig.number() == libc::SIGKILL && !private_pid_ns(&c.state.config) {
        return kill_cgroup(root, &c);
    }
    for p in own_pids(root, &c)? {
        let _ = sig.send(p);
    }
    Ok(())
}

/// SIGKILL every process of a container that shares a pid namespace (they are its cgroup's),
/// as runc does: frozen first so none forks away between the listing and the kill, and
/// returning only once the cgroup is empty (containerd's shim kills the rest of such a
/// container when its init exits, and announces the exit after: whoever waits for it must find
/// nothing left). `delete` kills the same way.
pub(crate) fn kill_cgroup(root: &Path, c: &Loaded) -> Result<(), ContainerError> {
    let cg = c.cgroup();
    if c.state.pid <= 0 {
        return Ok(());
    }
    let nested = if cg.has_children() {
        super::status::other_cgroups(root, &c.state.id)
    } else {
        Vec::new()
    };
    Ok(cg.kill_members(&nested, &|_| false)?)
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
        assert_eq!(parse_signal("KILL").unwrap().number(), libc::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap().number(), libc::SIGTERM);
        assert_eq!(parse_signal("9").unwrap().number(), libc::SIGKILL);
        assert!(parse_signal("FOO").is_err());
        assert!(parse_signal("999").is_err());
    }
}
