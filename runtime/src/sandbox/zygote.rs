//! A pool slot's zygote: a fork of husk (in the slot's cgroup, or beside it: [`Place`]) that
//! enters new mount, uts, ipc, cgroup and network namespaces (loopback up: network namespaces
//! are the slow ones to make, so a slot's is reused), builds the pool's mounts once with the
//! same [`crate::rootfs`] code a single run uses and pivots into them. Then, per job from the
//! [`super::channel`]: start it in an init with new mount, pid and ipc namespaces
//! ([`super::job_child`]: made when the job arrives, or ahead of it while the job before runs),
//! watch it with the same code as a single run ([`super::run::watch`]), and send the verdict
//! back.
//!
//! Jobs share nothing that outlives them: a job's processes die with its pid namespace, its
//! /tmp and /dev/shm with its mount namespace, its SysV IPC with its ipc namespace; the slot's
//! /dev is read-only. The slot's cgroup holds one job at a time, and its limits are set by the
//! pool (through the runtime's cgroup code) before each job.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use super::channel::Channel;
use super::job_child;
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

/// Where a slot's zygote stands to its cgroup (`Pool::spawn_slot` decides).
pub enum Place {
    /// In the slot's cgroup: born there, moved there by the pool (`None`), or moving itself
    /// into the v1 hierarchies it was not born into (`Some`). Every job's init is then born
    /// into it, and is made when its job arrives.
    Inside(Option<crate::cgroups::Join>),
    /// Outside (in the pool's own cgroups, as husk itself is), with the slot's v1 `tasks`
    /// files: each job's init joins it itself when its job arrives, so an init can be made
    /// while the slot's previous job runs without counting against that job (a standby).
    Beside(Vec<OwnedFd>),
}

/// The zygote's life; never returns.
pub fn main(seed: &Seed, chan: Channel, place: Place) -> ! {
    // The pool may die: so does the zygote, and every job with it.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let (joined, tasks) = match place {
        Place::Inside(join) => match join.map(|j| j.enter_v1()) {
            Some(Err(e)) => (Err(format!("join the slot's cgroup: {e}")), Vec::new()),
            _ => (Ok(()), Vec::new()),
        },
        Place::Beside(tasks) => (Ok(()), tasks),
    };
    match joined.and_then(|()| setup(seed, &chan, tasks)) {
        Ok(z) => {
            if chan.send(&FromZygote::Ready, &[]).is_err() {
                sys::exit_now(0);
            }
            serve(seed, &chan, z)
        }
        Err(message) => {
            let _ = chan.send(&FromZygote::Failed { message }, &[]);
            sys::exit_now(3)
        }
    }
}

/// A job init's own namespaces: its /tmp, /dev/shm and /proc, its processes, its SysV IPC.
const JOB_NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWNS
    .union(CloneFlags::CLONE_NEWPID)
    .union(CloneFlags::CLONE_NEWIPC);

/// The stack of a job's init (which shares the zygote's memory): its set-up runs the
/// runtime's mount and child-path code, well within this.
const INIT_STACK: usize = 1 << 20;

/// The zygote's stacks for its jobs (mapped once; pages touched stay). Two for inits: the
/// running job's, and a standby's (or the next fresh init's) once the one before is reaped.
struct Stacks {
    init: [sys::Stack; 2],
    /// What a standby on the init stack of the same index reads before its job arrives.
    waiting: [job_child::Waiting; 2],
    /// The program's process's, until its exec.
    program: sys::Stack,
}

/// A job's init made ahead, waiting for its job on `sock`.
struct Standby {
    pid: i32,
    sock: OwnedFd,
    stack: usize,
    /// The zygote's ends of its pipes, until its job takes them.
    ends: Option<Ends>,
    /// The write ends' numbers in the standby's descriptor table.
    writes: [RawFd; 3],
}

impl Standby {
    /// Kill it and wait for it (its stack is then free).
    fn discard(self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = run::reap(self.pid);
    }
}

/// The zygote's ends of a job init's pipes.
struct Ends {
    /// The reaper's report of how the program ended.
    report: OwnedFd,
    /// Why the set-up or the program's exec failed (non-blocking, see `pipes`).
    err: OwnedFd,
    /// One byte once the program has started.
    ready: OwnedFd,
}

