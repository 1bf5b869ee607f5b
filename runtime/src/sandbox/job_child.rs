//! A batch job's pid 1, inside the zygote's root: a fresh /tmp and /proc of its own, then
//! [`become_job`] starts the program through the runtime's child path (limits, identity,
//! capabilities, no_new_privs, cwd, executable lookup, seccomp, execve) and this process
//! stays its reaper.
//!
//! It shares the zygote's memory ([`crate::sys::clone_vm`]): no copy of the zygote's page
//! tables when it is made, no copy-on-write faults on either side while it sets up, nothing to
//! unmap when it exits — a third of what a job cost. The price is a handshake: the zygote
//! waits on the ready pipe while this process allocates, and this process frees everything it
//! allocated and writes the ready byte only once the program has started; from then on it
//! runs [`reaper::report_when_done`](crate::init::reaper::report_when_done), which touches
//! nothing but its own stack.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// stdin, stdout, stderr, opened by the pool.
    pub stdio: &'a [OwnedFd],
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
}

/// What the zygote hands its job's init, in the memory they share.
pub struct Start<'a> {
    pub job: Job<'a>,
    /// The slot's cgroup figures: the init resets the peak and reads the CPU base right
    /// before the program starts.
    pub stats: &'a mut Stats,
    /// Written by the init: when the program was started and the cgroup's CPU time then.
    pub began: Option<(Instant, u64)>,
    /// The program's stack until its exec (the zygote's, mapped once: a fresh one per job
    /// cost a 256 KiB memset from the heap).
    pub program_stack: &'a mut sys::Stack,
}

/// The job's init, the entry of [`crate::sys::clone_vm`]: set up, start the program, report how
/// it ended. Never returns.
pub extern "C" fn init(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: the zygote passes a `Start` that lives in its frame until this process has
    // written the ready byte or exited, and does not touch it meanwhile.
    let start = unsafe { &mut *arg.cast::<Start>() };
    let (report_fd, ready_fd, err_fd) = (start.job.report_fd, start.job.ready_fd, start.job.err_fd);
    match setup(start) {
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
    // The zygote may die (its pool gone): the job dies with it, and its pid namespace with it.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| m("set parent death signal", e))?;
    fresh_tmp(job.plan, job.options)?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        // Read-only, as a single run's (see plan::mounts).
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(super::plan::PROC_OPTIONS),
    )
    .map_err(|e| m("mount /proc", e))?;
    let root = crate::rootfs::resolve::open_root(Path::new("/")).map_err(|e| m("open /", e))?;
    if let Some(l) = job.plan.spec.linux() {
        crate::rootfs::paths::mask(&root, l.masked_paths().as_deref().unwrap_or_default())
            .map_err(|e| crate::init::chain(&e))?;
    }
    drop(root);
    for (i, f) in job.stdio.iter().enumerate() {
        nix::unistd::dup2(f.as_raw_fd(), i as RawFd).map_err(|e| m("redirect stdio", e))?;
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
        Some(format!("mode=1777,size={}", o.tmp_size).as_str()),
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
        seccomp: job.plan.seccomp.as_ref(),
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
