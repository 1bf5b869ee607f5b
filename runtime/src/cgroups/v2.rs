//! cgroup v2: one directory in the unified hierarchy, resources written as runc 1.1.5's fs2 manager
//! writes them, with its v1 → v2 value conversions so the same config.json means the same thing.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};

use super::layout::{self, Layout, Mode};
use super::{nonzero, CgroupError};

/// runc's ConvertCPUSharesToCgroupV2Value: maps shares [2, 262144] onto weight [1, 10000].
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262142
}

/// runc's ConvertBlkIOToIOWeightValue: maps blkio weight [10, 1000] onto io.weight [1, 10000].
pub fn blkio_to_io_weight(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (weight.saturating_sub(10) * 9999) / 990
}

/// runc's ConvertMemorySwapToCgroupV2Value: v1's memsw is memory+swap, v2's swap.max is swap alone.
/// `-1` means max, `0` unset.
pub fn swap_to_v2(swap: i64, memory: i64) -> Result<i64, String> {
    if memory == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    if memory == 0 || memory == -1 {
        return Err("unable to set swap limit without memory limit".into());
    }
    if memory < 0 {
        return Err(format!("invalid memory value: {memory}"));
    }
    if swap < memory {
        return Err("memory+swap limit should be >= memory limit".into());
    }
    Ok(swap - memory)
}

/// runc's numToStr: 0 is unset, -1 is max.
fn num(v: i64) -> Option<String> {
    match v {
        0 => None,
        -1 => Some("max".into()),
        v => Some(v.to_string()),
    }
}

pub(crate) fn validate(layout: &Layout, r: &LinuxResources) -> Result<(), CgroupError> {
    let need = |controller: &str, json: &str| -> Result<(), CgroupError> {
        if layout.has(controller) || layout.create_files {
            Ok(())
        } else {
            Err(CgroupError::config(
                json,
                format!("the {controller} controller is not available in this cgroup v2 hierarchy"),
            ))
        }
    };
    let v1_only = |json: &str, what: &str| {
        CgroupError::config(json, format!("{what} is only supported on cgroup v1"))
    };
    if let Some(m) = r.memory() {
        validate_memory(m, &need, &v1_only)?;
    }
    if let Some(c) = r.cpu() {
        let j = "linux.resources.cpu";
        if nonzero(c.shares()) || nonzero(c.quota()) || nonzero(c.period()) {
            need("cpu", j)?;
        }
        if c.burst().is_some() || c.idle().is_some() {
            need("cpu", j)?;
        }
        if nonzero(c.realtime_runtime()) || nonzero(c.realtime_period()) {
            return Err(v1_only(
                &format!("{j}.realtimeRuntime"),
                "realtime group scheduling",
            ));
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
        let j = "linux.resources.blockIO";
        if nonzero(b.leaf_weight().map(i64::from)) {
            return Err(v1_only(&format!("{j}.leafWeight"), "blkio leaf weight"));
        }
        for (i, d) in b.weight_device().iter().flatten().enumerate() {
            if nonzero(d.leaf_weight().map(i64::from)) {
                let json = format!("{j}.weightDevice[{i}].leafWeight");
                return Err(v1_only(&json, "blkio leaf weight"));
            }
        }
        let any = nonzero(b.weight().map(i64::from))
            || [
                b.weight_device().as_ref().map(Vec::len),
                b.throttle_read_bps_device().as_ref().map(Vec::len),
                b.throttle_write_bps_device().as_ref().map(Vec::len),
                b.throttle_read_iops_device().as_ref().map(Vec::len),
                b.throttle_write_iops_device().as_ref().map(Vec::len),
            ]
            .iter()
            .any(|n| n.unwrap_or(0) > 0);
        if any {
            need("io", j)?;
        }
    }
    if let Some(h) = r.hugepage_limits() {
        if !h.is_empty() {
            need("hugetlb", "linux.resources.hugepageLimits")?;
        }
        super::check_hugepage_sizes(layout, h)?;
    }
    if let Some(n) = r.network() {
        if n.class_id().is_some() {
            return Err(v1_only("linux.resources.network.classID", "net_cls"));
        }
        if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(v1_only("linux.resources.network.priorities", "net_prio"));
        }
    }
    if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
        need("rdma", "linux.resources.rdma")?;
    }
    for key in r.unified().iter().flat_map(|u| u.keys()) {
        let json = format!("linux.resources.unified[{key:?}]");
        if key.contains('/') || key.starts_with('.') {
            return Err(CgroupError::config(
                json,
                "must be a file name (no slashes)",
            ));
        }
        let Some((controller, _)) = key.split_once('.') else {
            return Err(CgroupError::config(
                json,
                "must be in the form CONTROLLER.PARAMETER",
            ));
        };
        if controller != "cgroup" {
            need(controller, &json)?;
        }
    }
    super::devices::rules(r.devices().as_ref())?;
    Ok(())
}

