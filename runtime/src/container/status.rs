//! Reading containers: one (`state`) or all (`list`), with the status derived from the system.

use std::path::{Path, PathBuf};

use super::{ContainerError, Status};
use crate::cgroups::Cgroup;
use crate::state::{self, State, StateDir};

/// A container's recorded state and its status now.
#[derive(Debug)]
pub struct Loaded {
    pub dir: StateDir,
    pub state: State,
    pub status: Status,
}

impl Loaded {
    pub fn cgroup(&self) -> Cgroup {
        Cgroup::from_path(self.state.cgroup.clone())
    }

    /// The JSON runc prints for `state` and in `list --format json`.
    pub fn to_json(&self) -> serde_json::Value {
        let s = &self.state;
        let mut v = serde_json::json!({
            "ociVersion": s.oci_version,
            "id": s.id,
            "pid": if self.status == Status::Stopped { 0 } else { s.pid },
            "status": self.status.as_str(),
            "bundle": s.bundle,
            "rootfs": s.rootfs,
            "created": s.created,
        });
        if let Some(a) = s.config.annotations().as_ref().filter(|a| !a.is_empty()) {
            v["annotations"] = serde_json::json!(a);
        }
        v["owner"] = serde_json::json!(s.owner);
        v
    }
}

/// Load a container (locked when `lock`; readers don't lock, see [`StateDir::open_unlocked`]).
pub fn load(root: &Path, id: &str, lock: bool) -> Result<Loaded, ContainerError> {
    let dir = if lock {
        StateDir::open(root, id)?
    } else {
        StateDir::open_unlocked(root, id)?
    };
    let state = dir.load_existing()?;
    let status = status_of(&dir, &state);
    Ok(Loaded { dir, state, status })
}

pub(crate) fn status_of(dir: &StateDir, state: &State) -> Status {
    // No pid yet is a create at work only while that create holds the lock; a negative pid is
    // never one husk wrote.
    if state.pid < 0 || (state.pid == 0 && !dir.locked_elsewhere()) {
        return Status::Stopped;
    }
    let fifo = dir.fifo_path().exists();
    state.status(fifo, || Cgroup::from_path(state.cgroup.clone()).is_frozen())
}

/// One entry of `list`: a container, or one whose state can't be read (with the reason).
#[derive(Debug)]
pub enum Listed {
    Ok(Box<Loaded>),
    Unreadable { id: String, error: ContainerError },
}

/// Every container under `root`. One whose `state.json` is missing is a create that has not
/// written it yet, and is left out; one whose state can't be read is listed as such.
pub fn list(root: &Path) -> Result<Vec<Listed>, ContainerError> {
    let mut out = Vec::new();
    for id in state::list_ids(root)? {
        match load(root, &id, false) {
            Ok(l) => out.push(Listed::Ok(Box::new(l))),
            Err(ContainerError::State(state::StateError::NotFound(_))) => {}
            Err(error) => out.push(Listed::Unreadable { id, error }),
        }
    }
    Ok(out)
}

/// The cgroups of the other containers under `root` whose state can be read: those nested in
/// a container's cgroup are theirs, not its.
pub(crate) fn other_cgroups(root: &Path, id: &str) -> Vec<PathBuf> {
    let Ok(ids) = state::list_ids(root) else {
        return Vec::new();
    };
    ids.iter()
        .filter(|o| o.as_str() != id)
        .filter_map(|o| StateDir::open_unlocked(root, o).ok()?.load().ok()?)
        .map(|s| s.cgroup)
        .filter(|c| !c.as_os_str().is_empty())
        .collect()
}
