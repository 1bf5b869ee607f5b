//! A pool slot's zygote: a fork of husk in the slot's cgroup that enters new mount, uts, ipc,
//! cgroup and network namespaces (loopback up: network namespaces are the slow ones to make,
//! so a slot's is reused), builds the pool's mounts once with the same [`crate::rootfs`] code a
//! single run uses and pivots into them. Then, per job from the [`super::channel`]: clone a
//! child with new mount, pid and ipc namespaces ([`super::job_child`]), watch it with the same
//! code as a single run ([`super::run::watch`]), and send the verdict back.
//!
//! Jobs share nothing that outlives them: a job's processes die with its pid namespace, its
//! /tmp with its mount namespace, its SysV IPC with its ipc namespace. The slot's cgroup holds
//! one job at a time, and its limits are set by the pool (through the runtime's cgroup code)
//! before each job.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use super::channel::Channel;
use super::limits::Options;
use super::run::{self, Watch};
use super::stats::{self, Stats};
use super::verdict::Verdict;
use crate::spec::Plan;
use crate::sys;

/// Pool → zygote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToZygote {
    /// The zygote is in the slot's cgroup: set up.
    Go,
    /// Run a job (its stdin, stdout and stderr come attached).
    Job { index: usize, options: Box<Options> },
}

/// Zygote → pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromZygote {
    Ready,
    Failed { message: String },
    Done { verdict: Box<Verdict> },
}

/// What a zygote is made from.
pub struct Seed<'a> {
    pub plan: &'a Plan,
    pub base: &'a Options,
    /// The slot's cgroup (relative to each hierarchy's root).
    pub cgroup: &'a Path,
    /// The box's path inside (jobs start there unless they say otherwise).
    pub cwd: PathBuf,
    pub caller_env: &'a [(String, String)],
}

/// The zygote's life; never returns. `join`: the slot's v1 hierarchies to join (the pool
/// moves it itself when it has none, before its Go).
pub fn main(seed: &Seed, chan: Channel, join: Option<crate::cgroups::Join>) -> ! {
    // The pool may die: so does the zygote, and every job with it.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let joined = match join.map(|j| j.enter_v1()) {
        Some(Err(e)) => Err(format!("join the slot's cgroup: {e}")),
        _ => Ok(()),
    };
    match joined.and_then(|()| setup(seed, &chan)) {
        Ok((stats, stacks)) => {
            if chan.send(&FromZygote::Ready, &[]).is_err() {
                sys::exit_now(0);
            }
            serve(seed, &chan, stats, stacks)
        }
        Err(message) => {
            let _ = chan.send(&FromZygote::Failed { message }, &[]);
            sys::exit_now(3)
        }
    }
}

/// The stack of a job's init (which shares the zygote's memory): its set-up runs the
/// runtime's mount and child-path code, well within this.
const INIT_STACK: usize = 1 << 20;

/// The zygote's stacks for its jobs (mapped once; pages touched stay). One job at a time
/// uses them: the last job's init is reaped before the next is made.
struct Stacks {
    init: sys::Stack,
    /// The program's process's, until its exec.
    program: sys::Stack,
}

