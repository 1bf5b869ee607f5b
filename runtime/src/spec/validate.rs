//! Semantic checks of a parsed spec. Each error names the JSON path, what was expected and what
//! was found; nothing here touches the system beyond reading it.

use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{Linux, Process, Spec};

use super::namespaces::{self, Namespaces, NSFS_MAGIC};
use super::{Plan, SpecError};

struct Ctx<'a> {
    file: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, path: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            file: self.file.to_path_buf(),
            path: path.into(),
            message: message.into(),
        }
    }
}

pub(super) fn plan(spec: Spec, bundle: PathBuf, file: &Path) -> Result<Plan, SpecError> {
    let cx = Ctx { file };
    version(&cx, spec.version())?;
    let rootfs = rootfs(&cx, &spec, &bundle)?;
    let process = spec
        .process()
        .clone()
        .ok_or_else(|| cx.err("process", "missing: a container needs a process to run"))?;
    self::process(&process, "process", file)?;
    let default_linux = Linux::default();
    let linux = spec.linux().as_ref().unwrap_or(&default_linux);
    let namespaces = self::namespaces(&cx, linux)?;
    uts(&cx, &spec, &namespaces)?;
    idmaps(&cx, linux, &namespaces)?;
    mounts(&cx, &spec)?;
    self::linux(&cx, linux, &namespaces)?;
    if let Some(hooks) = spec.hooks() {
        crate::hooks::validate(hooks).map_err(|e| cx.err("hooks", e.to_string()))?;
    }
    if let Some(resources) = linux.resources() {
        crate::cgroups::Cgroup::validate(resources).map_err(|e| match e {
            // Already names its field (`linux.resources.memory.swap`, ...).
            crate::cgroups::CgroupError::Config { path, message } => cx.err(path, message),
            e => cx.err("linux.resources", e.to_string()),
        })?;
    }
    memory_policy(&cx, linux)?;
    let seccomp = match linux.seccomp() {
        Some(s) => Some(crate::seccomp::compile(s).map_err(|e| match e {
            crate::seccomp::SeccompError::Invalid { path, message } => cx.err(path, message),
            e => cx.err("linux.seccomp", e.to_string()),
        })?),
        None => None,
    };
    Ok(Plan {
        spec,
        bundle,
        rootfs,
        process,
        namespaces,
        seccomp,
        prepared: Vec::new(),
    })
}

fn version(cx: &Ctx, v: &str) -> Result<(), SpecError> {
    let major = v.split('.').next().unwrap_or("");
    match major.parse::<u32>() {
        Ok(1) => Ok(()),
        Ok(m) => Err(cx.err(
            "ociVersion",
            format!(
                "{v:?} has major version {m}; husk implements {}..{} (major 1)",
                super::OCI_VERSION_MIN,
                super::OCI_VERSION_MAX
            ),
        )),
        Err(_) => Err(cx.err(
            "ociVersion",
            format!("expected a SemVer version like \"1.2.0\", found {v:?}"),
        )),
    }
}

fn rootfs(cx: &Ctx, spec: &Spec, bundle: &Path) -> Result<PathBuf, SpecError> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| cx.err("root", "missing: the container needs a root filesystem"))?;
    // Required by the runtime-spec; empty would make the bundle itself the root filesystem.
    if root.path().as_os_str().is_empty() {
        return Err(cx.err(
            "root.path",
            "missing: the path of the root filesystem (e.g. \"rootfs\")",
        ));
    }
    let path = bundle.join(root.path());
    match crate::sys::canonicalize(&path) {
        Ok((p, true)) => Ok(p),
        Ok((p, false)) => Err(cx.err("root.path", format!("{p:?} is not a directory"))),
        Err(e) => Err(cx.err("root.path", format!("{path:?}: {e}"))),
    }
}

