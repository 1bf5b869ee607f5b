//! Batch mode: many jobs through a warm pool of pre-made sandboxes.
//!
//! A pool slot is a long-lived *zygote*: a fork of husk that joined its own cgroup, entered new
//! mount, uts, ipc, cgroup and network namespaces (loopback up: network namespaces are the
//! slow ones to create, so a slot's is reused), built the sandbox's mounts from the pool's plan
//! once (the same [`crate::rootfs`] code a single run uses) and pivoted into them. For each job
//! it clones a child with *new* mount, pid and ipc namespaces; that child mounts a fresh `/tmp`
//! and `/proc` (re-masking `/proc` as the plan says), applies the job's rlimits, drops to the
//! job's uid with no capabilities, installs the seccomp filter compiled once for the pool, and
//! forks the program under a reaper ([`crate::init::reaper`]). The zygote watches the job with
//! the same code as a single run and sends the verdict back. So per job: one clone with three
//! namespaces, about twenty mounts' worth of mount-namespace copy, two small mounts, and
//! fork+exec — no cgroup move, no network namespace, no seccomp compilation.
//!
//! Jobs never share anything that outlives them: a job's processes die with its pid namespace,
//! its `/tmp` with its mount namespace, its SysV IPC with its ipc namespace. (The bound working
//! directory is shared on purpose, as in a single run.) A job whose mounts or network differ
//! from the pool's runs as a single run instead.
//!
//! Protocol (SOCK_SEQPACKET, one message per datagram):
//! ```text
//!  parent                                   zygote
//!  [fork; add to the slot's cgroup] "J" -->  [namespaces, mounts, pivot_root]
//!  {"index": i, "line": "..."} + 3 fds -->   [clone job, watch, measure]
//!                                      <--   verdict JSON
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, IoSlice, IoSliceMut, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Instant;

use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde_json::{json, Value};

use super::limits::{environment, usage, workdir, Options, UsageError};
use super::run::{self, Watch};
use super::stats::{self, Stats};
use super::verdict::{Status, Verdict};
use crate::cgroups::Cgroup;
use crate::spec::Plan;
use crate::sys;

/// What a batch did.
pub struct Summary {
    pub jobs: usize,
    pub bad_lines: usize,
}

const MAX_MSG: usize = 256 * 1024;

/// One parsed line: a job, or why it isn't one.
enum Line {
    Job(Box<Options>, String),
    Bad(String),
}

/// A slot of the pool, seen from the parent.
struct Slot {
    pid: i32,
    chan: OwnedFd,
    cgroup: Cgroup,
    busy: Option<usize>,
}

/// Read the jobs, run them `n` at a time, print verdicts in input order.
pub fn run_file(path: &Path, base: &Options, n: usize) -> Result<Summary, String> {
    if !nix::unistd::geteuid().is_root() {
        // The warm pool keeps a cgroup and a network namespace per slot, made ahead as root.
        return Err(
            "--batch needs root (its warm pool keeps a cgroup per slot); as a user, run \
             one `husk sandbox` per job"
                .into(),
        );
    }
    let file = std::fs::File::open(path).map_err(|e| format!("open --batch {path:?}: {e}"))?;
    let mut lines = Vec::new();
    for (i, l) in std::io::BufReader::new(file).lines().enumerate() {
        let l = l.map_err(|e| format!("read --batch {path:?}: {e}"))?;
        if l.trim().is_empty() {
            continue;
        }
        let parsed = Options::from_json(base, &l).and_then(|o| o.check().map(|()| o));
        lines.push(match parsed {
            Ok(o) => Line::Job(Box::new(o), l),
            Err(e) => Line::Bad(format!("{}: line {}: {e}", path.display(), i + 1)),
        });
    }
    let mut out = std::io::stdout().lock();
    let mut pool = Pool::new(base, n.min(lines.len()).max(1))?;
    let mut done: BTreeMap<usize, Verdict> = BTreeMap::new();
    let mut next_print = 0;
    let mut bad = 0;
    let mut flush = |done: &mut BTreeMap<usize, Verdict>, next: &mut usize| {
        while let Some(v) = done.remove(next) {
            let _ = writeln!(out, "{}", v.to_json());
            *next += 1;
        }
        let _ = out.flush();
    };
    for (index, line) in lines.iter().enumerate() {
        match line {
            Line::Bad(m) => {
                eprintln!("husk sandbox: {m}");
                bad += 1;
                let mut v = Verdict::internal(m.clone());
                v.index = Some(index);
                done.insert(index, v);
            }
            Line::Job(o, text) if o.same_layout(base) => {
                let slot = match pool.free() {
                    Some(s) => s,
                    None => {
                        let v = pool.wait_one()?;
                        let i = v.index.unwrap_or(0);
                        done.insert(i, v);
                        pool.free().ok_or("no free sandbox after a job ended")?
                    }
                };
                if let Err(v) = pool.start(slot, index, o, text) {
                    done.insert(index, *v);
                }
            }
            Line::Job(o, _) => {
                let mut v = run::run(o, &pool.seccomp, 1_000_000 + index as u64);
                v.index = Some(index);
                done.insert(index, v);
            }
        }
        flush(&mut done, &mut next_print);
    }
    while pool.busy() > 0 {
        let v = pool.wait_one()?;
        done.insert(v.index.unwrap_or(0), v);
        flush(&mut done, &mut next_print);
    }
    pool.shutdown();
    flush(&mut done, &mut next_print);
    Ok(Summary {
        jobs: lines.len(),
        bad_lines: bad,
    })
}

