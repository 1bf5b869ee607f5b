//! Control groups, v1 and v2 behind one interface: create with resources, join, list, kill and
//! remove. This is the interface the create path calls.
//!
//! Written over plain file writes rather than cgroups-rs: runc-parity means runc's exact files, values
//! and write order (setMemoryAndSwap's ordering, the cpu period/quota retry, the hybrid cgroup2 and
//! name=systemd directories, cpuset parent seeding), which cgroups-rs does differently or not at all,
//! and each of those is a few lines here. It also keeps husk's create path free of a dependency that
//! would sit on its ≤ 1 ms budget.
//!
//! Every function takes the hierarchy `layout::Layout` explicitly (the public methods read the
//! host's), so unit tests run against a tempdir without root.

mod devices;
mod devices_bpf;
mod join;
mod layout;
mod oom;
mod stats;
mod v1;
mod v2;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

pub use devices::{DeviceRule, DEFAULT_ALLOWED};
pub use join::{enter_v1, fork_joining, Join};
use layout::{Layout, Mode};
pub use oom::OomNotifier;
pub use stats::Stats;
pub use v2::{blkio_to_io_weight, shares_to_weight, swap_to_v2};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A value in `linux.resources` (or `linux.cgroupsPath`) that can't be applied on this host.
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `create` found the cgroup in use: processes or child cgroups that are not this
    /// container's (another container's cgroup, or a parent of containers).
    #[error(
        "linux.cgroupsPath: cgroup {path:?} is not this container's: {why}; give the container \
         a cgroupsPath of its own"
    )]
    NotOwn { path: PathBuf, why: String },
    /// The cgroup still holds processes that are not the container's: left in place.
    #[error(
        "cgroup {path:?} still has {n} process(es) that are not this container's (pids {pids}); \
         left in place",
        n = pids.len(),
        pids = pids.iter().map(i32::to_string).collect::<Vec<_>>().join(" ")
    )]
    Busy { path: PathBuf, pids: Vec<i32> },
    #[error("write {value:?} to {path:?}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
}

