//! The container init: what runs in the new namespaces before `execve`, as numbered steps that
//! match the parent's `// sync N` in [`crate::process::spawn`]. The OCI `process` itself is
//! [`crate::child`]'s one path. Any failure goes back to the parent as `Msg::Error` (step,
//! errno and the whole error chain), and the init exits.

mod barrier;
mod namespaces;
pub mod reaper;
mod steps;

use std::os::fd::{OwnedFd, RawFd};

use nix::sched::CloneFlags;

use crate::child::sync::{Channel, Failure, Msg};
use crate::child::ChildError;
use crate::spec::Plan;
use crate::sys;

pub use crate::child::chain;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Sync(#[from] crate::child::sync::SyncError),
    #[error(transparent)]
    Child(#[from] ChildError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error("{step}: {source}")]
    Step {
        step: String,
        #[source]
        source: nix::Error,
    },
    #[error("{0}")]
    Other(String),
}

pub(crate) fn step(step: impl Into<String>) -> impl FnOnce(nix::Error) -> InitError {
    let step = step.into();
    move |source| InitError::Step { step, source }
}

/// Everything the init inherits from the parent.
pub struct Init<'a> {
    pub plan: &'a Plan,
    pub chan: Channel,
    /// `O_PATH` descriptor of `exec.fifo`.
    pub fifo: Option<OwnedFd>,
    pub console: Option<OwnedFd>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub new_keyring: bool,
    /// See `process::spawn::Options::status`.
    pub status: Option<reaper::Reporting>,
    pub id: String,
    pub parent_pid: i32,
    /// The child enters/creates namespaces itself (see `process::spawn`).
    pub child_setup: bool,
    /// The namespaces the clone itself created.
    pub cloned_flags: CloneFlags,
    /// The seccomp agent (`listenerPath`), connected by the parent.
    pub seccomp_listener: Option<OwnedFd>,
    /// The v1 `tasks` files to join the cgroup through (the parent doesn't write then).
    pub cgroup_join: Option<crate::cgroups::Join>,
    /// The CPUs the parent may run on, for the init to return to once the parent has placed
    /// it ([`crate::sys::run_beside_caller`]) and sent `CgroupDone`.
    pub cpus: Option<nix::sched::CpuSet>,
}

/// Run the init; never returns.
pub fn run(mut init: Init) -> ! {
    let r = setup(&mut init);
    let e = match r {
        Ok(never) => match never {},
        Err(e) => e,
    };
    fail(&init.chan, &e)
}

/// Report `e` to the runtime and exit: 1 for any failure, as runc's init (engines map the
/// reason the parent reports).
fn fail(chan: &Channel, e: &InitError) -> ! {
    let _ = chan.send(&Msg::Error(Failure::new(e.step(), e)));
    sys::exit_now(1)
}

impl InitError {
    /// The stage that failed, for `Msg::Error`.
    fn step(&self) -> &'static str {
        match self {
            InitError::Child(e) => e.stage(),
            InitError::Rootfs(_) => "set up the rootfs",
            InitError::Console(_) => "set up the console",
            InitError::Hook(_) => "run hooks",
            InitError::Sync(_) => "talk to the runtime",
            InitError::Step { .. } | InitError::Other(_) => "container init",
        }
    }
}

/// The init's entry into its cgroup, done once and as late as possible: the parent's
/// `CgroupDone` (after it made the v1 directories and wrote the resources, and its own cgroup
/// write when it had to make one), then the init's own v1 join (see [`crate::cgroups::Join`])
/// through the `tasks` files it got at the clone or with `CgroupDone`.
pub(crate) struct Barrier {
    cgroup_done: bool,
    join: Option<crate::cgroups::Join>,
    /// A sandbox's reaper files come with `Msg::Stats` after `CgroupDone`
    /// ([`reaper::Reporting::late`]); once here, (cpu, peak).
    late_stats: bool,
    stats: Option<(Option<RawFd>, Option<RawFd>)>,
    /// See [`Init::cpus`].
    cpus: Option<nix::sched::CpuSet>,
    /// The v1 `tasks` files of `CgroupDone`, when the program joins them rather than this
    /// process: a sandbox's late cgroup (see `program_joins`).
    program_tasks: Option<Vec<OwnedFd>>,
}

