//! Limits → a runtime [`Plan`]: an OCI spec built in memory and validated by the same code as
//! `config.json` ([`crate::spec::inmemory::plan_from_spec`]).
//!
//! The view (the default, minimal one): the host's `/bin`, `/sbin`, `/lib*` and `/usr`
//! read-only, the [`ETC`] entries of the host's `/etc` read-only (the files as copies kept in
//! the skeleton, see `etc_copies`; the directories bound), a fresh bounded `/tmp`,
//! `/proc` of the program's own pid namespace with `hidepid=2` (the program sees its own
//! processes only), a minimal `/dev` (null, zero, full, random, urandom, tty, shm, pts), an
//! empty read-only `/run`, and the box at `/box`. Everything else of the host (homes, `/root`,
//! `/srv`, `/var`, `/opt`, the rest of `/etc`) is not there: it comes in only through `--dir`.
//! `--host-root` binds every top-level directory of the host read-only instead (weaker: the
//! program can read every world-readable file of the host).
//!
//! The root: a skeleton directory (`/run/husk-sandbox/root`, made once) holding one empty
//! mount point per top-level directory of the host, the host's top-level symlinks
//! (`/bin -> usr/bin`) and the copies of the `/etc` files. Each host directory is bound
//! read-only (recursively, nosuid, nodev) onto its mount point; `/proc`, `/dev` and `/tmp` are
//! fresh; the skeleton itself is remounted read-only. Why not one read-only rbind of `/` as the
//! root: the rootfs code mounts through a descriptor of the root directory opened
//! before the first mount, and a bind over that directory would hide every later mount (nor
//! can `/` itself be pivot_root's new root).
//! Why not a tmpfs root: same, and the mount points would have to be recreated on every run.
//! The skeleton costs one bind per top-level directory (~20 µs each here) and keeps the host's
//! `/run` (sockets of daemons), `/sys` and `/dev` out of the sandbox.

use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use super::limits::{environment, workdir, Options};
use crate::cgroups::{Cgroup, CgroupError};
use crate::spec::{Plan, SpecError};
use crate::sys::Kind;

/// Where the skeleton root lives on the host (root's; see [`skeleton`]).
pub const SKELETON: &str = "/run/husk-sandbox/root";

/// The skeleton root of this caller: root's under /run; a non-root user's in a directory of
/// its own under /tmp, made 0700 and refused if it exists but isn't the caller's own directory
/// (another user could have planted it).
pub fn skeleton() -> Result<PathBuf, PlanError> {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return Ok(PathBuf::from(SKELETON));
    }
    let base = PathBuf::from(format!("/tmp/husk-sandbox-{uid}"));
    let err = |source| PlanError::Skeleton {
        path: base.clone(),
        source,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&base) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e)),
    }
    let m = std::fs::symlink_metadata(&base).map_err(err)?;
    if !m.is_dir() || m.uid() != uid.as_raw() || m.mode() & 0o022 != 0 {
        return Err(err(std::io::Error::other(
            "exists but is not a directory of the caller's that only it can write",
        )));
    }
    Ok(base.join("root"))
}

/// How a run is set up besides its options: as root, or as a user (a user namespace mapping
/// the caller to `--uid`/`--gid`), with or without a cgroup of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    pub userns: bool,
    pub cgroup: bool,
}

impl Mode {
    pub fn root() -> Self {
        Self {
            userns: false,
            cgroup: true,
        }
    }
}

/// The limits that need a cgroup and, without one, what stands in for them (per process,
/// so weaker): for the verdict's `message`.
pub fn without_cgroup(o: &Options) -> Option<String> {
    let mut what = Vec::new();
    if o.time.is_some() {
        what.push("--time (RLIMIT_CPU per process; usage from rusage)");
    }
    if o.memory.is_some() {
        what.push("--memory (RLIMIT_AS per process: an allocation fails instead of MLE)");
    }
    if o.pids.is_some() {
        what.push("--pids (RLIMIT_NPROC)");
    }
    if what.is_empty() {
        return None;
    }
    Some(format!(
        "no writable cgroup for a non-root caller: enforced per process only: {}",
        what.join(", ")
    ))
}
/// The cgroup parent of every sandbox (absolute, so never under the caller's cgroup).
/// Prefix of the sandbox cgroups (`/husk-sandbox-<pid>-<n>`): one level, so removing a run's
/// cgroup leaves nothing behind.
pub const CGROUP_PARENT: &str = "/husk-sandbox";

