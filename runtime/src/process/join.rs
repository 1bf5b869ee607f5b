//! A new process in a running container (`husk exec`): the parent enters the container's pid
//! and time namespaces for its children, forks once (so the process is its direct child and
//! PID n of the container), and the child joins the remaining namespaces, user first.
//!
//! ```text
//!  child                                  parent (husk exec)
//!                                         [fork; add the child to the container's cgroup]
//!                               <-- CgroupDone
//!  [setns; crate::child::prepare] Ready -->
//!  [crate::child's exec]   (socket closes at execve: CLOEXEC)
//!                                         [--pid-file; wait or return (--detach)]
//!  (any step, the exec too) Error{failure} -->
//! ```

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{Linux, Process};

use super::ProcessError;
use crate::child::sync::{self, Channel, Failure, Msg, SyncError};
use crate::child::{self as become_, step, ChildError};
use crate::seccomp::Compiled;
use crate::sys;

/// A process to start in the container of `init_pid`.
pub struct Join<'a> {
    pub init_pid: i32,
    pub process: &'a Process,
    pub linux: Option<&'a Linux>,
    pub seccomp: Option<&'a Compiled>,
    pub console: Option<OwnedFd>,
    pub preserve_fds: u32,
    /// Descriptors for the cheap cgroup join; `None` moves the process with `join_cgroup`.
    pub cgroup_join: Option<crate::cgroups::Join>,
    /// The seccomp agent's connected socket and the container's state for it.
    pub seccomp_listener: Option<(OwnedFd, oci_spec::runtime::State)>,
}