pub(super) fn process(p: &Process, at: &str, file: &Path) -> Result<(), SpecError> {
    let cx = Ctx { file };
    match p.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => {
            return Err(cx.err(
                format!("{at}.args"),
                "must name the program to run (found none)",
            ))
        }
    }
    if !p.cwd().is_absolute() {
        return Err(cx.err(
            format!("{at}.cwd"),
            format!("must be an absolute path, found {:?}", p.cwd()),
        ));
    }
    for (i, e) in p.env().iter().flatten().enumerate() {
        if !e.contains('=') {
            return Err(cx.err(
                format!("{at}.env[{i}]"),
                format!("expected NAME=VALUE, found {e:?}"),
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        if !seen.insert(format!("{:?}", r.typ())) {
            return Err(cx.err(
                format!("{at}.rlimits[{i}].type"),
                format!("{:?} is set twice", r.typ()),
            ));
        }
        if r.soft() > r.hard() {
            return Err(cx.err(
                format!("{at}.rlimits[{i}]"),
                format!("soft limit {} is above hard limit {}", r.soft(), r.hard()),
            ));
        }
    }
    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(cx.err(
                format!("{at}.oomScoreAdj"),
                format!("must be in -1000..1000, found {adj}"),
            ));
        }
    }
    if let Some(io) = p.io_priority() {
        if !(0..=7).contains(&io.priority()) {
            return Err(cx.err(
                format!("{at}.ioPriority.priority"),
                format!("must be in 0..7, found {}", io.priority()),
            ));
        }
    }
    if let Some(profile) = p.apparmor_profile() {
        if !profile.is_empty() && !lsm_enabled("apparmor") {
            return Err(cx.err(
                format!("{at}.apparmorProfile"),
                format!("profile {profile:?} given but AppArmor is not enabled on this host"),
            ));
        }
    }
    if let Some(label) = p.selinux_label() {
        if !label.is_empty() && !lsm_enabled("selinux") {
            return Err(cx.err(
                format!("{at}.selinuxLabel"),
                format!("label {label:?} given but SELinux is not enabled on this host"),
            ));
        }
    }
    if let Some(aff) = p.exec_cpu_affinity() {
        for (name, v) in [
            ("initial", aff.initial()),
            ("final", aff.cpu_affinity_final()),
        ] {
            if let Some(list) = v {
                crate::process::cpuset::parse(list)
                    .map_err(|e| cx.err(format!("{at}.execCPUAffinity.{name}"), e))?;
            }
        }
    }
    Ok(())
}

fn lsm_enabled(name: &str) -> bool {
    std::fs::read_to_string("/sys/kernel/security/lsm")
        .map(|s| s.split(',').any(|l| l.trim() == name))
        .unwrap_or(false)
}

fn namespaces(cx: &Ctx, linux: &Linux) -> Result<Namespaces, SpecError> {
    let mut ns = Namespaces::default();
    for (i, n) in linux.namespaces().iter().flatten().enumerate() {
        let flag = namespaces::flag(n.typ());
        if ns.has(flag) {
            return Err(cx.err(
                format!("linux.namespaces[{i}].type"),
                format!("{:?} is listed twice", n.typ()),
            ));
        }
        match n.path() {
            None => ns.new |= flag,
            Some(path) => {
                check_ns_path(path, flag).map_err(|m| {
                    cx.err(
                        format!("linux.namespaces[{i}].path"),
                        format!("{path:?} {m}"),
                    )
                })?;
                ns.join.push((flag, path.clone()));
            }
        }
    }
    ns.join.sort_by_key(|(f, _)| namespaces::join_order(*f));
    Ok(ns)
}

/// A namespace path must be an nsfs file of the requested type (`NS_GET_NSTYPE`).
fn check_ns_path(path: &Path, flag: CloneFlags) -> Result<(), String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot be opened: {e}"))?;
    let fs = nix::sys::statfs::fstatfs(&f).map_err(|e| format!("cannot be inspected: {e}"))?;
    if fs.filesystem_type().0 as i64 != NSFS_MAGIC {
        return Err(format!(
            "is not a namespace (expected a {} namespace file like /proc/<pid>/ns/{})",
            namespaces::proc_name(flag),
            namespaces::proc_name(flag)
        ));
    }
    // NS_GET_NSTYPE = _IO(0xb7, 0x3)
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: the ioctl takes no argument and only reads the namespace fd we own for this call.
    let t = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE as _) };
    if t >= 0 && CloneFlags::from_bits_retain(t) != flag {
        return Err(format!(
            "is a {} namespace, expected {}",
            namespaces::proc_name(CloneFlags::from_bits_retain(t)),
            namespaces::proc_name(flag)
        ));
    }
    Ok(())
}

fn uts(cx: &Ctx, spec: &Spec, ns: &Namespaces) -> Result<(), SpecError> {
    for (name, v) in [
        ("hostname", spec.hostname()),
        ("domainname", spec.domainname()),
    ] {
        if v.as_deref().is_some_and(|h| !h.is_empty()) && !ns.has(CloneFlags::CLONE_NEWUTS) {
            return Err(cx.err(name, "can only be set with a UTS namespace (add {\"type\": \"uts\"} to linux.namespaces)"));
        }
    }
    Ok(())
}

