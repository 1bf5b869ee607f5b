//! The parent half of container creation: one `clone` with the namespace flags, then the sync
//! protocol of [`super::sync`] until the init reports `Ready` (`// sync N` marks each exchange,
//! matching [`crate::init`]).
//!
//! Fast path: when no namespace but pid/time is joined by path, every new namespace comes from
//! the clone flags and the child is PID 1 directly. Joined pid and time namespaces are entered by
//! the parent itself before the clone (setns of those only affects children) and left right
//! after. Only when a user namespace must be joined, or created after joining others (so that it
//! owns the new ones, as runc orders it), does the child set up namespaces itself and fork once
//! more for a new pid namespace.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::{idmap, ProcessError};
use crate::child::ns::setns_path;
use crate::child::sync::{self, Channel, Msg, SyncError};
use crate::init::{self, Init};
use crate::spec::Plan;
use crate::sys;

/// What the caller does at the two points of creation that need it.
pub trait Observer {
    /// The init exists (its pid); record it before anything can fail half-way.
    fn cloned(&mut self, pid: i32) -> Result<(), String>;
    /// The init's pid changed (it was forked into a new pid namespace).
    fn repid(&mut self, pid: i32) -> Result<(), String> {
        self.cloned(pid)
    }
    /// The init's namespaces and mounts exist: run prestart and createRuntime hooks.
    fn hooks(&mut self, pid: i32) -> Result<(), String>;
    /// The init runs (sync 1): finish its cgroup, move it in when `move_needed` (it could not
    /// join by itself), and do whatever else must precede its set-up. Returns v1 `tasks`
    /// files for the init to join through (they go to it with `CgroupDone`).
    fn join_cgroup(&mut self, pid: i32, move_needed: bool) -> Result<Vec<OwnedFd>, String>;
    /// Right after [`Observer::join_cgroup`]: the files of a reaper whose
    /// [`Reporting::late`](crate::init::reaper::Reporting::late) is set, (CPU usage, memory
    /// peak), for the init's `Msg::Stats`. `None` sends nothing.
    fn stats_files(&mut self) -> Result<Option<StatsFiles>, String> {
        Ok(None)
    }
}

/// A sandbox's cgroup files for its reaper (see [`Observer::stats_files`]).
#[derive(Debug, Default)]
pub struct StatsFiles {
    pub cpu: Option<OwnedFd>,
    pub peak: Option<OwnedFd>,
}

/// What the container init gets besides the plan.
pub struct Options {
    /// `exec.fifo` of the state directory; `None` to exec without waiting for `start`.
    pub fifo: Option<PathBuf>,
    /// The connected `--console-socket`.
    pub console: Option<OwnedFd>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub id: String,
    /// Join a new session keyring (unless `--no-new-keyring`), so containers don't share the
    /// caller's keys.
    pub new_keyring: bool,
    /// Descriptors to join the cgroup without the parent's slow `cgroup.procs` write; `None`
    /// makes the parent call [`Observer::join_cgroup`].
    pub cgroup_join: Option<crate::cgroups::Join>,
    /// Keep a reaper as the pid namespace's init and run the program as its child, reporting
    /// the program's wait status here (`husk sandbox`: pid 1 ignores signals it has no
    /// handler for, so a program that is pid 1 can't be killed by its own `kill -SEGV $$`).
    pub status: Option<crate::init::reaper::Reporting>,
    /// The seccomp agent's socket, connected (`linux.seccomp.listenerPath`).
    pub seccomp_listener: Option<OwnedFd>,
    /// Descriptors of the caller's the init closes first thing (the state directory's lock).
    pub close_in_child: Vec<std::os::fd::RawFd>,
}

fn time_flag() -> CloneFlags {
    CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)
}

/// True when the child must enter namespaces itself (see the module doc).
fn child_sets_up(plan: &Plan) -> bool {
    let ns = &plan.namespaces;
    let other_joins = ns
        .join
        .iter()
        .any(|(f, _)| *f != CloneFlags::CLONE_NEWPID && *f != time_flag());
    ns.joins(CloneFlags::CLONE_NEWUSER).is_some()
        || (ns.new.contains(CloneFlags::CLONE_NEWUSER) && other_joins)
}

