//! The `process` object applied to the calling process, in the order [`super::prepare`] needs:
//! limits and priorities, user and groups with the capability sets, umask, cwd and
//! no_new_privs, and the program lookup.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{Linux, Process};

use super::{step, ChildError};

/// Everything that needs the privileges the user switch drops.
pub(super) fn limits(p: &Process, linux: Option<&Linux>) -> Result<(), ChildError> {
    crate::rlimits::apply(p.rlimits().as_deref().unwrap_or_default())?;
    if let Some(io) = p.io_priority() {
        ioprio(io)?;
    }
    if let Some(s) = p.scheduler() {
        scheduler(s)?;
    }
    if let Some(mp) = linux.and_then(|l| l.memory_policy().as_ref()) {
        memory_policy(mp)?;
    }
    if let Some(list) = p
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.initial().as_deref())
    {
        let cpus = super::cpuset::parse(list).map_err(ChildError::Other)?;
        super::cpuset::apply(&cpus).map_err(step("set initial CPU affinity"))?;
    }
    Ok(())
}

/// After the user switch: umask, cwd (checked to be inside the root), no_new_privs, final CPU
/// affinity.
pub(super) fn cwd_and_privs(p: &Process) -> Result<(), ChildError> {
    let umask = p.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    nix::unistd::chdir(p.cwd()).map_err(step(format!("chdir to cwd {:?}", p.cwd())))?;
    // CVE-2024-21626: a cwd reached through a leaked descriptor would be outside the root;
    // the kernel then reports it as "(unreachable)".
    let cwd = nix::unistd::getcwd().map_err(step("getcwd"))?;
    if !cwd.is_absolute() {
        return Err(ChildError::Other(format!(
            "cwd {cwd:?} is outside the container's root"
        )));
    }
    if p.no_new_privileges().unwrap_or(false) {
        nix::sys::prctl::set_no_new_privs().map_err(step("set no_new_privs"))?;
    }
    if let Some(list) = p
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.cpu_affinity_final().as_deref())
    {
        let cpus = super::cpuset::parse(list).map_err(ChildError::Other)?;
        super::cpuset::apply(&cpus).map_err(step("set final CPU affinity"))?;
    }
    Ok(())
}

/// Groups, gid, uid, then exactly the configured capability sets (with CAP_SYS_ADMIN kept
/// when `keep_admin`: see [`crate::capabilities::apply`]).
pub(super) fn user_and_caps(
    p: &Process,
    userns: bool,
    keep_admin: bool,
) -> Result<Option<crate::capabilities::Final>, ChildError> {
    let caps = p.capabilities().as_ref();
    crate::capabilities::drop_bounding(caps)?;
    let u = p.user();
    let groups: Vec<Gid> = u
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    // In a user namespace whose setgroups is denied only an empty list is allowed, and then
    // the inherited list is already empty.
    let setgroups_allowed = !userns
        || std::fs::read_to_string("/proc/self/setgroups")
            .map(|s| s.trim() == "allow")
            .unwrap_or(false);
    if setgroups_allowed {
        nix::unistd::setgroups(&groups).map_err(step("setgroups"))?;
    } else if !groups.is_empty() {
        return Err(ChildError::Other(
            "process.user.additionalGids: setgroups is denied in this user namespace".into(),
        ));
    }
    nix::sys::prctl::set_keepcaps(true).map_err(step("keep capabilities across setuid"))?;
    let gid = Gid::from_raw(u.gid());
    let uid = Uid::from_raw(u.uid());
    nix::unistd::setresgid(gid, gid, gid).map_err(step(format!("setgid {}", u.gid())))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(step(format!("setuid {}", u.uid())))?;
    nix::sys::prctl::set_keepcaps(false).map_err(step("reset keepcaps"))?;
    let keep = keep_admin.then_some(caps::Capability::CAP_SYS_ADMIN);
    Ok(crate::capabilities::apply(caps, keep)?)
}

/// The process environment, with `HOME` from the container's passwd when it's missing (as runc).
pub fn env(p: &Process) -> Vec<String> {
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = home_of(p.user().uid()).unwrap_or_else(|| "/".into());
        env.push(format!("HOME={home}"));
    }
    env
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
    })
}

