//! One run: create the cgroup (on v1 its second half while the init mounts), spawn the plan
//! through [`process::spawn`](crate::process::spawn::spawn) (no exec.fifo: the init execs as
//! soon as it is ready), watch CPU and wall time until the program ends, then measure and name
//! the verdict.
//!
//! The CPU limit is enforced by polling the cgroup's usage. Each poll sleeps for the time the
//! remaining budget takes to run out at full speed on every allowed CPU (at most 100 ms, at
//! least 1 ms), so the kill lands within about one millisecond per CPU of the limit, and an
//! idle or sleeping program costs ten reads a second. `RLIMIT_CPU` one second later is the
//! backstop should the runtime itself be stopped.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::limits::{usage, Options, UsageError};
use super::stats::{self, Stats};
use super::verdict::{Status, Verdict};
use crate::cgroups::Cgroup;
use crate::init::reaper::{Handover, Report, Reporting, HANDOVER_BYTES, REPORT_FIELDS};
use crate::process::spawn::{self, Observer};
use crate::process::ProcessError;
use crate::spec::Plan;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("open {what} {path:?}: {source}")]
    Stdio {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("{step}: {source}")]
    Step {
        step: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("create the sandbox cgroup: {0}")]
    Cgroup(#[from] crate::cgroups::CgroupError),
}

/// A running program and how to watch it.
pub struct Watch {
    pub pid: i32,
    pub started: Instant,
    /// CPU time the cgroup had used when the program was handed over (the runtime's set-up).
    pub cpu_base: u64,
    /// OOM kills the cgroup had seen before (a pool slot's cgroup outlives its jobs).
    pub oom_base: u64,
    pub stats: Stats,
    /// What turns readable when the program has ended: the reaper's report pipe (its report,
    /// or EOF when the init died without one). `None`: the init's exit (a pidfd), which comes
    /// only after the kernel has torn its namespaces and memory down.
    pub end: Option<OwnedFd>,
}

/// Why the sandbox killed the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    Time,
    /// `--output` passed on a relayed stream ([`super::output`]).
    Output,
    Wall,
}

/// How many CPUs the program can run on at once (for the poll interval).
fn cpus(o: &Options) -> u64 {
    o.cpus
        .as_deref()
        .and_then(|c| crate::process::cpuset::parse(c).ok())
        .map(|v| v.len() as u64)
        // The affinity the program inherits: one syscall, where std's available_parallelism
        // also reads cgroup files (a batch asked it per job).
        .unwrap_or_else(|| crate::sys::cpu_count() as u64)
        .max(1)
}

/// `pidfd_open(2)`: a descriptor that polls readable when the process exits.
pub fn pidfd_open(pid: i32) -> Result<OwnedFd, nix::Error> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = nix::errno::Errno::result(fd)?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Wait for the program, killing it at the CPU or wall limit. Returns why it was killed.
pub fn watch(w: &Watch, o: &Options) -> Result<Option<Kill>, RunError> {
    watch_relaying(w, o, None)
}