/// The v1 hierarchies a sandbox's cgroup is made of: what it limits and measures (memory,
/// pids, cpuacct's usage) and devices (a v1 cgroup without it reaches every device; runc and
/// husk refuse that). Not cpu (no shares or quota), freezer (the pid namespace's death takes
/// every process), blkio, hugetlb or the named/hybrid ones: each would be a mkdir, a join and
/// an rmdir per run for nothing. cpuset only with --cpus (its mkdir copies the parent's cpus
/// and mems). On cgroup v2 the one hierarchy is used as is.
const CONTROLLERS: &[&str] = &["devices", "memory", "cpuacct", "pids"];
const CONTROLLERS_CPUSET: &[&str] = &["devices", "memory", "cpuacct", "pids", "cpuset"];

/// The sandbox cgroup `name` (`CGROUP_PARENT-...`), of the hierarchies above; `cpuset` when
/// the program's CPUs are limited (a pool slot's jobs may each ask).
pub fn cgroup(name: &Path, cpuset: bool) -> Result<Cgroup, CgroupError> {
    Ok(Cgroup::resolve(Some(name), "sandbox", false)?.limited_to(controllers(cpuset)))
}

fn controllers(cpuset: bool) -> &'static [&'static str] {
    if cpuset {
        CONTROLLERS_CPUSET
    } else {
        CONTROLLERS
    }
}

/// A dead sandbox's cgroup, to be removed with whatever still runs in it.
pub fn stale_cgroup(name: &Path) -> Cgroup {
    Cgroup::adopt(name.to_path_buf()).limited_to(CONTROLLERS_CPUSET)
}

/// Top-level host entries the sandbox gets fresh (or not at all) instead of bound.
const NOT_BOUND: &[&str] = &["proc", "sys", "dev", "tmp", "run", "lost+found", "box"];

/// Top-level host directories of the minimal view.
pub const MINIMAL: &[&str] = &["bin", "lib", "lib32", "lib64", "libx32", "sbin", "usr"];

/// Entries of the host's `/etc` in the minimal view: users and groups by name, the dynamic
/// linker's cache and configuration, the time zone, name service and protocol tables, and the
/// alternatives that `/usr/bin` symlinks point through; plus `java*` (the JDK's configuration
/// its `lib/` links to). No secrets: no shadow, no ssh, no machine-id.
pub const ETC: &[&str] = &[
    "alternatives",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "passwd",
    "protocols",
    "services",
];

/// `/proc` mount options: the program sees only its own processes (not the sandbox's pid 1,
/// whose command line is the caller's husk command line).
pub const PROC_OPTIONS: &str = "hidepid=2";

/// The [`ETC`] entries (and `java*`) the host has: (name, is a directory). Looked up once, and
/// for root remembered next to the skeleton until `/etc` changes (`etc_cache`).
pub fn etc_entries() -> &'static [(String, bool)] {
    static E: std::sync::OnceLock<Vec<(String, bool)>> = std::sync::OnceLock::new();
    E.get_or_init(|| {
        let cache = nix::unistd::geteuid()
            .is_root()
            .then(|| Path::new(SKELETON).with_file_name("etc.list"));
        let stamp = cache
            .as_ref()
            .and_then(|_| super::etc_cache::stamp(Path::new("/etc")));
        if let (Some(file), Some(stamp)) = (&cache, &stamp) {
            if let Some(e) = super::etc_cache::load(file, stamp, etc_name) {
                return e;
            }
        }
        let e = etc_lookup();
        if let (Some(file), Some(stamp)) = (&cache, &stamp) {
            super::etc_cache::store(file, stamp, &e);
        }
        e
    })
}