struct Pool {
    base: Options,
    plan: Plan,
    seccomp: Value,
    slots: Vec<Slot>,
    size: usize,
}

impl Pool {
    fn new(base: &Options, size: usize) -> Result<Pool, String> {
        remember_cwd();
        let seccomp = super::profile::judge_profile();
        let mut probe = base.clone();
        probe.args = vec!["/bin/true".into()];
        let plan = super::plan::build(
            &probe,
            super::plan::CGROUP_PARENT,
            &seccomp,
            super::plan::Mode::root(),
        )
        .map_err(|e| crate::init::chain(&e))?;
        Ok(Pool {
            base: base.clone(),
            plan,
            seccomp,
            slots: Vec::new(),
            size,
        })
    }

    fn busy(&self) -> usize {
        self.slots.iter().filter(|s| s.busy.is_some()).count()
    }

    /// A free slot, made now if the pool isn't full yet.
    fn free(&mut self) -> Option<usize> {
        if let Some(i) = self.slots.iter().position(|s| s.busy.is_none()) {
            return Some(i);
        }
        if self.slots.len() < self.size {
            match self.spawn_slot(self.slots.len()) {
                Ok(s) => {
                    self.slots.push(s);
                    return Some(self.slots.len() - 1);
                }
                Err(e) => {
                    eprintln!("husk sandbox: create a pool sandbox: {e}");
                    if self.slots.is_empty() {
                        return None;
                    }
                    self.size = self.slots.len();
                }
            }
        }
        None
    }

    fn spawn_slot(&self, n: usize) -> Result<Slot, String> {
        let name = format!(
            "{}-{}-pool-{n}",
            super::plan::CGROUP_PARENT,
            std::process::id()
        );
        let cgroup = Cgroup::resolve(Some(Path::new(&name)), "sandbox", false)
            .map_err(|e| crate::init::chain(&e))?;
        let mut resources = super::plan::resources(&self.base);
        resources.as_object_mut().map(|r| r.remove("memory"));
        let resources: oci_spec::runtime::LinuxResources =
            serde_json::from_value(resources).map_err(|e| e.to_string())?;
        cgroup
            .create(Some(&resources))
            .map_err(|e| crate::init::chain(&e))?;
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        let pid = match sys::fork() {
            Ok(0) => {
                drop(ours);
                let e = zygote(&self.plan, &self.base, &cgroup, theirs);
                eprintln!("husk sandbox: pool sandbox: {e}");
                sys::exit_now(3)
            }
            Ok(pid) => pid,
            Err(e) => {
                let _ = cgroup.destroy();
                return Err(format!("fork a pool sandbox: {e}"));
            }
        };
        drop(theirs);
        let slot = Slot {
            pid,
            chan: ours,
            cgroup,
            busy: None,
        };
        let joined = slot
            .cgroup
            .add_pid(pid)
            .map_err(|e| crate::init::chain(&e))
            .and_then(|()| send(&slot.chan, b"J", &[]));
        if let Err(e) = joined {
            kill_slot(&slot);
            return Err(e);
        }
        Ok(slot)
    }