/// [`watch`], relaying the program's output meanwhile (and killing it past `--output`).
pub fn watch_relaying(
    w: &Watch,
    o: &Options,
    mut fwd: Option<&mut super::output::Forward>,
) -> Result<Option<Kill>, RunError> {
    let pidfd;
    let end = match &w.end {
        Some(f) => f.as_fd(),
        None => {
            pidfd = pidfd_open(w.pid).map_err(|source| RunError::Step {
                step: "watch the program (pidfd_open)",
                source,
            })?;
            pidfd.as_fd()
        }
    };
    let cpu_kill_ns = o
        .time
        .map(|t| ((t + o.extra_time) * 1e9) as u64)
        .filter(|_| w.stats.cpu_ns().is_some());
    let ncpu = if cpu_kill_ns.is_some() { cpus(o) } else { 1 };
    let wall = o.wall_time.map(Duration::from_secs_f64);
    loop {
        let mut timeout: Option<Duration> = None;
        if let Some(limit) = cpu_kill_ns {
            let used = w.stats.cpu_ns().unwrap_or(0).saturating_sub(w.cpu_base);
            if used >= limit {
                kill(w.pid);
                return Ok(Some(Kill::Time));
            }
            let left = Duration::from_nanos((limit - used) / ncpu);
            timeout = Some(left.clamp(Duration::from_millis(1), Duration::from_millis(100)));
        }
        if let Some(wall) = wall {
            let elapsed = w.started.elapsed();
            if elapsed >= wall {
                kill(w.pid);
                return Ok(Some(Kill::Wall));
            }
            let left = wall - elapsed;
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        if exited(end, timeout, fwd.as_deref_mut())? {
            return Ok(None);
        }
        if fwd.as_ref().is_some_and(|f| f.exceeded) {
            kill(w.pid);
            return Ok(Some(Kill::Output));
        }
    }
}

fn exited(
    end: std::os::fd::BorrowedFd,
    timeout: Option<Duration>,
    fwd: Option<&mut super::output::Forward>,
) -> Result<bool, RunError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = vec![PollFd::new(end, PollFlags::POLLIN)];
    let relays = fwd.as_ref().map(|f| f.fds()).unwrap_or_default();
    fds.extend(relays.iter().map(|f| PollFd::new(*f, PollFlags::POLLIN)));
    let ms = match timeout {
        // Round up: a zero timeout would spin.
        Some(t) => PollTimeout::try_from(t.as_micros().div_ceil(1000).max(1) as i32)
            .unwrap_or(PollTimeout::MAX),
        None => PollTimeout::NONE,
    };
    match poll(&mut fds, ms) {
        Ok(n) => {
            let ready: Vec<usize> = fds[1..]
                .iter()
                .enumerate()
                .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
                .map(|(i, _)| i)
                .collect();
            let done = fds[0].revents().is_some_and(|r| !r.is_empty());
            drop(fds);
            drop(relays);
            if let Some(f) = fwd {
                // Highest first: a relay that closes shifts the ones after it.
                for i in ready.into_iter().rev() {
                    f.pump(i);
                }
            }
            Ok(n > 0 && done)
        }
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(source) => Err(RunError::Step {
            step: "poll the program",
            source,
        }),
    }
}

/// Kill the program's pid namespace: its init's death takes every process in it along.
fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
}

/// What the program's end looked like: from the reaper's report when it wrote one, else (the
/// sandbox killed the namespace) from the init's own wait status.
pub fn ended(pid: i32, report: Option<&OwnedFd>) -> Result<Report, RunError> {
    let (status, ru) = reap(pid)?;
    if let Some(r) = report.and_then(read_report) {
        return Ok(r);
    }
    let us = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    Ok(Report {
        status,
        utime_us: us(ru.ru_utime),
        stime_us: us(ru.ru_stime),
        maxrss_kb: ru.ru_maxrss,
        nvcsw: ru.ru_nvcsw,
        nivcsw: ru.ru_nivcsw,
    })
}

/// How a program watched through the reaper's report pipe (`w.end`) ended: its report, and
/// true when the init is still exiting (the caller reaps it before the cgroup goes). Killed, or
/// without a report (the init failed or died), the init is reaped here and its own status
/// stands in.
pub fn finish(w: &Watch, killed: Option<Kill>) -> Result<(Report, bool), RunError> {
    if killed.is_none() {
        if let Some(r) = w.end.as_ref().and_then(read_report) {
            return Ok((r, true));
        }
    }
    ended(w.pid, w.end.as_ref()).map(|r| (r, false))
}

/// The reaper's report from its pipe, if it wrote one (a read that finds none returns at
/// once only when the reaper is gone or the pipe is non-blocking).
pub fn read_report(fd: &OwnedFd) -> Option<Report> {
    let mut buf = [0u8; REPORT_FIELDS * 8];
    // One read: the reaper writes its report with one write, below PIPE_BUF, so it arrives
    // whole or not at all.
    let n = nix::unistd::read(fd.as_raw_fd(), &mut buf).ok()?;
    Report::decode(&buf[..n])
}