fn validate_memory(
    m: &LinuxMemory,
    need: &dyn Fn(&str, &str) -> Result<(), CgroupError>,
    v1_only: &dyn Fn(&str, &str) -> CgroupError,
) -> Result<(), CgroupError> {
    let j = "linux.resources.memory";
    if nonzero(m.limit()) || nonzero(m.reservation()) || nonzero(m.swap()) {
        need("memory", j)?;
    }
    swap_to_v2(m.swap().unwrap_or(0), m.limit().unwrap_or(0))
        .map_err(|e| CgroupError::config(format!("{j}.swap"), e))?;
    if m.swappiness().is_some() {
        return Err(v1_only(&format!("{j}.swappiness"), "memory swappiness"));
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(v1_only(
            &format!("{j}.disableOOMKiller"),
            "disabling the OOM killer",
        ));
    }
    #[allow(deprecated)]
    if nonzero(m.kernel()) {
        return Err(v1_only(&format!("{j}.kernel"), "a kernel memory limit"));
    }
    if nonzero(m.kernel_tcp()) {
        return Err(v1_only(
            &format!("{j}.kernelTCP"),
            "a kernel TCP memory limit",
        ));
    }
    if m.use_hierarchy() == Some(false) {
        return Err(CgroupError::config(
            format!("{j}.useHierarchy"),
            "false is not supported: cgroup v2 is always hierarchical",
        ));
    }
    Ok(())
}

/// Make the directory and its parents, enabling in every ancestor's `cgroup.subtree_control` the
/// controllers it has, so the leaf gets them all (runc's CreateCgroupPath).
pub(crate) fn mkdirs(
    layout: &Layout,
    path: &Path,
    created: &mut Vec<PathBuf>,
) -> Result<(), CgroupError> {
    let Mode::V2 { root, .. } = &layout.mode else {
        return Ok(());
    };
    let rel = path.strip_prefix("/").unwrap_or(path);
    let mut cur = root.clone();
    for comp in rel.components() {
        enable_controllers(layout, &cur)?;
        cur.push(comp);
        match std::fs::create_dir(&cur) {
            Ok(()) => created.push(cur.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(CgroupError::Io {
                    op: "create cgroup",
                    path: cur,
                    source,
                })
            }
        }
    }
    Ok(())
}

fn enable_controllers(layout: &Layout, dir: &Path) -> Result<(), CgroupError> {
    let have = layout::read_opt(&dir.join("cgroup.controllers"))?.unwrap_or_default();
    let enabled = layout::read_opt(&dir.join("cgroup.subtree_control"))?.unwrap_or_default();
    let missing: Vec<&str> = have
        .split_whitespace()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let all = missing
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    if layout::write(layout, dir, "cgroup.subtree_control", &all).is_err() {
        // One controller may be refused (e.g. cpu while a realtime task sits in the parent):
        // enable the others one by one, as runc does, and let a resource write name the gap.
        for c in missing {
            let _ = layout::write(layout, dir, "cgroup.subtree_control", &format!("+{c}"));
        }
    }
    Ok(())
}