/// The init, once it reported `Ready`.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    /// The parent's end of the sync socket: an init without a start barrier reports a failed
    /// `execve` on it before it exits (`Channel::pending_error`, as `run` reads it).
    pub chan: Channel,
}

/// Create the container init; returns it once it reported `Ready`.
pub fn spawn(plan: &Plan, opts: Options, obs: &mut dyn Observer) -> Result<Spawned, ProcessError> {
    let (parent_end, child_end) = sync::pair()?;
    let fifo = match &opts.fifo {
        Some(p) => Some(
            crate::sys::open(
                p,
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| ProcessError::Step {
                step: "open exec.fifo",
                source: e,
            })?,
        ),
        None => None,
    };
    let child_setup = child_sets_up(plan);
    let ns = &plan.namespaces;
    // The cgroup namespace is created by the init after it joined its cgroup (so that the
    // cgroup is the namespace's root); the time namespace before the clone (its offsets must be
    // written before any process is in it).
    let flags = if child_setup {
        CloneFlags::empty()
    } else {
        ns.new - CloneFlags::CLONE_NEWCGROUP - time_flag()
    };
    let restore = enter_for_children(plan)?;
    let cpus = nix::sched::sched_getaffinity(Pid::from_raw(0)).ok();
    let parent_pid = nix::unistd::getpid().as_raw();
    // SAFETY: the runtime is single-threaded (DESIGN §2); the child runs `init::run` and never
    // returns to the caller's frames: it ends in execve or _exit.
    let (cloned, join) =
        unsafe { crate::cgroups::fork_joining(flags.bits() as u64, opts.cgroup_join) };
    // No join left (no CLONE_INTO_CGROUP here, or no cgroup): the parent moves the child.
    let parent_joins = join.is_none();
    match cloned {
        Ok(0) => {
            drop(parent_end);
            for fd in &opts.close_in_child {
                let _ = nix::unistd::close(*fd);
            }
            let init = Init {
                plan,
                chan: child_end,
                fifo,
                console: opts.console,
                no_pivot: opts.no_pivot,
                preserve_fds: opts.preserve_fds,
                new_keyring: opts.new_keyring,
                status: opts.status,
                id: opts.id,
                parent_pid,
                child_setup,
                cloned_flags: flags,
                cgroup_join: join,
                seccomp_listener: opts.seccomp_listener,
                cpus,
            };
            init::run(init)
        }
        Ok(pid) => {
            // The init's set-up (mounts) beside the parent's (cgroup), not after it; it
            // returns to `cpus` on `CgroupDone`.
            if let Some(c) = &cpus {
                sys::run_beside_caller(pid, c);
            }
            let restored = restore.leave();
            drop(child_end);
            drop(fifo);
            drop(opts.console);
            let mut pid = pid;
            drop(join);
            let r = restored.and_then(|()| parent(plan, &parent_end, &mut pid, obs, parent_joins));
            if let Err(mut e) = r {
                // A send that failed because the init already died hides its reason: it may
                // still be waiting on the socket.
                if matches!(e, ProcessError::Sync(_)) {
                    if let Some(f) = parent_end.pending_error() {
                        e = ProcessError::Init(f);
                    }
                }
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = waitpid(Pid::from_raw(pid), None);
                return Err(e);
            }
            Ok(Spawned {
                pid,
                chan: parent_end,
            })
        }
        Err(e) => {
            let _ = restore.leave();
            Err(ProcessError::Step {
                step: "clone",
                source: e,
            })
        }
    }
}