/// The reaper's [`Handover`], read (blocking) once the init is running: it comes right
/// before the program starts, or EOF when the init died first.
fn read_handover(fd: &OwnedFd) -> Option<Handover> {
    let mut buf = [0u8; HANDOVER_BYTES];
    loop {
        // One read: one write below PIPE_BUF, sent before the report, arrives whole and alone.
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(n) => return Handover::decode(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// The `Instant` of a `CLOCK_MONOTONIC` reading in nanoseconds (`Instant` is that clock, but
/// opaque).
fn since_monotonic(at_ns: u64) -> Instant {
    let now = Instant::now();
    let now_ns = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(at_ns);
    now.checked_sub(Duration::from_nanos(now_ns.saturating_sub(at_ns)))
        .unwrap_or(now)
}

/// Reap a child: its wait status and resource usage.
pub fn reap(pid: i32) -> Result<(libc::c_int, libc::rusage), RunError> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is a plain C struct; all-zero is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `ru` are valid for writes for the duration of the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        match nix::errno::Errno::result(r) {
            Ok(_) => return Ok((status, ru)),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(source) => {
                return Err(RunError::Step {
                    step: "wait for the program",
                    source,
                })
            }
        }
    }
}

/// Name the verdict from what was measured.
pub fn verdict(o: &Options, w: &mut Watch, killed: Option<Kill>, r: &Report) -> Verdict {
    let status = r.status;
    let wall = w.started.elapsed().as_secs_f64();
    let cpu = match w.stats.cpu_ns() {
        Some(ns) => ns.saturating_sub(w.cpu_base) as f64 / 1e9,
        None => (r.utime_us + r.stime_us) as f64 / 1e6,
    };
    let cg_peak_kb = w.stats.peak_bytes().map(|b| b / 1024);
    let oom = w.stats.oom_kills().unwrap_or(0) > w.oom_base;
    let (exit_code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    let over_time = o.time.is_some_and(|t| cpu > t);
    // A shell reports a child killed by SIGXFSZ as status 128+25; a file of the caller's at
    // the limit was cut there.
    let over_output = o.output.is_some_and(|limit| {
        exit_code == Some(128 + libc::SIGXFSZ)
            || [&o.stdout, &o.stderr]
                .into_iter()
                .flatten()
                .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() >= limit))
    });
    let (st, message) = match (killed, signal) {
        (Some(Kill::Time), _) => (Status::TLE, "CPU time limit exceeded"),
        (Some(Kill::Wall), _) => (Status::WLE, "wall time limit exceeded"),
        (Some(Kill::Output), _) => (Status::OLE, "output limit exceeded"),
        _ if oom => (Status::MLE, "memory limit exceeded"),
        (_, Some(libc::SIGXFSZ)) => (Status::OLE, "output limit exceeded"),
        (_, Some(libc::SIGXCPU)) => (Status::TLE, "CPU time limit exceeded"),
        _ if over_time => (
            Status::TLE,
            "CPU time limit exceeded (during the grace time)",
        ),
        _ if over_output => (Status::OLE, "output limit exceeded"),
        (_, Some(_)) => (Status::SG, ""),
        _ if exit_code != Some(0) => (Status::RE, ""),
        _ => (Status::OK, ""),
    };
    Verdict {
        index: None,
        status: st,
        exit_code,
        signal,
        cpu_time_s: cpu,
        wall_time_s: wall,
        max_rss_kb: r.maxrss_kb.max(0) as u64,
        cg_mem_kb: cg_peak_kb,
        oom_killed: oom,
        csw_voluntary: r.nvcsw.max(0) as u64,
        csw_forced: r.nivcsw.max(0) as u64,
        message: message.into(),
        killed: killed.is_some() || oom,
    }
}

/// The program's stdin/stdout/stderr while the init is created (it inherits fds 0-2), and the
/// caller's back afterwards.
pub struct Stdio {
    saved: Vec<(RawFd, OwnedFd)>,
}

fn open_file(what: &'static str, path: &Path, write: bool) -> Result<OwnedFd, RunError> {
    use nix::fcntl::OFlag;
    let flags = if write {
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC
    } else {
        OFlag::O_RDONLY | OFlag::O_CLOEXEC
    };
    crate::sys::open(path, flags, nix::sys::stat::Mode::from_bits_truncate(0o644)).map_err(
        |source| RunError::Stdio {
            what,
            path: path.to_path_buf(),
            source,
        },
    )
}