impl Barrier {
    pub(crate) fn cgroup(&mut self, chan: &Channel) -> Result<(), InitError> {
        if !self.cgroup_done {
            let sent = chan.expect_fds(Msg::CgroupDone)?;
            // The parent placed this process on one CPU before it sent this: back to all of
            // them before anything inherits the mask (a v1 cpuset join narrows it again; in
            // a v2 cpuset the kernel keeps the intersection). Best effort: the one refusal
            // possible is a cpuset that shares no CPU with the parent's, and then the parent
            // could not have placed it either (the CPU it picks is one of the parent's), so
            // the mask is the cpuset's, as without the placement.
            if let Some(cpus) = self.cpus.take() {
                let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus);
            }
            let join =
                |e: std::io::Error| InitError::Other(format!("join the container's cgroup: {e}"));
            if let Some(j) = self.join.take() {
                j.enter_v1().map_err(join)?;
            }
            // A sandbox's reaper stays out of its late v1 cgroup and the program joins it: the
            // cgroup is then empty once the program has ended, and the runtime removes it
            // while this process exits (its memory and pid namespace: 0.28 ms), not after.
            if self.late_stats {
                self.program_tasks = Some(sent);
            } else {
                crate::cgroups::enter_v1(&sent).map_err(join)?;
            }
            if self.late_stats {
                self.stats = Some(late_stats(chan)?);
            }
            self.cgroup_done = true;
        }
        Ok(())
    }
}

/// The files of `Msg::Stats`. Kept open for the rest of this process's life (the reaper's):
/// close-on-exec, so the program never has them.
fn late_stats(chan: &Channel) -> Result<(Option<RawFd>, Option<RawFd>), InitError> {
    use std::os::fd::IntoRawFd;
    match chan.recv_fds()? {
        (Msg::Stats { cpu, peak }, fds) => {
            let mut fds = fds.into_iter().map(IntoRawFd::into_raw_fd);
            let cpu = if cpu { fds.next() } else { None };
            let peak = if peak { fds.next() } else { None };
            Ok((cpu, peak))
        }
        (got, _) => Err(crate::child::sync::SyncError::Unexpected {
            expected: "Stats",
            got,
        }
        .into()),
    }
}