impl CgroupError {
    pub(crate) fn config(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A container's cgroup: its path relative to each hierarchy's root (e.g. `/husk/<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    path: PathBuf,
    /// On v1, the controllers whose hierarchies make up this cgroup (see
    /// [`Cgroup::limited_to`]); None: every mounted hierarchy, as runc's.
    only: Option<&'static [&'static str]>,
    /// What this value knows about whose cgroup it is, which decides what [`Cgroup::destroy`]
    /// may do.
    claim: Cell<Claim>,
}

/// Whose the cgroup is, as far as this value knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// Resolved from a config and not (successfully) created: nothing in it is known to be
    /// ours, and a failed creation already removed what it made. Never touched.
    Unclaimed,
    /// Read back from a state file: its processes are killed by the caller, who knows which
    /// are the container's; destroy only removes directories.
    Recorded,
    /// Made (or found empty) by this value's `create`: everything in it is ours.
    Made,
}

/// The root of the unified hierarchy on a pure cgroup v2 host (None on v1 or hybrid hosts).
pub fn v2_root() -> Option<PathBuf> {
    match Layout::host().ok()?.mode {
        Mode::V2 { root, .. } => Some(root),
        Mode::V1 { .. } => None,
    }
}

/// Where the v1 hierarchy carrying `controller` is mounted, if it is.
pub fn v1_mount(controller: &str) -> Option<PathBuf> {
    Layout::host()
        .ok()?
        .v1_mount(controller)
        .map(Path::to_path_buf)
}

/// Where relative and absent `cgroupsPath`s go. Not under the caller's cgroup as runc does: on a
/// shared host that is somebody else's cgroup.
const BASE: &str = "/husk";

impl Cgroup {
    /// Resolve `linux.cgroupsPath`: absent → `/husk/<id>`, relative → under `/husk/`, absolute as is
    /// (`..` can't climb above the root). `systemd` is `--systemd-cgroup` (`slice:prefix:name`).
    pub fn resolve(
        cgroups_path: Option<&Path>,
        id: &str,
        systemd: bool,
    ) -> Result<Self, CgroupError> {
        let systemd_running = Path::new("/run/systemd/system").is_dir();
        Self::resolve_with(cgroups_path, id, systemd, systemd_running)
    }

    fn resolve_with(
        cgroups_path: Option<&Path>,
        id: &str,
        systemd: bool,
        systemd_running: bool,
    ) -> Result<Self, CgroupError> {
        if systemd {
            if !systemd_running {
                return Err(CgroupError::config(
                    "linux.cgroupsPath",
                    "--systemd-cgroup needs systemd as init, and systemd is not running on this \
                     host (no /run/systemd/system); drop --systemd-cgroup to use cgroupfs",
                ));
            }
            let spec = cgroups_path.map(|p| p.to_string_lossy().into_owned());
            return Ok(Self::with(
                systemd_path(spec.as_deref().unwrap_or(""), id)?,
                Claim::Unclaimed,
            ));
        }
        let under_base = |p: &Path| {
            let c = clean(p);
            Path::new(BASE).join(c.strip_prefix("/").unwrap_or(&c))
        };
        // `""` is no path at all (as runc reads it): the container's own `/husk/<id>`.
        let given = cgroups_path.filter(|p| !p.as_os_str().is_empty());
        let path = match given {
            None => under_base(Path::new(id)),
            Some(p) if p.is_absolute() => clean(p),
            Some(p) => under_base(p),
        };
        if path == Path::new("/") {
            return Err(CgroupError::config(
                "linux.cgroupsPath",
                "must not be the root cgroup",
            ));
        }
        if path == Path::new(BASE) {
            return Err(CgroupError::config(
                "linux.cgroupsPath",
                format!(
                    "{:?} resolves to {BASE}, the parent of every husk container's cgroup; give \
                     the container a path of its own (or none, for {BASE}/<id>)",
                    given.unwrap_or(Path::new(""))
                ),
            ));
        }
        Ok(Self::with(path, Claim::Unclaimed))
    }

    fn with(path: PathBuf, claim: Claim) -> Self {
        Self {
            path,
            only: None,
            claim: Cell::new(claim),
        }
    }

    /// On v1, make the cgroup of only the hierarchies that carry `controllers` (a caller that
    /// needs no more, as the sandbox: each hierarchy is a mkdir, a join and an rmdir per run);
    /// on v2 nothing changes. Every later call on this value (join, stats, destroy) sees the
    /// same subset.
    pub fn limited_to(self, controllers: &'static [&'static str]) -> Self {
        Self {
            only: Some(controllers),
            ..self
        }
    }

    /// A cgroup the caller made in an earlier life and knows to be wholly its own (a dead
    /// `husk sandbox`'s, found by name): [`Cgroup::destroy`] kills what is left in it.
    pub fn adopt(path: PathBuf) -> Self {
        Self::with(path, Claim::Made)
    }

    /// The host's layout, narrowed to [`Cgroup::limited_to`]'s hierarchies.
    pub(crate) fn layout(&self) -> Result<Layout, CgroupError> {
        let l = Layout::host()?;
        Ok(match self.only {
            Some(c) => l.only(c),
            None => l,
        })
    }

    /// The cgroup recorded in `state.json` (empty: the container has none, see [`Cgroup::none`]).
    pub fn from_path(path: PathBuf) -> Self {
        Self::with(path, Claim::Recorded)
    }

    /// No cgroup of the container's own (`--cgroup-manager=disabled`): it stays in the caller's.
    /// Removal and listing are no-ops; what needs a cgroup (pause, update, stats) says so.
    pub fn none() -> Self {
        Self::with(PathBuf::new(), Claim::Recorded)
    }

    /// True for the paths no container may own: the root and husk's shared parent. A state file
    /// that records one (written by an older husk) must not lead to killing its members.
    pub fn is_shared(&self) -> bool {
        self.path == Path::new("/") || self.path == Path::new(BASE)
    }

    pub fn is_none(&self) -> bool {
        self.path.as_os_str().is_empty()
    }

    fn need(&self, what: &str) -> Result<(), CgroupError> {
        if self.is_none() {
            return Err(CgroupError::Unsupported(format!(
                "{what} needs the container's own cgroup, and it has none: it was created \
                 with --cgroup-manager=disabled, or by a user without a writable cgroup (give \
                 the user a delegated cgroup, e.g. systemd's Delegate=yes on cgroup v2, or run \
                 as root)"
            )));
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the host has v1 hierarchies (legacy or hybrid): only there is splitting the
    /// creation around the clone worth it (a dozen mkdirs to overlap with the init's mounts).
    pub fn host_has_v1() -> bool {
        Layout::host().is_ok_and(|l| !l.is_v2())
    }

    /// Check, without touching anything, that every resource can be applied on this host.
    pub fn validate(resources: &LinuxResources) -> Result<(), CgroupError> {
        validate_in(&Layout::host()?, resources)
    }

    /// Create the cgroup directories and write the resources. On failure, the directories this
    /// call created are removed again.
    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<(), CgroupError> {
        if self.is_none() {
            return Ok(());
        }
        let res = create_in(&self.layout()?, &self.path, resources);
        self.note(&res);
        res
    }

    /// Remember what creation did: a cgroup it could not make (in use by others, or any other
    /// failure, after which it removed what it made) is not touched again.
    fn note<T>(&self, res: &Result<T, CgroupError>) {
        self.claim.set(match res {
            Ok(_) => Claim::Made,
            Err(_) => Claim::Unclaimed,
        });
    }

    /// [`Cgroup::create`] in two halves around the init's clone: this one checks the resources
    /// and makes what `CLONE_INTO_CGROUP` needs; [`Cgroup::create_late`] makes the rest while
    /// the new init sets up its mounts on the other core (mkdir and rmdir are most of a
    /// container's cgroup cost, and they serialize on the kernel's cgroup mutex).
    /// Returns the directories it made, for [`Cgroup::undo_early`] should creation fail later.
    pub fn create_early(
        &self,
        resources: Option<&LinuxResources>,
    ) -> Result<Vec<PathBuf>, CgroupError> {
        if self.is_none() {
            return Ok(Vec::new());
        }
        let layout = self.layout()?;
        let mut created = Vec::new();
        let res = undo_on_error(&layout, |c| {
            early(&layout, &self.path, resources, c)?;
            created = c.clone();
            Ok(())
        });
        self.note(&res);
        res?;
        Ok(created)
    }

    /// After a failed creation: remove the cgroup and the directories `create_early` made
    /// (a parent it made is empty again once the cgroup is gone).
    pub fn undo_early(&self, made: &[PathBuf]) {
        let _ = self.destroy();
        if let Ok(layout) = self.layout() {
            for d in made.iter().rev() {
                let _ = layout::remove_dir(&layout, d);
            }
        }
    }

    pub fn create_late(&self, resources: Option<&LinuxResources>) -> Result<(), CgroupError> {
        if self.is_none() {
            return Ok(());
        }
        create_late_in(&self.layout()?, &self.path, resources)
    }

    /// Move `pid` into the cgroup (every hierarchy on v1).
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        if self.is_none() {
            return Ok(());
        }
        add_pid_in(&self.layout()?, &self.path, pid)
    }

    /// Every pid in the cgroup (and its descendants), sorted.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.need("listing the container's processes")?;
        pids_in(&self.layout()?, &self.path)
    }

    /// True when the cgroup is frozen (paused).
    pub fn is_frozen(&self) -> bool {
        !self.is_none() && self.layout().is_ok_and(|l| is_frozen_in(&l, &self.path))
    }

    /// Remove the cgroup; a cgroup that is already gone is fine. One this value made is its
    /// caller's alone: whatever is left in it is killed first. One read back from a state file
    /// is only removed (see [`Cgroup::remove`]): the caller kills the container's processes,
    /// knowing which they are. One this value did not make (found in use by others, or never
    /// created) is left alone.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        if self.is_none() || self.is_shared() {
            return Ok(());
        }
        match self.claim.get() {
            Claim::Unclaimed => Ok(()),
            Claim::Made => destroy_in(&self.layout()?, &self.path),
            Claim::Recorded => self.remove(),
        }
    }

    /// Remove the cgroup's directories without signalling anything: empty child cgroups go
    /// first (a container may make its own); a directory that still has processes stays, and
    /// the error says which (they are not the container's once its own are dead).
    pub fn remove(&self) -> Result<(), CgroupError> {
        if self.is_none() || self.is_shared() {
            return Ok(());
        }
        remove_in(&self.layout()?, &self.path)
    }

    /// True when the cgroup has child cgroups in some hierarchy (its own, or other containers'
    /// nested below it).
    pub fn has_children(&self) -> bool {
        !self.is_none()
            && self
                .layout()
                .is_ok_and(|l| l.dirs(&self.path).iter().any(|d| subtree(d).len() > 1))
    }

    /// The pids [`Cgroup::kill_members`] would kill.
    pub fn own_pids(
        &self,
        skip: &[PathBuf],
        keep: &dyn Fn(i32) -> bool,
    ) -> Result<Vec<i32>, CgroupError> {
        if self.is_none() || self.is_shared() {
            return Ok(Vec::new());
        }
        Ok(own_pids(&self.layout()?, &self.path, skip, keep))
    }

    /// SIGKILL the processes of the cgroup's subtree, except those in the `skip` sub-cgroups
    /// (other containers' cgroups nested below this one), and those `keep` says are not the
    /// container's. For a container with no pid namespace of its own, whose processes are
    /// its cgroup's. Frozen first where nothing is skipped, so none can fork away meanwhile.
    pub fn kill_members(
        &self,
        skip: &[PathBuf],
        keep: &dyn Fn(i32) -> bool,
    ) -> Result<(), CgroupError> {
        if self.is_none() || self.is_shared() {
            return Ok(());
        }
        kill_own_in(&self.layout()?, &self.path, skip, keep)
    }

    /// Freeze every task (v1 freezer.state, v2 cgroup.freeze), returning once the kernel says so.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.need("pause")?;
        set_frozen_in(&self.layout()?, &self.path, true)
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.need("resume")?;
        set_frozen_in(&self.layout()?, &self.path, false)
    }

    /// Counters in `runc events --stats` shape.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        self.need("stats")?;
        Ok(stats::collect(&self.layout()?, &self.path))
    }

    /// Change resources of a live cgroup (`husk update`): validated first, then written as at
    /// creation, honouring `memory.checkBeforeUpdate`. Device rules are rewritten only when given.
    pub fn update(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        self.need("update")?;
        update_in(&self.layout()?, &self.path, resources)
    }

    /// How many tasks the OOM killer has killed in this cgroup.
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        self.need("OOM counting")?;
        oom::kill_count(&self.layout()?, &self.path)
    }

    /// A pollable fd that becomes readable on OOM events (v1 eventfd on memory.oom_control, v2
    /// inotify on memory.events); compare [`Cgroup::oom_kill_count`] after each wake-up.
    pub fn oom_notifier(&self) -> Result<OomNotifier, CgroupError> {
        self.need("OOM events")?;
        OomNotifier::new(&self.layout()?, &self.path)
    }
}

/// Every `hugepageLimits[].pageSize` must be a huge page size this host has (v1 and v2 alike).
pub(crate) fn check_hugepage_sizes(
    layout: &Layout,
    limits: &[oci_spec::runtime::LinuxHugepageLimit],
) -> Result<(), CgroupError> {
    if layout.create_files {
        return Ok(());
    }
    let sizes = hugepage_sizes();
    for (i, l) in limits.iter().enumerate() {
        if !sizes.contains(l.page_size()) {
            return Err(CgroupError::config(
                format!("linux.resources.hugepageLimits[{i}].pageSize"),
                format!(
                    "{:?} is not a huge page size of this host {sizes:?}",
                    l.page_size()
                ),
            ));
        }
    }
    Ok(())
}

/// Lexically clean `p` as an absolute path: `.` and `..` are resolved and can't climb above `/`
/// (runc's CleanPath, so a cgroupsPath can't reach outside the hierarchy).
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// `slice:prefix:name` → the path systemd's driver would give the scope, e.g.
/// `system.slice:docker:abc` → `/system.slice/docker-abc.scope`; nested slices expand as systemd
/// does (`a-b.slice` lives in `a.slice/a-b.slice`).
fn systemd_path(spec: &str, id: &str) -> Result<PathBuf, CgroupError> {
    let parts: Vec<&str> = if spec.is_empty() {
        vec!["", "husk", id]
    } else {
        spec.split(':').collect()
    };
    let [slice, prefix, name] = parts[..] else {
        return Err(CgroupError::config(
            "linux.cgroupsPath",
            format!("{spec:?}: with --systemd-cgroup it must be slice:prefix:name"),
        ));
    };
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let bad = |why: &str| CgroupError::config("linux.cgroupsPath", format!("{spec:?}: {why}"));
    if !slice.ends_with(".slice") || slice.contains('/') {
        return Err(bad("the slice must be a name ending in .slice"));
    }
    let mut path = PathBuf::from("/");
    let stem = &slice[..slice.len() - ".slice".len()];
    if stem != "-" {
        if stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
            return Err(bad("invalid slice name"));
        }
        let mut acc = String::new();
        for part in stem.split('-') {
            if !acc.is_empty() {
                acc.push('-');
            }
            acc.push_str(part);
            path.push(format!("{acc}.slice"));
        }
    }
    if name.contains('/') || prefix.contains('/') || name.is_empty() {
        return Err(bad("prefix and name must be plain names"));
    }
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    path.push(unit);
    Ok(path)
}

/// 0 (or absent) means "not set" in runc's configs for every numeric resource.
pub(crate) fn nonzero<T: Into<i128> + Copy>(v: Option<T>) -> bool {
    v.is_some_and(|v| v.into() != 0)
}

/// The host's huge page sizes in runc's notation (`2MB`, `1GB`), from /sys/kernel/mm/hugepages.
pub(crate) fn hugepage_sizes() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(kb) = name
            .strip_prefix("hugepages-")
            .and_then(|s| s.strip_suffix("kB"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        out.push(match kb {
            kb if kb >= 1 << 20 && kb % (1 << 20) == 0 => format!("{}GB", kb >> 20),
            kb if kb >= 1 << 10 && kb % (1 << 10) == 0 => format!("{}MB", kb >> 10),
            kb => format!("{kb}KB"),
        });
    }
    out.sort();
    out
}

/// `rdma.max` lines, one per device, sorted by device for a reproducible order.
pub(crate) fn rdma_lines(r: &LinuxResources) -> Vec<String> {
    let mut out: Vec<String> = r
        .rdma()
        .iter()
        .flatten()
        .map(|(dev, l)| {
            let mut s = dev.clone();
            if let Some(h) = l.hca_handles() {
                s.push_str(&format!(" hca_handle={h}"));
            }
            if let Some(o) = l.hca_objects() {
                s.push_str(&format!(" hca_object={o}"));
            }
            s
        })
        .collect();
    out.sort();
    out
}

fn validate_in(layout: &Layout, r: &LinuxResources) -> Result<(), CgroupError> {
    if layout.is_v2() {
        v2::validate(layout, r)
    } else {
        v1::validate(layout, r)
    }
}

fn create_in(
    layout: &Layout,
    path: &Path,
    resources: Option<&LinuxResources>,
) -> Result<(), CgroupError> {
    undo_on_error(layout, |created| {
        early(layout, path, resources, created)?;
        late(layout, path, resources, created)
    })
}

fn create_late_in(
    layout: &Layout,
    path: &Path,
    resources: Option<&LinuxResources>,
) -> Result<(), CgroupError> {
    undo_on_error(layout, |created| late(layout, path, resources, created))
}

/// What must exist before the clone: the directory `CLONE_INTO_CGROUP` takes (pure v2, or the
/// hybrid cgroup2), after checking every resource. Everything else is [`late`].
fn early(
    layout: &Layout,
    path: &Path,
    resources: Option<&LinuxResources>,
    created: &mut Vec<PathBuf>,
) -> Result<(), CgroupError> {
    let empty = LinuxResources::default();
    let r = resources.unwrap_or(&empty);
    validate_in(layout, r)?;
    devices::rules(r.devices().as_ref())?;
    check_unused(layout, path)?;
    match &layout.mode {
        Mode::V2 { .. } => v2::mkdirs(layout, path, created),
        Mode::V1 {
            unified: Some(u), ..
        } => v1::mkdirs(layout, path, None, created, &|d| d.starts_with(u)),
        Mode::V1 { unified: None, .. } => Ok(()),
    }
}

/// The rest of creation: the v1 directories and every resource.
fn late(
    layout: &Layout,
    path: &Path,
    resources: Option<&LinuxResources>,
    created: &mut Vec<PathBuf>,
) -> Result<(), CgroupError> {
    let empty = LinuxResources::default();
    let r = resources.unwrap_or(&empty);
    let rules = devices::rules(r.devices().as_ref())?;
    match &layout.mode {
        Mode::V2 { .. } => {
            let dir = layout.dirs(path).into_iter().next().unwrap_or_default();
            v2::set(layout, &dir, r, false)
        }
        Mode::V1 { unified, .. } => {
            let not_unified = |d: &Path| !unified.as_ref().is_some_and(|u| d.starts_with(u));
            v1::mkdirs(layout, path, r.cpu().as_ref(), created, &not_unified)?;
            if let Some(c) = r.cpu() {
                v1::set_rt(layout, path, c)?;
            }
            v1::set(layout, path, r, &rules, false)
        }
    }
}

/// Run `f`, which records each directory it makes; on failure remove them again.
fn undo_on_error(
    layout: &Layout,
    f: impl FnOnce(&mut Vec<PathBuf>) -> Result<(), CgroupError>,
) -> Result<(), CgroupError> {
    let mut created = Vec::new();
    let res = f(&mut created);
    if res.is_err() {
        // Deepest first, so each directory is empty when its turn comes.
        for d in created.iter().rev() {
            let _ = layout::remove_dir(layout, d);
        }
    }
    res
}

fn update_in(layout: &Layout, path: &Path, r: &LinuxResources) -> Result<(), CgroupError> {
    validate_in(layout, r)?;
    if layout.is_v2() {
        let dir = layout.dirs(path).into_iter().next().unwrap_or_default();
        return v2::set(layout, &dir, r, true);
    }
    // Without explicit rules the container keeps the ones it has: re-applying the defaults over
    // live tasks would open a deny-all window.
    let rules = match r.devices() {
        Some(d) if !d.is_empty() => devices::rules(Some(d))?,
        _ => Vec::new(),
    };
    if let Some(c) = r.cpu() {
        v1::set_rt(layout, path, c)?;
    }
    v1::set(layout, path, r, &rules, true)
}

fn add_pid_in(layout: &Layout, path: &Path, pid: i32) -> Result<(), CgroupError> {
    for dir in layout.dirs(path) {
        layout::write(layout, &dir, "cgroup.procs", &pid.to_string())?;
    }
    Ok(())
}

/// Every directory of the subtree at `dir`, parents before children; empty when `dir` is gone.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
        out.push(d);
    }
    out
}

fn pids_in(layout: &Layout, path: &Path) -> Result<Vec<i32>, CgroupError> {
    let mut set = BTreeSet::new();
    for dir in layout.dirs(path) {
        for d in subtree(&dir) {
            // A sub-cgroup removed between the listing and the read has no pids left to report.
            let Some(text) = layout::read_opt(&d.join("cgroup.procs"))? else {
                continue;
            };
            set.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    Ok(set.into_iter().collect())
}

/// The v1 freezer directory, or on v2 (and in a hybrid without a freezer) the cgroup2 directory.
enum Freezer {
    V1(PathBuf),
    V2(PathBuf),
}

fn freezer(layout: &Layout, path: &Path) -> Option<Freezer> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    match &layout.mode {
        Mode::V1 { unified, .. } => layout
            .v1_mount("freezer")
            .map(|m| Freezer::V1(m.join(rel)))
            .or_else(|| unified.as_ref().map(|u| Freezer::V2(u.join(rel)))),
        Mode::V2 { root, .. } => Some(Freezer::V2(root.join(rel))),
    }
}

fn is_frozen_in(layout: &Layout, path: &Path) -> bool {
    match freezer(layout, path) {
        Some(Freezer::V1(d)) => layout::read_opt(&d.join("freezer.state"))
            .ok()
            .flatten()
            .is_some_and(|s| s.trim() == "FROZEN"),
        Some(Freezer::V2(d)) => layout::read_opt(&d.join("cgroup.freeze"))
            .ok()
            .flatten()
            .is_some_and(|s| s.trim() == "1"),
        None => false,
    }
}

/// Freeze or thaw, waiting until the kernel reports the new state (v1 `FREEZING` → `FROZEN`,
/// v2 `frozen 1` in cgroup.events).
pub(crate) fn set_frozen_in(layout: &Layout, path: &Path, frozen: bool) -> Result<(), CgroupError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    match freezer(layout, path) {
        Some(Freezer::V1(d)) => {
            let want = if frozen { "FROZEN" } else { "THAWED" };
            loop {
                layout::write(layout, &d, "freezer.state", want)?;
                let state = layout::read(&d.join("freezer.state"))?;
                if state.trim() == want || layout.create_files {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(CgroupError::Unsupported(format!(
                        "freeze {}: still {} after 5s",
                        d.display(),
                        state.trim()
                    )));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Some(Freezer::V2(d)) => {
            layout::write(layout, &d, "cgroup.freeze", if frozen { "1" } else { "0" })?;
            let want = if frozen { "frozen 1" } else { "frozen 0" };
            loop {
                let ev = layout::read_opt(&d.join("cgroup.events"))?.unwrap_or_default();
                if ev.lines().any(|l| l.trim() == want) || layout.create_files {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(CgroupError::Unsupported(format!(
                        "freeze {}: cgroup.events never said {want:?}",
                        d.display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        None => Err(CgroupError::Unsupported(
            "freeze: no freezer cgroup on this host".into(),
        )),
    }
}

/// A cgroup `create` may take: absent, or present with no process, no child cgroup and not
/// frozen (runc 1.2 refuses a non-empty one too). Anything else is somebody else's.
fn check_unused(layout: &Layout, path: &Path) -> Result<(), CgroupError> {
    let not_own = |why: String| CgroupError::NotOwn {
        path: path.to_path_buf(),
        why,
    };
    for dir in layout.dirs(path) {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut children: Vec<String> = rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !children.is_empty() {
            children.sort();
            return Err(not_own(format!(
                "it already has child cgroups ({}) in {}",
                children.join(", "),
                dir.display()
            )));
        }
        let n = layout::read_opt(&dir.join("cgroup.procs"))?
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count();
        if n > 0 {
            return Err(not_own(format!(
                "it already has {n} process(es) in {}",
                dir.display()
            )));
        }
    }
    if is_frozen_in(layout, path) {
        return Err(not_own("it is frozen".into()));
    }
    Ok(())
}

fn kill_all(pids: &[i32]) {
    for &pid in pids {
        if pid > 0 {
            // SAFETY: kill(2) takes plain integers and touches no memory of ours; pid > 0 so it
            // addresses exactly one process (never a group or everything).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// [`Cgroup::destroy`] of a cgroup this process made: everything in it is its own.
fn destroy_in(layout: &Layout, path: &Path) -> Result<(), CgroupError> {
    // The common case — the container is gone and made no sub-cgroups — needs one rmdir per
    // hierarchy; only a busy directory takes the full path below.
    if !remove_leaves(layout, path) {
        return Ok(());
    }
    if !pids_in(layout, path)?.is_empty() {
        kill_own_in(layout, path, &[], &|_| false)?;
    }
    remove_in(layout, path)
}

/// One rmdir per hierarchy; true when some directory is still there.
fn remove_leaves(layout: &Layout, path: &Path) -> bool {
    let mut busy = false;
    for dir in layout.dirs(path) {
        match layout::remove_dir(layout, &dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => busy = true,
        }
    }
    busy
}

/// [`Cgroup::remove`]: every directory of the subtree, children first, none of them emptied by
/// force. A directory with processes left makes [`CgroupError::Busy`] (the rest still goes);
/// one the kernel still calls busy with no process listed (tasks on their way out) is retried
/// for a while.
fn remove_in(layout: &Layout, path: &Path) -> Result<(), CgroupError> {
    if !remove_leaves(layout, path) {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut busy: BTreeSet<i32> = BTreeSet::new();
    let mut busy_dir = None;
    for dir in layout.dirs(path) {
        for d in subtree(&dir).iter().rev() {
            // A directory with live processes stays busy: no point waiting for it.
            let live = || -> Vec<i32> {
                pids_of_subtree(d)
                    .into_iter()
                    .filter(|&p| alive(p))
                    .collect()
            };
            match remove_dir_retry(layout, d, deadline, &|| !live().is_empty()) {
                Ok(()) => {}
                Err(e) => {
                    let pids: Vec<i32> = live();
                    if pids.is_empty() {
                        return Err(e);
                    }
                    busy.extend(pids);
                    busy_dir.get_or_insert_with(|| d.clone());
                }
            }
        }
    }
    match busy_dir {
        None => Ok(()),
        Some(path) => Err(CgroupError::Busy {
            path,
            pids: busy.into_iter().collect(),
        }),
    }
}

/// The pids in the subtree of one directory (one hierarchy).
fn pids_of_subtree(dir: &Path) -> Vec<i32> {
    let mut out = BTreeSet::new();
    for d in subtree(dir) {
        if let Ok(Some(text)) = layout::read_opt(&d.join("cgroup.procs")) {
            out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    out.into_iter().collect()
}

/// The pids of the cgroup's subtree in every hierarchy, leaving out the `skip` sub-cgroups
/// (paths like the cgroup's own) and whatever `keep` spares.
fn own_pids(
    layout: &Layout,
    path: &Path,
    skip: &[PathBuf],
    keep: &dyn Fn(i32) -> bool,
) -> Vec<i32> {
    let skipped: Vec<PathBuf> = skip
        .iter()
        .filter(|s| s.starts_with(path) && s.as_path() != path)
        .flat_map(|s| layout.dirs(s))
        .collect();
    let mut out = BTreeSet::new();
    for dir in layout.dirs(path) {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            if skipped.contains(&d) {
                continue;
            }
            if let Ok(Some(text)) = layout::read_opt(&d.join("cgroup.procs")) {
                out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
            if let Ok(rd) = std::fs::read_dir(&d) {
                stack.extend(
                    rd.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
    }
    out.into_iter().filter(|&p| p > 0 && !keep(p)).collect()
}

/// Kill the cgroup's own processes (see [`Cgroup::kill_members`]) and wait for them to go.
/// `cgroup.kill` where the kernel has it and nothing is skipped (it takes the whole subtree);
/// else freeze (only when nothing is skipped: a frozen parent freezes its children), SIGKILL,
/// thaw, so that the kills are delivered.
fn kill_own_in(
    layout: &Layout,
    path: &Path,
    skip: &[PathBuf],
    keep: &dyn Fn(i32) -> bool,
) -> Result<(), CgroupError> {
    // cgroup.kill and the freezer act on the whole subtree: only for a cgroup without child
    // cgroups, whose processes are all in view.
    let whole = layout.dirs(path).iter().all(|d| subtree(d).len() <= 1);
    let unified = match &layout.mode {
        Mode::V1 { unified, .. } => unified
            .as_ref()
            .map(|u| u.join(path.strip_prefix("/").unwrap_or(path))),
        Mode::V2 { .. } => layout.dirs(path).into_iter().next(),
    };
    let mut pids = own_pids(layout, path, skip, keep);
    if pids.is_empty() {
        return Ok(());
    }
    let untouched = own_pids(layout, path, skip, &|_| false).len() == pids.len();
    if whole && untouched {
        if let Some(u) = unified.filter(|u| u.join("cgroup.kill").exists()) {
            layout::write(layout, &u, "cgroup.kill", "1")?;
            pids = own_pids(layout, path, skip, keep);
        }
    }
    let was_frozen = is_frozen_in(layout, path);
    if !pids.is_empty() {
        let frozen =
            whole && untouched && (was_frozen || set_frozen_in(layout, path, true).is_ok());
        kill_all(&own_pids(layout, path, skip, keep));
        if frozen || was_frozen {
            // A frozen task dies only once thawed (runc thaws after SIGKILL too).
            set_frozen_in(layout, path, false)?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = own_pids(layout, path, skip, keep);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CgroupError::Unsupported(format!(
                "kill the processes of cgroup {}: {} still there after 5s",
                path.display(),
                left.len()
            )));
        }
        // New children forked before the kill landed.
        kill_all(&left);
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// True while `pid` runs (not a zombie): a zombie still listed in a cgroup is on its way out.
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 2..i + 3))
        .unwrap_or("X");
    state != "Z" && state != "X"
}

/// rmdir `d`, retrying while the kernel calls it busy (tasks on their way out) until
/// `deadline`, unless `stuck` says waiting is pointless.
fn remove_dir_retry(
    layout: &Layout,
    d: &Path,
    deadline: Instant,
    stuck: &dyn Fn() -> bool,
) -> Result<(), CgroupError> {
    loop {
        match layout::remove_dir(layout, d) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && Instant::now() < deadline
                    && !stuck() =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(source) => {
                return Err(CgroupError::Io {
                    op: "remove cgroup",
                    path: d.to_path_buf(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
