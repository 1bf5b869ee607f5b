//! Statistics in the shape `runc events --stats` prints (runc's types/events.go), read from v1 or
//! v2 control files. Missing controllers leave their section at its default, as runc does.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::layout::{Layout, Mode};

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// Nanoseconds.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

/// A single number; `max` reads as u64::MAX.
fn num(dir: &Path, file: &str) -> u64 {
    read(dir, file).map_or(0, |s| match s.trim() {
        "max" => u64::MAX,
        v => v.parse().unwrap_or(0),
    })
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, cpuacct.stat).
fn keyed(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    read(dir, file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn list(dir: &Path, file: &str) -> Vec<u64> {
    read(dir, file)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect()
}

pub(crate) fn collect(layout: &Layout, path: &Path) -> Stats {
    let rel = path.strip_prefix("/").unwrap_or(path);
    match &layout.mode {
        Mode::V1 { .. } => {
            let dir = |c: &str| layout.v1_mount(c).map(|m| m.join(rel));
            v1(dir)
        }
        Mode::V2 { root, .. } => v2(&root.join(rel)),
    }
}

fn v1(dir: impl Fn(&str) -> Option<std::path::PathBuf>) -> Stats {
    let mut s = Stats::default();
    if let Some(d) = dir("cpuacct") {
        s.cpu.usage.total = num(&d, "cpuacct.usage");
        s.cpu.usage.percpu = list(&d, "cpuacct.usage_percpu");
        // cpuacct.usage_all: "cpu user system" rows after a header.
        for line in read(&d, "cpuacct.usage_all")
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            if let [_, user, sys] = f[..] {
                s.cpu.usage.percpu_user.push(user);
                s.cpu.usage.percpu_kernel.push(sys);
            }
        }
        // cpuacct.stat is in USER_HZ ticks (100 per second on Linux).
        let st = keyed(&d, "cpuacct.stat");
        let ns = 1_000_000_000 / 100;
        s.cpu.usage.user = st.get("user").copied().unwrap_or(0) * ns;
        s.cpu.usage.kernel = st.get("system").copied().unwrap_or(0) * ns;
    }
    if let Some(d) = dir("cpu") {
        let st = keyed(&d, "cpu.stat");
        s.cpu.throttling = Throttling {
            periods: st.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: st.get("throttled_time").copied().unwrap_or(0),
        };
    }
    if let Some(d) = dir("memory") {
        let entry = |prefix: &str| MemoryEntry {
            limit: num(&d, &format!("{prefix}limit_in_bytes")),
            usage: num(&d, &format!("{prefix}usage_in_bytes")),
            max: num(&d, &format!("{prefix}max_usage_in_bytes")),
            failcnt: num(&d, &format!("{prefix}failcnt")),
        };
        s.memory.usage = entry("memory.");
        s.memory.swap = entry("memory.memsw.");
        s.memory.kernel = entry("memory.kmem.");
        s.memory.kernel_tcp = entry("memory.kmem.tcp.");
        s.memory.raw = keyed(&d, "memory.stat");
        s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
    }
    if let Some(d) = dir("pids") {
        s.pids.current = num(&d, "pids.current");
        s.pids.limit = num(&d, "pids.max");
        if s.pids.limit == u64::MAX {
            s.pids.limit = 0;
        }
    }
    if let Some(d) = dir("blkio") {
        // BFQ kernels account in blkio.bfq.*, the throttle policy always in blkio.throttle.*.
        let pick = |a: &str, b: &str| {
            let v = blkio_entries(&d, a);
            if v.is_empty() {
                blkio_entries(&d, b)
            } else {
                v
            }
        };
        s.blkio.io_service_bytes_recursive = pick(
            "blkio.bfq.io_service_bytes_recursive",
            "blkio.throttle.io_service_bytes_recursive",
        );
        s.blkio.io_serviced_recursive = pick(
            "blkio.bfq.io_serviced_recursive",
            "blkio.throttle.io_serviced_recursive",
        );
    }
    if let Some(d) = dir("hugetlb") {
        for size in super::hugepage_sizes() {
            let f = |k: &str| num(&d, &format!("hugetlb.{size}.{k}"));
            let h = Hugetlb {
                usage: f("usage_in_bytes"),
                max: f("max_usage_in_bytes"),
                failcnt: f("failcnt"),
            };
            s.hugetlb.insert(size, h);
        }
    }
    s
}

/// `8:0 Read 4096` lines; the `Total` lines runc skips too.
fn blkio_entries(dir: &Path, file: &str) -> Vec<BlkioEntry> {
    let mut out = Vec::new();
    for line in read(dir, file).unwrap_or_default().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [dev, op, value] = f[..] else { continue };
        let Some((maj, min)) = dev.split_once(':') else {
            continue;
        };
        out.push(BlkioEntry {
            major: maj.parse().unwrap_or(0),
            minor: min.parse().unwrap_or(0),
            op: op.to_string(),
            value: value.parse().unwrap_or(0),
        });
    }
    out
}

