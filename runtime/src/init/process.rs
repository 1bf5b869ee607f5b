//! The `process` object applied to the calling process: limits, priorities, user and groups,
//! capabilities, no_new_privs, umask, cwd, seccomp, and the program lookup. Shared by the
//! container init and `husk exec`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{Linux, LinuxPersonality, LinuxPersonalityDomain, Process};

use super::{step, InitError};
use crate::seccomp::Compiled;

/// What to apply, in the order the steps need.
pub struct ProcessSetup<'a> {
    p: &'a Process,
    linux: Option<&'a Linux>,
    seccomp: Option<&'a Compiled>,
    /// The seccomp agent's connected socket and the state to send it with the notify fd.
    listener: Option<(std::os::fd::OwnedFd, oci_spec::runtime::State)>,
}

impl<'a> ProcessSetup<'a> {
    pub fn new(
        p: &'a Process,
        linux: Option<&'a Linux>,
        seccomp: Option<&'a Compiled>,
        _userns: bool,
    ) -> Self {
        Self {
            p,
            linux,
            seccomp,
            listener: None,
        }
    }

    /// Where the notify fd goes when the profile uses SCMP_ACT_NOTIFY (`listenerPath`, already
    /// connected by the runtime).
    pub fn with_listener(
        mut self,
        sock: Option<std::os::fd::OwnedFd>,
        state: oci_spec::runtime::State,
    ) -> Self {
        self.listener = sock.map(|s| (s, state));
        self
    }

    fn install(&self, f: &Compiled) -> Result<(), InitError> {
        let notify = crate::seccomp::install(f)?;
        if let (Some(fd), Some((sock, state)), Some(l)) = (notify, &self.listener, f.listener()) {
            use std::os::fd::AsFd;
            crate::seccomp::send_on(
                sock.as_fd(),
                &l.path,
                fd.as_fd(),
                state,
                l.metadata.as_deref(),
            )?;
        }
        Ok(())
    }

    /// Everything that needs the privileges the user switch drops.
    pub fn before_user(&self) -> Result<(), InitError> {
        crate::rlimits::apply(self.p.rlimits().as_deref().unwrap_or_default())?;
        if let Some(io) = self.p.io_priority() {
            ioprio(io)?;
        }
        if let Some(s) = self.p.scheduler() {
            scheduler(s)?;
        }
        if let Some(mp) = self.linux.and_then(|l| l.memory_policy().as_ref()) {
            memory_policy(mp)?;
        }
        if let Some(list) = self
            .p
            .exec_cpu_affinity()
            .as_ref()
            .and_then(|a| a.initial().as_deref())
        {
            let cpus = crate::process::cpuset::parse(list).map_err(InitError::Other)?;
            crate::process::cpuset::apply(&cpus).map_err(step("set initial CPU affinity"))?;
        }
        Ok(())
    }

    /// Without no_new_privs, installing a filter needs CAP_SYS_ADMIN, so it goes in before the
    /// capabilities are dropped (as runc does). Returns whether it was installed.
    pub fn seccomp_before_user(&self) -> Result<bool, InitError> {
        if self.p.no_new_privileges().unwrap_or(false) {
            return Ok(false);
        }
        if let Some(f) = self.seccomp {
            self.install(f)?;
        }
        Ok(true)
    }

    /// After the user switch: umask, cwd, no_new_privs, final CPU affinity.
    pub fn after_user(&self) -> Result<(), InitError> {
        let umask = self.p.user().umask().unwrap_or(0o022);
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
        nix::unistd::chdir(self.p.cwd())
            .map_err(step(format!("chdir to cwd {:?}", self.p.cwd())))?;
        // CVE-2024-21626: a cwd reached through a leaked descriptor would be outside the root;
        // the kernel then reports it as "(unreachable)".
        let cwd = nix::unistd::getcwd().map_err(step("getcwd"))?;
        if !cwd.is_absolute() {
            return Err(InitError::Other(format!(
                "cwd {cwd:?} is outside the container's root"
            )));
        }
        if self.p.no_new_privileges().unwrap_or(false) {
            nix::sys::prctl::set_no_new_privs().map_err(step("set no_new_privs"))?;
        }
        if let Some(list) = self
            .p
            .exec_cpu_affinity()
            .as_ref()
            .and_then(|a| a.cpu_affinity_final().as_deref())
        {
            let cpus = crate::process::cpuset::parse(list).map_err(InitError::Other)?;
            crate::process::cpuset::apply(&cpus).map_err(step("set final CPU affinity"))?;
        }
        Ok(())
    }

    /// With no_new_privs, the filter goes in last, right before execve.
    pub fn seccomp_last(&self) -> Result<(), InitError> {
        if let Some(f) = self.seccomp {
            self.install(f)?;
        }
        Ok(())
    }
}

/// Groups, gid, uid, then exactly the configured capability sets.
pub fn apply_user_and_caps(p: &Process, userns: bool) -> Result<(), InitError> {
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
        return Err(InitError::Other(
            "process.user.additionalGids: setgroups is denied in this user namespace".into(),
        ));
    }
    nix::sys::prctl::set_keepcaps(true).map_err(step("keep capabilities across setuid"))?;
    let gid = Gid::from_raw(u.gid());
    let uid = Uid::from_raw(u.uid());
    nix::unistd::setresgid(gid, gid, gid).map_err(step(format!("setgid {}", u.gid())))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(step(format!("setuid {}", u.uid())))?;
    nix::sys::prctl::set_keepcaps(false).map_err(step("reset keepcaps"))?;
    crate::capabilities::apply(caps)?;
    Ok(())
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
/// a missing program fails `create` (as runc does) rather than `start`.
pub fn find_executable(p: &Process) -> Result<PathBuf, InitError> {
    let arg0 = p
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or_default();
    let is_exec = |path: &Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if arg0.contains('/') {
        let path = if arg0.starts_with('/') {
            PathBuf::from(&arg0)
        } else {
            p.cwd().join(&arg0)
        };
        if is_exec(&path) {
            return Ok(PathBuf::from(arg0));
        }
        return Err(InitError::Other(format!(
            "exec {arg0:?}: no such executable in the container"
        )));
    }
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
    Err(InitError::Other(format!(
        "exec {arg0:?}: executable file not found in $PATH"
    )))
}

/// runc creates a missing cwd (as root, before the user switch).
pub fn create_cwd(plan: &crate::spec::Plan) -> Result<(), InitError> {
    let root = crate::rootfs::resolve::open_root(&plan.rootfs).map_err(step("open the rootfs"))?;
    crate::rootfs::resolve::create(&root, plan.process.cwd(), crate::rootfs::resolve::Kind::Dir)
        .map(drop)
        .map_err(step(format!("create cwd {:?}", plan.process.cwd())))
}

/// `process.oomScoreAdj`, written before the process enters the container's mounts.
pub fn set_oom_score_adj(p: &Process) -> Result<(), InitError> {
    match p.oom_score_adj() {
        Some(adj) => std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| InitError::Other(format!("write /proc/self/oom_score_adj: {e}"))),
        None => Ok(()),
    }
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

fn ioprio(io: &oci_spec::runtime::LinuxIOPriority) -> Result<(), InitError> {
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

fn scheduler(s: &oci_spec::runtime::Scheduler) -> Result<(), InitError> {
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

fn memory_policy(mp: &oci_spec::runtime::LinuxMemoryPolicy) -> Result<(), InitError> {
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
        for n in crate::process::cpuset::parse(nodes).map_err(InitError::Other)? {
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
