//! `create`: validate, claim the id, make the cgroup, spawn the init, record the state.
//!
//! 1. `spec::load` — nothing on disk changes before the spec is known to be good.
//! 2. the state directory (`<root>/<id>`, locked) and a first `state.json` naming the cgroup,
//!    so `delete --force` can clean up after a create that was killed half-way;
//! 3. the cgroup with its resources, and `exec.fifo`;
//! 4. `process::spawn`, recording the init's pid as soon as it exists, moving `linux.netDevices`
//!    into its network namespace and running prestart and createRuntime hooks when the init asks;
//! 5. `--pid-file`. Any failure undoes 2–4.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;

use super::ContainerError;
use crate::cgroups::Cgroup;
use crate::hooks::{self, HookKind};
use crate::netdev::{self, NetDevice};
use crate::process::spawn::{self, Observer};
use crate::spec::{self, Plan};
use crate::state::{self, State, StateDir};

#[derive(Debug, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub root: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// Socket-activation descriptors (systemd's `LISTEN_FDS` of the caller): passed on as fds
    /// 3.. ahead of `--preserve-fds`, with `LISTEN_FDS=N` and `LISTEN_PID=1` in the process's
    /// environment, as runc does.
    pub listen_fds: u32,
    pub cgroup_manager: CgroupManager,
    /// Wait for `start` on exec.fifo (create); `false` execs as soon as ready (run).
    pub start_barrier: bool,
    /// `run` in the foreground allocates the terminal itself: one end of its own socket pair.
    pub console_fd: Option<OwnedFd>,
}

/// Who makes the container's cgroup (crun's `--cgroup-manager`; runc's `--systemd-cgroup` is
/// `Systemd`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum CgroupManager {
    /// Directories under the cgroupfs mounts.
    #[default]
    Cgroupfs,
    /// `cgroupsPath` is `slice:prefix:name`; needs systemd as init.
    Systemd,
    /// No cgroup of its own: the container stays in the caller's. Refused when
    /// `linux.resources` asks for a limit, which could not be honoured.
    Disabled,
}

/// A created container: its pid and what `run` needs next.
#[derive(Debug)]
pub struct Created {
    pub pid: i32,
    /// The init's sync socket: `run` hears a failed exec on it.
    pub chan: crate::child::sync::Channel,
    pub dir: StateDir,
    pub state: State,
}

/// Creates container `opts.id` from `opts.bundle` under the state root `opts.root`: its process
/// runs once [`start`](super::start) releases it, or at once without `start_barrier`.
///
/// The caller must be single-threaded: the process is started with a plain `clone` and runs
/// Rust code before its `execve` (see the crate docs, "Threading"). The returned `Created`
/// holds the state lock until it is dropped.
pub fn create(mut opts: CreateOptions) -> Result<Created, ContainerError> {
    state::check_id(&opts.id)?;
    let mut plan = spec::load(&opts.bundle)?;
    super::add_listen_env(&mut plan.process, opts.listen_fds);
    let terminal = plan.process.terminal().unwrap_or(false);
    let console = match (&opts.console_socket, opts.console_fd.take()) {
        (_, Some(fd)) if terminal => Some(fd),
        (Some(p), _) if terminal => Some(crate::console::connect(p)?),
        (None, None) if terminal => {
            return Err(ContainerError::Invalid(
                "process.terminal is true but no --console-socket was given: cannot allocate a terminal for a detached container".into(),
            ))
        }
        _ => None,
    };
    let resources = plan
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref());
    let cgroup = cgroup_for(opts.cgroup_manager, &plan, &opts.id)?;
    let dir = StateDir::create(&opts.root, &opts.id)?;
    let mut st = initial_state(&plan, &opts.id, &cgroup);
    match build(&opts, &plan, resources, &dir, &mut st, &cgroup, console) {
        Ok(spawned) => Ok(Created {
            pid: spawned.pid,
            chan: spawned.chan,
            dir,
            state: st,
        }),
        Err(e) => {
            // The init (if any) was killed by spawn; undo the rest.
            let _ = cgroup.destroy();
            let _ = dir.remove();
            Err(e)
        }
    }
}