fn idmaps(cx: &Ctx, linux: &Linux, ns: &Namespaces) -> Result<(), SpecError> {
    let uids = linux.uid_mappings().as_deref().unwrap_or_default();
    let gids = linux.gid_mappings().as_deref().unwrap_or_default();
    let new_user = ns.new.contains(CloneFlags::CLONE_NEWUSER);
    if !ns.has(CloneFlags::CLONE_NEWUSER) && (!uids.is_empty() || !gids.is_empty()) {
        // Blame the field that is there.
        let which = if uids.is_empty() {
            "linux.gidMappings"
        } else {
            "linux.uidMappings"
        };
        return Err(cx.err(
            which,
            "mappings need a user namespace (add {\"type\": \"user\"} to linux.namespaces)",
        ));
    }
    if new_user && (uids.is_empty() || gids.is_empty()) {
        let (missing, given) = if uids.is_empty() {
            ("linux.uidMappings", "linux.gidMappings")
        } else {
            ("linux.gidMappings", "linux.uidMappings")
        };
        let message = if uids.is_empty() && gids.is_empty() {
            "missing: a new user namespace needs at least one mapping".to_string()
        } else {
            format!("missing: a new user namespace needs it as well as {given}")
        };
        return Err(cx.err(missing, message));
    }
    for (name, maps) in [("linux.uidMappings", uids), ("linux.gidMappings", gids)] {
        for (i, m) in maps.iter().enumerate() {
            if m.size() == 0 {
                return Err(cx.err(format!("{name}[{i}].size"), "must be at least 1"));
            }
        }
    }
    Ok(())
}

fn mounts(cx: &Ctx, spec: &Spec) -> Result<(), SpecError> {
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let opts = m.options().as_deref().unwrap_or_default();
        let bind =
            m.typ().as_deref() == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind");
        if bind && m.source().is_none() {
            return Err(cx.err(format!("mounts[{i}].source"), "a bind mount needs a source"));
        }
        if m.destination().as_os_str().is_empty() {
            return Err(cx.err(format!("mounts[{i}].destination"), "must not be empty"));
        }
        if (m.uid_mappings().is_some() || m.gid_mappings().is_some()) && !bind {
            return Err(cx.err(
                format!("mounts[{i}].uidMappings"),
                "idmapped mounts need a bind mount",
            ));
        }
        crate::rootfs::options::parse(opts)
            .map_err(|e| cx.err(format!("mounts[{i}].options"), e))?;
    }
    Ok(())
}

/// `linux.memoryPolicy.nodes`: a NUMA node list in the kernel's list syntax (`0-1,3`), checked
/// here so that a bad one never reaches the init.
fn memory_policy(cx: &Ctx, linux: &Linux) -> Result<(), SpecError> {
    let Some(nodes) = linux
        .memory_policy()
        .as_ref()
        .and_then(|m| m.nodes().as_deref())
    else {
        return Ok(());
    };
    match crate::process::cpuset::parse(nodes) {
        Ok(n) if n.iter().all(|&n| n < 1024) => Ok(()),
        _ => Err(cx.err(
            "linux.memoryPolicy.nodes",
            format!("expected a NUMA node list like \"0-1,3\" (nodes below 1024), found {nodes:?}"),
        )),
    }
}