/// A job's pipes: the zygote's ends and the init's (report, err, ready).
fn pipes() -> Result<(Ends, [OwnedFd; 3]), nix::Error> {
    use nix::fcntl::OFlag;
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC);
    // Non-blocking: it is read once the program has ended, while the init (which holds the
    // write end) may still be alive; whatever the program's exec wrote is in it by then.
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    let (report_r, report_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let ends = Ends {
        report: report_r,
        err: err_r,
        ready: ready_r,
    };
    Ok((ends, [report_w, err_w, ready_w]))
}

/// A slot's zygote between jobs.
struct Zygote {
    stats: Stats,
    stacks: Stacks,
    fresh: job_child::Fresh,
    /// The slot's v1 `tasks` files when the zygote is beside the cgroup ([`Place::Beside`]).
    tasks: Vec<OwnedFd>,
    /// The init stack of the last job's init.
    running: usize,
    /// The last job's init: its program has ended and been reported, but the kernel may
    /// still be tearing its namespaces down (see `run_job`).
    ending: Option<i32>,
    standby: Option<Standby>,
    /// The zygote's scheduling policy (a standby's once its job arrives).
    sched: Option<job_child::Sched>,
    /// The filter a standby installs on itself before its job arrives
    /// ([`job_child::Waiting::filter`]): the plan's, when it has one without a listener and
    /// the standby makes /tmp too (null otherwise). Such a standby can't mount, so it takes
    /// only jobs it made every file system for ([`job_child::Fresh::complete_for`]).
    filter: *const crate::seccomp::Compiled,
}