fn setup(init: &mut Init) -> Result<std::convert::Infallible, InitError> {
    let plan = init.plan;
    // CVE-2019-5736 and friends: until execve this process is husk's own image, and from the
    // container's pid namespace /proc/<pid>/{exe,fd} would hand the host's husk binary, the
    // state directory and exec.fifo to the container. Non-dumpable makes them root-only, and
    // execve of the user's program resets it. With a new user namespace the init is made so
    // once its id maps are written (it must be dumpable for that: namespaces::enter); made so
    // here first, it would open a window in which an unprivileged parent's sync-1 work (the
    // sandbox's loopback, through /proc/<pid>/ns) met EACCES: a rootless sandbox failed XX in
    // about a third of its runs. Nothing of the container's runs before then.
    if !plan.namespaces.new.contains(CloneFlags::CLONE_NEWUSER) {
        nix::sys::prctl::set_dumpable(false).map_err(step("make the init non-dumpable"))?;
    }
    // Die with the parent while it still supervises creation.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(step("set parent death signal"))?;
    // In a new pid namespace the parent is invisible (ppid 0); otherwise a changed ppid means
    // the parent died before the death signal was armed.
    let ppid = nix::unistd::getppid().as_raw();
    if ppid != 0 && ppid != init.parent_pid {
        return Err(InitError::Other("husk exited during create".into()));
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let mut barrier = Barrier {
        cgroup_done: false,
        join: init.cgroup_join.take(),
        late_stats: init.status.is_some_and(|s| s.late),
        stats: None,
        cpus: init.cpus.take(),
        program_tasks: None,
    };

    // 1. Namespaces (sync 1-3): user first, id maps, the rest, a fork for a new pid namespace.
    namespaces::enter(init, &mut barrier)?;
    // Through the runtime's /proc, before any container mount exists.
    crate::child::set_oom_score_adj(&plan.process)?;
    let ns = &plan.namespaces;
    // In a user namespace, whether the container's own or one husk was started in (rootless
    // podman's): devices are bound rather than made, mount flags the kernel locked are kept.
    let userns = ns.has(CloneFlags::CLONE_NEWUSER) || sys::in_user_namespace();
    let userns_fd = if userns { Some(open_ns("user")?) } else { None };

    // 2. The cgroup namespace, rooted at the container's cgroup: entered once the parent
    //    reports the cgroup join (sync 1), as late as the first step that needs it.
    let cgroupns = ns.new.contains(CloneFlags::CLONE_NEWCGROUP);
    let mut cgroup_entered = false;
    let chan = &init.chan;
    let mut enter_cgroup = || -> Result<(), InitError> {
        if !cgroup_entered {
            barrier.cgroup(chan)?;
            if cgroupns {
                nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
                    .map_err(step("unshare cgroup namespace"))?;
            }
            cgroup_entered = true;
        }
        Ok(())
    };

    // 3. The root filesystem and the mounts, in the new mount namespace.
    let terminal = plan.process.terminal().unwrap_or(false);
    let mountns = ns.has(CloneFlags::CLONE_NEWNS);
    if mountns {
        crate::rootfs::prepare(
            plan,
            userns,
            cgroupns,
            userns_fd.as_ref(),
            terminal,
            &mut || enter_cgroup().map_err(|e| chain(&e)),
        )?;
        steps::create_cwd(plan)?;
    }
    enter_cgroup()?;

    // 4. Hooks (sync 4): prestart and createRuntime in the runtime's namespaces (by the parent),
    //    then createContainer here, before pivot_root.
    let state = hook_state(init, oci_spec::runtime::ContainerState::Creating);
    //    The parent also moves `linux.netDevices` into the network namespace then.
    use crate::hooks::HookKind as K;
    let hooks = plan.spec.hooks().as_ref();
    let want = |k: K| hooks.is_some_and(|h| !k.select(h).is_empty());
    let net_devices = plan
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.net_devices().as_ref())
        .is_some_and(|d| !d.is_empty());
    if net_devices || want(K::Prestart) || want(K::CreateRuntime) || want(K::CreateContainer) {
        barrier.cgroup(&init.chan)?;
        init.chan.send(&Msg::HooksPlease)?;
        init.chan.expect(Msg::HooksDone)?;
        if let Some(h) = hooks {
            crate::hooks::run(K::CreateContainer, K::CreateContainer.select(h), &state)?;
        }
    }

    // 5. pivot_root, the console, masked and read-only paths.
    let mut fd_dir = None;
    let mut detaching = crate::rootfs::detach::Detaching::done();
    if mountns {
        detaching = crate::rootfs::pivot(&plan.rootfs, init.no_pivot)?;
    } else {
        // The start barrier reopens exec.fifo through /proc, which the chroot leaves behind.
        if init.fifo.is_some() {
            fd_dir = Some(
                sys::open(
                    "/proc/self/fd",
                    nix::fcntl::OFlag::O_PATH
                        | nix::fcntl::OFlag::O_DIRECTORY
                        | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(step("open /proc/self/fd"))?,
            );
        }
        nix::unistd::chroot(&plan.rootfs).map_err(step("chroot to the rootfs"))?;
        nix::unistd::chdir("/").map_err(step("chdir to /"))?;
    }
    if let Some(sock) = init.console.take() {
        let pty = crate::console::setup_pty(sock, plan.process.console_size().as_ref())?;
        if mountns {
            // Bind from our descriptor, not the /dev/pts path the container could swap
            // (CVE-2025-52565).
            crate::rootfs::bind_console(&sys::fd_path(&pty.slave))?;
        }
        crate::console::make_controlling(&pty.slave)?;
    } else {
        // A session of its own, as runc's nsexec gives every init: CRIU refuses to dump a tree
        // whose session leader is outside its pid namespace. (With a terminal,
        // make_controlling already made one.)
        let _ = nix::unistd::setsid();
    }
    // 6. Identity of the container: hostname, domainname, sysctls — before the read-only
    //    /proc/sys and the masks of `finish`, as runc orders them.
    if let Some(h) = plan.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).map_err(step("set hostname"))?;
    }
    if let Some(d) = plan.spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        steps::set_domainname(d)?;
    }
    for (k, v) in plan
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        steps::write_proc(&format!("sys/{}", k.replace('.', "/")), v)?;
    }
    if mountns {
        crate::rootfs::finish(&plan.spec, userns)?;
    }
    if let Some(p) = plan
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.personality().as_ref())
    {
        steps::personality(p)?;
    }

    // 7. The OCI process, all but the filter and the exec (crate::child).
    if init.new_keyring {
        steps::join_session_keyring(&init.id)?;
    }
    let prepared = crate::child::prepare(crate::child::Become {
        process: &plan.process,
        linux: plan.spec.linux().as_ref(),
        seccomp: plan.seccomp.as_ref(),
        userns,
        preserve_fds: init.preserve_fds,
        listener: init.seccomp_listener.take().map(|s| (s, state.clone())),
    })?;

    // 8. Ready (sync 5): the parent records the container as created and exits. Then wait for
    //    `husk start` on exec.fifo, run startContainer hooks, and exec. Not before the old
    //    root has left the mount namespace (its unmount's grace period went on meanwhile).
    detaching.wait().map_err(step("detach the old root"))?;
    barrier.cgroup(&init.chan)?;
    if let (Some(s), Some((cpu, peak))) = (init.status.as_mut(), barrier.stats.take()) {
        s.sample = cpu;
        s.peak_reset = peak;
    }
    // From here the container outlives the `husk create` that made it, which may exit as soon
    // as it reads Ready: disarm first. A parent that died meanwhile makes the send fail.
    // A sandbox's init (the runtime waits for the program's status) instead dies with its
    // runtime, and its pid namespace with it: armed again, as the id change of `prepare`
    // cleared it.
    let pdeathsig = init.status.map(|_| nix::sys::signal::Signal::SIGKILL);
    nix::sys::prctl::set_pdeathsig(pdeathsig).map_err(step("set parent death signal"))?;
    init.chan.send(&Msg::Ready)?;
    // startContainer hooks run once `start` came, and `start` hears how they went: it returns
    // (and runs poststart) only after them.
    let hooks = || match plan.spec.hooks() {
        Some(h) => {
            use crate::hooks::HookKind as K;
            let mut state = state.clone();
            state.set_status(oci_spec::runtime::ContainerState::Created);
            crate::hooks::run(K::StartContainer, K::StartContainer.select(h), &state)
                .map_err(|e| chain(&e))
        }
        None => Ok(()),
    };
    let started = match init.fifo.take() {
        Some(fifo) => Some(barrier::wait_for_start(fifo, fd_dir.as_ref(), hooks)?),
        None => {
            hooks().map_err(InitError::Other)?;
            None
        }
    };
    drop(fd_dir);
    let program_only = started.as_ref().map(|s| s.fd());
    let (mut prepared, mut started) = (Some(prepared), started);
    let chan = &init.chan;
    let program_tasks = barrier.program_tasks.take().unwrap_or_default();
    match init.status {
        // The reaper waits for every child, the detach's helper among them.
        Some(status) => match reaper::fork_program(status, program_only, &mut || {
            if let Err(e) = crate::cgroups::enter_v1(&program_tasks) {
                fail(
                    chan,
                    &InitError::Other(format!("join the sandbox's cgroup: {e}")),
                )
            }
            exec_or_fail(&mut prepared, &mut started, chan)
        })? {},
        None => {
            detaching.reap().map_err(step("detach the old root"))?;
            exec_or_fail(&mut prepared, &mut started, chan)
        }
    }
}