impl Stdio {
    /// Redirect to the files of `o`, and `extra` (relay pipes) onto their fd numbers.
    pub fn redirect(o: &Options, extra: Vec<(RawFd, OwnedFd)>) -> Result<Stdio, RunError> {
        let mut files = extra;
        for (fd, what, path, write) in [
            (0, "--stdin", &o.stdin, false),
            (1, "--stdout", &o.stdout, true),
            (2, "--stderr", &o.stderr, true),
        ] {
            if let Some(p) = path {
                files.push((fd, open_file(what, p, write)?));
            }
        }
        let mut s = Stdio { saved: Vec::new() };
        for (fd, file) in files {
            let step = |source| RunError::Step {
                step: "redirect stdio",
                source,
            };
            let saved =
                nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10)).map_err(step)?;
            // SAFETY: F_DUPFD_CLOEXEC just returned this descriptor; we own it.
            let saved = unsafe { OwnedFd::from_raw_fd(saved) };
            nix::unistd::dup2(file.as_raw_fd(), fd).map_err(step)?;
            s.saved.push((fd, saved));
        }
        Ok(s)
    }
}

impl Drop for Stdio {
    fn drop(&mut self) {
        for (fd, saved) in self.saved.drain(..) {
            let _ = nix::unistd::dup2(saved.as_raw_fd(), fd);
        }
    }
}

/// Join the cgroup and bring up loopback in the new network namespace, before the init may
/// run anything of the user's (spawn's sync 1).
struct Joiner<'a> {
    cgroup: &'a Cgroup,
    /// The cgroup's resources, when it is made here (see [`run_plan`]).
    late: Option<&'a oci_spec::runtime::LinuxResources>,
    /// Its files, opened once it is made.
    stats: Option<Stats>,
    netns: bool,
    userns: bool,
    /// The holder of the run's network namespace, which also keeps the init's mount namespace.
    holder: Option<&'a super::holder::NetNs>,
}

impl Observer for Joiner<'_> {
    fn cloned(&mut self, pid: i32) -> Result<(), String> {
        if let Some(h) = self.holder {
            h.keep(pid);
        }
        Ok(())
    }
    fn hooks(&mut self, _pid: i32) -> Result<(), String> {
        Ok(())
    }
    fn join_cgroup(
        &mut self,
        pid: i32,
        move_needed: bool,
    ) -> Result<Vec<std::os::fd::OwnedFd>, String> {
        let mut tasks = Vec::new();
        if let Some(r) = self.late {
            let chain = |e: crate::cgroups::CgroupError| {
                format!("create the sandbox cgroup: {}", crate::init::chain(&e))
            };
            // Dead runs' cgroups first, on this CPU while the init mounts on the other.
            super::cleanup::stale_cgroups();
            self.cgroup.create_late(Some(r)).map_err(chain)?;
            self.stats = Some(Stats::open(stats::host(), self.cgroup.path()));
            if !move_needed {
                tasks = self.cgroup.open_tasks().map_err(chain)?;
            }
        }
        if move_needed {
            self.cgroup.add_pid(pid).map_err(|e| e.to_string())?;
        }
        if self.netns {
            if self.userns {
                super::net::loopback_up_in_userns(pid)
            } else {
                super::net::loopback_up_in(pid)
            }
            .map_err(|e| format!("bring up loopback: {e}"))?;
        }
        Ok(tasks)
    }
    fn stats_files(&mut self) -> Result<Option<spawn::StatsFiles>, String> {
        if self.late.is_none() {
            return Ok(None);
        }
        match &self.stats {
            Some(s) => s
                .reaper_files()
                .map(Some)
                .map_err(|e| format!("copy the cgroup's files for the reaper: {e}")),
            None => Ok(Some(spawn::StatsFiles::default())),
        }
    }
}

/// Is an init failure the program's own (it doesn't exist) rather than the sandbox's?
fn missing_program(message: &str) -> bool {
    message.contains("executable file not found") || message.contains("no such executable")
}

