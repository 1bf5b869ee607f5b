//! cgroup v1: one directory per mounted hierarchy, resources written as runc 1.1.5's fs manager
//! writes them (libcontainer/cgroups/fs/*.go: same files, same values, same order).

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::devices::{self, DeviceRule};
use super::layout::{self, Layout};
use super::{nonzero, CgroupError};

/// Check every field against the mounted v1 controllers. Files that exist only in non-root cgroups
/// (e.g. `blkio.bfq.weight`) are left to the write, whose error names the file.
/// The mounted-controller and kernel-knob checks behind [`validate`].
struct Need<'a>(&'a Layout);

impl Need<'_> {
    fn controller(&self, controller: &str, json: &str) -> Result<(), CgroupError> {
        if self.0.has(controller) {
            Ok(())
        } else {
            Err(CgroupError::config(
                json,
                format!("the {controller} controller is not mounted on this host"),
            ))
        }
    }

    /// A knob the kernel has is visible in the hierarchy's root directory.
    fn file(
        &self,
        controller: &str,
        file: &str,
        json: &str,
        what: &str,
    ) -> Result<(), CgroupError> {
        self.controller(controller, json)?;
        let root = self.0.v1_mount(controller).unwrap_or(Path::new("/"));
        if self.0.create_files || root.join(file).exists() {
            Ok(())
        } else {
            Err(CgroupError::config(
                json,
                format!("{what} is not supported by this kernel (no {file})"),
            ))
        }
    }
}

/// Check every field against the mounted v1 controllers. Files that exist only in non-root cgroups
/// (e.g. `blkio.bfq.weight`) are left to the write, whose error names the file.
pub(crate) fn validate(layout: &Layout, r: &LinuxResources) -> Result<(), CgroupError> {
    let n = Need(layout);
    let need = |c: &str, json: &str| n.controller(c, json);
    let need_file = |c: &str, f: &str, json: &str, what: &str| n.file(c, f, json, what);

    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(CgroupError::config(
            "linux.resources.unified",
            "only supported on cgroup v2 (this host uses cgroup v1)",
        ));
    }
    if let Some(m) = r.memory() {
        validate_memory(m, &n)?;
    }
    if let Some(c) = r.cpu() {
        let j = "linux.resources.cpu";
        if nonzero(c.shares()) || nonzero(c.quota()) || nonzero(c.period()) {
            need("cpu", j)?;
        }
        if c.burst().is_some() {
            need_file(
                "cpu",
                "cpu.cfs_burst_us",
                &format!("{j}.burst"),
                "cpu burst",
            )?;
        }
        if c.idle().is_some() {
            need_file("cpu", "cpu.idle", &format!("{j}.idle"), "cpu idle")?;
        }
        if nonzero(c.realtime_runtime()) || nonzero(c.realtime_period()) {
            let what = "realtime group scheduling (CONFIG_RT_GROUP_SCHED)";
            need_file(
                "cpu",
                "cpu.rt_runtime_us",
                &format!("{j}.realtimeRuntime"),
                what,
            )?;
        }
        if c.cpus().as_ref().is_some_and(|s| !s.is_empty()) {
            need("cpuset", &format!("{j}.cpus"))?;
        }
        if c.mems().as_ref().is_some_and(|s| !s.is_empty()) {
            need("cpuset", &format!("{j}.mems"))?;
        }
    }
    if r.pids().is_some_and(|p| p.limit() != 0) {
        need("pids", "linux.resources.pids")?;
    }
    if let Some(b) = r.block_io() {
        validate_blkio(b, &n)?;
    }
    if let Some(h) = r.hugepage_limits() {
        if !h.is_empty() {
            need("hugetlb", "linux.resources.hugepageLimits")?;
        }
        super::check_hugepage_sizes(layout, h)?;
    }
    if let Some(n) = r.network() {
        if n.class_id().is_some() {
            need("net_cls", "linux.resources.network.classID")?;
        }
        if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            need("net_prio", "linux.resources.network.priorities")?;
        }
    }
    if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
        need("rdma", "linux.resources.rdma")?;
    }
    devices::rules(r.devices().as_ref())?;
    // runc treats a missing devices controller as fatal: without it every device is reachable.
    need("devices", "linux.resources.devices")?;
    Ok(())
}