/// runc's fs2 mapping of the v2 files onto the same shape.
fn v2(d: &Path) -> Stats {
    let mut s = Stats::default();
    let cpu = keyed(d, "cpu.stat");
    let get = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    s.cpu.usage.total = get(&cpu, "usage_usec") * 1000;
    s.cpu.usage.user = get(&cpu, "user_usec") * 1000;
    s.cpu.usage.kernel = get(&cpu, "system_usec") * 1000;
    s.cpu.throttling = Throttling {
        periods: get(&cpu, "nr_periods"),
        throttled_periods: get(&cpu, "nr_throttled"),
        throttled_time: get(&cpu, "throttled_usec") * 1000,
    };
    let events = keyed(d, "memory.events");
    s.memory.raw = keyed(d, "memory.stat");
    s.memory.cache = get(&s.memory.raw, "file");
    let usage = num(d, "memory.current");
    s.memory.usage = MemoryEntry {
        limit: num(d, "memory.max"),
        usage,
        max: num(d, "memory.peak"),
        failcnt: get(&events, "max"),
    };
    // As runc: v2 swap is reported as memory+swap, like v1's memsw.
    let swap_limit = num(d, "memory.swap.max");
    s.memory.swap = MemoryEntry {
        limit: s.memory.usage.limit.saturating_add(swap_limit),
        usage: usage + num(d, "memory.swap.current"),
        max: 0,
        failcnt: 0,
    };
    s.pids.current = num(d, "pids.current");
    s.pids.limit = match num(d, "pids.max") {
        u64::MAX => 0,
        v => v,
    };
    for line in read(d, "io.stat").unwrap_or_default().lines() {
        let mut f = line.split_whitespace();
        let Some((maj, min)) = f.next().and_then(|dev| dev.split_once(':')) else {
            continue;
        };
        let (major, minor) = (maj.parse().unwrap_or(0), min.parse().unwrap_or(0));
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let value = v.parse().unwrap_or(0);
            let (list, op) = match k {
                "rbytes" => (&mut s.blkio.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut s.blkio.io_service_bytes_recursive, "Write"),
                "rios" => (&mut s.blkio.io_serviced_recursive, "Read"),
                "wios" => (&mut s.blkio.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    for size in super::hugepage_sizes() {
        let ev = keyed(d, &format!("hugetlb.{size}.events"));
        let h = Hugetlb {
            usage: num(d, &format!("hugetlb.{size}.current")),
            max: 0,
            failcnt: get(&ev, "max"),
        };
        s.hugetlb.insert(size, h);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_files_map_to_runc_shape() {
        let t = std::env::temp_dir().join(format!("husk-cg-stats-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        std::fs::create_dir_all(&t).unwrap();
        let w = |f: &str, v: &str| std::fs::write(t.join(f), v).unwrap();
        w("cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 3\nnr_throttled 1\nthrottled_usec 20\n");
        w("memory.current", "4096\n");
        w("memory.max", "max\n");
        w("memory.events", "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n");
        w("memory.stat", "anon 100\nfile 200\n");
        w("pids.current", "3\n");
        w("pids.max", "64\n");
        w(
            "io.stat",
            "254:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
        );
        let s = v2(&t);
        assert_eq!(s.cpu.usage.total, 1_500_000);
        assert_eq!(s.cpu.usage.kernel, 500_000);
        assert_eq!(s.cpu.throttling.throttled_time, 20_000);
        assert_eq!(s.memory.usage.failcnt, 7);
        assert_eq!(s.memory.cache, 200);
        assert_eq!(s.pids.limit, 64);
        assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["pids"], serde_json::json!({"current": 3, "limit": 64}));
        assert_eq!(j["blkio"]["ioServiceBytesRecursive"][0]["op"], "Read");
        assert!(j["memory"]["kernelTCP"].is_object());
        std::fs::remove_dir_all(&t).unwrap();
    }
}