/// Resolve `args[0]` with the process's PATH, in the container, before the start barrier, so
/// a missing program fails `create` (as runc does) rather than `start`. The messages are Go's
/// `exec.LookPath` ones that runc prints, which engines match to pick exit codes 127 and 126.
pub fn find_executable(p: &Process) -> Result<PathBuf, ChildError> {
    let arg0 = p
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or_default();
    let lookup = |reason: String, errno| ChildError::Lookup {
        arg0: arg0.clone(),
        reason,
        errno,
    };
    if arg0.contains('/') {
        let path = PathBuf::from(&arg0);
        let m = std::fs::metadata(&path).map_err(|e| {
            let errno = e
                .raw_os_error()
                .map_or(nix::Error::ENOENT, nix::Error::from_raw);
            lookup(
                format!("stat {arg0}: {}", errno.desc().to_lowercase()),
                errno,
            )
        })?;
        if m.is_dir() {
            return Err(lookup("is a directory".into(), nix::Error::EISDIR));
        }
        if m.permissions().mode() & 0o111 == 0 {
            return Err(lookup("permission denied".into(), nix::Error::EACCES));
        }
        return Ok(path);
    }
    let is_exec = |path: &Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let path_var = p
        .env()
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(&arg0);
        if is_exec(&cand) {
            return Ok(cand);
        }
    }
    Err(lookup(
        "executable file not found in $PATH".into(),
        nix::Error::ENOENT,
    ))
}

/// `process.oomScoreAdj`, written before the process enters the container's mounts.
pub fn set_oom_score_adj(p: &Process) -> Result<(), ChildError> {
    match p.oom_score_adj() {
        Some(adj) => std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| ChildError::Other(format!("write /proc/self/oom_score_adj: {e}"))),
        None => Ok(()),
    }
}

fn ioprio(io: &oci_spec::runtime::LinuxIOPriority) -> Result<(), ChildError> {
    use oci_spec::runtime::IOPriorityClass as C;
    let class: i64 = match io.class() {
        C::IoprioClassRt => 1,
        C::IoprioClassBe => 2,
        C::IoprioClassIdle => 3,
    };
    const IOPRIO_WHO_PROCESS: i64 = 1;
    let value = (class << 13) | io.priority();
    // SAFETY: ioprio_set takes three integers.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    nix::errno::Errno::result(r)
        .map(drop)
        .map_err(step("set I/O priority"))
}

fn scheduler(s: &oci_spec::runtime::Scheduler) -> Result<(), ChildError> {
    use oci_spec::runtime::{LinuxSchedulerFlag as F, LinuxSchedulerPolicy as P};
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    let policy = match s.policy() {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => 4,
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        };
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    };
    // SAFETY: `attr` is a sched_attr of the size it declares and outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    nix::errno::Errno::result(r)
        .map(drop)
        .map_err(step("set scheduler"))
}

fn memory_policy(mp: &oci_spec::runtime::LinuxMemoryPolicy) -> Result<(), ChildError> {
    use oci_spec::runtime::{MemoryPolicyFlagType as F, MemoryPolicyModeType as M};
    let mode: i64 = match mp.mode() {
        M::MpolDefault => 0,
        M::MpolPreferred => 1,
        M::MpolBind => 2,
        M::MpolInterleave => 3,
        M::MpolLocal => 4,
        M::MpolPreferredMany => 5,
        M::MpolWeightedInterleave => 6,
    };
    let mut flags: i64 = 0;
    for f in mp.flags().iter().flatten() {
        flags |= match f {
            F::MpolFNumaBalancing => 1 << 13,
            F::MpolFRelativeNodes => 1 << 14,
            F::MpolFStaticNodes => 1 << 15,
        };
    }
    let mut mask = [0u64; 16];
    if let Some(nodes) = mp.nodes().as_deref() {
        for n in super::cpuset::parse(nodes).map_err(ChildError::Other)? {
            if n < 1024 {
                mask[n / 64] |= 1 << (n % 64);
            }
        }
    }
    let has_nodes = mask.iter().any(|w| *w != 0);
    // SAFETY: the mask buffer holds maxnode (1024) bits and outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_set_mempolicy,
            mode | flags,
            if has_nodes {
                mask.as_ptr()
            } else {
                std::ptr::null()
            },
            if has_nodes { 1024usize } else { 0 },
        )
    };
    nix::errno::Errno::result(r)
        .map(drop)
        .map_err(step("set memory policy"))
}