fn setup(seed: &Seed, chan: &Channel) -> Result<(Stats, Stacks), String> {
    match chan.recv::<ToZygote>() {
        // The zygote is in the slot's cgroup now (the pool moved it, or it moved itself).
        Ok((ToZygote::Go, _)) => {}
        Ok((other, _)) => return Err(format!("expected Go from the pool, got {other:?}")),
        Err(e) => return Err(e.to_string()),
    }
    // Opened before pivot_root hides the hierarchies.
    let stats = Stats::open(stats::host(), seed.cgroup);
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWCGROUP;
    if !seed.base.share_net {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    nix::sched::unshare(flags).map_err(|e| format!("unshare namespaces: {e}"))?;
    if !seed.base.share_net {
        super::net::loopback_up().map_err(|e| format!("bring up loopback: {e}"))?;
    }
    nix::unistd::sethostname("sandbox").map_err(|e| format!("set hostname: {e}"))?;
    let chain = |e: &dyn std::error::Error| crate::init::chain(e);
    crate::rootfs::prepare(seed.plan, false, false, None, false, &mut || Ok(()))
        .map_err(|e| chain(&e))?;
    // Waited for here: once per slot, and the zygote's children are its jobs.
    crate::rootfs::pivot(&seed.plan.rootfs, false)
        .map_err(|e| chain(&e))?
        .reap()
        .map_err(|e| format!("detach the old root: {e}"))?;
    crate::rootfs::finish(&without_paths(&seed.plan.spec), false).map_err(|e| chain(&e))?;
    // Private: nothing a job mounts in its copy may reach the zygote's (or another job's).
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("make the sandbox mounts private: {e}"))?;
    // Every job's program gets an empty bounding set: dropped here once, every job's own drop
    // finds nothing left to do (the zygote keeps its effective capabilities; the bounding set
    // only limits what an exec may gain, and the zygote never execs).
    crate::capabilities::drop_bounding(None).map_err(|e| format!("drop the bounding set: {e}"))?;
    let stack = |n| sys::Stack::new(n).map_err(|e| format!("map a job stack: {e}"));
    let stacks = Stacks {
        init: stack(INIT_STACK)?,
        program: stack(crate::init::reaper::PROGRAM_STACK)?,
    };
    Ok((stats, stacks))
}

/// The spec without its masked and read-only paths: they are all under /proc, and every job
/// mounts a /proc of its own over the zygote's and applies them there (`job_child`). Made in
/// the zygote too they would be hidden from every job yet copied into each job's mount
/// namespace and torn down with it: seven mounts more per job, for nothing.
fn without_paths(spec: &oci_spec::runtime::Spec) -> oci_spec::runtime::Spec {
    let mut spec = spec.clone();
    if let Some(mut l) = spec.linux().clone() {
        l.set_masked_paths(None);
        l.set_readonly_paths(None);
        spec.set_linux(Some(l));
    }
    spec
}

fn serve(seed: &Seed, chan: &Channel, mut stats: Stats, mut stacks: Stacks) -> ! {
    // The last job's init: its program has ended and been reported, but the kernel may still
    // be tearing its namespaces down (see `run_job`).
    let mut ending: Option<i32> = None;
    loop {
        let (msg, fds) = match chan.recv::<ToZygote>() {
            Ok(m) => m,
            // The pool closed the channel (done) or went away.
            Err(_) => {
                reap_ending(&mut ending);
                sys::exit_now(0)
            }
        };
        let v = match msg {
            ToZygote::Job { options, .. } if fds.len() == 3 => {
                run_job(seed, &options, &fds, &mut stats, &mut stacks, &mut ending)
            }
            ToZygote::Job { .. } => Verdict::internal("a job came without its stdio descriptors"),
            ToZygote::Go => Verdict::internal("a second Go from the pool"),
        };
        drop(fds);
        let done = FromZygote::Done {
            verdict: Box::new(v),
        };
        if chan.send(&done, &[]).is_err() {
            sys::exit_now(0);
        }
    }
}

/// Wait until the last job's init is gone (a no-op when it already is).
fn reap_ending(ending: &mut Option<i32>) {
    if let Some(pid) = ending.take() {
        let _ = run::reap(pid);
    }
}

