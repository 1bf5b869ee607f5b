//! Verbs on a live container's cgroup: `pause`, `resume`, `ps`, `events`, `update`.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::LinuxResources;

use super::{load, ContainerError, Status};

fn wrong(action: &'static str, id: &str, status: Status, hint: &'static str) -> ContainerError {
    ContainerError::WrongStatus {
        action,
        id: id.to_string(),
        status,
        hint,
    }
}

/// Freeze every process of the container.
pub fn pause(root: &Path, id: &str) -> Result<(), ContainerError> {
    let c = load(root, id, true)?;
    if c.status != Status::Running && c.status != Status::Created {
        return Err(wrong("pause", id, c.status, ": container not running"));
    }
    Ok(c.cgroup().freeze()?)
}

/// Thaw a paused container.
pub fn resume(root: &Path, id: &str) -> Result<(), ContainerError> {
    let c = load(root, id, true)?;
    if c.status != Status::Paused {
        return Err(wrong("resume", id, c.status, ": container not paused"));
    }
    Ok(c.cgroup().thaw()?)
}

/// The pids of the container's processes (as seen from here).
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>, ContainerError> {
    let c = load(root, id, false)?;
    if c.status == Status::Stopped {
        return Err(wrong("list processes of", id, c.status, ""));
    }
    let cgroup = c.cgroup();
    if cgroup.is_none() {
        // No cgroup (rootless, or --cgroup-manager=disabled): the container's processes are
        // those of its own pid namespace.
        return pids_in_pid_namespace(id, c.state.pid);
    }
    Ok(cgroup.pids()?)
}

fn pids_in_pid_namespace(id: &str, init: i32) -> Result<Vec<i32>, ContainerError> {
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let theirs = ns(&init.to_string()).ok_or_else(|| {
        ContainerError::Invalid(format!(
            "container {id} has no cgroup, and its init's pid namespace can't be read"
        ))
    })?;
    if ns("self").as_ref() == Some(&theirs) {
        return Err(ContainerError::Invalid(format!(
            "container {id} has no cgroup and shares this pid namespace: its processes can't \
             be told apart from others (give it a cgroup or a pid namespace)"
        )));
    }
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .map_err(|e| ContainerError::Invalid(format!("read /proc: {e}")))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| ns(&p.to_string()).as_ref() == Some(&theirs))
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// One `events` record in runc's shape.
fn event(kind: &str, id: &str, data: Option<serde_json::Value>) -> String {
    let mut v = serde_json::json!({"type": kind, "id": id});
    if let Some(d) = data {
        v["data"] = d;
    }
    v.to_string()
}

/// `events`: with `stats_once`, print one stats record; otherwise stream a stats record every
/// `interval` and an `oom` record for each OOM kill, until the container stops.
pub fn events(
    root: &Path,
    id: &str,
    interval: Duration,
    stats_once: bool,
    out: &mut dyn Write,
) -> Result<(), ContainerError> {
    let c = load(root, id, false)?;
    if c.status == Status::Stopped {
        return Err(wrong(
            "get events of",
            id,
            c.status,
            ": container not running",
        ));
    }
    let cg = c.cgroup();
    let stats = |cg: &crate::cgroups::Cgroup| -> Result<String, ContainerError> {
        let s = serde_json::to_value(cg.stats()?)
            .map_err(|e| ContainerError::Invalid(e.to_string()))?;
        Ok(event("stats", id, Some(s)))
    };
    let io = |e: std::io::Error| ContainerError::Io {
        what: "write events",
        path: "stdout".into(),
        source: e,
    };
    if stats_once {
        writeln!(out, "{}", stats(&cg)?).map_err(io)?;
        return Ok(());
    }
    let notifier = cg.oom_notifier().ok();
    let mut ooms = cg.oom_kill_count().unwrap_or(0);
    let ms = u16::try_from(interval.as_millis())
        .unwrap_or(u16::MAX)
        .max(1);
    loop {
        let woke = match &notifier {
            Some(n) => {
                let mut fds = [PollFd::new(n.as_fd(), PollFlags::POLLIN)];
                matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(k) if k > 0)
            }
            None => {
                std::thread::sleep(Duration::from_millis(ms.into()));
                false
            }
        };
        if let (true, Some(n)) = (woke, &notifier) {
            n.clear();
        }
        let now = cg.oom_kill_count().unwrap_or(ooms);
        for _ in ooms..now {
            writeln!(out, "{}", event("oom", id, None)).map_err(io)?;
        }
        ooms = now;
        let c = load(root, id, false);
        match c {
            Ok(c) if c.status != Status::Stopped => {}
            _ => return Ok(()),
        }
        if !woke {
            writeln!(out, "{}", stats(&cg)?).map_err(io)?;
        }
        let _ = out.flush();
    }
}

/// Change the resources of a running container, and record them for later `state`/`exec`.
pub fn update(root: &Path, id: &str, resources: &LinuxResources) -> Result<(), ContainerError> {
    let c = load(root, id, true)?;
    if c.status == Status::Stopped {
        return Err(wrong("update", id, c.status, ": container not running"));
    }
    crate::cgroups::Cgroup::validate(resources)?;
    c.cgroup().update(resources)?;
    let mut st = c.state.clone();
    let mut linux = st.config.linux().clone().unwrap_or_default();
    let merged = merge(linux.resources().as_ref(), resources)?;
    linux.set_resources(Some(merged));
    st.config.set_linux(Some(linux));
    c.dir.save(&st)?;
    Ok(())
}

/// `new` over `old`, field by field (JSON objects merged recursively; arrays replaced).
fn merge(
    old: Option<&LinuxResources>,
    new: &LinuxResources,
) -> Result<LinuxResources, ContainerError> {
    fn join(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    join(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) if !b.is_null() => *a = b,
            _ => {}
        }
    }
    let bad = |e: serde_json::Error| ContainerError::Invalid(e.to_string());
    let mut base = serde_json::to_value(old.cloned().unwrap_or_default()).map_err(bad)?;
    join(&mut base, serde_json::to_value(new).map_err(bad)?);
    serde_json::from_value(base).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_merges_over_the_old_resources() {
        let old: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":100,"reservation":50},"pids":{"limit":10}}"#,
        )
        .unwrap();
        let new: LinuxResources = serde_json::from_str(r#"{"memory":{"limit":200}}"#).unwrap();
        let m = serde_json::to_value(merge(Some(&old), &new).unwrap()).unwrap();
        assert_eq!(m["memory"]["limit"], 200);
        assert_eq!(m["memory"]["reservation"], 50);
        assert_eq!(m["pids"]["limit"], 10);
    }

    #[test]
    fn events_have_runc_shape() {
        let e: serde_json::Value = serde_json::from_str(&event("oom", "x", None)).unwrap();
        assert_eq!(e, serde_json::json!({"type": "oom", "id": "x"}));
    }
}