fn linux(cx: &Ctx, linux: &Linux, ns: &Namespaces) -> Result<(), SpecError> {
    if let Some(p) = linux.rootfs_propagation() {
        if crate::rootfs::options::propagation(p).is_none() {
            return Err(cx.err(
                "linux.rootfsPropagation",
                format!("expected one of shared, slave, private, unbindable (or r-prefixed), found {p:?}"),
            ));
        }
    }
    for (name, paths) in [
        ("linux.maskedPaths", linux.masked_paths()),
        ("linux.readonlyPaths", linux.readonly_paths()),
    ] {
        for (i, p) in paths.iter().flatten().enumerate() {
            if !p.starts_with('/') {
                return Err(cx.err(
                    format!("{name}[{i}]"),
                    format!("must be absolute, found {p:?}"),
                ));
            }
        }
    }
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        if !d.path().is_absolute() {
            return Err(cx.err(
                format!("linux.devices[{i}].path"),
                format!("must be absolute, found {:?}", d.path()),
            ));
        }
    }
    for (key, _) in linux.sysctl().iter().flatten() {
        sysctl(key, ns).map_err(|m| cx.err(format!("linux.sysctl.{key}"), m))?;
    }
    if let Some(offsets) = linux.time_offsets() {
        if !offsets.is_empty()
            && !ns
                .new
                .contains(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
        {
            return Err(cx.err(
                "linux.timeOffsets",
                "need a new time namespace (add {\"type\": \"time\"} to linux.namespaces)",
            ));
        }
        for k in offsets.keys() {
            if k != "monotonic" && k != "boottime" {
                return Err(cx.err(
                    format!("linux.timeOffsets.{k}"),
                    "expected \"monotonic\" or \"boottime\"",
                ));
            }
        }
    }
    if linux.intel_rdt().is_some() && !Path::new("/sys/fs/resctrl/schemata").exists() {
        return Err(cx.err(
            "linux.intelRdt",
            "resctrl is not mounted on this host (/sys/fs/resctrl)",
        ));
    }
    net_devices(cx, linux, ns)?;
    if let Some(label) = linux.mount_label() {
        if !label.is_empty() && !lsm_enabled("selinux") {
            return Err(cx.err(
                "linux.mountLabel",
                "given but SELinux is not enabled on this host",
            ));
        }
    }
    Ok(())
}

/// `linux.netDevices`: names the kernel accepts, one device per new name, devices that exist in
/// the runtime's network namespace, and the privilege to move them.
fn net_devices(cx: &Ctx, linux: &Linux, ns: &Namespaces) -> Result<(), SpecError> {
    let devs = crate::netdev::from_spec(Some(linux));
    if devs.is_empty() {
        return Ok(());
    }
    if !ns.has(CloneFlags::CLONE_NEWNET) {
        return Err(cx.err(
            "linux.netDevices",
            "moving network devices needs a network namespace (add {\"type\": \"network\"} to linux.namespaces)",
        ));
    }
    let net_admin = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_NET_ADMIN,
    );
    if !net_admin.unwrap_or(false) {
        return Err(cx.err(
            "linux.netDevices",
            "moving network devices needs CAP_NET_ADMIN in the runtime's network namespace, \
             which a rootless runtime lacks",
        ));
    }
    let mut taken = HashSet::new();
    for d in &devs {
        let at = format!("linux.netDevices.{}", d.host);
        crate::netdev::check_name(&d.inside)
            .map_err(|m| cx.err(format!("{at}.name"), format!("{m}, found {:?}", d.inside)))?;
        if !taken.insert(d.inside.as_str()) {
            return Err(cx.err(
                format!("{at}.name"),
                format!("{:?} is already the new name of another device", d.inside),
            ));
        }
        if !crate::netdev::exists(&d.host) {
            return Err(cx.err(
                at,
                "no such network device in the runtime's network namespace",
            ));
        }
    }
    Ok(())
}

