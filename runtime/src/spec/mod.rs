//! `config.json`: load it, validate it, and turn it into a [`Plan`] before anything changes on disk.
//!
//! Type errors name the JSON path (via serde_path_to_error); semantic errors name the path too, in
//! the form users see in their editor: `linux.namespaces[2].path`.

pub mod default;
pub mod inmemory;
mod input;
mod namespaces;
mod validate;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::runtime::{Process, Spec};

pub use input::{read_bounded, read_open, ReadError, LIMIT as INPUT_LIMIT};
pub use namespaces::{proc_name, Namespaces};

/// The oldest and newest runtime-spec releases husk implements.
pub const OCI_VERSION_MIN: &str = "1.0.0";
pub const OCI_VERSION_MAX: &str = "1.3.0";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("open {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Input(#[from] ReadError),
    #[error("{file:?}: {path}: {message}")]
    Parse {
        file: PathBuf,
        path: String,
        message: String,
    },
    #[error("{file:?}: {path}: {message}")]
    Invalid {
        file: PathBuf,
        path: String,
        message: String,
    },
}

/// What `create` needs, derived from the spec once and validated.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spec: Spec,
    /// Absolute path of the bundle directory.
    pub bundle: PathBuf,
    /// Absolute, canonical path of the root filesystem.
    pub rootfs: PathBuf,
    pub process: Process,
    pub namespaces: Namespaces,
    pub seccomp: Option<crate::seccomp::Compiled>,
    /// Mounts the caller made ahead, attached in place of the spec's bind mounts at their
    /// destinations (none for a bundle's `config.json`).
    pub prepared: Vec<Prepared>,
}

/// A bind mount made ahead of the init, in the runtime's own mount namespace: a detached tree
/// (`open_tree(OPEN_TREE_CLONE)`) with its attributes set, such as an idmap whose user
/// namespace only the runtime can make. The init attaches it (`move_mount`) where the spec's
/// mount with the same destination would have bound its source, then applies that mount's
/// options as for any bind. A detached tree attaches once: each init needs its own.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub destination: PathBuf,
    pub tree: Arc<OwnedFd>,
}

/// Load and validate `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Plan, SpecError> {
    let bundle = std::path::absolute(bundle).map_err(|source| SpecError::Read {
        path: bundle.to_path_buf(),
        source,
    })?;
    let file = bundle.join("config.json");
    let spec = parse_file(&file)?;
    validate::plan(spec, bundle, &file)
}

/// Parse a spec (or any serde type, like a `--process` file) naming the JSON path on a type error.
pub fn parse_file<T: serde::de::DeserializeOwned>(file: &Path) -> Result<T, SpecError> {
    let bytes = read_bounded(file, INPUT_LIMIT)?;
    parse_bytes(&bytes, file)
}

/// Parse JSON bytes; `file` only names the source in errors.
pub fn parse_bytes<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    file: &Path,
) -> Result<T, SpecError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        SpecError::Parse {
            file: file.to_path_buf(),
            path: if path == "." {
                "(document)".into()
            } else {
                path
            },
            message: inner.to_string(),
        }
    })
}

/// Validate a `process` object given to `exec --process` against the same rules as `config.json`.
pub fn validate_process(process: &Process, file: &Path) -> Result<(), SpecError> {
    validate::process(process, "process", file)
}