    /// Hand job `index` to slot `s`; a failure comes back as the job's verdict.
    fn start(
        &mut self,
        s: usize,
        index: usize,
        o: &Options,
        line: &str,
    ) -> Result<(), Box<Verdict>> {
        let fail = |m: String| {
            let mut v = Verdict::internal(m);
            v.index = Some(index);
            Box::new(v)
        };
        let fds = stdio_files(o).map_err(|e| fail(e.to_string()))?;
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let msg = json!({"index": index, "line": line}).to_string();
        let slot = &mut self.slots[s];
        if let Err(e) = send(&slot.chan, msg.as_bytes(), &raw) {
            // The slot is gone: replace it on the next free().
            kill_slot(slot);
            self.slots.remove(s);
            return Err(fail(format!("pool sandbox: {e}")));
        }
        slot.busy = Some(index);
        Ok(())
    }

    /// Wait for any busy slot's verdict.
    fn wait_one(&mut self) -> Result<Verdict, String> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        loop {
            let busy: Vec<usize> = (0..self.slots.len())
                .filter(|i| self.slots[*i].busy.is_some())
                .collect();
            if busy.is_empty() {
                return Err("no job is running".into());
            }
            let mut fds: Vec<PollFd> = busy
                .iter()
                .map(|i| PollFd::new(self.slots[*i].chan.as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("poll the pool: {e}")),
            }
            let ready: Vec<usize> = fds
                .iter()
                .zip(&busy)
                .filter(|(f, _)| f.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, i)| *i)
                .collect();
            drop(fds);
            if let Some(&i) = ready.first() {
                let index = self.slots[i].busy.take().unwrap_or(0);
                let mut buf = vec![0u8; MAX_MSG];
                let got = nix::sys::socket::recv(
                    self.slots[i].chan.as_raw_fd(),
                    &mut buf,
                    MsgFlags::empty(),
                );
                let v = match got {
                    Ok(n) if n > 0 => serde_json::from_slice::<Value>(&buf[..n])
                        .ok()
                        .and_then(|v| verdict_from_json(&v)),
                    _ => None,
                };
                let v = match v {
                    Some(mut v) => {
                        v.index = Some(index);
                        v
                    }
                    None => {
                        kill_slot(&self.slots[i]);
                        self.slots.remove(i);
                        let mut v = Verdict::internal("the pool sandbox running the job died");
                        v.index = Some(index);
                        v
                    }
                };
                return Ok(v);
            }
        }
    }

    fn shutdown(&mut self) {
        for s in self.slots.drain(..) {
            kill_slot(&s);
        }
    }
}

fn kill_slot(s: &Slot) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(s.pid), None);
    let _ = s.cgroup.destroy();
}

