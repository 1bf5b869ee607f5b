//! `delete`: remove a stopped (or, with `--force`, any) container: its processes, cgroup and
//! state directory, then poststop hooks. `linux.netDevices` go back to the runtime's network
//! namespace first, while the container's still exists.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use super::{ContainerError, Status};
use crate::cgroups::{Cgroup, CgroupError};
use crate::hooks::{self, HookKind};
use crate::state::{proc_start_time, State, StateDir, StateError};

pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), ContainerError> {
    let dir = StateDir::open(root, id)?;
    let st = match dir.load() {
        Ok(Some(st)) => st,
        // A create that died before writing any state: nothing but the directory exists.
        Ok(None) => {
            dir.remove()?;
            return Ok(());
        }
        Err(StateError::Corrupt { .. } | StateError::Input { .. }) if force => {
            return delete_corrupt(dir)
        }
        Err(e) => return Err(e.into()),
    };
    let status = super::status::status_of(&dir, &st);
    if !status.can_delete() && !force {
        return Err(ContainerError::WrongStatus {
            action: "delete",
            id: id.to_string(),
            status,
            hint: " (stop it first or use --force)",
        });
    }
    return_net_devices(&st, status);
    let cgroup = Cgroup::from_path(st.cgroup.clone());
    let alive = status != Status::Stopped && st.pid > 0;
    if alive {
        // Its own pid namespace dies with its init (the kernel kills the rest).
        let _ = signal::kill(Pid::from_raw(st.pid), Signal::SIGKILL);
    }
    // Other containers' cgroups nested in this one: theirs, not its.
    let nested = || {
        if cgroup.has_children() {
            super::status::other_cgroups(root, id)
        } else {
            Vec::new()
        }
    };
    if st.pid > 0 && !super::kill::private_pid_ns(&st.config) {
        // Sharing a pid namespace, its processes are those of its cgroup, which `create` made
        // sure was its own. Thaws a paused one, too.
        if let Err(e) = cgroup.kill_members(&nested(), &|_| false) {
            crate::logging::warn(&crate::init::chain(&e));
        }
    } else if st.pid <= 0 {
        // A create killed before it recorded its init: that init is still husk, running
        // `create`/`run` for this id, or (with a pid namespace of its own) it went on to run
        // the container and is the pid namespace init of this cgroup born right after the
        // state was written.
        let born = crate::state::parse_rfc3339(&st.created);
        let nested = nested();
        // The orphan's namespace holds the container's other processes (which leave the
        // cgroup only once the kernel killed them, after the init itself).
        let orphan_ns: Vec<std::ffi::OsString> = if super::kill::private_pid_ns(&st.config) {
            cgroup
                .own_pids(&nested, &|p| !orphan_init(p, born))
                .unwrap_or_default()
                .into_iter()
                .filter_map(super::kill::pid_ns)
                .collect()
        } else {
            Vec::new()
        };
        let ours = |p: i32| {
            half_made_init(p, id) || super::kill::pid_ns(p).is_some_and(|n| orphan_ns.contains(&n))
        };
        if let Err(e) = cgroup.kill_members(&nested, &|p| !ours(p)) {
            crate::logging::warn(&crate::init::chain(&e));
        }
    }
    if alive {
        if status == Status::Paused || cgroup.is_frozen() {
            // A frozen init dies only once thawed (runc thaws after SIGKILL too).
            let _ = cgroup.thaw();
        }
        wait_gone(st.pid, st.start_time);
    }
    remove_cgroup(&cgroup)?;
    dir.remove()?;
    if let Some(h) = st.config.hooks() {
        if let Err(e) = hooks::run(
            HookKind::Poststop,
            HookKind::Poststop.select(h),
            &st.oci(Status::Stopped),
        ) {
            // runtime-spec: a failing poststop hook is a warning; the container is gone.
            crate::logging::warn(&crate::init::chain(&e));
        }
    }
    Ok(())
}

