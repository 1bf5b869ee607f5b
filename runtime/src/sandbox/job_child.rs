//! A batch job's pid 1, inside the zygote's root: fresh /tmp, /dev/shm and /proc of its own
//! ([`Fresh`]), then [`become_job`] starts the program through the runtime's child path
//! (limits, identity, capabilities, no_new_privs, cwd, executable lookup, seccomp, execve) and
//! this process stays its reaper.
//!
//! It shares the zygote's memory ([`crate::sys::clone_vm`]): no copy of the zygote's page
//! tables when it is made, no copy-on-write faults on either side while it sets up, nothing to
//! unmap when it exits — a third of what a job cost. The price is a handshake: the zygote
//! waits on the ready pipe while this process allocates, and this process frees everything it
//! allocated and writes the ready byte only once the program has started; from then on it
//! runs [`reaper::report_when_done`](crate::init::reaper::report_when_done), which touches
//! nothing but its own stack.
//!
//! A job's init is made one of two ways. Fresh ([`init`]): cloned when the job arrives, it
//! makes its file systems, then starts the job. Standing by ([`standby`]): cloned while the
//! slot's previous job runs (on the other CPU), it makes its namespaces and file systems
//! then, and waits for its job ([`hand_over`]); the job's wait is then only its own start.
//! A standby shares the zygote's memory while the zygote runs on, so until its job arrives it
//! makes only raw system calls from strings made once per slot: it allocates nothing and sets
//! no errno.

use std::ffi::CString;
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use serde_json::Value;

use super::limits::{environment, Options};
use super::stats::Stats;
use crate::spec::Plan;
use crate::sys;

/// What a job child needs besides the pool's plan.
pub struct Job<'a> {
    pub plan: &'a Plan,
    pub options: &'a Options,
    /// stdin, stdout, stderr, opened by the pool (a standby's: as it received them).
    pub stdio: [RawFd; 3],
    /// Where the reaper writes the program's [`crate::init::reaper::Report`].
    pub report_fd: RawFd,
    /// Written to once the job's mounts are made: its CPU and wall time count from there, as a
    /// single run's do from the end of the init's set-up.
    pub ready_fd: RawFd,
    /// Where the program's process writes why its exec failed (before it exits 127).
    pub err_fd: RawFd,
    /// The program's working directory (inside).
    pub cwd: PathBuf,
    /// The caller's environment (for `--full-env` and `--env NAME`).
    pub caller_env: &'a [(String, String)],
    /// The plan's seccomp filter is in place already: its standby init installed it while it
    /// waited (see [`Waiting::filter`]), and the program inherits it.
    pub filtered: bool,
}

/// What the zygote hands its job's init, in the memory they share.
pub struct Start<'a> {
    pub job: Job<'a>,
    /// The job's file systems (made already by a standby).
    pub fresh: &'a Fresh,
    /// The slot cgroup's v1 `tasks` files, when the init joins it itself (the zygote is
    /// outside it, see `zygote`); empty when the zygote, and so the init, is in it already.
    pub tasks: &'a [OwnedFd],
    /// The slot's cgroup figures: the init resets the peak and reads the CPU base right
    /// before the program starts.
    pub stats: &'a mut Stats,
    /// Written by the init: when the program was started and the cgroup's CPU time then.
    pub began: Option<(Instant, u64)>,
    /// The program's stack until its exec (the zygote's, mapped once: a fresh one per job
    /// cost a 256 KiB memset from the heap).
    pub program_stack: &'a mut sys::Stack,
}

/// The fresh file systems of a job's mount namespace, as raw `mount` calls on strings made
/// once per slot (the zygote's [`Fresh::new`]): a standby makes them while it shares the
/// zygote's memory with a zygote that runs on.
///
/// Paths, not descriptors (as [`crate::rootfs::paths::mask`] resolves a container's): the
/// mount namespace is the init's own copy of the zygote's, and nothing of the job runs yet,
/// so nothing can have planted a symlink; `/dev/null` is still checked to be the device.
pub struct Fresh {
    /// The tmpfs options of /tmp and the size they name; `None` when the plan binds something
    /// below /tmp (then the init makes /tmp once it has its job, see `fresh_tmp`).
    tmp: Option<(CString, u64)>,
    /// /dev/shm's flags and options (the plan's).
    shm: (libc::c_ulong, CString),
    /// /proc's flags and options (the plan's).
    proc: (libc::c_ulong, CString),
    /// The masked paths a fresh /proc has, and whether each is a directory.
    masks: Vec<(CString, bool)>,
}