/// The parent's side of the protocol.
fn parent(
    plan: &Plan,
    chan: &Channel,
    pid: &mut i32,
    obs: &mut dyn Observer,
    joins: bool,
) -> Result<(), ProcessError> {
    // sync 1: the cgroup, before the init runs anything of the user's. First, because a v1
    // cgroup move can wait for an RCU grace period (milliseconds) that the init spends on its
    // mounts meanwhile; recording the pid can wait that long (until then the init dies with us).
    let tasks = obs
        .join_cgroup(*pid, joins)
        .map_err(ProcessError::Observer)?;
    chan.send_fds(&Msg::CgroupDone, &tasks)?;
    drop(tasks);
    if let Some(f) = obs.stats_files().map_err(ProcessError::Observer)? {
        let msg = Msg::Stats {
            cpu: f.cpu.is_some(),
            peak: f.peak.is_some(),
        };
        let fds: Vec<OwnedFd> = [f.cpu, f.peak].into_iter().flatten().collect();
        chan.send_fds(&msg, &fds)?;
    }
    obs.cloned(*pid).map_err(ProcessError::Observer)?;
    loop {
        match chan.recv() {
            // sync 2: id maps for the new user namespace.
            Ok(Msg::IdMapsPlease) => {
                idmap::write(*pid, plan)?;
                chan.send(&Msg::IdMapsDone)?;
            }
            // sync 3: the init was forked into its pid namespace; reap the intermediate.
            Ok(Msg::Pid { pid: new }) => {
                let _ = waitpid(Pid::from_raw(*pid), None);
                *pid = new;
                obs.repid(new).map_err(ProcessError::Observer)?;
            }
            // sync 4: mounts are done, pivot_root is next.
            Ok(Msg::HooksPlease) => {
                obs.hooks(*pid).map_err(ProcessError::Observer)?;
                chan.send(&Msg::HooksDone)?;
            }
            // sync 5.
            Ok(Msg::Ready) => return Ok(()),
            Ok(Msg::Error(f)) => return Err(ProcessError::Init(f)),
            Ok(other) => {
                return Err(SyncError::Unexpected {
                    expected: "a request from init",
                    got: other,
                }
                .into())
            }
            Err(SyncError::Closed) => {
                return Err(ProcessError::Init(sync::Failure::message(exit_reason(
                    *pid,
                ))))
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn exit_reason(pid: i32) -> String {
    match waitpid(Pid::from_raw(pid), None) {
        Ok(WaitStatus::Exited(_, code)) => {
            format!("container init exited with status {code} before it was ready")
        }
        Ok(WaitStatus::Signaled(_, sig, _)) => {
            format!("container init was killed by {sig} before it was ready")
        }
        _ => "container init exited before it was ready".into(),
    }
}

/// Namespaces the parent enters for its children only, and how to leave them.
struct Restore {
    pid: Option<OwnedFd>,
    time: Option<OwnedFd>,
}

fn enter_for_children(plan: &Plan) -> Result<Restore, ProcessError> {
    let ns = &plan.namespaces;
    let mut r = Restore {
        pid: None,
        time: None,
    };
    let own = |name: &str| {
        crate::sys::open(
            format!("/proc/self/ns/{name}").as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| ProcessError::Step {
            step: "open own namespace",
            source: e,
        })
    };
    if let Some(path) = ns.joins(CloneFlags::CLONE_NEWPID) {
        r.pid = Some(own("pid_for_children")?);
        setns_path(path, CloneFlags::CLONE_NEWPID)?;
    }
    if let Some(path) = ns.joins(time_flag()) {
        r.time = Some(own("time_for_children")?);
        setns_path(path, time_flag())?;
    } else if ns.new.contains(time_flag()) {
        r.time = Some(own("time_for_children")?);
        nix::sched::unshare(time_flag()).map_err(|e| ProcessError::Step {
            step: "unshare time namespace",
            source: e,
        })?;
        write_time_offsets(plan)?;
    }
    Ok(r)
}

impl Restore {
    fn leave(self) -> Result<(), ProcessError> {
        for (fd, flag) in [
            (self.pid, CloneFlags::CLONE_NEWPID),
            (self.time, time_flag()),
        ] {
            if let Some(fd) = fd {
                nix::sched::setns(fd.as_fd(), flag).map_err(|e| ProcessError::Step {
                    step: "return to own namespace",
                    source: e,
                })?;
            }
        }
        Ok(())
    }
}

fn write_time_offsets(plan: &Plan) -> Result<(), ProcessError> {
    let Some(offsets) = plan
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
    else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, o) in offsets {
        text.push_str(&format!(
            "{clock} {} {}\n",
            o.secs().unwrap_or(0),
            o.nanosecs().unwrap_or(0)
        ));
    }
    std::fs::write("/proc/self/timens_offsets", text).map_err(|e| ProcessError::Io {
        what: "write /proc/self/timens_offsets",
        source: e,
    })
}