/// A name of the host's `/etc` the view takes.
fn etc_name(name: &str) -> bool {
    (ETC.contains(&name) || name.starts_with("java")) && !name.contains('/')
}

fn etc_lookup() -> Vec<(String, bool)> {
    let etc = Path::new("/etc");
    let Ok(d) = crate::sys::list_dir(etc) else {
        return Vec::new();
    };
    let mut out: Vec<(String, bool)> = d
        .iter()
        .filter_map(|e| {
            let name = e.name_str()?;
            if !etc_name(name) {
                return None;
            }
            // The directory entry's type, but a symlink's (localtime) is what it points to:
            // the bind follows it.
            let dir = match e.kind {
                Kind::Symlink => {
                    let t = std::fs::metadata(crate::sys::entry_path(etc, e)).ok()?;
                    (t.is_dir() || t.is_file()).then_some(t.is_dir())?
                }
                Kind::Dir => true,
                Kind::File => false,
                Kind::Other => return None,
            };
            Some((name.to_string(), dir))
        })
        .collect();
    out.sort();
    out
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("prepare the sandbox root {path:?}: {source}")]
    Skeleton {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("build the sandbox spec: {0}")]
    Spec(String),
    #[error(transparent)]
    Invalid(#[from] SpecError),
    #[error("an idmapped copy of a bound directory: {0}")]
    Idmap(#[source] nix::Error),
}

/// A top-level entry of the host root, as the skeleton mirrors it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopLevel {
    Dir(String),
    Link(String, PathBuf),
}

/// The host's top-level directories and symlinks, minus `NOT_BOUND` (files are left out:
/// nothing a program needs lives directly in `/`).
pub fn host_top_level() -> Result<Vec<TopLevel>, PlanError> {
    let err = |source| PlanError::Skeleton {
        path: PathBuf::from("/"),
        source,
    };
    let mut out = Vec::new();
    for e in crate::sys::list_dir(Path::new("/")).map_err(err)? {
        let Some(name) = e.name_str().map(String::from) else {
            continue;
        };
        if NOT_BOUND.contains(&name.as_str()) {
            continue;
        }
        match e.kind {
            Kind::Symlink => {
                let target = std::fs::read_link(Path::new("/").join(&name)).map_err(err)?;
                out.push(TopLevel::Link(name, target));
            }
            Kind::Dir => out.push(TopLevel::Dir(name)),
            Kind::File | Kind::Other => {}
        }
    }
    out.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    Ok(out)
}

fn name_of(t: &TopLevel) -> &str {
    match t {
        TopLevel::Dir(n) | TopLevel::Link(n, _) => n,
    }
}

/// Make (or complete) the skeleton: mount points for `top` and the fresh file systems, and
/// the host's top-level symlinks. Safe to run concurrently: every step tolerates "exists".
pub fn ensure_skeleton(root: &Path, top: &[TopLevel]) -> Result<(), PlanError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PlanError::Skeleton { path, source }
    };
    let mkdir = |p: &Path| -> Result<(), PlanError> {
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(p)
        {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(err(p)(e)),
        }
    };
    if !root.join("box").is_dir() {
        mkdir(root)?;
        for d in ["proc", "dev", "tmp", "run", "box", "etc"] {
            mkdir(&root.join(d))?;
        }
    }
    // What the skeleton has, from its directory listings rather than a stat of each entry.
    let listing = |dir: &Path| -> std::collections::HashMap<String, Kind> {
        crate::sys::list_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e.name_str()?.to_string(), e.kind)))
            .collect()
    };
    // The minimal view's /etc: copies of the files, mount points for the directories (the
    // host-root view's /etc bind covers both).
    let files = etc_entries().iter().filter(|(_, dir)| !dir);
    super::etc_copies::refresh(&root.join("etc"), files.map(|(name, _)| name.as_str()))
        .map_err(|(path, source)| PlanError::Skeleton { path, source })?;
    let have = listing(&root.join("etc"));
    for (name, _) in etc_entries().iter().filter(|(_, dir)| *dir) {
        if have.get(name) != Some(&Kind::Dir) {
            mkdir(&root.join("etc").join(name))?;
        }
    }
    let have = listing(root);
    for t in top {
        match t {
            TopLevel::Dir(n) => {
                if have.get(n) != Some(&Kind::Dir) {
                    mkdir(&root.join(n))?;
                }
            }
            TopLevel::Link(n, target) => {
                let p = root.join(n);
                if !have.contains_key(n) {
                    match std::os::unix::fs::symlink(target, &p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(err(&p)(e)),
                    }
                }
            }
        }
    }
    Ok(())
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Value {
    json!({"destination": dest, "type": typ, "source": source, "options": options})
}

