//! Reading containers: one (`state`) or all (`list`), with the status derived from the system.

use std::path::Path;

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
    let fifo = dir.fifo_path().exists();
    state.status(fifo, || Cgroup::from_path(state.cgroup.clone()).is_frozen())
}

/// Every container under `root`; ones whose state can't be read are skipped (a create in
/// progress, or a directory that isn't ours).
pub fn list(root: &Path) -> Result<Vec<Loaded>, ContainerError> {
    let mut out = Vec::new();
    for id in state::list_ids(root)? {
        if let Ok(l) = load(root, &id, false) {
            out.push(l);
        }
    }
    Ok(out)
}
