//! Terminals: `--console-socket` connection in the parent, pty creation and master fd passing in
//! the container. (Owned by the console work; this is the interface init and exec call.)

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("connect to console socket {path:?}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// Connect to the console socket given with `--console-socket` (done by the parent before clone,
/// so the path is resolved in the caller's mount namespace).
pub fn connect(path: &Path) -> Result<OwnedFd, ConsoleError> {
    Err(ConsoleError::Connect {
        path: path.to_path_buf(),
        source: std::io::Error::from_raw_os_error(libc::ENOSYS),
    })
}

/// In the container (after `/dev/pts` is mounted and the root pivoted): open a new pty from
/// `/dev/ptmx`, send its master over `socket` with SCM_RIGHTS, set the window size, and return
/// the slave, which the caller makes its stdio and controlling terminal.
pub fn setup(
    _socket: OwnedFd,
    _size: Option<&oci_spec::runtime::Box>,
) -> Result<OwnedFd, ConsoleError> {
    Err(ConsoleError::Other("console not built yet".into()))
}