fn build(
    opts: &CreateOptions,
    plan: &Plan,
    resources: Option<&oci_spec::runtime::LinuxResources>,
    dir: &StateDir,
    st: &mut State,
    cgroup: &Cgroup,
    console: Option<OwnedFd>,
) -> Result<spawn::Spawned, ContainerError> {
    dir.save(st)?;
    let fifo = if opts.start_barrier {
        Some(make_fifo(dir, plan)?)
    } else {
        None
    };
    // As root on a v1 or hybrid host the cgroup is made in two halves around the clone (see
    // `Cgroup::create_early`); on pure v2 there is one directory, made whole before the clone
    // (nothing to overlap); rootless makes it whole first, so that a cgroup it can't make means
    // running without one.
    let split = !crate::sys::rootless() && Cgroup::host_has_v1();
    let made = if split {
        cgroup.create_early(resources)
    } else {
        cgroup.create(resources).map(|()| Vec::new())
    };
    let mut early_dirs = Vec::new();
    let have_cgroup = match made {
        Ok(dirs) => {
            early_dirs = dirs;
            !cgroup.is_none()
        }
        // Rootless, as runc's rootless manager: without a delegated cgroup the container runs
        // in the caller's, unless it asked for limits, which then can't be honoured.
        Err(e) if crate::sys::rootless() && !asks_limits(resources) => {
            crate::logging::debug(&format!(
                "running without a cgroup: {}",
                crate::init::chain(&e)
            ));
            // Recorded as none, so pause, update, events and ps say why rather than act on a
            // path that was never made.
            st.cgroup = std::path::PathBuf::new();
            dir.save(st)?;
            false
        }
        Err(e) => return Err(e.into()),
    };
    let mut obs = CreateObserver {
        have_cgroup,
        late: split.then_some(resources),
        dir,
        st,
        cgroup,
        plan,
        net_devices: netdev::from_spec(plan.spec.linux().as_ref()),
        netns: None,
        moved: Vec::new(),
    };
    let res = (|| {
        let spawned = spawn::spawn(
            plan,
            spawn::Options {
                fifo,
                console,
                no_pivot: opts.no_pivot,
                preserve_fds: opts.listen_fds + opts.preserve_fds,
                id: opts.id.clone(),
                new_keyring: !opts.no_new_keyring,
                // Without these descriptors the parent falls back to writing cgroup.procs.
                close_in_child: dir.lock_fd().into_iter().collect(),
                cgroup_join: match (have_cgroup, split) {
                    (false, _) => None,
                    (true, true) => cgroup.open_into().ok(),
                    (true, false) => cgroup.open_join().ok(),
                },
                seccomp_listener: match plan.seccomp.as_ref().and_then(|s| s.listener()) {
                    Some(l) => Some(
                        crate::seccomp::connect_listener(&l.path)
                            .map_err(|e| ContainerError::Invalid(crate::init::chain(&e)))?,
                    ),
                    None => None,
                },
                status: None,
            },
            &mut obs,
        )?;
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, spawned.pid)?;
        }
        Ok(spawned)
    })();
    if res.is_err() {
        // The init is dead; `netns` kept its namespace alive so the devices can go home
        // (a new namespace would otherwise destroy virtual devices with it).
        if let Some(ns) = &obs.netns {
            for e in netdev::detach(&obs.moved, ns.as_fd()) {
                crate::logging::warn(&e.to_string());
            }
        }
        cgroup.undo_early(&early_dirs);
    }
    res
}

/// `exec.fifo`, the start barrier: mode 0622 whatever the umask, and owned by the container's
/// root (as runc does), so an init that is an unprivileged uid on the host can still open it.
fn make_fifo(dir: &StateDir, plan: &Plan) -> Result<PathBuf, ContainerError> {
    let p = dir.fifo_path();
    let fail = |step: &str| {
        let step = format!("{step} {p:?}");
        move |source| ContainerError::Sys { step, source }
    };
    nix::unistd::mkfifo(&p, Mode::from_bits_truncate(0o622)).map_err(fail("create"))?;
    nix::sys::stat::fchmodat(
        None,
        &p,
        Mode::from_bits_truncate(0o622),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(fail("set up"))?;
    let (uid, gid) = host_root(plan);
    nix::unistd::chown(&p, Some(uid.into()), Some(gid.into())).map_err(fail("set up"))?;
    Ok(p)
}

/// The host uid and gid that are root in the container (root itself without a user namespace).
fn host_root(plan: &Plan) -> (u32, u32) {
    let linux = plan.spec.linux().as_ref();
    let find = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.into_iter()
            .flatten()
            .find(|m| m.container_id() == 0)
            .map(|m| m.host_id())
            .unwrap_or(0)
    };
    (
        find(linux.and_then(|l| l.uid_mappings().as_ref())),
        find(linux.and_then(|l| l.gid_mappings().as_ref())),
    )
}

