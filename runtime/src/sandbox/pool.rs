//! The batch pool, the parent's side: slots (each a [`super::zygote`] in a cgroup of its own),
//! which job runs where, and the verdicts in input order ([`Ordered`]).
//!
//! A slot's identity (its cgroup `/husk-sandbox-<pid>-s<id>`) comes from a counter that only
//! grows, so a slot rebuilt after a failure never shares a cgroup with one still alive. A job
//! that can't be handed over or whose zygote dies fails alone with an XX verdict naming the
//! slot; the slot is torn down (killed, reaped, cgroup removed) and a new one made on demand.
//!
//! A slot holds up to two jobs (`DEPTH`): the one running and the next, already in the zygote's
//! channel, so the zygote starts it without a round trip through the pool. Only a job with
//! the running one's limits waits behind it (the slot's cgroup has one set of limits); if the
//! zygote dies first, the waiting job never started and goes to another slot.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::channel::{self, Channel};
use super::limits::{usage, Options, UsageError};
use super::stats::{self, Stats};
use super::verdict::Verdict;
use super::zygote::{FromZygote, Place, Seed, ToZygote};
use crate::cgroups::Cgroup;
use crate::spec::Plan;
use crate::sys;

/// Why a pool could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the current directory: {0}: cd to a directory that exists")]
    Cwd(#[source] std::io::Error),
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(transparent)]
    Plan(#[from] super::plan::PlanError),
}

/// Verdicts held until every earlier one is out.
#[derive(Default)]
pub struct Ordered {
    next: usize,
    held: BTreeMap<usize, Verdict>,
}

impl Ordered {
    pub fn insert(&mut self, index: usize, mut v: Verdict) {
        v.index = Some(index);
        self.held.insert(index, v);
    }

    /// The verdicts that may go out now, in order.
    pub fn ready(&mut self) -> Vec<Verdict> {
        let mut out = Vec::new();
        while let Some(v) = self.held.remove(&self.next) {
            out.push(v);
            self.next += 1;
        }
        out
    }
}

/// Slot identities: never the same twice in one pool (and the pool's pid is in the name).
#[derive(Debug, Default)]
pub struct SlotIds(u64);

impl SlotIds {
    pub fn allocate(&mut self) -> (u64, PathBuf) {
        let id = self.0;
        self.0 += 1;
        (id, slot_cgroup(std::process::id(), id))
    }
}

/// The cgroup of slot `id` of the pool run by `pid`.
pub fn slot_cgroup(pid: u32, id: u64) -> PathBuf {
    PathBuf::from(format!("{}-{pid}-s{id}", super::plan::CGROUP_PARENT))
}

/// The verdict of a job whose slot failed under it.
pub fn slot_failed(slot: u64, what: &str) -> Verdict {
    Verdict::internal(format!("pool slot s{slot}: {what}"))
}

/// The limits of the slot's cgroup for a job: the job's own plus what is in the cgroup
/// besides (its memory, `held_bytes`, and the zygote, when it is `inside`).
pub fn slot_resources(
    o: &Options,
    held_bytes: u64,
    inside: bool,
) -> Result<LinuxResources, serde_json::Error> {
    let mem = match o.memory {
        Some(m) => (m + held_bytes) as i64,
        None => -1,
    };
    let pids = o.pids.map_or(-1, |p| p + i64::from(inside));
    let v = serde_json::json!({
        "memory": {"limit": mem, "swap": mem},
        "pids": {"limit": pids},
    });
    serde_json::from_value(v)
}

/// Jobs a slot holds at once: the running one and the next.
const DEPTH: usize = 2;

/// A job handed to a slot.
struct Handed {
    index: usize,
    /// Its options while it waits behind another: to hand it to another slot should this
    /// one die before it starts.
    waiting: Option<Box<Options>>,
}

struct Slot {
    id: u64,
    pid: i32,
    chan: Channel,
    cgroup: Cgroup,
    stats: Stats,
    /// The jobs handed over, the running one first.
    queue: VecDeque<Handed>,
    /// The (memory, pids) the cgroup is set to.
    limits: Option<(Option<u64>, Option<i64>)>,
    /// The zygote is beside the cgroup, not in it (`zygote::Place`).
    beside: bool,
}

pub struct Pool {
    plan: Plan,
    /// The idmapped directories: a zygote attaches its plan's copies, so each one after the
    /// first gets fresh ones (`spawned`).
    view: super::view::View,
    spawned: bool,
    base: Options,
    cwd: PathBuf,
    caller_env: Vec<(String, String)>,
    slots: Vec<Slot>,
    size: usize,
    /// Fewer slots than CPUs husk may run on: each slot makes its next job's init early.
    spare_cpu: bool,
    ids: SlotIds,
    /// Verdicts not yet returned by [`Pool::wait_one`] (of waiting jobs that could not be
    /// handed to another slot).
    done: VecDeque<(usize, Verdict)>,
}