/// Which sysctls a container may set, by the namespace that isolates them (as runc decides).
fn sysctl(key: &str, ns: &Namespaces) -> Result<(), String> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let need = |flag: CloneFlags, what: &str| {
        if ns.has(flag) {
            Ok(())
        } else {
            Err(format!("needs a {what} namespace of the container's own"))
        }
    };
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        return need(CloneFlags::CLONE_NEWIPC, "IPC");
    }
    if key.starts_with("net.") {
        return need(CloneFlags::CLONE_NEWNET, "network");
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return need(CloneFlags::CLONE_NEWUTS, "UTS");
    }
    Err("is not namespaced: setting it would change the host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(flags: CloneFlags) -> Namespaces {
        Namespaces {
            new: flags,
            join: vec![],
        }
    }

    #[test]
    fn sysctl_needs_matching_namespace() {
        assert!(sysctl("net.ipv4.ip_forward", &ns(CloneFlags::CLONE_NEWNET)).is_ok());
        assert!(sysctl("net.ipv4.ip_forward", &ns(CloneFlags::CLONE_NEWIPC)).is_err());
        assert!(sysctl("kernel.shmmax", &ns(CloneFlags::CLONE_NEWIPC)).is_ok());
        assert!(sysctl("fs.mqueue.msg_max", &ns(CloneFlags::empty())).is_err());
        assert!(sysctl("vm.swappiness", &ns(CloneFlags::all())).is_err());
    }

    #[test]
    fn id_mappings_blame_the_field_at_fault() {
        let cx = Ctx {
            file: Path::new("config.json"),
        };
        let check = |linux: serde_json::Value, flags| {
            let linux: Linux = serde_json::from_value(linux).unwrap();
            idmaps(&cx, &linux, &ns(flags))
                .map_err(|e| e.to_string())
                .unwrap_err()
        };
        let m = serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        let e = check(serde_json::json!({"gidMappings": m}), CloneFlags::empty());
        assert!(e.contains("linux.gidMappings:"), "{e}");
        let e = check(
            serde_json::json!({"gidMappings": m}),
            CloneFlags::CLONE_NEWUSER,
        );
        assert!(
            e.contains("linux.uidMappings:") && e.contains("as well as linux.gidMappings"),
            "{e}"
        );
    }

    #[test]
    fn memory_policy_nodes_are_numa_nodes() {
        let cx = Ctx {
            file: Path::new("config.json"),
        };
        let linux: Linux = serde_json::from_value(
            serde_json::json!({"memoryPolicy": {"mode": "MPOL_BIND", "nodes": "x"}}),
        )
        .unwrap();
        let e = memory_policy(&cx, &linux).unwrap_err().to_string();
        assert!(e.contains("linux.memoryPolicy.nodes:"), "{e}");
        assert!(e.contains("NUMA node list") && !e.contains("CPU"), "{e}");
    }

    #[test]
    fn net_devices_name_the_bad_entry() {
        let cx = Ctx {
            file: Path::new("config.json"),
        };
        let check = |devs: serde_json::Value, flags| {
            let linux: Linux =
                serde_json::from_value(serde_json::json!({ "netDevices": devs })).unwrap();
            net_devices(&cx, &linux, &ns(flags)).map_err(|e| e.to_string())
        };
        let net = CloneFlags::CLONE_NEWNET;
        assert!(check(serde_json::json!({}), CloneFlags::empty()).is_ok());
        let e = check(serde_json::json!({"lo": {}}), CloneFlags::empty()).unwrap_err();
        assert!(
            e.contains("linux.netDevices:") && e.contains("network namespace"),
            "{e}"
        );
        if !caps::has_cap(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_NET_ADMIN,
        )
        .unwrap_or(false)
        {
            return; // the rest needs the privilege to get past the first check
        }
        assert!(check(serde_json::json!({"lo": {"name": "lo9"}}), net).is_ok());
        let e = check(serde_json::json!({"lo": {"name": "a/b"}}), net).unwrap_err();
        assert!(
            e.contains("linux.netDevices.lo.name") && e.contains("'/'"),
            "{e}"
        );
        let e = check(serde_json::json!({"lo": {"name": ""}}), net).unwrap_err();
        assert!(e.contains("linux.netDevices.lo.name"), "{e}");
        let e = check(
            serde_json::json!({"lo": {"name": "x"}, "lo2": {"name": "x"}}),
            net,
        )
        .unwrap_err();
        assert!(
            e.contains("linux.netDevices.lo2.name") && e.contains("already"),
            "{e}"
        );
        let e = check(serde_json::json!({"husk-nosuch0": {}}), net).unwrap_err();
        assert!(
            e.contains("linux.netDevices.husk-nosuch0:") && e.contains("no such"),
            "{e}"
        );
    }

    #[test]
    fn rejects_unknown_major_version() {
        let cx = Ctx {
            file: Path::new("config.json"),
        };
        assert!(version(&cx, "1.0.2-dev").is_ok());
        assert!(version(&cx, "1.3.0").is_ok());
        let e = version(&cx, "2.0.0").unwrap_err().to_string();
        assert!(e.contains("ociVersion"), "{e}");
        assert!(version(&cx, "").is_err());
    }

    #[test]
    fn rejects_non_namespace_path() {
        let e = check_ns_path(Path::new("/etc/hostname"), CloneFlags::CLONE_NEWNET);
        assert!(e.is_err());
        if Path::new("/proc/self/ns/net").exists() {
            assert!(
                check_ns_path(Path::new("/proc/self/ns/net"), CloneFlags::CLONE_NEWNET).is_ok()
            );
            assert!(
                check_ns_path(Path::new("/proc/self/ns/net"), CloneFlags::CLONE_NEWUTS).is_err()
            );
        }
    }
}