fn setup(seed: &Seed, chan: &Channel, tasks: Vec<OwnedFd>) -> Result<Zygote, String> {
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
    // Read-only: the zygote's /dev is every job's (each gets a fresh /dev/shm below it), and a
    // job running as root owns it.
    mount(
        None::<&str>,
        "/dev",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID,
        None::<&str>,
    )
    .map_err(|e| format!("make /dev read-only: {e}"))?;
    let fresh = job_child::Fresh::new(seed.plan, seed.base)?;
    let filter = match &seed.plan.seccomp {
        Some(f) if fresh.complete_for(seed.base) && !f.uses_notify() => f as *const _,
        _ => std::ptr::null(),
    };
    let stack = |n| sys::Stack::new(n).map_err(|e| format!("map a job stack: {e}"));
    let stacks = Stacks {
        init: [stack(INIT_STACK)?, stack(INIT_STACK)?],
        waiting: [job_child::Waiting::default(), job_child::Waiting::default()],
        program: stack(crate::init::reaper::PROGRAM_STACK)?,
    };
    Ok(Zygote {
        stats,
        stacks,
        fresh,
        tasks,
        running: 0,
        ending: None,
        standby: None,
        sched: job_child::Sched::current(),
        filter,
    })
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

fn serve(seed: &Seed, chan: &Channel, mut z: Zygote) -> ! {
    loop {
        let (msg, fds) = match chan.recv::<ToZygote>() {
            Ok(m) => m,
            // The pool closed the channel (done) or went away.
            Err(_) => {
                z.reap_ending();
                sys::exit_now(0)
            }
        };
        let v = match msg {
            ToZygote::Job { options, .. } if fds.len() == 3 => {
                z.run_job(seed, chan, &options, &fds)
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

/// A job's init, started: the program runs.
struct Started {
    pid: i32,
    ends: Ends,
    began: Option<(Instant, u64)>,
}

impl Zygote {
    /// Wait until the last job's init is gone (a no-op when it already is).
    fn reap_ending(&mut self) {
        if let Some(pid) = self.ending.take() {
            let _ = run::reap(pid);
        }
    }

    /// One job: its init (the standby, or a fresh one in new mount, pid and ipc namespaces)
    /// starts it; watch it, measure it.
    ///
    /// The verdict goes out as soon as the reaper has reported how the program ended, not
    /// when the job's init has exited: that exit is the kernel tearing the job's mount
    /// namespace (its /tmp, /proc and masks), ipc and pid namespaces down, and it overlaps
    /// with the hand-over of the next job. The init is reaped (`ending`) before the next one
    /// starts, so no job's CPU time or memory is charged to the next one in the slot's
    /// cgroup, and its stack is free.
    fn run_job(&mut self, seed: &Seed, chan: &Channel, o: &Options, stdio: &[OwnedFd]) -> Verdict {
        let cwd = o.chdir.clone().unwrap_or_else(|| seed.cwd.clone());
        if let Some(v) = super::exec_check::check(o, &cwd, &|p: &Path| Some(p.to_path_buf())) {
            return v;
        }
        self.reap_ending();
        let baseline = self.stats.usage_bytes().unwrap_or(0);
        let oom_base = self.stats.oom_kills().unwrap_or(0);
        let stdio = [
            stdio[0].as_raw_fd(),
            stdio[1].as_raw_fd(),
            stdio[2].as_raw_fd(),
        ];
        let mut started = None;
        let mut standby = self.standby.take();
        // Filtered, it can't make this job's /tmp: the job goes to a fresh init.
        if !self.filter.is_null() && !self.fresh.complete_for(o) {
            if let Some(sb) = standby.take() {
                sb.discard();
            }
        }
        if let Some(mut sb) = standby {
            match self.start(seed, o, stdio, &cwd, Some(&mut sb)) {
                Ok(s) => {
                    self.running = sb.stack;
                    started = Some(s);
                }
                // Dead (its file systems failed): the job goes to a fresh init.
                Err(_) => sb.discard(),
            }
        }
        let s = match started {
            Some(s) => s,
            None => match self.start(seed, o, stdio, &cwd, None) {
                Ok(s) => s,
                Err(e) => return Verdict::internal(e),
            },
        };
        // The next job's init, made while this one's program runs.
        if !self.tasks.is_empty() && self.sched.is_some() {
            let e = &s.ends;
            let (report, err, ready) =
                (e.report.as_raw_fd(), e.err.as_raw_fd(), e.ready.as_raw_fd());
            let close = [stdio[0], stdio[1], stdio[2], report, err, ready, chan.fd()];
            self.standby = self.make_standby(close);
        }
        let pid = s.pid;
        let (started, cpu_base) = s
            .began
            .unwrap_or_else(|| (Instant::now(), self.stats.cpu_ns().unwrap_or(0)));
        let fill = super::fill::Fill::open(pid, o);
        let taken = std::mem::replace(&mut self.stats, Stats::empty());
        let mut w = Watch {
            pid,
            started,
            cpu_base,
            oom_base,
            stats: taken,
            end: Some(s.ends.report),
        };
        let killed = run::watch(&w, o);
        // Ended by itself with a report: the init is left to finish exiting (see above).
        // Killed, or no report (the init failed or died): reaped now, its own status the
        // fallback.
        let report = match &killed {
            Ok(k) => run::finish(&w, *k).map(|(r, exiting)| {
                if exiting {
                    self.ending = Some(pid);
                }
                r
            }),
            Err(_) => run::ended(pid, w.end.as_ref()),
        };
        let mut err = [0u8; 4096];
        let err_len = nix::unistd::read(s.ends.err.as_raw_fd(), &mut err).unwrap_or(0);
        let mut v = match (killed, report) {
            (Ok(k), Ok(r)) => run::verdict(o, &mut w, k, &r),
            (Err(e), _) | (_, Err(e)) => Verdict::internal(crate::init::chain(&e)),
        };
        self.stats = w.stats;
        if err_len > 0 {
            let m = String::from_utf8_lossy(&err[..err_len]).into_owned();
            v = if m.starts_with("exec ") {
                super::exec_check::exec_failed(m)
            } else {
                Verdict::internal(m)
            };
        }
        fill.judge(&mut v);
        // What was in the cgroup before the job (the zygote, when it is inside).
        v.cg_mem_kb = v.cg_mem_kb.map(|c| c.saturating_sub(baseline / 1024));
        v
    }

    /// Start job `o` in `standby`, or in a fresh init; `Err` when neither could (a standby
    /// that refused its job: dead).
    fn start(
        &mut self,
        seed: &Seed,
        o: &Options,
        stdio: [RawFd; 3],
        cwd: &Path,
        mut standby: Option<&mut Standby>,
    ) -> Result<Started, String> {
        // The standby's pipes are the job's (taken here: after the hand-over this process
        // must not allocate).
        let (ends, writes, ours) = match standby.as_deref_mut() {
            Some(sb) => {
                let ends = sb
                    .ends
                    .take()
                    .ok_or("the job's standby init has no pipes")?;
                (ends, sb.writes, None)
            }
            None => {
                let (ends, w) = pipes().map_err(|e| format!("create a pipe: {e}"))?;
                let nums = [w[0].as_raw_fd(), w[1].as_raw_fd(), w[2].as_raw_fd()];
                (ends, nums, Some(w))
            }
        };
        let stack = self.running;
        let mut start = job_child::Start {
            job: job_child::Job {
                plan: seed.plan,
                options: o,
                stdio,
                report_fd: writes[0],
                err_fd: writes[1],
                ready_fd: writes[2],
                cwd: cwd.to_path_buf(),
                caller_env: seed.caller_env,
                filtered: false,
            },
            fresh: &self.fresh,
            tasks: &self.tasks,
            stats: &mut self.stats,
            began: None,
            program_stack: &mut self.stacks.program,
        };
        let arg: *mut job_child::Start = &mut start;
        let pid = match &standby {
            // From here until its ready byte (or its exit) the standby allocates: this process
            // makes only system calls that succeed (read, close) and so touches neither the
            // heap nor errno.
            Some(sb) => {
                // Out of SCHED_IDLE (`job_child::Sched`); without the zygote's own policy to
                // give it, it keeps SCHED_IDLE (and so does the program).
                let policy = self
                    .sched
                    .ok_or("no scheduling policy for the job's init")?;
                policy
                    .set(sb.pid)
                    .map_err(|e| format!("leave SCHED_IDLE: {}", Errno::from_raw(-e as i32)))?;
                job_child::hand_over(sb.sock.as_raw_fd(), arg, stdio)
                    .map_err(|e| format!("hand the job to its init: {e}"))?;
                sb.pid
            }
            None => {
                // SAFETY: the init runs `job_child::init` on a stack no other process uses
                // (the last job's init is reaped, a standby is on the other), with `start`,
                // which lives in this frame until after the handshake. Until its ready byte
                // (written once it has freed all it allocated) or its exit closes the pipe,
                // this process makes only system calls that succeed (close, read) and so
                // touches neither the heap nor errno.
                let made = unsafe {
                    sys::clone_vm(
                        JOB_NAMESPACES.bits(),
                        &mut self.stacks.init[stack],
                        job_child::init,
                        arg.cast(),
                    )
                };
                drop(ours);
                made.map_err(|e| format!("clone the job: {e}"))?
            }
        };
        let mut b = [0u8; 1];
        while let Err(nix::errno::Errno::EINTR) = nix::unistd::read(ends.ready.as_raw_fd(), &mut b)
        {
        }
        // SAFETY: a read of this frame's own variable, which the init wrote through `arg`
        // before its ready byte (or never, when it failed first).
        let began = unsafe { std::ptr::read_volatile(std::ptr::addr_of!(start.began)) };
        drop(start);
        Ok(Started { pid, ends, began })
    }

    /// A standby for the next job: cloned into new mount, pid and ipc namespaces on the init
    /// stack the running job's init doesn't use; it makes its file systems while this job
    /// runs (`job_child::standby`). `close`: what it must not keep of this process's (the
    /// running job's stdio and pipes, the pool's channel). `None` when it can't be made (the
    /// next job then gets a fresh init).
    fn make_standby(&mut self, close: [RawFd; 7]) -> Option<Standby> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let stack = 1 - self.running;
        let (ends, writes) = pipes().ok()?;
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .ok()?;
        let w = &mut self.stacks.waiting[stack];
        w.fresh = &self.fresh;
        w.filter = self.filter;
        w.sock = theirs.as_raw_fd();
        w.close[..7].copy_from_slice(&close);
        w.close[7] = ours.as_raw_fd();
        let arg: *mut job_child::Waiting = w;
        // The clone at the zygote's own priority: under SCHED_IDLE it was 0.08 ms a job
        // faster, but a job that keeps every CPU busy starved it, and with it the start of
        // that job's watch (a 0.05 s CPU limit overshot by 40 ms). The standby itself waits
        // under SCHED_IDLE (`job_child::Sched`).
        // SAFETY: the standby runs on a stack no other process uses (the last job's init on
        // it is reaped), reads only `waiting` and the `Fresh` it points to (kept, unchanged,
        // for the slot's life) and makes only raw system calls until `hand_over`: it shares
        // no heap or errno with this process, which goes on meanwhile.
        let made = unsafe {
            sys::clone_vm(
                JOB_NAMESPACES.bits(),
                &mut self.stacks.init[stack],
                job_child::standby,
                arg.cast(),
            )
        };
        let pid = made.ok()?;
        let nums = [
            writes[0].as_raw_fd(),
            writes[1].as_raw_fd(),
            writes[2].as_raw_fd(),
        ];
        drop(writes);
        drop(theirs);
        Some(Standby {
            pid,
            sock: ours,
            stack,
            ends: Some(ends),
            writes: nums,
        })
    }
}