impl Pool {
    pub fn new(base: &Options, size: usize) -> Result<Pool, PoolError> {
        let seccomp = super::profile::judge_filter();
        let mut probe = base.clone();
        probe.args = vec!["/bin/true".into()];
        let cwd = std::env::current_dir().map_err(PoolError::Cwd)?;
        let dirs = super::plan::bound_dirs(base, &cwd);
        // Made here, inherited by every zygote: the pool's idmapped directories.
        let mut view = super::view::prepare(&dirs, base.uid, base.gid)?;
        let built = super::plan::build(
            &probe,
            &cwd,
            super::plan::CGROUP_PARENT,
            &seccomp,
            super::plan::Mode::root(),
            &mut view,
            None,
        )?;
        Ok(Pool {
            cwd: built.cwd,
            plan: built.plan,
            view,
            spawned: false,
            base: base.clone(),
            caller_env: std::env::vars().collect(),
            slots: Vec::new(),
            size: size.max(1),
            spare_cpu: size.max(1) < crate::sys::cpu_count(),
            ids: SlotIds::default(),
            done: VecDeque::new(),
        })
    }

    /// Whether job `o` can be handed over now: to an idle slot, a new one, or behind a
    /// running job with the same limits.
    pub fn has_room_for(&self, o: &Options) -> bool {
        self.idle().is_some() || self.slots.len() < self.size || self.behind(o).is_some()
    }

    fn idle(&self) -> Option<usize> {
        self.slots.iter().position(|s| s.queue.is_empty())
    }

    /// A slot where `o` may wait behind the running job: room, and the same limits.
    fn behind(&self, o: &Options) -> Option<usize> {
        let want = Some((o.memory, o.pids));
        self.slots
            .iter()
            .position(|s| s.queue.len() < DEPTH && s.limits == want)
    }

    /// Hand job `index` over; a job that can't be comes back as its verdict.
    pub fn submit(&mut self, index: usize, o: &Options) -> Result<(), Verdict> {
        let s = self.free_slot(o)?;
        let fds = stdio_files(o).map_err(|e| Verdict::internal(e.to_string()))?;
        let slot = &mut self.slots[s];
        // A slot with a job running has these limits already (`slot_for`).
        if slot.queue.is_empty() {
            if let Err(e) = set_limits(slot, o) {
                let v = slot_failed(slot.id, &format!("set the job's limits: {e}"));
                self.retire(s);
                return Err(v);
            }
        }
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let job = ToZygote::Job {
            index,
            options: Box::new(o.clone()),
        };
        if let Err(e) = slot.chan.send(&job, &raw) {
            let v = slot_failed(slot.id, &format!("hand the job over: {e}"));
            self.retire(s);
            return Err(v);
        }
        let waiting = (!slot.queue.is_empty()).then(|| Box::new(o.clone()));
        slot.queue.push_back(Handed { index, waiting });
        Ok(())
    }

