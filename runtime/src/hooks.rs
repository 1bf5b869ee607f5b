//! OCI hooks: run each with the container state on stdin, its args/env, and its timeout.
//! (Owned by the hooks work; this is the interface the lifecycle calls.)

use oci_spec::runtime::{Hook, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{kind:?} hook {path:?}: {reason}")]
    Failed {
        kind: HookKind,
        path: std::path::PathBuf,
        reason: String,
    },
}

/// Run `hooks` in order; the first failure stops the rest.
pub fn run(_kind: HookKind, _hooks: &[Hook], _state: &State) -> Result<(), HookError> {
    Ok(())
}