fn send(chan: &OwnedFd, bytes: &[u8], fds: &[RawFd]) -> Result<(), String> {
    let iov = [IoSlice::new(bytes)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(chan.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)
        .map(drop)
        .map_err(|e| format!("send to the pool sandbox: {e}"))
}

/// A job's stdin, stdout and stderr, opened by the parent (relative to its directory);
/// /dev/null for what the job doesn't name, so no job writes into the verdict stream.
fn stdio_files(o: &Options) -> Result<Vec<OwnedFd>, UsageError> {
    use nix::fcntl::OFlag;
    let null = Path::new("/dev/null");
    let mut out = Vec::new();
    for (what, p, write) in [
        ("stdin", &o.stdin, false),
        ("stdout", &o.stdout, true),
        ("stderr", &o.stderr, true),
    ] {
        let path = p.as_deref().unwrap_or(null);
        let flags = if write {
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC
        } else {
            OFlag::O_RDONLY | OFlag::O_CLOEXEC
        };
        let fd = sys::open(path, flags, nix::sys::stat::Mode::from_bits_truncate(0o644))
            .map_err(|e| usage(what, format!("open {path:?}: {e}")))?;
        out.push(fd);
    }
    Ok(out)
}

fn verdict_from_json(v: &Value) -> Option<Verdict> {
    let status = match v["status"].as_str()? {
        "OK" => Status::OK,
        "RE" => Status::RE,
        "SG" => Status::SG,
        "TLE" => Status::TLE,
        "WLE" => Status::WLE,
        "MLE" => Status::MLE,
        "OLE" => Status::OLE,
        _ => Status::XX,
    };
    let mut out = Verdict::internal(v["message"].as_str().unwrap_or_default());
    out.status = status;
    out.exit_code = v["exit_code"].as_i64().map(|x| x as i32);
    out.signal = v["signal"].as_i64().map(|x| x as i32);
    out.cpu_time_s = v["cpu_time_s"].as_f64().unwrap_or(0.0);
    out.wall_time_s = v["wall_time_s"].as_f64().unwrap_or(0.0);
    out.max_rss_kb = v["max_rss_kb"].as_u64().unwrap_or(0);
    out.oom_killed = v["oom_killed"].as_bool().unwrap_or(false);
    out.csw_voluntary = v["csw_voluntary"].as_u64().unwrap_or(0);
    out.csw_forced = v["csw_forced"].as_u64().unwrap_or(0);
    Some(out)
}

/// The cgroup files a zygote writes per job (opened before pivot_root hides the hierarchy).
struct Knobs {
    mem: Option<std::fs::File>,
    memsw: Option<std::fs::File>,
    current: Option<std::fs::File>,
    pids: Option<std::fs::File>,
    mem_set: Option<u64>,
    pids_set: Option<i64>,
}

impl Knobs {
    fn open(cgroup: &Path) -> Knobs {
        let rw = |p: std::path::PathBuf| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .ok()
        };
        let rel = cgroup.strip_prefix("/").unwrap_or(cgroup);
        match stats::host() {
            stats::Hierarchies::V2(b) => Knobs {
                mem: rw(b.join(rel).join("memory.max")),
                memsw: rw(b.join(rel).join("memory.swap.max")),
                current: rw(b.join(rel).join("memory.current")),
                pids: rw(b.join(rel).join("pids.max")),
                mem_set: None,
                pids_set: None,
            },
            stats::Hierarchies::V1 { memory, .. } => {
                let m = |f: &str| memory.as_ref().and_then(|b| rw(b.join(rel).join(f)));
                Knobs {
                    mem: m("memory.limit_in_bytes"),
                    memsw: m("memory.memsw.limit_in_bytes"),
                    current: m("memory.usage_in_bytes"),
                    pids: std::fs::read_to_string("/proc/self/mountinfo")
                        .ok()
                        .and_then(|mi| {
                            mi.lines()
                                .filter(|l| l.contains(" - cgroup ") && l.ends_with(",pids"))
                                .find_map(|l| l.split(' ').nth(4).map(std::path::PathBuf::from))
                        })
                        .and_then(|b| rw(b.join(rel).join("pids.max"))),
                    mem_set: None,
                    pids_set: None,
                }
            }
        }
    }

    fn usage(&self) -> u64 {
        let mut buf = [0u8; 64];
        use std::os::unix::fs::FileExt;
        self.current
            .as_ref()
            .and_then(|f| f.read_at(&mut buf, 0).ok())
            .and_then(|n| std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The job's memory limit on top of what the zygote itself holds; swap off.
    fn set_memory(&mut self, limit: Option<u64>, baseline: u64) -> Result<(), String> {
        let want = limit.map(|l| l + baseline);
        if want == self.mem_set {
            return Ok(());
        }
        let v2 = matches!(stats::host(), stats::Hierarchies::V2(_));
        let value = match want {
            Some(v) => v.to_string(),
            None if v2 => "max".into(),
            None => "-1".into(),
        };
        let write = |f: &Option<std::fs::File>, v: &str| -> bool {
            use std::os::unix::fs::FileExt;
            f.as_ref()
                .is_some_and(|f| f.write_at(v.as_bytes(), 0).is_ok())
        };
        if v2 {
            if !write(&self.mem, &value) {
                return Err(format!("set memory.max to {value}"));
            }
            let _ = write(&self.memsw, if want.is_some() { "0" } else { "max" });
        } else {
            // v1 keeps memory <= memory+swap: order the two writes by direction.
            let ok = (write(&self.mem, &value) && write(&self.memsw, &value))
                || (write(&self.memsw, &value) && write(&self.mem, &value));
            if !ok {
                return Err(format!("set memory.limit_in_bytes to {value}"));
            }
        }
        self.mem_set = want;
        Ok(())
    }

    /// The job's process limit, plus one for the zygote itself.
    fn set_pids(&mut self, pids: Option<i64>) {
        if pids == self.pids_set {
            return;
        }
        let value = pids.map_or("max".to_string(), |p| (p + 1).to_string());
        use std::os::unix::fs::FileExt;
        if let Some(f) = &self.pids {
            let _ = f.write_at(value.as_bytes(), 0);
        }
        self.pids_set = pids;
    }
}

/// The zygote: set up once, then run jobs until the parent goes away. Returns only on error.
fn zygote(plan: &Plan, base: &Options, cgroup: &Cgroup, chan: OwnedFd) -> String {
    match zygote_inner(plan, base, cgroup, chan) {
        Ok(()) => sys::exit_now(0),
        Err(e) => e,
    }
}

fn zygote_inner(plan: &Plan, base: &Options, cgroup: &Cgroup, chan: OwnedFd) -> Result<(), String> {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let mut buf = vec![0u8; MAX_MSG];
    // Wait until the parent moved us into the slot's cgroup.
    let n = nix::sys::socket::recv(chan.as_raw_fd(), &mut buf, MsgFlags::empty())
        .map_err(|e| format!("wait for the cgroup join: {e}"))?;
    if &buf[..n] != b"J" {
        return Err("the parent went away".into());
    }
    let mut stats = Stats::open(stats::host(), cgroup.path());
    let mut knobs = Knobs::open(cgroup.path());
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWCGROUP;
    if !base.share_net {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    nix::sched::unshare(flags).map_err(|e| format!("unshare namespaces: {e}"))?;
    if !base.share_net {
        super::net::loopback_up().map_err(|e| format!("bring up loopback: {e}"))?;
    }
    nix::unistd::sethostname("sandbox").map_err(|e| format!("set hostname: {e}"))?;
    crate::rootfs::prepare(plan, false, false, None, false, &mut || Ok(()))
        .map_err(|e| crate::init::chain(&e))?;
    crate::rootfs::pivot(&plan.rootfs, false).map_err(|e| crate::init::chain(&e))?;
    crate::rootfs::finish(&plan.spec, false).map_err(|e| crate::init::chain(&e))?;
    // Private: nothing a job mounts in its copy may reach the zygote's (or another job's).
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("make the sandbox mounts private: {e}"))?;
    loop {
        let mut space = nix::cmsg_space!([RawFd; 3]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            chan.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("receive a job: {e}"))?;
        let mut fds: Vec<OwnedFd> = Vec::new();
        for c in msg.cmsgs().map_err(|e| format!("receive a job: {e}"))? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: SCM_RIGHTS just installed these descriptors in this process.
                fds.extend(raw.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
        }
        let n = msg.bytes;
        if n == 0 {
            return Ok(());
        }
        let v = match serde_json::from_slice::<Value>(&buf[..n]) {
            Ok(job) => {
                let line = job["line"].as_str().unwrap_or_default();
                match Options::from_json(base, line) {
                    Ok(o) if fds.len() == 3 => run_job(plan, &o, &fds, &mut stats, &mut knobs),
                    Ok(_) => Verdict::internal("job came without its stdio descriptors"),
                    Err(e) => Verdict::internal(e.to_string()),
                }
            }
            Err(e) => Verdict::internal(format!("garbled job message: {e}")),
        };
        drop(fds);
        nix::sys::socket::send(chan.as_raw_fd(), v.to_json().as_bytes(), MsgFlags::empty())
            .map_err(|e| format!("send a verdict: {e}"))?;
    }
}

/// One job in a zygote: clone it into new mount/pid/ipc namespaces, watch it, measure it.
fn run_job(
    plan: &Plan,
    o: &Options,
    stdio: &[OwnedFd],
    stats: &mut Stats,
    knobs: &mut Knobs,
) -> Verdict {
    let baseline = knobs.usage();
    if let Err(e) = knobs.set_memory(o.memory, baseline) {
        return Verdict::internal(e);
    }
    knobs.set_pids(o.pids);
    let (report_r, report_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return Verdict::internal(format!("create the status pipe: {e}")),
    };
    let (err_r, err_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return Verdict::internal(format!("create the error pipe: {e}")),
    };
    let flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC;
    stats.reset_peak();
    let cpu_base = stats.cpu_ns().unwrap_or(0);
    let peak_base = baseline;
    let oom_base = stats.oom_kills().unwrap_or(0);
    // SAFETY: the zygote is single-threaded (a fork of the single-threaded runtime); the child
    // runs `job_child`, which ends in execve or _exit.
    let pid = match unsafe { sys::clone_fork(flags.bits()) } {
        Ok(0) => {
            drop(report_r);
            drop(err_r);
            let e = job_child(plan, o, stdio, report_w.as_raw_fd());
            let _ = nix::unistd::write(&err_w, e.as_bytes());
            sys::exit_now(127)
        }
        Ok(pid) => pid,
        Err(e) => return Verdict::internal(format!("clone the job: {e}")),
    };
    let started = Instant::now();
    drop(report_w);
    drop(err_w);
    // The watcher borrows the stats; hand them over and take them back.
    let taken = std::mem::replace(stats, Stats::empty());
    let mut w = Watch {
        pid,
        started,
        cpu_base,
        oom_base,
        stats: taken,
    };
    let killed = run::watch(&w, o);
    let report = run::ended(pid, Some(&report_r));
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
            let mut v = Verdict::internal(m);
            v.status = Status::RE;
            v.exit_code = Some(127);
            v
        } else {
            Verdict::internal(m)
        };
    }
    if let Some(c) = v.cg_mem_kb {
        v.cg_mem_kb = Some(c.saturating_sub(peak_base / 1024));
        v.max_rss_kb = v.cg_mem_kb.unwrap_or(v.max_rss_kb);
    }
    v
}