/// Run `plan` in `cgroup` and return the verdict. Internal failures come back as an XX
/// verdict. The cgroup is made already, or only its first half ([`Cgroup::create_early`]):
/// then `late` holds its resources, and the rest is made after the clone, while the init
/// mounts. `holder` holds the network namespace the plan joins ([`super::holder::NetNs`]).
///
/// Also returns the init when it is still exiting outside the cgroup (a late v1 cgroup holds
/// only the program: see `init::Barrier`): the caller reaps it once the cgroup is gone.
pub fn run_plan(
    o: &Options,
    plan: &Plan,
    cgroup: &Cgroup,
    late: Option<&oci_spec::runtime::LinuxResources>,
    holder: Option<&super::holder::NetNs>,
) -> (Verdict, Option<i32>) {
    match run_inner(o, plan, cgroup, late, holder) {
        Ok(v) => v,
        Err(Failure::Missing(m)) => {
            let mut v = Verdict::internal(m);
            v.status = Status::RE;
            v.exit_code = Some(127);
            (v, None)
        }
        Err(Failure::Internal(m)) => (Verdict::internal(m), None),
    }
}

enum Failure {
    Missing(String),
    Internal(String),
}

fn run_inner(
    o: &Options,
    plan: &Plan,
    cgroup: &Cgroup,
    late: Option<&oci_spec::runtime::LinuxResources>,
    holder: Option<&super::holder::NetNs>,
) -> Result<(Verdict, Option<i32>), Failure> {
    let internal = |e: &dyn std::error::Error| Failure::Internal(crate::init::chain(e));
    let mut stats = if cgroup.is_none() || late.is_some() {
        Stats::empty()
    } else {
        Stats::open(stats::host(), cgroup.path())
    };
    let (mut relay, ends) = match super::output::Forward::setup(o) {
        Ok(Some((f, ends))) => (Some(f), ends),
        Ok(None) => (None, Vec::new()),
        Err(source) => {
            return Err(internal(&RunError::Step {
                step: "create the output relay",
                source,
            }))
        }
    };
    let stdio = Stdio::redirect(o, ends).map_err(|e| internal(&e))?;
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| {
        internal(&RunError::Step {
            step: "create the status pipe",
            source: e,
        })
    })?;
    let opts = spawn::Options {
        fifo: None,
        console: None,
        no_pivot: false,
        preserve_fds: 0,
        id: "sandbox".into(),
        // keyctl is blocked by the filter, so the caller's session keyring is out of reach.
        new_keyring: false,
        status: Some(Reporting {
            fd: report_w.as_raw_fd(),
            sample: stats.cpu_fd(),
            peak_reset: stats.peak_fd(),
            late: late.is_some(),
        }),
        cgroup_join: match late {
            Some(_) => cgroup.open_into().ok(),
            None => cgroup.open_join().ok(),
        },
        seccomp_listener: None,
        close_in_child: Vec::new(),
    };
    let mut joiner = Joiner {
        cgroup,
        late,
        stats: None,
        netns: plan
            .namespaces
            .new
            .contains(nix::sched::CloneFlags::CLONE_NEWNET),
        userns: plan
            .namespaces
            .new
            .contains(nix::sched::CloneFlags::CLONE_NEWUSER),
        holder,
    };
    let spawned = spawn::spawn(plan, opts, &mut joiner);
    if let Some(s) = joiner.stats.take() {
        stats = s;
    }
    drop(stdio);
    drop(report_w);
    let pid = match spawned {
        Ok(s) => s.pid,
        Err(ProcessError::Init(f))
            if missing_program(&f.message)
                || (f.step == "find the program" && f.errno == libc::ENOENT) =>
        {
            return Err(Failure::Missing(f.message))
        }
        Err(e) => return Err(internal(&e)),
    };
    // The program's clock and memory peak start at the reaper's handover (the init died
    // before it: now).
    let handover = read_handover(&report_r);
    let (started, cpu_base) = match &handover {
        Some(h) => (since_monotonic(h.at_ns), stats.cpu_ns_in(&h.sample)),
        None => (Instant::now(), None),
    };
    let cpu_base = cpu_base.or_else(|| stats.cpu_ns()).unwrap_or(0);
    let fill = super::fill::Fill::open(pid, o);
    if handover.is_none() {
        stats.reset_peak();
    }
    let mut w = Watch {
        pid,
        started,
        cpu_base,
        oom_base: 0,
        stats,
        end: Some(report_r),
    };
    let killed = match watch_relaying(&w, o, relay.as_mut()) {
        Ok(k) => k,
        Err(e) => {
            kill(pid);
            let _ = reap(pid);
            return Err(internal(&e));
        }
    };
    // The verdict is made while the init exits on the other CPU (its namespaces and memory:
    // 0.28 ms, measured); it is reaped after.
    let (report, exiting) = finish(&w, killed).map_err(|e| internal(&e))?;
    if let Some(r) = relay.as_mut() {
        r.drain();
    }
    let killed = match (killed, relay.as_ref().is_some_and(|r| r.exceeded)) {
        (None, true) => Some(Kill::Output),
        (k, _) => k,
    };
    let mut v = verdict(o, &mut w, killed, &report);
    fill.judge(&mut v);
    if exiting && late.is_none() {
        // Gone before the cgroup is removed (the caller's next step).
        reap(pid).map_err(|e| internal(&e))?;
        return Ok((v, None));
    }
    Ok((v, exiting.then_some(pid)))
}

