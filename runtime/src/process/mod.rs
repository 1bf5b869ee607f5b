//! Processes of a container: the init ([`spawn`]), and processes joined to a running one
//! ([`join`], for `husk exec`).

pub mod idmap;
pub mod join;
pub mod spawn;

pub use crate::child::{cpuset, sync};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Sync(#[from] sync::SyncError),
    #[error("{step}")]
    Step {
        step: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("{what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("join namespace {path:?}")]
    Namespace {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    Child(#[from] crate::child::ChildError),
    /// The container init's own report of what failed.
    #[error("{0}")]
    Init(sync::Failure),
    /// A step of the caller's (state, hooks, cgroup) failed.
    #[error("{0}")]
    Observer(String),
}
