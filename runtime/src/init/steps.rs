//! Container-only steps of the init that are not part of the OCI `process`: the cwd created
//! before pivot_root, sysctls, domainname, personality, the session keyring.

use std::path::Path;

use oci_spec::runtime::{LinuxPersonality, LinuxPersonalityDomain};

use super::{step, InitError};

/// runc creates a missing cwd (as root, before the user switch).
pub fn create_cwd(plan: &crate::spec::Plan) -> Result<(), InitError> {
    let root = crate::rootfs::resolve::open_root(&plan.rootfs).map_err(step("open the rootfs"))?;
    crate::rootfs::resolve::create(&root, plan.process.cwd(), crate::rootfs::resolve::Kind::Dir)
        .map(drop)
        .map_err(step(format!("create cwd {:?}", plan.process.cwd())))
}

/// Write `value` to `rel` (e.g. `sys/kernel/shmmax`) under the container's `/proc`, which must
/// be a procfs, without crossing any mount or symlink on the way: a config mount over a /proc
/// file can't redirect the write elsewhere (CVE-2025-52881).
pub fn write_proc(rel: &str, value: &str) -> Result<(), InitError> {
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    const RESOLVE_NO_XDEV: u64 = 0x01;
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_NO_SYMLINKS: u64 = 0x04;
    const RESOLVE_BENEATH: u64 = 0x08;
    let fail = |e: &dyn std::fmt::Display| InitError::Other(format!("write /proc/{rel}: {e}"));
    let proc = crate::sys::open(
        "/proc",
        nix::fcntl::OFlag::O_PATH
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| fail(&e))?;
    let fd = crate::sys::openat2(
        std::os::fd::AsRawFd::as_raw_fd(&proc),
        Path::new(rel),
        libc::O_WRONLY | libc::O_CLOEXEC,
        0,
        RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| fail(&e))?;
    let fs = nix::sys::statfs::fstatfs(&fd).map_err(|e| fail(&e))?;
    if fs.filesystem_type().0 as i64 != PROC_SUPER_MAGIC {
        return Err(fail(&"not on procfs"));
    }
    std::io::Write::write_all(&mut std::fs::File::from(fd), value.as_bytes()).map_err(|e| fail(&e))
}

pub fn set_domainname(d: &str) -> Result<(), InitError> {
    // SAFETY: the pointer and length describe `d`'s bytes, which outlive the call.
    let r = unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) };
    nix::errno::Errno::result(r)
        .map(drop)
        .map_err(step("set domainname"))
}

pub fn personality(p: &LinuxPersonality) -> Result<(), InitError> {
    let persona = match p.domain() {
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
        LinuxPersonalityDomain::PerLinux => 0x0000,
    };
    // SAFETY: personality takes a plain integer.
    let r = unsafe { libc::personality(persona) };
    nix::errno::Errno::result(r)
        .map(drop)
        .map_err(step("set personality"))
}

/// A new session keyring named after the container (KEYCTL_JOIN_SESSION_KEYRING). Where keyrings
/// are unavailable (ENOSYS) the container simply shares none.
pub fn join_session_keyring(id: &str) -> Result<(), InitError> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    let name = std::ffi::CString::new(format!("_ses.{id}"))
        .map_err(|_| InitError::Other("container id contains NUL".into()))?;
    // SAFETY: keyctl(JOIN_SESSION_KEYRING, name) reads one C string that outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    match nix::errno::Errno::result(r) {
        Ok(_) | Err(nix::errno::Errno::ENOSYS) => Ok(()),
        Err(e) => Err(step("join a new session keyring")(e)),
    }
}