impl Fresh {
    /// From the plan and the pool's options, in the zygote once its root is in place (the
    /// masked paths are looked up in its own /proc: the kernel's, the same in every job's).
    pub fn new(plan: &Plan, base: &Options) -> Result<Fresh, String> {
        let c = |s: &str| CString::new(s).map_err(|e| format!("{s:?}: {e}"));
        let of = |dest: &str| -> Result<(libc::c_ulong, CString), String> {
            let m = plan
                .spec
                .mounts()
                .iter()
                .flatten()
                .find(|m| m.destination() == Path::new(dest))
                .ok_or_else(|| format!("the sandbox plan has no {dest} mount"))?;
            let o = crate::rootfs::options::parse(m.options().as_deref().unwrap_or_default())
                .map_err(|e| format!("the {dest} mount's options: {e}"))?;
            Ok((o.flags.bits() as libc::c_ulong, c(&o.data.join(","))?))
        };
        let tmp = match below_tmp(plan) {
            true => None,
            false => Some((c(&tmp_options(base.tmp_size))?, base.tmp_size)),
        };
        let mut masks = Vec::new();
        let paths = plan
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.masked_paths().clone());
        for p in paths.unwrap_or_default() {
            match nix::sys::stat::lstat(p.as_str()) {
                Ok(st) => {
                    let dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                    masks.push((c(&p)?, dir));
                }
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(format!("look up the masked path {p}: {e}")),
            }
        }
        Ok(Fresh {
            tmp,
            shm: of("/dev/shm")?,
            proc: of("/proc")?,
            masks,
        })
    }

    /// Whether an init that made these needs no mount for job `o`: its /tmp is made, at the
    /// job's size.
    pub fn complete_for(&self, o: &Options) -> bool {
        self.tmp
            .as_ref()
            .is_some_and(|(_, size)| *size == o.tmp_size)
    }

    /// Make them: raw system calls only (see the module's documentation). The error names
    /// the step and carries the negative errno.
    fn make(&self) -> Result<(), (&'static str, isize)> {
        let mount = |what: &'static str,
                     src: &std::ffi::CStr,
                     dst: &std::ffi::CStr,
                     fs: Option<&std::ffi::CStr>,
                     flags: libc::c_ulong,
                     data: Option<&std::ffi::CStr>| {
            // SAFETY: mount(2) with NUL-terminated strings that outlive the call (or null).
            let r = unsafe {
                sys::raw_syscall5(
                    libc::SYS_mount,
                    src.as_ptr() as usize,
                    dst.as_ptr() as usize,
                    fs.map_or(0, |f| f.as_ptr() as usize),
                    flags as usize,
                    data.map_or(0, |d| d.as_ptr() as usize),
                )
            };
            if r < 0 {
                Err((what, r))
            } else {
                Ok(())
            }
        };
        // The zygote may die (its pool gone): the job dies with it, its pid namespace with it.
        // SAFETY: prctl with integer arguments.
        let r = unsafe {
            sys::raw_syscall4(
                libc::SYS_prctl,
                libc::PR_SET_PDEATHSIG as usize,
                libc::SIGKILL as usize,
                0,
                0,
            )
        };
        if r < 0 {
            return Err(("set parent death signal", r));
        }
        let (nosuid_nodev, tmpfs) = (
            (libc::MS_NOSUID | libc::MS_NODEV) as libc::c_ulong,
            c"tmpfs",
        );
        if let Some((opts, _)) = &self.tmp {
            mount(
                "mount /tmp",
                tmpfs,
                c"/tmp",
                Some(tmpfs),
                nosuid_nodev,
                Some(opts),
            )?;
        }
        let (flags, opts) = &self.shm;
        mount(
            "mount /dev/shm",
            c"shm",
            c"/dev/shm",
            Some(tmpfs),
            *flags,
            Some(opts),
        )?;
        let (flags, opts) = &self.proc;
        mount(
            "mount /proc",
            c"proc",
            c"/proc",
            Some(c"proc"),
            *flags,
            Some(opts),
        )?;
        if self.masks.is_empty() {
            return Ok(());
        }
        // CVE-2025-31133: bind only the real /dev/null (char 1:3).
        // SAFETY: all-zero is a valid `stat`, which fstatat overwrites.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstatat of a NUL-terminated path into a live `stat`.
        let r = unsafe {
            sys::raw_syscall4(
                libc::SYS_newfstatat,
                libc::AT_FDCWD as usize,
                c"/dev/null".as_ptr() as usize,
                &mut st as *mut libc::stat as usize,
                0,
            )
        };
        let null = st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3);
        if r < 0 || !null {
            return Err((
                "check /dev/null",
                if r < 0 { r } else { -libc::ENODEV as isize },
            ));
        }
        for (path, dir) in &self.masks {
            match dir {
                true => mount("mask", tmpfs, path, Some(tmpfs), libc::MS_RDONLY, None)?,
                false => mount("mask", c"/dev/null", path, None, libc::MS_BIND, None)?,
            }
        }
        Ok(())
    }
}

