//! Control groups, v1 and v2 behind one interface. (Owned by the cgroups work; this is the interface
//! the create path calls.)

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{0}")]
    Unsupported(String),
    #[error("{op} {path:?}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A container's cgroup: its path relative to each hierarchy's root (e.g. `/husk/<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// Resolve `linux.cgroupsPath`: absent → `/husk/<id>`, relative → under `/husk/`, absolute as is.
    /// `systemd` is `--systemd-cgroup` (`slice:prefix:name`).
    pub fn resolve(
        cgroups_path: Option<&Path>,
        id: &str,
        systemd: bool,
    ) -> Result<Self, CgroupError> {
        let _ = systemd;
        let path = match cgroups_path {
            None => PathBuf::from("/husk").join(id),
            Some(p) if p.is_absolute() => p.to_path_buf(),
            Some(p) => PathBuf::from("/husk").join(p),
        };
        Ok(Self { path })
    }

    /// The cgroup recorded in `state.json`.
    pub fn from_path(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Check, without touching anything, that every resource can be applied on this host.
    pub fn validate(_resources: &LinuxResources) -> Result<(), CgroupError> {
        Ok(())
    }

    /// Create the cgroup directories and write the resources.
    pub fn create(&self, _resources: Option<&LinuxResources>) -> Result<(), CgroupError> {
        Ok(())
    }

    /// Move `pid` into the cgroup (every hierarchy on v1).
    pub fn add_pid(&self, _pid: i32) -> Result<(), CgroupError> {
        Ok(())
    }

    /// Every pid in the cgroup (and its descendants).
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        Ok(Vec::new())
    }

    /// True when the cgroup is frozen (paused).
    pub fn is_frozen(&self) -> bool {
        false
    }

    /// Kill whatever is left and remove the directories; a cgroup that is already gone is fine.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        Ok(())
    }
}