/// The mounts of a sandbox, in order: the host's directories read-only (the minimal view, or
/// every one with `--host-root`), fresh /proc /dev /dev/shm /tmp, the box, then the `--dir`
/// rules. No fresh /run: the skeleton's empty, read-only directory stands there (a program
/// under test has nothing to keep in it), and each new file system is a superblock made and
/// torn down per run and per batch job (/run's and /proc/acpi's mask together: 0.20 ms of a
/// single run, paired A/B of 300 rounds).
pub fn mounts(o: &Options, top: &[TopLevel], cwd: &Path) -> Vec<Value> {
    let mut m = Vec::new();
    let ro = ["rbind", "rro", "rnosuid", "rnodev"];
    for t in top {
        if let TopLevel::Dir(n) = t {
            if o.host_root || MINIMAL.contains(&n.as_str()) {
                let p = format!("/{n}");
                m.push(mount(&p, "bind", &p, &ro));
            }
        }
    }
    if !o.host_root {
        // The files are copies in the skeleton (`etc_copies`).
        for (name, _) in etc_entries().iter().filter(|(_, dir)| *dir) {
            let p = format!("/etc/{name}");
            m.push(mount(
                &p,
                "bind",
                &p,
                &["rbind", "rro", "rnosuid", "rnodev"],
            ));
        }
    }
    // Read-only as a whole: stronger than runc's five read-only subtrees (/proc/sys, /proc/bus,
    // ...), which cost two mounts each per run and per batch job (about 9% of husk's CPU in a
    // batch profile; no clear change in a job's wall time).
    let proc_opts = ["ro", "nosuid", "noexec", "nodev", PROC_OPTIONS];
    m.push(mount("/proc", "proc", "proc", &proc_opts));
    m.push(mount(
        "/dev",
        "tmpfs",
        "tmpfs",
        &["nosuid", "strictatime", "mode=755", "size=65536k"],
    ));
    m.push(mount(
        "/dev/shm",
        "tmpfs",
        "shm",
        &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    ));
    let tmp_size = format!("size={}", o.tmp_size);
    m.push(mount(
        "/tmp",
        "tmpfs",
        "tmpfs",
        &["nosuid", "nodev", "mode=1777", &tmp_size],
    ));
    // Recursive: a mount below a bound directory (a devtmpfs, a file system mounted with suid)
    // keeps its own flags otherwise.
    let rw_bind = |inside: &str, outside: &Path| {
        mount(
            inside,
            "bind",
            &outside.to_string_lossy(),
            &["rbind", "rw", "rnosuid", "rnodev"],
        )
    };
    if o.host_root {
        if o.dirs.is_empty() && cwd != Path::new("/") {
            m.push(rw_bind(&cwd.to_string_lossy(), cwd));
        }
    } else if o.dirs.is_empty() {
        m.push(rw_bind(super::limits::BOX, cwd));
    } else {
        let size = format!("size={}", o.box_size);
        let owner = format!("uid={},gid={}", o.uid, o.gid);
        m.push(mount(
            super::limits::BOX,
            "tmpfs",
            "tmpfs",
            &["nosuid", "nodev", "mode=755", &size, &owner],
        ));
    }
    for d in &o.dirs {
        let inside = d.inside.to_string_lossy();
        match &d.outside {
            None => {
                let mut opts = vec!["nosuid", "nodev", "mode=1777"];
                if d.noexec {
                    opts.push("noexec");
                }
                m.push(mount(&inside, "tmpfs", "tmpfs", &opts));
            }
            Some(out) => {
                let mut opts = vec!["rbind", "rnosuid", "rnodev"];
                opts.push(if d.writable { "rw" } else { "rro" });
                if d.noexec {
                    opts.push("rnoexec");
                }
                m.push(mount(&inside, "bind", &out.to_string_lossy(), &opts));
            }
        }
    }
    m
}