/// The options of a job's /tmp.
fn tmp_options(size: u64) -> String {
    format!("mode=1777,size={size}")
}

/// Whether the plan binds something below /tmp (which a fresh /tmp would hide).
fn below_tmp(plan: &Plan) -> bool {
    plan.spec.mounts().iter().flatten().any(|m| {
        let d = m.destination();
        d.starts_with("/tmp") && d != Path::new("/tmp")
    })
}

/// The job's init, cloned when the job arrived (the entry of [`crate::sys::clone_vm`]): make
/// its file systems, start the program, report how it ended. Never returns.
pub extern "C" fn init(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: the zygote passes a `Start` that lives in its frame until this process has
    // written the ready byte or exited, and does not touch it meanwhile.
    let start = unsafe { &mut *arg.cast::<Start>() };
    let made = start
        .fresh
        .make()
        .map_err(|(what, e)| format!("{what}: {}", Errno::from_raw(-e as i32)));
    begin(start, made)
}

/// Where a standby waits: what it needs before its job arrives, in the zygote's memory (one
/// per init stack, so it outlives the standby's use of it).
pub struct Waiting {
    pub fresh: *const Fresh,
    /// The program's seccomp filter, installed on the standby itself once its file systems are
    /// made (null: not), so that the job's program, which inherits it, has nothing to compile
    /// on the job's critical path (the kernel's translation and JIT of the judge filter: the
    /// program's fork to exec went from 241 to 167 us, median of 500 jobs with sched events).
    /// Only when nothing the filter blocks (mount) remains to be done after the hand-over: see
    /// `zygote`.
    pub filter: *const crate::seccomp::Compiled,
    /// Its end of the socket its job arrives on ([`hand_over`]).
    pub sock: RawFd,
    /// Descriptors of the zygote's that it got a copy of and must not keep (the running
    /// job's stdio: a pipe would not end while it is open); -1 for none.
    pub close: [RawFd; 8],
}

/// A scheduling policy and its priority. A standby makes its file systems under SCHED_IDLE,
/// on whatever CPU time nothing else wants: on a busy CPU the
/// running job's reaper and program come first (with a normal priority, the standby's set-up
/// delayed the reaper's report of a job that had ended by 0.1-0.3 ms). The zygote returns it
/// to its own policy when its job arrives (the set-up, if not done, then goes at full speed).
#[derive(Clone, Copy)]
pub struct Sched {
    policy: i32,
    priority: i32,
}

impl Sched {
    /// The calling process's (raw system calls: musl has no sched_getscheduler).
    pub fn current() -> Option<Sched> {
        // The kernel's struct sched_param is one int (musl's has more fields).
        let mut param: libc::c_int = 0;
        // SAFETY: sched_getscheduler and sched_getparam of this process, into a live int.
        let (policy, got) = unsafe {
            (
                sys::raw_syscall4(libc::SYS_sched_getscheduler, 0, 0, 0, 0),
                sys::raw_syscall4(
                    libc::SYS_sched_getparam,
                    0,
                    &mut param as *mut libc::c_int as usize,
                    0,
                    0,
                ),
            )
        };
        (policy >= 0 && got == 0).then_some(Sched {
            policy: policy as i32,
            priority: param,
        })
    }