/// Whether `linux.resources` sets any limit (device rules alone don't need a cgroup of ours:
/// without one the caller's device access applies, as with runc's rootless and crun's disabled
/// managers; runc's own `spec` has a deny-all rule in every config).
/// The container's cgroup under `manager` (from `linux.cgroupsPath`), or none with
/// `--cgroup-manager=disabled`, which refuses a spec that asks for limits. For create and
/// restore.
pub(crate) fn cgroup_for(
    manager: CgroupManager,
    plan: &crate::spec::Plan,
    id: &str,
) -> Result<Cgroup, ContainerError> {
    let linux = plan.spec.linux().as_ref();
    Ok(match manager {
        CgroupManager::Disabled if asks_limits(linux.and_then(|l| l.resources().as_ref())) => {
            return Err(ContainerError::Invalid(format!(
                "{}: linux.resources sets limits, but --cgroup-manager=disabled makes no cgroup \
                 to apply them to",
                plan.bundle.join("config.json").display()
            )))
        }
        CgroupManager::Disabled => Cgroup::none(),
        m => Cgroup::resolve(
            linux.and_then(|l| l.cgroups_path().as_deref()),
            id,
            m == CgroupManager::Systemd,
        )?,
    })
}

/// What a new container's state.json starts as (no pid yet), for create and restore.
pub(crate) fn initial_state(plan: &crate::spec::Plan, id: &str, cgroup: &Cgroup) -> State {
    State {
        oci_version: plan.spec.version().clone(),
        id: id.to_string(),
        pid: 0,
        start_time: 0,
        bundle: plan.bundle.clone(),
        rootfs: plan.rootfs.clone(),
        created: state::now_rfc3339(),
        owner: owner_name(),
        cgroup: cgroup.path().to_path_buf(),
        config: plan.spec.clone(),
    }
}

fn asks_limits(r: Option<&oci_spec::runtime::LinuxResources>) -> bool {
    let Some(r) = r else { return false };
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("devices");
        o.retain(|_, v| !v.is_null());
        return !o.is_empty();
    }
    false
}

struct CreateObserver<'a> {
    dir: &'a StateDir,
    st: &'a mut State,
    cgroup: &'a Cgroup,
    plan: &'a Plan,
    have_cgroup: bool,
    /// `Some` when the second half of the cgroup is still to be made (with these resources).
    late: Option<Option<&'a oci_spec::runtime::LinuxResources>>,
    net_devices: Vec<NetDevice>,
    /// The init's network namespace once devices go there: held so that a failed create can
    /// still take them back after the init was killed.
    netns: Option<OwnedFd>,
    /// The devices that reached `netns`.
    moved: Vec<NetDevice>,
}

impl Observer for CreateObserver<'_> {
    fn cloned(&mut self, pid: i32) -> Result<(), String> {
        self.st.pid = pid;
        self.st.start_time = state::proc_start_time(pid).map(|(t, _)| t).unwrap_or(0);
        self.dir.save(self.st).map_err(|e| crate::init::chain(&e))
    }

    fn join_cgroup(&mut self, pid: i32, move_needed: bool) -> Result<Vec<OwnedFd>, String> {
        if !self.have_cgroup {
            return Ok(Vec::new());
        }
        let chain = |e: crate::cgroups::CgroupError| crate::init::chain(&e);
        if let Some(resources) = self.late {
            self.cgroup.create_late(resources).map_err(chain)?;
            if !move_needed {
                return self.cgroup.open_tasks().map_err(chain);
            }
        }
        if move_needed {
            self.cgroup.add_pid(pid).map_err(chain)?;
        }
        Ok(Vec::new())
    }

    fn hooks(&mut self, pid: i32) -> Result<(), String> {
        // Before the hooks, so that a createRuntime hook (CNI and the like) sees the devices.
        if !self.net_devices.is_empty() {
            let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
            let ns = netdev::open_netns(&path)
                .map_err(|e| format!("open the container's network namespace {path:?}: {e}"))?;
            let ns = self.netns.insert(ns);
            netdev::attach(&self.net_devices, ns.as_fd(), &mut self.moved)
                .map_err(|e| e.to_string())?;
        }
        let Some(h) = self.plan.spec.hooks() else {
            return Ok(());
        };
        let mut oci = self.st.oci(super::Status::Creating);
        oci.set_pid(Some(pid));
        for kind in [HookKind::Prestart, HookKind::CreateRuntime] {
            hooks::run(kind, kind.select(h), &oci).map_err(|e| crate::init::chain(&e))?;
        }
        Ok(())
    }
}

/// Write the pid file atomically (a reader never sees it empty), as runc does.
/// `--pid-file`: atomically, and only where a regular file or nothing is (see
/// [`crate::state::write_pid_file`]); `exec` and `restore` write theirs the same way.
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<(), ContainerError> {
    Ok(crate::state::write_pid_file(path, pid)?)
}

/// The caller's user name from the host's /etc/passwd (not NSS: loading NSS modules would cost
/// more than the rest of `create`). `restore` records its owner the same way.
pub(crate) fn owner_name() -> String {
    let uid = nix::unistd::geteuid().as_raw();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}