    /// Wait for any running job's verdict: (its index, the verdict).
    pub fn wait_one(&mut self) -> Option<(usize, Verdict)> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        if let Some(d) = self.done.pop_front() {
            return Some(d);
        }
        let busy: Vec<usize> = (0..self.slots.len())
            .filter(|i| !self.slots[*i].queue.is_empty())
            .collect();
        if busy.is_empty() {
            return None;
        }
        let ready = loop {
            let mut fds: Vec<PollFd> = busy
                .iter()
                .map(|i| PollFd::new(self.slots[*i].chan_fd(), PollFlags::POLLIN))
                .collect();
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break busy[0],
            }
            if let Some(i) = fds
                .iter()
                .position(|f| f.revents().is_some_and(|r| !r.is_empty()))
            {
                break busy[i];
            }
        };
        let slot = &mut self.slots[ready];
        let index = slot.queue.pop_front().map_or(0, |h| h.index);
        let failed = match slot.chan.recv::<FromZygote>() {
            Ok((FromZygote::Done { verdict }, _)) => {
                // The next one is running now.
                if let Some(next) = slot.queue.front_mut() {
                    next.waiting = None;
                }
                return Some((index, *verdict));
            }
            Ok((other, _)) => slot_failed(slot.id, &format!("unexpected {other:?}")),
            Err(e) => slot_failed(slot.id, &format!("the zygote running the job died ({e})")),
        };
        // The jobs waiting behind it never started: to another slot.
        let waiting: Vec<(usize, Box<Options>)> = slot
            .queue
            .drain(..)
            .filter_map(|h| h.waiting.map(|o| (h.index, o)))
            .collect();
        self.retire(ready);
        for (i, o) in waiting {
            if let Err(v) = self.submit(i, &o) {
                self.done.push_back((i, v));
            }
        }
        Some((index, failed))
    }

    /// A slot for `o`: an idle one, a new one if the pool isn't full, else room behind a
    /// running job with its limits.
    fn free_slot(&mut self, o: &Options) -> Result<usize, Verdict> {
        if let Some(i) = self.idle() {
            return Ok(i);
        }
        if self.slots.len() < self.size {
            let slot = self.spawn_slot().map_err(Verdict::internal)?;
            self.slots.push(slot);
            return Ok(self.slots.len() - 1);
        }
        self.behind(o)
            .ok_or_else(|| Verdict::internal("no pool slot is free (a pool bug)"))
    }

    fn spawn_slot(&mut self) -> Result<Slot, String> {
        let (id, name) = self.ids.allocate();
        let chain = |e: &dyn std::error::Error| crate::init::chain(e);
        let cgroup = super::plan::cgroup(&name, true).map_err(|e| chain(&e))?;
        let mut resources = super::plan::resources(&self.base);
        if let Some(r) = resources.as_object_mut() {
            r.remove("memory");
        }
        let resources: LinuxResources =
            serde_json::from_value(resources).map_err(|e| e.to_string())?;
        if self.spawned {
            let trees = self
                .view
                .trees()
                .map_err(|e| format!("idmap a bound directory: {e}"))?;
            self.plan.prepared = super::plan::prepared(&self.plan.spec, trees);
        }
        self.spawned = true;
        cgroup.create(Some(&resources)).map_err(|e| chain(&e))?;
        let (ours, theirs) = match channel::pair() {
            Ok(p) => p,
            Err(e) => {
                let _ = cgroup.destroy();
                return Err(e.to_string());
            }
        };
        // Joined the cheap way (see `crate::cgroups::join`): moving the zygote by its pid
        // waited for an RCU grace period, 8-30 ms of a pool's start here. Where the cgroup is
        // all v1 hierarchies and a CPU is spare, the zygote stays beside it and each job's
        // init joins it itself (`zygote::Place::Beside`), so that the next job's init is made
        // while a job runs, on the spare CPU: 1.51 -> 1.25 ms a job with --jobs 1 on 2 CPUs.
        // With every CPU running a slot that only adds work (the joins, 30 us a job): 0.75 ->
        // 0.9 ms a job with --jobs 2.
        let join = cgroup.open_join().ok();
        let beside = self.spare_cpu
            && join
                .as_ref()
                .is_some_and(|j| j.into.is_none() && !j.tasks.is_empty());
        let (forked, join) = match beside {
            // SAFETY: the runtime is single-threaded (DESIGN §2); the child runs the zygote,
            // which never returns.
            true => (unsafe { sys::clone3_fork(0, None) }, join),
            // SAFETY: as above.
            false => unsafe { crate::cgroups::fork_joining(0, join) },
        };
        let parent_joins = join.is_none();
        let pid = match forked {
            Ok(0) => {
                drop(ours);
                let seed = Seed {
                    plan: &self.plan,
                    base: &self.base,
                    cgroup: &name,
                    cwd: self.cwd.clone(),
                    caller_env: &self.caller_env,
                };
                let place = match (beside, join) {
                    (true, Some(j)) => Place::Beside(j.tasks),
                    (_, j) => Place::Inside(j),
                };
                super::zygote::main(&seed, theirs, place)
            }
            Ok(pid) => pid,
            Err(e) => {
                let _ = cgroup.destroy();
                return Err(format!("fork a pool slot: {e}"));
            }
        };
        drop(theirs);
        drop(join);
        let slot = Slot {
            id,
            pid,
            chan: ours,
            stats: Stats::open(stats::host(), cgroup.path()),
            cgroup,
            queue: VecDeque::new(),
            limits: None,
            beside,
        };
        let moved = match parent_joins {
            true => slot.cgroup.add_pid(pid).map_err(|e| chain(&e)),
            false => Ok(()),
        };
        let started = moved
            .and_then(|()| {
                slot.chan
                    .send(&ToZygote::Go, &[])
                    .map_err(|e| e.to_string())
            })
            .and_then(|()| match slot.chan.recv::<FromZygote>() {
                Ok((FromZygote::Ready, _)) => Ok(()),
                Ok((FromZygote::Failed { message }, _)) => Err(message),
                Ok((other, _)) => Err(format!("unexpected {other:?}")),
                Err(e) => Err(e.to_string()),
            });
        if let Err(e) = started {
            teardown(&slot);
            return Err(format!("start pool slot s{id}: {e}"));
        }
        Ok(slot)
    }

    /// Tear down slot `i` (its job, if any, has had its verdict).
    fn retire(&mut self, i: usize) {
        let slot = self.slots.remove(i);
        teardown(&slot);
    }

    pub fn shutdown(&mut self) {
        for s in self.slots.drain(..) {
            teardown(&s);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Slot {
    fn chan_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the channel's descriptor lives as long as the slot that this borrows.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.chan.fd()) }
    }
}

fn set_limits(slot: &mut Slot, o: &Options) -> Result<(), String> {
    let want = (o.memory, o.pids);
    if slot.limits == Some(want) {
        return Ok(());
    }
    let r = slot_resources(o, slot.stats.usage_bytes().unwrap_or(0), !slot.beside)
        .map_err(|e| format!("the slot's cgroup resources: {e}"))?;
    slot.cgroup.update(&r).map_err(|e| crate::init::chain(&e))?;
    slot.limits = Some(want);
    Ok(())
}

fn teardown(s: &Slot) {
    let pid = nix::unistd::Pid::from_raw(s.pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
    let _ = s.cgroup.destroy();
}

/// A job's stdin, stdout and stderr, opened by the pool (relative to its directory);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::verdict::Status;

    #[test]
    fn verdicts_go_out_in_input_order() {
        let mut o = Ordered::default();
        let v = |s| {
            let mut v = Verdict::internal("");
            v.status = s;
            v
        };
        o.insert(2, v(Status::OK));
        o.insert(1, v(Status::RE));
        assert!(o.ready().is_empty());
        o.insert(0, v(Status::TLE));
        let out: Vec<_> = o.ready().iter().map(|v| (v.index, v.status)).collect();
        assert_eq!(
            out,
            [
                (Some(0), Status::TLE),
                (Some(1), Status::RE),
                (Some(2), Status::OK)
            ]
        );
        o.insert(3, v(Status::OK));
        assert_eq!(o.ready().len(), 1);
    }

    #[test]
    fn slot_identities_are_never_reused() {
        let mut ids = SlotIds::default();
        let names: std::collections::HashSet<PathBuf> =
            (0..1000).map(|_| ids.allocate().1).collect();
        assert_eq!(names.len(), 1000);
        let me = std::process::id();
        assert_eq!(
            slot_cgroup(me, 7),
            PathBuf::from(format!("/husk-sandbox-{me}-s7"))
        );
    }

    #[test]
    fn a_dead_slot_fails_its_job_alone() {
        // The zygote's end closes mid-job: the pool's receive says so, and the verdict names
        // the slot.
        let (ours, theirs) = channel::pair().unwrap();
        drop(theirs);
        let e = ours.recv::<FromZygote>().unwrap_err();
        let v = slot_failed(4, &format!("the zygote running the job died ({e})"));
        assert_eq!(v.status, Status::XX);
        assert!(
            v.message.starts_with("pool slot s4: the zygote"),
            "{}",
            v.message
        );
    }

    #[test]
    fn limits_add_the_zygote_and_reset() {
        let o = Options {
            memory: Some(64 << 20),
            pids: Some(16),
            ..Options::default()
        };
        let r = slot_resources(&o, 1 << 20, true).unwrap();
        assert_eq!(r.memory().unwrap().limit(), Some((65 << 20) as i64));
        assert_eq!(r.pids().unwrap().limit(), 17);
        // Beside the cgroup the zygote takes no process of the job's.
        let r = slot_resources(&o, 0, false).unwrap();
        assert_eq!(r.memory().unwrap().limit(), Some((64 << 20) as i64));
        assert_eq!(r.pids().unwrap().limit(), 16);
        let r = slot_resources(
            &Options {
                pids: None,
                ..Options::default()
            },
            0,
            true,
        )
        .unwrap();
        assert_eq!(r.memory().unwrap().limit(), Some(-1));
        assert_eq!(r.pids().unwrap().limit(), -1);
    }

    #[test]
    fn job_and_verdict_round_trip_the_channel() {
        let (a, b) = channel::pair().unwrap();
        let o = Options {
            args: vec!["/bin/echo".into(), "y".repeat(1 << 20)],
            time: Some(0.5),
            memory: Some(1 << 26),
            ..Options::default()
        };
        let job = ToZygote::Job {
            index: 9,
            options: Box::new(o),
        };
        let sent = job.clone();
        let t = std::thread::spawn(move || {
            let r = a.send(&sent, &[]);
            (a, r)
        });
        let (got, _) = b.recv::<ToZygote>().unwrap();
        let (a, sent) = t.join().unwrap();
        sent.unwrap();
        assert_eq!(got, job);
        let mut v = Verdict::internal("why");
        v.status = Status::MLE;
        v.cg_mem_kb = Some(65536);
        v.max_rss_kb = 4000;
        v.signal = Some(9);
        v.killed = true;
        let done = FromZygote::Done {
            verdict: Box::new(v),
        };
        b.send(&done, &[]).unwrap();
        assert_eq!(a.recv::<FromZygote>().unwrap().0, done);
    }
}