/// One job: clone it into new mount, pid and ipc namespaces, watch it, measure it.
///
/// The verdict goes out as soon as the reaper has reported how the program ended, not when
/// the job's init has exited: that exit is the kernel tearing the job's mount namespace (its
/// /tmp, /proc and masks), ipc and pid namespaces down, and it overlaps with the hand-over of
/// the next job. The init is reaped (`ending`) before the next one is made, so no job's CPU
/// time or memory is charged to the next one in the slot's cgroup, and the stacks are free.
fn run_job(
    seed: &Seed,
    o: &Options,
    stdio: &[OwnedFd],
    stats: &mut Stats,
    stacks: &mut Stacks,
    ending: &mut Option<i32>,
) -> Verdict {
    let cwd = o.chdir.clone().unwrap_or_else(|| seed.cwd.clone());
    if let Some(v) = super::exec_check::check(o, &cwd, &|p: &Path| Some(p.to_path_buf())) {
        return v;
    }
    use nix::fcntl::OFlag;
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC);
    // Non-blocking: it is read once the program has ended, while the init (which holds the
    // write end) may still be alive; whatever the program's exec wrote is in it by then.
    let err_pipe = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK);
    let ((report_r, report_w), (err_r, err_w), (ready_r, ready_w)) =
        match (pipe(), err_pipe, pipe()) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                return Verdict::internal(format!("create a pipe: {e}"))
            }
        };
    let baseline = stats.usage_bytes().unwrap_or(0);
    let oom_base = stats.oom_kills().unwrap_or(0);
    let flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC;
    reap_ending(ending);
    let mut start = super::job_child::Start {
        job: super::job_child::Job {
            plan: seed.plan,
            options: o,
            stdio,
            report_fd: report_w.as_raw_fd(),
            ready_fd: ready_w.as_raw_fd(),
            err_fd: err_w.as_raw_fd(),
            cwd,
            caller_env: seed.caller_env,
        },
        stats: &mut *stats,
        began: None,
        program_stack: &mut stacks.program,
    };
    let arg: *mut super::job_child::Start = &mut start;
    // SAFETY: the init runs `job_child::init` on a stack no other process uses (the last
    // job's init is reaped), with `start`, which lives in this frame until after the
    // handshake. Until its ready byte (written once it has freed all it allocated) or its exit
    // closes the pipe, this process makes only system calls that succeed (close, read) and so
    // touches neither the heap nor errno.
    let made = unsafe {
        sys::clone_vm(
            flags.bits(),
            &mut stacks.init,
            super::job_child::init,
            arg.cast(),
        )
    };
    drop(report_w);
    drop(err_w);
    drop(ready_w);
    let pid = match made {
        Ok(pid) => pid,
        Err(e) => return Verdict::internal(format!("clone the job: {e}")),
    };
    let mut b = [0u8; 1];
    while let Err(nix::errno::Errno::EINTR) = nix::unistd::read(ready_r.as_raw_fd(), &mut b) {}
    // SAFETY: a read of this frame's own variable, which the init wrote through `arg` before
    // its ready byte (or never, when it failed first).
    let began = unsafe { std::ptr::read_volatile(std::ptr::addr_of!(start.began)) };
    drop(start);
    let (started, cpu_base) =
        began.unwrap_or_else(|| (Instant::now(), stats.cpu_ns().unwrap_or(0)));
    let fill = super::fill::Fill::open(pid, o);
    let taken = std::mem::replace(stats, Stats::empty());
    let mut w = Watch {
        pid,
        started,
        cpu_base,
        oom_base,
        stats: taken,
        end: Some(report_r),
    };
    let killed = run::watch(&w, o);
    // Ended by itself with a report: the init is left to finish exiting (see above). Killed,
    // or no report (the init failed or died): reaped now, its own status the fallback.
    let report = match &killed {
        Ok(k) => run::finish(&w, *k).map(|(r, exiting)| {
            if exiting {
                *ending = Some(pid);
            }
            r
        }),
        Err(_) => run::ended(pid, w.end.as_ref()),
    };
    let mut err = [0u8; 4096];
    let err_len = nix::unistd::read(err_r.as_raw_fd(), &mut err).unwrap_or(0);
    let mut v = match (killed, report) {
        (Ok(k), Ok(r)) => run::verdict(o, &mut w, k, &r),
        (Err(e), _) | (_, Err(e)) => Verdict::internal(crate::init::chain(&e)),
    };
    *stats = w.stats;
    if err_len > 0 {
        let m = String::from_utf8_lossy(&err[..err_len]).into_owned();
        v = if m.starts_with("exec ") {
            super::exec_check::exec_failed(m)
        } else {
            Verdict::internal(m)
        };
    }
    fill.judge(&mut v);
    // The zygote's own memory was in the cgroup before the job.
    v.cg_mem_kb = v.cg_mem_kb.map(|c| c.saturating_sub(baseline / 1024));
    v
}