/// What the calling process does once a run is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Goes on (a batch's runs of their own): the run's holder is killed at its end.
    Continue,
    /// Exits (`husk sandbox` without `--batch`): the network namespace's holder is left to die
    /// with husk (its PDEATHSIG). Alive, it still shares husk's memory when husk exits, so
    /// husk's exit does not tear that memory down (its page tables, and a TLB shootdown of
    /// the holder's CPU): the holder's death does, after the caller has husk's status. Paired
    /// A/B, 300 rounds: -0.10 and -0.30 ms a run, -0.32 ms with output to pipes.
    Exit,
}

/// Options → plan → cgroup → run → cleanup: one complete sandboxed run. A directory the
/// program can't be given (the caller's, a `--dir`) is a usage error; anything else that
/// fails is an XX verdict.
pub fn run(
    o: &Options,
    seccomp: &crate::seccomp::Compiled,
    seq: u64,
    then: Then,
) -> Result<Verdict, UsageError> {
    let cwd = std::env::current_dir().map_err(|e| {
        usage(
            "the current directory",
            format!("{e}: cd to a directory that exists"),
        )
    })?;
    let rootless = !nix::unistd::geteuid().is_root();
    // Made on the other CPU while this one builds the plan and the cgroup (a user's sandbox
    // makes its own, owned by its user namespace; if this fails, so will that).
    let net = if rootless || o.share_net {
        None
    } else {
        super::holder::NetNs::start().ok()
    };
    let mut view = super::view::prepare(&super::plan::bound_dirs(o, &cwd), o.uid, o.gid)?;
    let v = run_in(o, seccomp, seq, &cwd, &mut view, rootless, net.as_ref());
    if let (Some(n), Then::Exit) = (net, then) {
        n.leave();
    }
    Ok(v)
}