    /// SCHED_IDLE.
    pub const IDLE: Sched = Sched {
        policy: libc::SCHED_IDLE,
        priority: 0,
    };

    /// Make it process `pid`'s (0: the calling process's). `Err` holds -errno.
    pub fn set(self, pid: i32) -> Result<(), isize> {
        let param: libc::c_int = self.priority;
        // SAFETY: sched_setscheduler of this process from a live int (the kernel's
        // struct sched_param).
        let r = unsafe {
            sys::raw_syscall4(
                libc::SYS_sched_setscheduler,
                pid as usize,
                self.policy as usize,
                &param as *const libc::c_int as usize,
                0,
            )
        };
        sys::raw_done(r)
    }
}

impl Default for Waiting {
    fn default() -> Waiting {
        Waiting {
            fresh: std::ptr::null(),
            filter: std::ptr::null(),
            sock: -1,
            close: [-1; 8],
        }
    }
}

/// A standby job init, cloned with its namespaces while another job runs (the entry of
/// [`crate::sys::clone_vm`]): make the file systems, wait for the job ([`hand_over`]), start
/// it as [`init`] does. Until the job arrives only raw system calls (see the module's
/// documentation). Exits when the socket closes, or 127 when its file systems failed (the
/// job then goes to a fresh init, which reports why).
pub extern "C" fn standby(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: the zygote keeps the `Waiting` (and the `Fresh` it points to) for as long as
    // the slot lives, and doesn't write it while a standby may read it.
    let w = unsafe { &*arg.cast::<Waiting>() };
    // What it does until its job arrives waits for idle CPU time (`Sched`).
    let _ = Sched::IDLE.set(0);
    for fd in w.close {
        if fd >= 0 {
            // SAFETY: close of a descriptor number of this process's own table.
            unsafe { sys::raw_syscall4(libc::SYS_close, fd as usize, 0, 0, 0) };
        }
    }
    // SAFETY: as above.
    if unsafe { &*w.fresh }.make().is_err() {
        sys::exit_now(127)
    }
    // SAFETY: as above (the filter is the slot's plan's, which outlives the slot). Without it
    // (it failed), the program installs it as a fresh init's does.
    let filtered =
        !w.filter.is_null() && crate::seccomp::install_raw(unsafe { &*w.filter }).is_ok();
    let Some((start, stdio)) = receive(w.sock) else {
        sys::exit_now(0)
    };
    // SAFETY: the zygote sent the address of a `Start` that lives in its frame until this
    // process has written the ready byte or exited, and waits meanwhile (as for `init`).
    let start = unsafe { &mut *start };
    start.job.stdio = stdio;
    start.job.filtered = filtered;
    begin(start, Ok(()))
}

/// Hand a standby its job: the address of its `Start` and the job's stdio, on the standby's
/// socket. Raw system calls only: from here the standby allocates, and the zygote must not.
pub fn hand_over(sock: RawFd, start: *mut Start, stdio: [RawFd; 3]) -> Result<(), Errno> {
    let mut addr = (start as usize).to_ne_bytes();
    let (mut iov, mut cbuf) = (iovec(&mut addr), [0u64; 4]);
    let msg = message(&mut iov, &mut cbuf);
    // SAFETY: the control buffer holds one header and three descriptors (32 bytes, CMSG_SPACE
    // of 12), aligned for a cmsghdr.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(12) as _;
        std::ptr::copy_nonoverlapping(stdio.as_ptr(), libc::CMSG_DATA(c).cast::<RawFd>(), 3);
    }
    // SAFETY: sendmsg of the message built above; MSG_NOSIGNAL: a dead standby is EPIPE.
    let r = unsafe {
        sys::raw_syscall4(
            libc::SYS_sendmsg,
            sock as usize,
            &msg as *const libc::msghdr as usize,
            libc::MSG_NOSIGNAL as usize,
            0,
        )
    };
    match r {
        8 => Ok(()),
        r if r < 0 => Err(Errno::from_raw(-r as i32)),
        _ => Err(Errno::EIO),
    }
}