/// The namespaces of `init_pid` that differ from ours, opened now (before any of them is
/// entered), user first and mount last.
fn open_namespaces(init_pid: i32) -> Result<Vec<(CloneFlags, OwnedFd)>, ProcessError> {
    let order = [
        ("user", CloneFlags::CLONE_NEWUSER),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("time", CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    let mut out = Vec::new();
    for (name, flag) in order {
        let theirs = format!("/proc/{init_pid}/ns/{name}");
        let (Ok(a), Ok(b)) = (
            std::fs::metadata(&theirs),
            std::fs::metadata(format!("/proc/self/ns/{name}")),
        ) else {
            continue;
        };
        use std::os::unix::fs::MetadataExt;
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let fd = sys::open(
            theirs.as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| ProcessError::Namespace {
            path: theirs.into(),
            source: e,
        })?;
        out.push((flag, fd));
    }
    Ok(out)
}

/// Start the process; returns its pid once it is about to exec. `join_cgroup` moves it into the
/// container's cgroup before it runs anything of the user's.
pub fn spawn(
    mut j: Join,
    join_cgroup: &mut dyn FnMut(i32) -> Result<(), String>,
) -> Result<i32, ProcessError> {
    let nss = open_namespaces(j.init_pid)?;
    let (parent_end, child_end) = sync::pair()?;
    // setns of pid and time namespaces only affects children: enter them here, fork, leave.
    let own_pid = sys::open(
        "/proc/self/ns/pid_for_children",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| ProcessError::Step {
        step: "open own pid namespace",
        source: e,
    })?;
    let own_time = sys::open(
        "/proc/self/ns/time_for_children",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok();
    let time = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
    // Unprivileged, the container's pid namespace can only be entered from inside its user
    // namespace: the child joins that first, then pid and time, and forks once more (as runc's
    // nsexec does). Root enters them here, and the process is our child directly.
    let userns_first = !nix::unistd::geteuid().is_root()
        && nss.iter().any(|(f, _)| *f == CloneFlags::CLONE_NEWUSER);
    if userns_first {
        // The process will be our grandchild: adopt it when the intermediate exits.
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| ProcessError::Step {
            step: "become child subreaper",
            source: e,
        })?;
    } else {
        let for_children = |f: &CloneFlags| *f == CloneFlags::CLONE_NEWPID || *f == time;
        for (flag, fd) in nss.iter().filter(|(f, _)| for_children(f)) {
            nix::sched::setns(fd.as_fd(), *flag).map_err(|e| ProcessError::Step {
                step: "enter the container's pid/time namespace",
                source: e,
            })?;
        }
    }
    // The cheap cgroup join of `crate::cgroups::Join` when the cgroup lets us open it.
    // SAFETY: single-threaded (DESIGN §2); the child ends in execve or _exit.
    let (forked, cg) = unsafe { crate::cgroups::fork_joining(0, j.cgroup_join.take()) };
    let move_needed = cg.is_none();
    if let Ok(0) = forked {
        drop(parent_end);
        // First thing: this process is visible in the container's pid namespace already.
        let _ = nix::sys::prctl::set_dumpable(false);
        let e = match cg.as_ref().map(|c| c.enter_v1()) {
            Some(Err(e)) => ChildError::Other(format!("join the container's cgroup: {e}")),
            _ => {
                let listener = j.seccomp_listener.take();
                child(&j, &nss, &child_end, listener, userns_first)
            }
        };
        let _ = child_end.send(&Msg::Error(Failure::new(e.stage(), &e)));
        // Exit 1, as runc's init: engines map the reason the parent reports, not this status.
        sys::exit_now(1);
    }
    let _ = nix::sched::setns(own_pid.as_fd(), CloneFlags::CLONE_NEWPID);
    if let Some(t) = &own_time {
        let _ = nix::sched::setns(t.as_fd(), time);
    }
    let mut pid = forked.map_err(|e| ProcessError::Step {
        step: "fork",
        source: e,
    })?;
    drop(child_end);
    let r = (|| {
        if move_needed {
            join_cgroup(pid).map_err(ProcessError::Observer)?;
        }
        parent_end.send(&Msg::CgroupDone)?;
        // (Pid, when the child forked into the pid namespace,) Ready, then the socket closes
        // when execve succeeds (it is close-on-exec), or an Error says why the exec failed.
        let mut msg = parent_end.recv();
        if let Ok(Msg::Pid { pid: grandchild }) = msg {
            let _ = waitpid(Pid::from_raw(pid), None);
            pid = grandchild;
            msg = parent_end.recv();
        }
        match msg {
            Ok(Msg::Ready) => {}
            Ok(Msg::Error(f)) => return Err(ProcessError::Init(f)),
            Ok(got) => {
                return Err(SyncError::Unexpected {
                    expected: "Ready",
                    got,
                }
                .into())
            }
            Err(e) => return Err(e.into()),
        }
        match parent_end.recv() {
            Err(SyncError::Closed) => Ok(()),
            Ok(Msg::Error(f)) => Err(ProcessError::Init(f)),
            Ok(got) => Err(SyncError::Unexpected {
                expected: "the exec",
                got,
            }
            .into()),
            Err(e) => Err(e.into()),
        }
    })();
    if let Err(mut e) = r {
        if let Some(f) = parent_end.pending_error() {
            e = ProcessError::Init(f);
        }
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(pid), None);
        return Err(e);
    }
    Ok(pid)
}

fn child(
    j: &Join,
    nss: &[(CloneFlags, OwnedFd)],
    chan: &Channel,
    listener: Option<(OwnedFd, oci_spec::runtime::State)>,
    userns_first: bool,
) -> ChildError {
    match set_up(j, nss, chan, listener, userns_first) {
        Ok(prepared) => prepared.exec(),
        Err(e) => e,
    }
}

/// Into the container's namespaces, then [`crate::child::prepare`]; Ready once prepared.
fn set_up<'a>(
    j: &Join<'a>,
    nss: &[(CloneFlags, OwnedFd)],
    chan: &Channel,
    listener: Option<(OwnedFd, oci_spec::runtime::State)>,
    userns_first: bool,
) -> Result<become_::Prepared<'a>, ChildError> {
    // The runtime's /proc, to learn our pid as the runtime sees it (the seccomp agent is told)
    // once the container's mounts hide it.
    let host_proc = sys::open(
        "/proc",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(step("open /proc"))?;
    // As in the init: until execve this is husk's image inside the container's pid namespace;
    // /proc/<pid>/{exe,fd} must not be the container's to open (CVE-2019-5736).
    nix::sys::prctl::set_dumpable(false).map_err(step("make the exec process non-dumpable"))?;
    become_::set_oom_score_adj(j.process)?;
    let time = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
    for (flag, fd) in nss
        .iter()
        .filter(|(f, _)| *f != CloneFlags::CLONE_NEWPID && *f != time)
    {
        nix::sched::setns(fd.as_fd(), *flag).map_err(step(format!(
            "join the container's {} namespace",
            crate::spec::proc_name(*flag)
        )))?;
    }
    let userns = nss.iter().any(|(f, _)| *f == CloneFlags::CLONE_NEWUSER);
    if userns {
        let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
        let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
    }
    // Nothing of the user's may run before the process is in the container's cgroup.
    chan.expect(Msg::CgroupDone)?;
    if userns_first {
        for (flag, fd) in nss
            .iter()
            .filter(|(f, _)| *f == CloneFlags::CLONE_NEWPID || *f == time)
        {
            nix::sched::setns(fd.as_fd(), *flag).map_err(step(format!(
                "join the container's {} namespace",
                crate::spec::proc_name(*flag)
            )))?;
        }
        // setns of a pid namespace moves only children: fork into it (after the cgroup join,
        // so the process inherits the cgroup).
        sync::fork_reporting_pid(chan).map_err(step("fork into the container's pid namespace"))?;
    }
    let host_pid = nix::fcntl::readlinkat(Some(host_proc.as_raw_fd()), "self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    drop(host_proc);
    nix::unistd::chdir("/").map_err(step("chdir to /"))?;
    if let Some(sock) = &j.console {
        let console = |e: &dyn std::error::Error| ChildError::Other(become_::chain(e));
        let sock = sock.try_clone().map_err(|e| console(&e))?;
        let pty = crate::console::setup_pty(sock, j.process.console_size().as_ref())
            .map_err(|e| console(&e))?;
        crate::console::make_controlling(&pty.slave).map_err(|e| console(&e))?;
    }
    let listener = listener.map(|(sock, mut state)| {
        state.set_pid(Some(host_pid));
        (sock, state)
    });
    let prepared = become_::prepare(become_::Become {
        process: j.process,
        linux: j.linux,
        seccomp: j.seccomp,
        userns,
        preserve_fds: j.preserve_fds,
        listener,
    })?;
    chan.send(&Msg::Ready)?;
    Ok(prepared)
}