/// The caller's directories a run binds (the box, `--dir` rules): the ones to idmap, each with
/// whether the program must be able to write it.
pub fn bound_dirs(o: &Options, cwd: &Path) -> Vec<super::view::Bound> {
    let mut v = Vec::new();
    if o.dirs.is_empty() && !(o.host_root && cwd == Path::new("/")) {
        v.push(super::view::Bound {
            what: "the current directory (the box)",
            dir: cwd.to_path_buf(),
            writable: true,
        });
    }
    for d in &o.dirs {
        if let Some(out) = &d.outside {
            v.push(super::view::Bound {
                what: "--dir",
                dir: out.clone(),
                writable: d.writable,
            });
        }
    }
    v
}

/// The rlimits of a run: the CPU backstop one second past the kill time (the poller kills
/// first), the output limit as the file size limit, no core files.
pub fn rlimits(o: &Options, cgroup: bool) -> Vec<Value> {
    let mut r = vec![json!({"type": "RLIMIT_CORE", "soft": 0, "hard": 0})];
    if let Some(t) = o.time {
        // Without a cgroup to poll, the rlimit is the limit itself (SIGXCPU reads as TLE).
        let secs = (t + o.extra_time).ceil() as u64 + u64::from(cgroup);
        r.push(json!({"type": "RLIMIT_CPU", "soft": secs, "hard": secs + 1}));
    }
    if !cgroup {
        if let Some(m) = o.memory {
            r.push(json!({"type": "RLIMIT_AS", "soft": m, "hard": m}));
        }
        if let Some(p) = o.pids {
            r.push(json!({"type": "RLIMIT_NPROC", "soft": p, "hard": p}));
        }
    }
    if let Some(b) = o.output {
        r.push(json!({"type": "RLIMIT_FSIZE", "soft": b, "hard": b}));
    }
    if let Some(b) = o.stack {
        r.push(json!({"type": "RLIMIT_STACK", "soft": b, "hard": b}));
    }
    if let Some(n) = o.open_files {
        r.push(json!({"type": "RLIMIT_NOFILE", "soft": n, "hard": n}));
    }
    r
}

/// The cgroup resources: memory with swap off, pids, cpus.
pub fn resources(o: &Options) -> Value {
    let mut r = json!({});
    if let Some(m) = o.memory {
        r["memory"] = json!({"limit": m, "swap": m});
    }
    if let Some(p) = o.pids {
        r["pids"] = json!({"limit": p});
    }
    if let Some(c) = &o.cpus {
        r["cpu"] = json!({"cpus": c});
    }
    r
}