fn run_in(
    o: &Options,
    seccomp: &crate::seccomp::Compiled,
    seq: u64,
    cwd: &Path,
    view: &mut super::view::View,
    rootless: bool,
    net: Option<&super::holder::NetNs>,
) -> Verdict {
    let netns = net.map(super::holder::NetNs::path);
    let name = format!(
        "{}-{}-{seq}",
        super::plan::CGROUP_PARENT,
        std::process::id()
    );
    let mut mode = super::plan::Mode {
        userns: rootless,
        cgroup: true,
    };
    let mut plan = match super::plan::build(o, cwd, &name, seccomp, mode, view, netns.as_deref()) {
        Ok(b) => {
            // The program is checked before anything is made for it.
            let check = super::exec_check::check(o, &b.cwd, &|p: &Path| host_path(&b.plan, p));
            if let Some(v) = check {
                return v;
            }
            b.plan
        }
        Err(e) => return Verdict::internal(crate::init::chain(&e)),
    };
    let mut cgroup = match super::plan::cgroup(Path::new(&name), o.cpus.is_some()) {
        Ok(c) => c,
        Err(e) => return Verdict::internal(crate::init::chain(&e)),
    };
    // As root on a v1 or hybrid host the cgroup is made in two halves around the clone, as
    // `husk run` makes a container's (see `Cgroup::create_early`), and dead runs' cgroups are
    // swept with the second half. On pure v2, and rootless, it is made whole first.
    let split = !rootless && Cgroup::host_has_v1();
    let mut resources = super::plan::resources(o);
    if let (true, Some(p)) = (split, o.pids) {
        // The program joins that cgroup, its init stays out (`init::Barrier`): --pids counts
        // the init, as everywhere else.
        resources["pids"]["limit"] = (p - 1).max(0).into();
    }
    let resources: oci_spec::runtime::LinuxResources = match serde_json::from_value(resources) {
        Ok(r) => r,
        Err(e) => return Verdict::internal(format!("the sandbox's cgroup resources: {e}")),
    };
    if !rootless && !split {
        super::cleanup::stale_cgroups();
    }
    let made = if split {
        cgroup.create_early(Some(&resources)).map(drop)
    } else {
        cgroup.create(Some(&resources))
    };
    if let Err(e) = made {
        if !rootless {
            return Verdict::internal(format!(
                "create the sandbox cgroup: {}",
                crate::init::chain(&e)
            ));
        }
        // A user without a delegated cgroup: rlimits stand in, and the verdict says so.
        crate::logging::debug(&format!(
            "sandbox without a cgroup: {}",
            crate::init::chain(&e)
        ));
        mode.cgroup = false;
        cgroup = Cgroup::none();
        plan = match super::plan::build(o, cwd, &name, seccomp, mode, view, netns.as_deref()) {
            Ok(b) => b.plan,
            Err(e) => return Verdict::internal(crate::init::chain(&e)),
        };
    }
    let (mut v, exiting) = match net.map(super::holder::NetNs::ready) {
        Some(Err(e)) => (
            Verdict::internal(format!("make the sandbox's network namespace: {e}")),
            None,
        ),
        _ => run_plan(o, &plan, &cgroup, split.then_some(&resources), net),
    };
    // Removed while the init exits (it is outside the cgroup), then reaped.
    let destroyed = cgroup.destroy();
    if let Some(pid) = exiting {
        let _ = reap(pid);
    }
    if !mode.cgroup && v.status != Status::XX {
        if let Some(note) = super::plan::without_cgroup(o) {
            v.message = if v.message.is_empty() {
                note
            } else {
                format!("{}; {note}", v.message)
            };
        }
    }
    if let Err(e) = destroyed {
        if v.status != Status::XX {
            let mut v = v;
            v.message = format!("remove the sandbox cgroup: {}", crate::init::chain(&e));
            return v;
        }
    }
    v
}

/// Where the runtime can look at a path inside the sandbox: through the deepest mount that
/// covers it when that is a bind, in the skeleton root when none does (following the
/// skeleton's top-level symlinks, `/bin -> usr/bin`); None under a fresh file system (a tmpfs:
/// can't tell from here).
pub fn host_path(plan: &Plan, inside: &Path) -> Option<std::path::PathBuf> {
    let mut inside = inside.to_path_buf();
    for _ in 0..8 {
        let m = plan
            .spec
            .mounts()
            .iter()
            .flatten()
            .filter(|m| inside.starts_with(m.destination()))
            .max_by_key(|m| m.destination().components().count());
        if let Some(m) = m {
            if m.typ().as_deref() != Some("bind") {
                return None;
            }
            let rest = inside.strip_prefix(m.destination()).ok()?;
            return Some(m.source().as_ref()?.join(rest));
        }
        let rel = inside.strip_prefix("/").ok()?;
        let mut parts = rel.components();
        let first = parts.next()?;
        let top = plan.rootfs.join(first);
        match std::fs::read_link(&top) {
            Ok(target) => inside = Path::new("/").join(target).join(parts.as_path()),
            Err(_) => return Some(plan.rootfs.join(rel)),
        }
    }
    None
}