fn validate_memory(m: &LinuxMemory, n: &Need) -> Result<(), CgroupError> {
    let need = |c: &str, json: &str| n.controller(c, json);
    let need_file = |c: &str, f: &str, json: &str, what: &str| n.file(c, f, json, what);
    let j = "linux.resources.memory";
    let any = nonzero(m.limit())
        || nonzero(m.reservation())
        || nonzero(m.swap())
        || m.swappiness().is_some()
        || m.disable_oom_killer() == Some(true);
    if any {
        need("memory", j)?;
    }
    if nonzero(m.swap()) {
        let what = "swap accounting";
        need_file(
            "memory",
            "memory.memsw.limit_in_bytes",
            &format!("{j}.swap"),
            what,
        )?;
    }
    if let (Some(limit), Some(swap)) = (m.limit(), m.swap()) {
        if limit > 0 && swap > 0 && swap < limit {
            return Err(CgroupError::config(
                format!("{j}.swap"),
                format!("memory+swap limit ({swap}) should be >= memory limit ({limit})"),
            ));
        }
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(CgroupError::config(
                format!("{j}.swappiness"),
                format!("invalid memory swappiness value: {s} (valid range is 0-100)"),
            ));
        }
    }
    #[allow(deprecated)]
    if nonzero(m.kernel()) {
        let f = "memory.kmem.limit_in_bytes";
        need_file("memory", f, &format!("{j}.kernel"), "kernel memory limit")?;
    }
    if nonzero(m.kernel_tcp()) {
        let f = "memory.kmem.tcp.limit_in_bytes";
        need_file(
            "memory",
            f,
            &format!("{j}.kernelTCP"),
            "kernel TCP memory limit",
        )?;
    }
    if m.use_hierarchy() == Some(false) {
        return Err(CgroupError::config(
            format!("{j}.useHierarchy"),
            "false is not supported: the kernel always accounts memory hierarchically",
        ));
    }
    Ok(())
}

fn validate_blkio(b: &LinuxBlockIo, n: &Need) -> Result<(), CgroupError> {
    let need = |c: &str, json: &str| n.controller(c, json);
    let need_file = |c: &str, f: &str, json: &str, what: &str| n.file(c, f, json, what);
    let j = "linux.resources.blockIO";
    let throttles = [
        b.throttle_read_bps_device(),
        b.throttle_write_bps_device(),
        b.throttle_read_iops_device(),
        b.throttle_write_iops_device(),
    ];
    if nonzero(b.weight().map(i64::from))
        || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || throttles
            .iter()
            .any(|t| t.as_ref().is_some_and(|v| !v.is_empty()))
    {
        need("blkio", j)?;
    }
    if nonzero(b.leaf_weight().map(i64::from)) {
        let what = "blkio leaf weight (CFQ)";
        need_file(
            "blkio",
            "blkio.leaf_weight",
            &format!("{j}.leafWeight"),
            what,
        )?;
    }
    for (i, d) in b.weight_device().iter().flatten().enumerate() {
        if nonzero(d.leaf_weight().map(i64::from)) {
            let json = format!("{j}.weightDevice[{i}].leafWeight");
            need_file(
                "blkio",
                "blkio.leaf_weight_device",
                &json,
                "blkio leaf weight (CFQ)",
            )?;
        }
    }
    Ok(())
}