/// The whole spec of one run, as JSON, but its seccomp filter (compiled: [`build`] adds it
/// to the plan).
pub fn spec_json(
    o: &Options,
    top: &[TopLevel],
    cwd: &Path,
    caller_env: &[(String, String)],
    cgroup: &str,
    mode: Mode,
) -> Value {
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "mount"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "cgroup"}),
    ];
    if !o.share_net {
        namespaces.push(json!({"type": "network"}));
    }
    let no_caps: Vec<String> = Vec::new();
    let mut v = json!({
        "ociVersion": crate::spec::OCI_VERSION_MAX,
        "root": {"path": SKELETON, "readonly": true},
        "hostname": "sandbox",
        "process": {
            "terminal": false,
            "user": {"uid": o.uid, "gid": o.gid, "umask": 0o022},
            "args": o.args,
            "env": environment(o, caller_env),
            "cwd": workdir(o, cwd),
            "capabilities": {
                "bounding": no_caps, "effective": no_caps, "inheritable": no_caps,
                "permitted": no_caps, "ambient": no_caps,
            },
            "rlimits": rlimits(o, mode.cgroup),
            "noNewPrivileges": true,
        },
        "mounts": mounts(o, top, cwd),
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroup,
            "resources": resources(o),
            // The engines' list but the directories /proc/acpi, /proc/asound and /proc/scsi:
            // masked by a tmpfs each (a superblock per run), they keep a container's root from
            // writing there, which the read-only /proc already does; what they list, any user
            // of the host may read.
            "maskedPaths": [
                "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
            ],
            // No readonlyPaths: the whole /proc is read-only (see `mounts`).
        },
    });
    if mode.userns {
        // The caller's one uid and gid, seen inside as --uid/--gid: all an unprivileged user
        // may map.
        let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        if let Some(n) = v["linux"]["namespaces"].as_array_mut() {
            n.insert(0, json!({"type": "user"}));
        }
        v["linux"]["uidMappings"] =
            json!([{"containerID": o.uid, "hostID": uid.as_raw(), "size": 1}]);
        v["linux"]["gidMappings"] =
            json!([{"containerID": o.gid, "hostID": gid.as_raw(), "size": 1}]);
    }
    if !mode.cgroup {
        if let Some(l) = v["linux"].as_object_mut() {
            l.remove("resources");
            l.remove("cgroupsPath");
        }
        if let Some(c) = &o.cpus {
            v["process"]["execCPUAffinity"] = json!({"final": c});
        }
    }
    v
}

/// The idmapped copies in place of the binds of their directories: each bind of a directory
/// takes one copy of it (`trees` has one per bind).
pub fn prepared(spec: &Spec, mut trees: Vec<(PathBuf, OwnedFd)>) -> Vec<crate::spec::Prepared> {
    let mut out = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let Some(src) = m
            .source()
            .as_ref()
            .filter(|_| m.typ().as_deref() == Some("bind"))
        else {
            continue;
        };
        if let Some(i) = trees.iter().position(|(dir, _)| dir == src) {
            out.push(crate::spec::Prepared {
                destination: m.destination().clone(),
                tree: std::sync::Arc::new(trees.swap_remove(i).1),
            });
        }
    }
    out
}

/// A plan and the program's working directory inside.
pub struct Built {
    pub plan: Plan,
    pub cwd: PathBuf,
}

/// Build and validate the plan of one run started in `cwd` (the caller's directory). `netns`:
/// a network namespace made for it to join ([`super::holder::NetNs`]) rather than one made at
/// its clone.
// Each argument is an independent input of the run (see spec_json).
#[allow(clippy::too_many_arguments)]
pub fn build(
    o: &Options,
    cwd: &Path,
    cgroup: &str,
    seccomp: &crate::seccomp::Compiled,
    mode: Mode,
    view: &mut super::view::View,
    netns: Option<&Path>,
) -> Result<Built, PlanError> {
    let top = host_top_level()?;
    let root = skeleton()?;
    ensure_skeleton(&root, &top)?;
    let caller: Vec<(String, String)> = std::env::vars().collect();
    let mut v = spec_json(o, &top, cwd, &caller, cgroup, mode);
    v["root"]["path"] = json!(root);
    if let (Some(path), Some(ns)) = (netns, v["linux"]["namespaces"].as_array_mut()) {
        for n in ns.iter_mut().filter(|n| n["type"] == "network") {
            n["path"] = json!(path);
        }
    }
    let spec: Spec = serde_json::from_value(v).map_err(|e| PlanError::Spec(e.to_string()))?;
    let bundle = root.parent().unwrap_or(Path::new("/"));
    let mut plan = crate::spec::inmemory::plan_from_spec(spec, bundle)?;
    // The filter goes to the plan, which the init installs from, compiled already (the
    // spec's `linux.seccomp` would be parsed and compiled again by the validation).
    plan.seccomp = Some(seccomp.clone());
    plan.prepared = prepared(&plan.spec, view.trees().map_err(PlanError::Idmap)?);
    Ok(Built {
        plan,
        cwd: workdir(o, cwd),
    })
}