/// The job's pid 1: fresh /tmp and /proc, the job's limits and identity, then the program
/// under a reaper. Returns only the reason it failed.
fn job_child(plan: &Plan, o: &Options, stdio: &[OwnedFd], report_fd: RawFd) -> String {
    match job_setup(plan, o, stdio, report_fd) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn job_setup(
    plan: &Plan,
    o: &Options,
    stdio: &[OwnedFd],
    report_fd: RawFd,
) -> Result<std::convert::Infallible, String> {
    let m = |what: &str, e: nix::Error| format!("{what}: {e}");
    // Binds below /tmp (a working directory there) would be hidden by the fresh /tmp: take
    // detached copies first and attach them again on top of it.
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
        Some("mode=1777"),
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
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| m("mount /proc", e))?;
    let root = crate::rootfs::resolve::open_root(Path::new("/")).map_err(|e| m("open /", e))?;
    if let Some(l) = plan.spec.linux() {
        crate::rootfs::paths::readonly(
            &root,
            l.readonly_paths().as_deref().unwrap_or_default(),
            false,
        )
        .map_err(|e| crate::init::chain(&e))?;
        crate::rootfs::paths::mask(&root, l.masked_paths().as_deref().unwrap_or_default())
            .map_err(|e| crate::init::chain(&e))?;
    }
    drop(root);
    for (i, f) in stdio.iter().enumerate() {
        nix::unistd::dup2(f.as_raw_fd(), i as RawFd).map_err(|e| m("redirect stdio", e))?;
    }
    let limits: Vec<oci_spec::runtime::PosixRlimit> =
        serde_json::from_value(Value::Array(super::plan::rlimits(o, true)))
            .map_err(|e| format!("rlimits: {e}"))?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let dir = workdir(o, &host_cwd(&cwd));
    let caller: Vec<(String, String)> = std::env::vars().collect();
    let mut user = oci_spec::runtime::User::default();
    user.set_uid(o.uid);
    user.set_gid(o.gid);
    let mut process = oci_spec::runtime::Process::default();
    process.set_args(Some(o.args.clone()));
    process.set_env(Some(environment(o, &caller)));
    process.set_cwd(dir);
    process.set_user(user);
    process.set_rlimits(Some(limits));
    process.set_capabilities(None);
    process.set_no_new_privileges(Some(true));
    // The job becomes its program through the runtime's one child path (limits, identity, no
    // capabilities, no_new_privs, the cwd check, lookup, seccomp last).
    let prepared = crate::child::prepare(crate::child::Become {
        process: &process,
        linux: None,
        seccomp: plan.seccomp.as_ref(),
        userns: false,
        preserve_fds: 0,
        listener: None,
    })
    .map_err(|e| crate::child::chain(&e))?;
    crate::init::reaper::fork_program(report_fd, None).map_err(|e| crate::init::chain(&e))?;
    let e = prepared.exec();
    Err(crate::child::chain(&e))
}

/// The working directory the parent had (the zygote's cwd is `/` after pivot_root): the
/// zygote is a fork of it, so it's in the environment as PWD or learnt before the pivot.
fn host_cwd(_now: &Path) -> std::path::PathBuf {
    HOST_CWD
        .get()
        .cloned()
        .unwrap_or_else(|| std::path::PathBuf::from("/"))
}

static HOST_CWD: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Remember the caller's directory before any zygote pivots away from it.
pub fn remember_cwd() {
    if let Ok(c) = std::env::current_dir() {
        let _ = HOST_CWD.set(c);
    }
}