/// Write every resource in runc's fs2 order: pids, memory, io, cpu, cpuset, hugetlb, rdma, unified.
/// Devices are an eBPF program (devices_bpf), attached after rdma.
pub(crate) fn set(
    layout: &Layout,
    dir: &Path,
    r: &LinuxResources,
    update: bool,
) -> Result<(), CgroupError> {
    if let Some(p) = r.pids() {
        if let Some(v) = num(p.limit()).or_else(|| (p.limit() < -1).then(|| "max".into())) {
            layout::write(layout, dir, "pids.max", &v)?;
        }
    }
    if let Some(m) = r.memory() {
        set_memory(layout, dir, m, update)?;
    }
    if let Some(b) = r.block_io() {
        set_io(layout, dir, b)?;
    }
    if let Some(c) = r.cpu() {
        set_cpu(layout, dir, c)?;
        if let Some(cpus) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
            layout::write(layout, dir, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = c.mems().as_ref().filter(|s| !s.is_empty()) {
            layout::write(layout, dir, "cpuset.mems", mems)?;
        }
    }
    // As on v1, no hugetlb.<size>.rsvd.max: runc 1.1.5 doesn't write it.
    for l in r.hugepage_limits().iter().flatten() {
        let v = l.limit().to_string();
        layout::write(layout, dir, &format!("hugetlb.{}.max", l.page_size()), &v)?;
    }
    for line in super::rdma_lines(r) {
        layout::write(layout, dir, "rdma.max", &line)?;
    }
    // Without explicit rules an update keeps the program the container has, as on v1. A fake
    // hierarchy (unit tests) has no cgroup to attach a program to.
    let explicit = r.devices().as_ref().is_some_and(|d| !d.is_empty());
    if !layout.create_files && (!update || explicit) {
        super::devices_bpf::apply(dir, &super::devices::rules(r.devices().as_ref())?)?;
    }
    if let Some(u) = r.unified() {
        // Sorted, so a run is reproducible (the map's order is not).
        let mut keys: Vec<&String> = u.keys().collect();
        keys.sort();
        for k in keys {
            layout::write(layout, dir, k, &u[k]).map_err(|e| {
                CgroupError::Unsupported(format!("linux.resources.unified[{k:?}]: {e}"))
            })?;
        }
    }
    Ok(())
}

fn set_memory(
    layout: &Layout,
    dir: &Path,
    m: &LinuxMemory,
    update: bool,
) -> Result<(), CgroupError> {
    let limit = m.limit().unwrap_or(0);
    let swap_in = m.swap().unwrap_or(0);
    let swap = swap_to_v2(swap_in, limit)
        .map_err(|e| CgroupError::config("linux.resources.memory.swap", e))?;
    if update && m.check_before_update() == Some(true) && limit > 0 {
        super::v1::check_usage(dir, "memory.current", limit)?;
    }
    let mut swap_str = num(swap);
    if swap_str.is_none() && swap == 0 && swap_in > 0 {
        // memory and swap set to the same value: no swap at all.
        swap_str = Some("0".into());
    }
    if let Some(s) = swap_str {
        if let Err(e) = layout::write(layout, dir, "memory.swap.max", &s) {
            // Without swap accounting, "no limit" and "no swap" hold already.
            let enoent = matches!(&e, CgroupError::Write { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound);
            if !(enoent && (s == "max" || s == "0")) {
                return Err(e);
            }
        }
    }
    if let Some(v) = num(limit) {
        layout::write(layout, dir, "memory.max", &v)?;
    }
    if let Some(v) = num(m.reservation().unwrap_or(0)) {
        layout::write(layout, dir, "memory.low", &v)?;
    }
    Ok(())
}

fn set_io(
    layout: &Layout,
    dir: &Path,
    b: &oci_spec::runtime::LinuxBlockIo,
) -> Result<(), CgroupError> {
    // BFQ takes the weight as is and per-device weights; otherwise io.weight, converted.
    let bfq = !layout.create_files && dir.join("io.bfq.weight").exists();
    if let Some(w) = b.weight().filter(|v| *v != 0) {
        if bfq {
            layout::write(layout, dir, "io.bfq.weight", &w.to_string())?;
        } else {
            let v = blkio_to_io_weight(u64::from(w)).to_string();
            layout::write(layout, dir, "io.weight", &v)?;
        }
    }
    if bfq {
        for d in b.weight_device().iter().flatten() {
            if let Some(w) = d.weight() {
                let v = format!("{}:{} {}\n", d.major(), d.minor(), w);
                layout::write(layout, dir, "io.bfq.weight", &v)?;
            }
        }
    } else if b.weight_device().as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(CgroupError::config(
            "linux.resources.blockIO.weightDevice",
            "per-device weights need the BFQ I/O scheduler (no io.bfq.weight)",
        ));
    }
    let throttles = [
        (b.throttle_read_bps_device(), "rbps"),
        (b.throttle_write_bps_device(), "wbps"),
        (b.throttle_read_iops_device(), "riops"),
        (b.throttle_write_iops_device(), "wiops"),
    ];
    for (list, key) in throttles {
        for t in list.iter().flatten() {
            let v = format!("{}:{} {}={}", t.major(), t.minor(), key, t.rate());
            layout::write(layout, dir, "io.max", &v)?;
        }
    }
    Ok(())
}

fn set_cpu(layout: &Layout, dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    let weight = shares_to_weight(c.shares().unwrap_or(0));
    if weight != 0 {
        layout::write(layout, dir, "cpu.weight", &weight.to_string())?;
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    if quota != 0 || period != 0 {
        let mut s = if quota > 0 {
            quota.to_string()
        } else {
            "max".to_string()
        };
        if period != 0 {
            s.push_str(&format!(" {period}"));
        }
        layout::write(layout, dir, "cpu.max", &s)?;
    }
    if let Some(b) = c.burst() {
        layout::write(layout, dir, "cpu.max.burst", &b.to_string())?;
    }
    if let Some(idle) = c.idle() {
        layout::write(layout, dir, "cpu.idle", &idle.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(blkio_to_io_weight(1000), 10000);
        assert_eq!(swap_to_v2(0, -1), Ok(-1));
        assert_eq!(swap_to_v2(-1, 100), Ok(-1));
        assert_eq!(swap_to_v2(300, 100), Ok(200));
        assert_eq!(swap_to_v2(100, 100), Ok(0));
        assert!(swap_to_v2(50, 100).is_err());
        assert!(swap_to_v2(50, 0).is_err());
    }
}