#[cfg(test)]
mod tests {
    use super::super::limits::DirRule;
    use super::*;

    #[test]
    fn spec_is_valid_json_for_oci_spec() {
        let mut o = Options {
            args: vec!["/bin/true".into()],
            time: Some(1.5),
            memory: Some(64 << 20),
            output: Some(1 << 20),
            host_root: true,
            ..Options::default()
        };
        let top = vec![
            TopLevel::Dir("usr".into()),
            TopLevel::Link("bin".into(), "usr/bin".into()),
        ];
        let v = spec_json(
            &o,
            &top,
            Path::new("/work/x"),
            &[],
            "/husk-sandbox/t",
            Mode::root(),
        );
        let spec: Spec = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(spec.process().as_ref().unwrap().cwd(), Path::new("/work/x"));
        let dests: Vec<&str> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            dests,
            ["/usr", "/proc", "/dev", "/dev/shm", "/tmp", "/work/x"]
        );
        let rl = &v["process"]["rlimits"];
        assert!(rl
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["type"] == "RLIMIT_CPU" && r["soft"] == 3));
        assert_eq!(v["linux"]["resources"]["memory"]["swap"], 64 << 20);

        // The minimal view: /usr but no other host directory, the box at /box.
        o.host_root = false;
        let top = vec![
            TopLevel::Dir("usr".into()),
            TopLevel::Dir("home".into()),
            TopLevel::Link("bin".into(), "usr/bin".into()),
        ];
        let v = spec_json(&o, &top, Path::new("/work/x"), &[], "/t", Mode::root());
        let m = v["mounts"].as_array().unwrap();
        // /etc's directories are bound, its files are copies in the skeleton.
        assert!(m.iter().any(|m| m["destination"] == "/etc/alternatives"));
        assert!(!m.iter().any(|m| m["destination"] == "/etc/passwd"));
        assert!(!m.iter().any(|m| m["destination"] == "/home"));
        assert!(m.iter().any(|m| m["destination"] == "/tmp"
            && m["options"]
                .as_array()
                .unwrap()
                .contains(&json!("size=67108864"))));
        let last = m.last().unwrap();
        assert_eq!(
            (&last["destination"], &last["source"]),
            (&json!("/box"), &json!("/work/x"))
        );
        assert_eq!(v["process"]["cwd"], "/box");

        o.dirs = vec![DirRule::parse("/box=/srv:rw").unwrap()];
        o.share_net = true;
        let v = spec_json(&o, &top, Path::new("/work/x"), &[], "/t", Mode::root());
        let last = v["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["destination"], "/box");
        assert_eq!(last["source"], "/srv");
        assert_eq!(v["process"]["cwd"], "/box");
        assert!(!v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
    }

    #[test]
    fn each_bind_of_an_idmapped_directory_takes_its_own_copy() {
        let bind = |dest: &str, src: &str| mount(dest, "bind", src, &["rbind"]);
        let v = json!({
            "ociVersion": "1.0.0",
            "root": {"path": "/"},
            "mounts": [
                bind("/usr", "/usr"),
                bind("/box", "/work/x"),
                mount("/tmp", "tmpfs", "/work/x", &[]),
                bind("/again", "/work/x"),
            ],
        });
        let spec: Spec = serde_json::from_value(v).unwrap();
        let fd = || OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let trees = vec![
            (PathBuf::from("/work/x"), fd()),
            (PathBuf::from("/work/x"), fd()),
        ];
        let p = prepared(&spec, trees);
        let dests: Vec<_> = p.iter().map(|p| p.destination.clone()).collect();
        assert_eq!(dests, [PathBuf::from("/box"), PathBuf::from("/again")]);
        use std::os::fd::AsRawFd;
        assert_ne!(p[0].tree.as_raw_fd(), p[1].tree.as_raw_fd());
        // A directory with no copy left is bound as it is.
        let one = prepared(&spec, vec![(PathBuf::from("/work/x"), fd())]);
        assert_eq!(one.len(), 1);
    }
}