/// The hand-over's one buffer: a `Start`'s address.
fn iovec(addr: &mut [u8; 8]) -> libc::iovec {
    libc::iovec {
        iov_base: addr.as_mut_ptr().cast(),
        iov_len: addr.len(),
    }
}

/// A message of `iov` with room in `cbuf` for three descriptors (32 bytes: CMSG_SPACE of 12,
/// aligned for a cmsghdr). Both must outlive its use.
fn message(iov: &mut libc::iovec, cbuf: &mut [u64; 4]) -> libc::msghdr {
    // SAFETY: all-zero is a valid msghdr; the fields set point to the caller's buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is arithmetic.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(12) } as _;
    msg
}

/// The standby's side of [`hand_over`] (raw system calls only); `None` when the socket closed.
fn receive(sock: RawFd) -> Option<(*mut Start<'static>, [RawFd; 3])> {
    let mut addr = [0u8; 8];
    let (mut iov, mut cbuf) = (iovec(&mut addr), [0u64; 4]);
    let mut msg = message(&mut iov, &mut cbuf);
    let r = loop {
        // SAFETY: recvmsg into the buffers above.
        let r = unsafe {
            sys::raw_syscall4(
                libc::SYS_recvmsg,
                sock as usize,
                &mut msg as *mut libc::msghdr as usize,
                libc::MSG_CMSG_CLOEXEC as usize,
                0,
            )
        };
        if r != -(libc::EINTR as isize) {
            break r;
        }
    };
    if r != 8 {
        return None;
    }
    let mut stdio = [-1; 3];
    // SAFETY: the header, if any, lies in `cbuf` (the kernel filled it within controllen).
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null()
            || (*c).cmsg_type != libc::SCM_RIGHTS
            || (*c).cmsg_len as usize != libc::CMSG_LEN(12) as usize
        {
            return None;
        }
        std::ptr::copy_nonoverlapping(libc::CMSG_DATA(c).cast::<RawFd>(), stdio.as_mut_ptr(), 3);
    }
    Some((usize::from_ne_bytes(addr) as *mut Start, stdio))
}

/// Start the job (its file systems made, or why not), then report, or fail with 127.
fn begin(start: &mut Start, made: Result<(), String>) -> libc::c_int {
    let (report_fd, ready_fd, err_fd) = (start.job.report_fd, start.job.ready_fd, start.job.err_fd);
    match made.and_then(|()| setup(start)) {
        Ok(child) => {
            // Every allocation of the set-up is freed (its frames have returned): the zygote
            // may run again.
            // SAFETY: a one-byte write from a static buffer to the zygote's pipe.
            unsafe {
                sys::raw_syscall4(
                    libc::SYS_write,
                    ready_fd as usize,
                    b"R".as_ptr() as usize,
                    1,
                    0,
                )
            };
            crate::init::reaper::report_when_done(child, report_fd)
        }
        Err(e) => {
            // SAFETY: a write from a live buffer to the zygote's error pipe.
            unsafe { libc::write(err_fd, e.as_ptr().cast(), e.len()) };
            drop(e);
            sys::exit_now(127)
        }
    }
}

fn setup(start: &mut Start) -> Result<i32, String> {
    let job = &start.job;
    let m = |what: &str, e: nix::Error| format!("{what}: {e}");
    // Into the slot's cgroup first: the job's CPU time and memory count from here on.
    crate::cgroups::enter_v1(start.tasks).map_err(|e| format!("join the slot's cgroup: {e}"))?;
    match &start.fresh.tmp {
        None => fresh_tmp(job.plan, job.options)?,
        Some((_, size)) if *size != job.options.tmp_size => mount(
            None::<&str>,
            "/tmp",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(tmp_options(job.options.tmp_size).as_str()),
        )
        .map_err(|e| m("size /tmp", e))?,
        Some(_) => {}
    }
    for (i, f) in job.stdio.iter().enumerate() {
        nix::unistd::dup2(*f, i as RawFd).map_err(|e| m("redirect stdio", e))?;
    }
    let stats = &mut *start.stats;
    let began = &mut start.began;
    let stack = &mut *start.program_stack;
    // The job's own set-up is not the program's time: its CPU and wall time count from here,
    // as a single run's do from the end of the init's set-up.
    become_job(&start.job, stack, &mut || {
        stats.reset_peak();
        *began = Some((Instant::now(), stats.cpu_ns().unwrap_or(0)));
    })
}