/// Make the directories (parents included), recording each one created so a failure can remove
/// exactly those. cpuset directories get `cpuset.cpus`/`cpuset.mems` before anyone can join them:
/// a new v1 cpuset starts empty and refuses tasks (runc's cpusetEnsureParent).
pub(crate) fn mkdirs(
    layout: &Layout,
    path: &Path,
    cpu: Option<&LinuxCpu>,
    created: &mut Vec<PathBuf>,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<(), CgroupError> {
    let cpuset = layout.v1_mount("cpuset").map(|m| m.join(rel(path)));
    for dir in layout.dirs(path).into_iter().filter(|d| keep(d)) {
        let Some(root) = layout.root_of(&dir) else {
            continue;
        };
        let first = created.len();
        // The parent usually exists already (it is shared by many containers): the leaf alone
        // is one mkdir, and only a missing parent costs a walk down from the root.
        let made = match mkdir(&dir)? {
            Some(made) => made,
            None => {
                let mut cur = root.clone();
                for comp in rel(path).components() {
                    cur.push(comp);
                    match mkdir(&cur)? {
                        Some(true) => created.push(cur.clone()),
                        Some(false) => {}
                        None => {
                            return Err(CgroupError::Io {
                                op: "create cgroup",
                                path: cur,
                                source: std::io::ErrorKind::NotFound.into(),
                            })
                        }
                    }
                }
                false
            }
        };
        if made {
            created.push(dir.clone());
        }
        if cpuset.as_ref() == Some(&dir) {
            // A new cpuset cgroup starts with empty cpus and mems, and no task can join it
            // until both are set: the container's own values, else the parent's. A directory
            // that existed before is not ours to seed.
            for d in &created[first..] {
                let own = if *d == dir { cpu } else { None };
                seed_cpuset(layout, d, own)?;
            }
            if let (false, Some(c)) = (created[first..].contains(&dir), cpu) {
                set_cpuset(layout, &dir, c)?;
            }
        }
    }
    Ok(())
}

/// `Some(true)` made, `Some(false)` already there, `None` a parent is missing.
fn mkdir(dir: &Path) -> Result<Option<bool>, CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(Some(true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Some(false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Io {
            op: "create cgroup",
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Fill a new cpuset cgroup's `cpuset.cpus` and `cpuset.mems`: the container's values where it
/// sets them, the parent's otherwise.
fn seed_cpuset(layout: &Layout, dir: &Path, own: Option<&LinuxCpu>) -> Result<(), CgroupError> {
    let parent = dir.parent().unwrap_or(dir);
    let own = |f: fn(&LinuxCpu) -> &Option<String>| {
        own.and_then(|c| f(c).as_deref()).filter(|s| !s.is_empty())
    };
    for (file, value) in [
        ("cpuset.cpus", own(LinuxCpu::cpus)),
        ("cpuset.mems", own(LinuxCpu::mems)),
    ] {
        let value = match value {
            Some(v) => v.to_string(),
            None => {
                let from = layout::read_opt(&parent.join(file))?.unwrap_or_default();
                if from.trim().is_empty() {
                    continue;
                }
                from.trim().to_string()
            }
        };
        layout::write(layout, dir, file, &value)?;
    }
    Ok(())
}

fn rel(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

fn set_cpuset(layout: &Layout, dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(cpus) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
        layout::write(layout, dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = c.mems().as_ref().filter(|s| !s.is_empty()) {
        layout::write(layout, dir, "cpuset.mems", mems)?;
    }
    Ok(())
}

/// Write every resource, subsystem by subsystem in runc's order: cpuset, devices, memory, cpu,
/// pids, blkio, hugetlb, net_cls, net_prio (cpuacct, perf_event and freezer have nothing to set).
pub(crate) fn set(
    layout: &Layout,
    path: &Path,
    r: &LinuxResources,
    rules: &[DeviceRule],
    update: bool,
) -> Result<(), CgroupError> {
    let dir = |c: &str| layout.v1_mount(c).map(|m| m.join(rel(path)));
    if let (Some(d), Some(c)) = (dir("cpuset"), r.cpu()) {
        set_cpuset(layout, &d, c)?;
    }
    if let Some(d) = dir("devices") {
        devices::apply_v1(layout, &d, rules)?;
    }
    if let (Some(d), Some(m)) = (dir("memory"), r.memory()) {
        set_memory(layout, &d, m, update)?;
    }
    if let (Some(d), Some(c)) = (dir("cpu"), r.cpu()) {
        set_cpu(layout, &d, c)?;
    }
    if let (Some(d), Some(p)) = (dir("pids"), r.pids()) {
        if p.limit() != 0 {
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".to_string()
            };
            layout::write(layout, &d, "pids.max", &v)?;
        }
    }
    if let (Some(d), Some(b)) = (dir("blkio"), r.block_io()) {
        set_blkio(layout, &d, b)?;
    }
    if let Some(d) = dir("hugetlb") {
        // runc 1.1.5 leaves hugetlb.<size>.rsvd.limit_in_bytes alone, and so does husk.
        for l in r.hugepage_limits().iter().flatten() {
            let v = l.limit().to_string();
            layout::write(
                layout,
                &d,
                &format!("hugetlb.{}.limit_in_bytes", l.page_size()),
                &v,
            )?;
        }
    }
    if let Some(n) = r.network() {
        if let (Some(d), Some(id)) = (dir("net_cls"), n.class_id()) {
            if id != 0 {
                layout::write(layout, &d, "net_cls.classid", &id.to_string())?;
            }
        }
        if let Some(d) = dir("net_prio") {
            for p in n.priorities().iter().flatten() {
                let v = format!("{} {}", p.name(), p.priority());
                layout::write(layout, &d, "net_prio.ifpriomap", &v)?;
            }
        }
    }
    if let Some(d) = dir("rdma") {
        for line in super::rdma_lines(r) {
            layout::write(layout, &d, "rdma.max", &line)?;
        }
    }
    Ok(())
}

/// runc's setMemoryAndSwap, then reservation, OOM killer and swappiness.
fn set_memory(
    layout: &Layout,
    dir: &Path,
    m: &LinuxMemory,
    update: bool,
) -> Result<(), CgroupError> {
    let limit = m.limit().unwrap_or(0);
    let mut swap = m.swap().unwrap_or(0);
    const LIMIT: &str = "memory.limit_in_bytes";
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    // Unlimited memory without an explicit swap means unlimited swap too, where swap is accounted.
    if limit == -1 && swap == 0 && (layout.create_files || dir.join(MEMSW).exists()) {
        swap = -1;
    }
    if update && m.check_before_update() == Some(true) && limit > 0 {
        check_usage(dir, "memory.usage_in_bytes", limit)?;
    }
    let set_limit = |v: i64| -> Result<(), CgroupError> {
        if v == 0 {
            return Ok(());
        }
        layout::write(layout, dir, LIMIT, &v.to_string()).map_err(|e| {
            if matches!(&e, CgroupError::Write { source, .. } if source.raw_os_error() == Some(libc::EBUSY))
            {
                let usage = read_u64(&dir.join("memory.usage_in_bytes"));
                let peak = read_u64(&dir.join("memory.max_usage_in_bytes"));
                CgroupError::Unsupported(format!(
                    "unable to set memory limit to {v} (current usage: {usage}, peak usage: {peak})"
                ))
            } else {
                e
            }
        })
    };
    let set_swap = |v: i64| -> Result<(), CgroupError> {
        if v == 0 {
            return Ok(());
        }
        layout::write(layout, dir, MEMSW, &v.to_string())
    };
    // The kernel requires memsw >= limit at every step, so the write order depends on whether the
    // limits grow or shrink.
    let mut done = false;
    if limit != 0 && swap != 0 {
        let cur = layout::read_opt(&dir.join(LIMIT))?
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if swap == -1 || cur < swap.unsigned_abs() {
            set_swap(swap)?;
            set_limit(limit)?;
            done = true;
        }
    }
    if !done {
        set_limit(limit)?;
        set_swap(swap)?;
    }
    if let Some(v) = m.reservation().filter(|v| *v != 0) {
        layout::write(layout, dir, "memory.soft_limit_in_bytes", &v.to_string())?;
    }
    #[allow(deprecated)]
    if let Some(v) = m.kernel().filter(|v| *v != 0) {
        // runc 1.1 ignores it; the kernel keeps the file (and, since 6.x, ignores the value).
        layout::write(layout, dir, "memory.kmem.limit_in_bytes", &v.to_string())?;
    }
    if let Some(v) = m.kernel_tcp().filter(|v| *v != 0) {
        layout::write(
            layout,
            dir,
            "memory.kmem.tcp.limit_in_bytes",
            &v.to_string(),
        )?;
    }
    if m.disable_oom_killer() == Some(true) {
        layout::write(layout, dir, "memory.oom_control", "1")?;
    }
    if let Some(s) = m.swappiness() {
        layout::write(layout, dir, "memory.swappiness", &s.to_string())?;
    }
    Ok(())
}

pub(crate) fn check_usage(dir: &Path, file: &str, limit: i64) -> Result<(), CgroupError> {
    let usage = read_u64(&dir.join(file));
    if limit.unsigned_abs() <= usage {
        return Err(CgroupError::Unsupported(format!(
            "rejecting memory limit {limit} below usage {usage} (linux.resources.memory.checkBeforeUpdate)"
        )));
    }
    Ok(())
}

fn read_u64(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Realtime bandwidth must be in place before a SCHED_RR/FIFO task joins, so it is written at
/// creation (runc's CpuGroup.Apply), period before runtime.
pub(crate) fn set_rt(layout: &Layout, path: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    let Some(dir) = layout.v1_mount("cpu").map(|m| m.join(rel(path))) else {
        return Ok(());
    };
    if let Some(p) = c.realtime_period().filter(|v| *v != 0) {
        layout::write(layout, &dir, "cpu.rt_period_us", &p.to_string())?;
    }
    if let Some(r) = c.realtime_runtime().filter(|v| *v != 0) {
        layout::write(layout, &dir, "cpu.rt_runtime_us", &r.to_string()).map_err(|e| {
            CgroupError::Unsupported(format!(
                "{e} (the parent cgroup's cpu.rt_runtime_us must leave room for it)"
            ))
        })?;
    }
    Ok(())
}

fn set_cpu(layout: &Layout, dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(shares) = c.shares().filter(|v| *v != 0) {
        layout::write(layout, dir, "cpu.shares", &shares.to_string())?;
        if !layout.create_files {
            // The kernel clamps silently; runc reads back to report the bound instead.
            let got = read_u64(&dir.join("cpu.shares"));
            if shares > got {
                return Err(CgroupError::config(
                    "linux.resources.cpu.shares",
                    format!("the maximum allowed cpu-shares is {got}"),
                ));
            } else if shares < got {
                return Err(CgroupError::config(
                    "linux.resources.cpu.shares",
                    format!("the minimum allowed cpu-shares is {got}"),
                ));
            }
        }
    }
    let quota = c.quota().unwrap_or(0);
    let einval = |e: &CgroupError| matches!(e, CgroupError::Write { source, .. } if source.raw_os_error() == Some(libc::EINVAL));
    // A period or burst the kernel rejects against the old quota is retried after the new quota.
    let mut period_retry = None;
    if let Some(p) = c.period().filter(|v| *v != 0) {
        if let Err(e) = layout::write(layout, dir, "cpu.cfs_period_us", &p.to_string()) {
            if !einval(&e) || quota == 0 {
                return Err(e);
            }
            period_retry = Some(p);
        }
    }
    let mut burst_retry = None;
    if let Some(b) = c.burst() {
        if let Err(e) = layout::write(layout, dir, "cpu.cfs_burst_us", &b.to_string()) {
            if !einval(&e) || quota == 0 {
                return Err(e);
            }
            burst_retry = Some(b);
        }
    }
    if quota != 0 {
        layout::write(layout, dir, "cpu.cfs_quota_us", &quota.to_string())?;
        if let Some(p) = period_retry {
            layout::write(layout, dir, "cpu.cfs_period_us", &p.to_string())?;
        }
        if let Some(b) = burst_retry {
            layout::write(layout, dir, "cpu.cfs_burst_us", &b.to_string())?;
        }
    }
    if let Some(idle) = c.idle() {
        layout::write(layout, dir, "cpu.idle", &idle.to_string())?;
    }
    Ok(())
}

fn set_blkio(layout: &Layout, dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    // Kernels with BFQ expose only the bfq files; CFQ kernels (before 5.0) the plain ones; a
    // kernel with neither has no weight to set, and the write's error names the file (runc
    // refuses it too).
    let (weight, weight_device) = if dir.join("blkio.bfq.weight").exists() {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        ("blkio.weight", "blkio.weight_device")
    };
    if let Some(w) = b.weight().filter(|v| *v != 0) {
        layout::write(layout, dir, weight, &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight().filter(|v| *v != 0) {
        layout::write(layout, dir, "blkio.leaf_weight", &w.to_string())?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight().filter(|v| *v != 0) {
            let v = format!("{}:{} {}", d.major(), d.minor(), w);
            layout::write(layout, dir, weight_device, &v)?;
        }
        if let Some(w) = d.leaf_weight().filter(|v| *v != 0) {
            let v = format!("{}:{} {}", d.major(), d.minor(), w);
            layout::write(layout, dir, "blkio.leaf_weight_device", &v)?;
        }
    }
    let throttles = [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
        ),
    ];
    for (list, file) in throttles {
        for t in list.iter().flatten() {
            let v = format!("{}:{} {}", t.major(), t.minor(), t.rate());
            layout::write(layout, dir, file, &v)?;
        }
    }
    Ok(())
}
