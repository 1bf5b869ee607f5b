//! OCI seccomp profiles compiled to BPF in the parent before clone, installed by init right before
//! `execve`. (Owned by the seccomp work; this is the interface the create path calls.)

use std::os::fd::OwnedFd;

use oci_spec::runtime::LinuxSeccomp;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("linux.seccomp: {0}")]
    Invalid(String),
    #[error("install seccomp filter")]
    Install(#[source] std::io::Error),
}

/// A filter ready to install: pure data, made in the parent.
#[derive(Debug, Clone)]
pub struct Compiled {}

/// Translate and compile `linux.seccomp`; errors name the JSON path.
pub fn compile(_seccomp: &LinuxSeccomp) -> Result<Compiled, SeccompError> {
    Ok(Compiled {})
}

/// Install the filter on the calling thread. Returns the user-notification fd when the profile
/// uses `SCMP_ACT_NOTIFY`.
pub fn install(_filter: &Compiled) -> Result<Option<OwnedFd>, SeccompError> {
    Ok(None)
}