/// A fresh, bounded /tmp. Binds below /tmp (a box there) would be hidden by it: detached
/// copies are taken first and attached again on top.
fn fresh_tmp(plan: &Plan, o: &Options) -> Result<(), String> {
    let m = |what: &str, e: nix::Error| format!("{what}: {e}");
    const OPEN_TREE_CLONE: u32 = 1;
    const AT_RECURSIVE: u32 = 0x8000;
    let mut under_tmp = Vec::new();
    for mt in plan.spec.mounts().iter().flatten() {
        let dest = mt.destination();
        if dest.starts_with("/tmp") && dest != Path::new("/tmp") {
            let tree = sys::open_tree(
                libc::AT_FDCWD,
                dest,
                OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as u32,
            )
            .map_err(|e| m(&format!("copy the mount at {dest:?}"), e))?;
            under_tmp.push((dest.clone(), tree));
        }
    }
    mount(
        Some("tmpfs"),
        "/tmp",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(tmp_options(o.tmp_size).as_str()),
    )
    .map_err(|e| m("mount /tmp", e))?;
    if !under_tmp.is_empty() {
        let root = crate::rootfs::resolve::open_root(Path::new("/")).map_err(|e| m("open /", e))?;
        for (dest, tree) in under_tmp {
            let target =
                crate::rootfs::resolve::create(&root, &dest, crate::rootfs::resolve::Kind::Dir)
                    .map_err(|e| m(&format!("create {dest:?}"), e))?;
            sys::move_mount_fd(&tree, &target)
                .map_err(|e| m(&format!("attach the mount at {dest:?}"), e))?;
        }
    }
    Ok(())
}

/// The program's process: rlimits, no capabilities, the job's uid/gid, no_new_privs, the
/// working directory (checked to be inside the root, CVE-2024-21626), the executable, seccomp
/// last, execve. `begin` runs right before the program's process is made. Returns its pid once
/// it has exec'd (or failed), with everything allocated here freed.
pub fn become_job(
    job: &Job,
    stack: &mut sys::Stack,
    begin: &mut dyn FnMut(),
) -> Result<i32, String> {
    let o = job.options;
    let limits: Vec<oci_spec::runtime::PosixRlimit> =
        serde_json::from_value(Value::Array(super::plan::rlimits(o, true)))
            .map_err(|e| format!("rlimits: {e}"))?;
    let mut user = oci_spec::runtime::User::default();
    user.set_uid(o.uid);
    user.set_gid(o.gid);
    let mut process = oci_spec::runtime::Process::default();
    process.set_args(Some(o.args.clone()));
    process.set_env(Some(environment(o, job.caller_env)));
    process.set_cwd(job.cwd.clone());
    process.set_user(user);
    process.set_rlimits(Some(limits));
    process.set_capabilities(None);
    process.set_no_new_privileges(Some(true));
    // The runtime's one child path: limits, identity, no capabilities, no_new_privs, the cwd
    // and its CVE-2024-21626 check, the lookup, then seccomp as the last step before execve.
    let prepared = crate::child::prepare(crate::child::Become {
        process: &process,
        linux: None,
        seccomp: job.plan.seccomp.as_ref().filter(|_| !job.filtered),
        userns: false,
        preserve_fds: 0,
        listener: None,
    })
    .map_err(|e| crate::child::chain(&e))?;
    // The program's process: its exec, or why it failed on the job's error pipe and 127.
    // It borrows `prepared`, which this process frees once the program has started.
    let mut exec = || {
        let e = crate::child::chain(&prepared.exec());
        // SAFETY: a write from a live buffer to the pipe the zygote made for this job.
        unsafe { libc::write(job.err_fd, e.as_ptr().cast(), e.len()) };
        drop(e);
        sys::exit_now(127)
    };
    begin();
    crate::init::reaper::start_program(None, stack, &mut exec).map_err(|e| crate::init::chain(&e))
}