/// The exec. On failure `start` (if it is waiting) hears it on the fifo, a parent on the
/// socket, and the process exits 1.
fn exec_or_fail(
    prepared: &mut Option<crate::child::Prepared<'_>>,
    started: &mut Option<barrier::Started>,
    chan: &Channel,
) -> ! {
    let Some(p) = prepared.take() else {
        sys::exit_now(1)
    };
    let e = InitError::Child(p.exec());
    if let Some(s) = started.take() {
        s.failed(&chain(&e));
    }
    fail(chan, &e)
}

fn open_ns(name: &str) -> Result<OwnedFd, InitError> {
    crate::sys::open(
        format!("/proc/self/ns/{name}").as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(step(format!("open /proc/self/ns/{name}")))
}

/// The state hooks run by the init read on stdin. Its pid is the init's pid in the runtime's
/// pid namespace, which `/proc/self` still shows before the container's /proc is mounted.
fn hook_state(init: &Init, status: oci_spec::runtime::ContainerState) -> oci_spec::runtime::State {
    let pid = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    let mut s = oci_spec::runtime::State::default();
    s.set_version(crate::spec::OCI_VERSION_MAX.to_string());
    s.set_id(init.id.clone());
    s.set_status(status);
    s.set_pid(Some(pid));
    s.set_bundle(init.plan.bundle.clone());
    s.set_annotations(init.plan.spec.annotations().clone());
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::sync::pair;

    fn fresh(late_stats: bool) -> Barrier {
        Barrier {
            cgroup_done: false,
            join: None,
            late_stats,
            stats: None,
            cpus: None,
            program_tasks: None,
        }
    }

    /// A sandbox whose cgroup is made after the clone: the reaper's files come right after
    /// `CgroupDone`, and only the ones the parent had.
    #[test]
    fn late_stats_follow_cgroup_done() {
        let (parent, child) = pair().unwrap();
        let file = || OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        parent.send_fds(&Msg::CgroupDone, &[]).unwrap();
        let stats = Msg::Stats {
            cpu: false,
            peak: true,
        };
        parent.send_fds(&stats, &[file()]).unwrap();
        let mut barrier = fresh(true);
        barrier.cgroup(&child).unwrap();
        let (cpu, peak) = barrier.stats.take().unwrap();
        assert_eq!(cpu, None);
        let peak = peak.unwrap();
        // SAFETY: the descriptor the barrier received and left open for this test to take.
        drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(peak) });

        // Without the flag nothing more is read: the next message is still there.
        parent.send_fds(&Msg::CgroupDone, &[]).unwrap();
        parent.send(&Msg::Ready).unwrap();
        let mut barrier = fresh(false);
        barrier.cgroup(&child).unwrap();
        assert!(barrier.stats.is_none());
        assert_eq!(child.recv().unwrap(), Msg::Ready);
    }
}