/// Remove the container's cgroup; one still busy with processes that are not its own stays,
/// with a warning (they are someone else's: never killed to make room).
fn remove_cgroup(cgroup: &Cgroup) -> Result<(), ContainerError> {
    match cgroup.remove() {
        Ok(()) => Ok(()),
        Err(e @ CgroupError::Busy { .. }) => {
            crate::logging::warn(&e.to_string());
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// True when `pid` is husk itself at work on `create` or `run` of container `id` (its command
/// line names both): the init of a create that was killed before recording its pid.
fn half_made_init(pid: i32, id: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    args.iter().any(|a| *a == b"create" || *a == b"run")
        && args.iter().skip(1).any(|a| *a == id.as_bytes())
}

/// True when `pid` is a pid namespace's init (pid 1 inside, another pid outside) that started
/// within two seconds after `born` (the state's creation time): an init whose `create` was
/// killed after it let the init run but before it recorded its pid. Others' processes in the
/// cgroup were there before `born`, or are no pid namespace's init.
fn orphan_init(pid: i32, born: Option<f64>) -> bool {
    let Some(born) = born else {
        return false;
    };
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let ns_init = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .is_some_and(|ids| ids.len() >= 2 && ids.last() == Some(&"1"));
    ns_init
        && crate::state::proc_started_at(pid).is_some_and(|t| t >= born - 0.05 && t <= born + 2.0)
}

/// `delete --force` of a container whose `state.json` can't be parsed: what can still be
/// read of it (the fields before the damage, when they name this very container) identifies
/// its init and its cgroup; those are removed as usual. What can't be identified is named in
/// a warning, for removal by hand; the state directory goes in any case.
fn delete_corrupt(dir: StateDir) -> Result<(), ContainerError> {
    let id = dir.id.clone();
    let path = dir.dir.join(crate::state::STATE_FILE);
    let salvaged = crate::state::salvage(&path);
    let (pid, start, cgroup) = match &salvaged {
        Some(s) if s.id.as_deref() == Some(id.as_str()) => (s.pid, s.start_time, s.cgroup.clone()),
        _ => (None, None, None),
    };
    if let (Some(pid), Some(start)) = (pid, start) {
        if pid > 0 && proc_start_time(pid) == Some((start, false)) {
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            if let Some(c) = &cgroup {
                let _ = Cgroup::from_path(c.clone()).thaw();
            }
            wait_gone(pid, start);
        }
    }
    match cgroup {
        Some(c) => {
            let cg = Cgroup::from_path(c.clone());
            if let Err(e) = cg.remove() {
                crate::logging::warn(&format!(
                    "container {id}: its state file {path:?} is corrupt and its cgroup {c:?} \
                     could not be removed ({}); remove it by hand once its processes are gone",
                    crate::init::chain(&e)
                ));
            }
        }
        None => crate::logging::warn(&format!(
            "container {id}: its state file {path:?} is corrupt and names no cgroup or init \
             husk could check; if the container still runs, kill its processes and remove its \
             cgroup (by default /husk/{id}) by hand"
        )),
    }
    dir.remove()?;
    Ok(())
}

/// Move `linux.netDevices` back to this (the runtime's) network namespace if the container's
/// still exists: one joined by `path` outlives the container; a new one lives as long as the
/// init, so it is taken before the kill. Once a new one is gone, the kernel has already
/// returned physical devices to the initial namespace and destroyed virtual ones. Failures are
/// warnings: the devices stay where they are and the container must still go.
fn return_net_devices(st: &State, status: Status) {
    let devs = crate::netdev::from_spec(st.config.linux().as_ref());
    if devs.is_empty() {
        return;
    }
    let joined = st
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network)
        .and_then(|n| n.path().clone());
    let alive = status != Status::Stopped && st.pid > 0;
    let (path, of_init) = match joined {
        Some(p) => (p, false),
        None if alive => (PathBuf::from(format!("/proc/{}/ns/net", st.pid)), true),
        None => return,
    };
    let ns = match crate::netdev::open_netns(&path) {
        Ok(ns) => ns,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return,
        Err(e) => {
            crate::logging::warn(&format!(
                "open network namespace {path:?} to return linux.netDevices: {e}"
            ));
            return;
        }
    };
    // A pid reused since the status was read would name another process's namespace.
    if of_init && proc_start_time(st.pid) != Some((st.start_time, false)) {
        return;
    }
    for e in crate::netdev::detach(&devs, ns.as_fd()) {
        crate::logging::warn(&e.to_string());
    }
}

/// Wait (bounded) until `pid` with this start time is dead or a zombie.
fn wait_gone(pid: i32, start: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pause = Duration::from_micros(100);
    while Instant::now() < deadline {
        match proc_start_time(pid) {
            Some((t, false)) if t == start => {}
            _ => return,
        }
        // Our own child (husk run) must be reaped to stop being a zombie-in-waiting.
        let _ = nix::sys::wait::waitpid(
            Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}
