//! `delete`: remove a stopped (or, with `--force`, any) container: its processes, cgroup and
//! state directory, then poststop hooks. `linux.netDevices` go back to the runtime's network
//! namespace first, while the container's still exists.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use super::{ContainerError, Status};
use crate::hooks::{self, HookKind};
use crate::state::{proc_start_time, State, StateDir};

pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), ContainerError> {
    let dir = StateDir::open(root, id)?;
    let Some(st) = dir.load()? else {
        // A create that died before writing any state: nothing but the directory exists.
        dir.remove()?;
        return Ok(());
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
    let cgroup = crate::cgroups::Cgroup::from_path(st.cgroup.clone());
    if status != Status::Stopped && st.pid > 0 {
        // A paused container can't die until it is thawed; destroy() handles that for the
        // rest of the cgroup, the init gets SIGKILL here.
        let _ = signal::kill(Pid::from_raw(st.pid), Signal::SIGKILL);
        wait_gone(st.pid, st.start_time);
    }
    cgroup.destroy()?;
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
