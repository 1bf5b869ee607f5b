//! `runc events --stats` JSON (runc's types/events.go, which husk prints too) → containerd's
//! cgroup metrics: `io.containerd.cgroups.v1.Metrics` on v1/hybrid hosts, `...v2.Metrics` on a
//! pure v2 host (what `ctr task metrics` and the CRI decode).

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{MessageField, MessageFull};
use serde_json::Value;

fn u(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn raw(v: &Value, key: &str) -> u64 {
    u(v, &["memory", "raw", key])
}

fn entry(v: &Value, name: &str) -> MessageField<v1::MemoryEntry> {
    MessageField::some(v1::MemoryEntry {
        limit: u(v, &["memory", name, "limit"]),
        usage: u(v, &["memory", name, "usage"]),
        max: u(v, &["memory", name, "max"]),
        failcnt: u(v, &["memory", name, "failcnt"]),
        ..Default::default()
    })
}

pub fn to_v1(s: &Value) -> v1::Metrics {
    let per_cpu = s
        .pointer("/cpu/usage/percpu")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let hugetlb = s
        .get("hugetlb")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(size, h)| v1::HugetlbStat {
                    usage: u(h, &["usage"]),
                    max: u(h, &["max"]),
                    failcnt: u(h, &["failcnt"]),
                    pagesize: size.clone(),
                    ..Default::default()
                })
                .collect()
        })
        .unwrap_or_default();
    v1::Metrics {
        pids: MessageField::some(v1::PidsStat {
            current: u(s, &["pids", "current"]),
            limit: u(s, &["pids", "limit"]),
            ..Default::default()
        }),
        cpu: MessageField::some(v1::CPUStat {
            usage: MessageField::some(v1::CPUUsage {
                total: u(s, &["cpu", "usage", "total"]),
                kernel: u(s, &["cpu", "usage", "kernel"]),
                user: u(s, &["cpu", "usage", "user"]),
                per_cpu,
                ..Default::default()
            }),
            throttling: MessageField::some(v1::Throttle {
                periods: u(s, &["cpu", "throttling", "periods"]),
                throttled_periods: u(s, &["cpu", "throttling", "throttledPeriods"]),
                throttled_time: u(s, &["cpu", "throttling", "throttledTime"]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        memory: MessageField::some(v1::MemoryStat {
            cache: raw(s, "cache"),
            rss: raw(s, "rss"),
            rss_huge: raw(s, "rss_huge"),
            mapped_file: raw(s, "mapped_file"),
            dirty: raw(s, "dirty"),
            writeback: raw(s, "writeback"),
            pg_pg_in: raw(s, "pgpgin"),
            pg_pg_out: raw(s, "pgpgout"),
            pg_fault: raw(s, "pgfault"),
            pg_maj_fault: raw(s, "pgmajfault"),
            inactive_anon: raw(s, "inactive_anon"),
            active_anon: raw(s, "active_anon"),
            inactive_file: raw(s, "inactive_file"),
            active_file: raw(s, "active_file"),
            unevictable: raw(s, "unevictable"),
            hierarchical_memory_limit: raw(s, "hierarchical_memory_limit"),
            hierarchical_swap_limit: raw(s, "hierarchical_memsw_limit"),
            total_cache: raw(s, "total_cache"),
            total_rss: raw(s, "total_rss"),
            total_rss_huge: raw(s, "total_rss_huge"),
            total_mapped_file: raw(s, "total_mapped_file"),
            total_dirty: raw(s, "total_dirty"),
            total_writeback: raw(s, "total_writeback"),
            total_pg_pg_in: raw(s, "total_pgpgin"),
            total_pg_pg_out: raw(s, "total_pgpgout"),
            total_pg_fault: raw(s, "total_pgfault"),
            total_pg_maj_fault: raw(s, "total_pgmajfault"),
            total_inactive_anon: raw(s, "total_inactive_anon"),
            total_active_anon: raw(s, "total_active_anon"),
            total_inactive_file: raw(s, "total_inactive_file"),
            total_active_file: raw(s, "total_active_file"),
            total_unevictable: raw(s, "total_unevictable"),
            usage: entry(s, "usage"),
            swap: entry(s, "swap"),
            kernel: entry(s, "kernel"),
            kernel_tcp: entry(s, "kernelTCP"),
            ..Default::default()
        }),
        hugetlb,
        ..Default::default()
    }
}

pub fn to_v2(s: &Value) -> v2::Metrics {
    v2::Metrics {
        pids: MessageField::some(v2::PidsStat {
            current: u(s, &["pids", "current"]),
            limit: u(s, &["pids", "limit"]),
            ..Default::default()
        }),
        cpu: MessageField::some(v2::CPUStat {
            // runc reports nanoseconds; v2 metrics are in microseconds.
            usage_usec: u(s, &["cpu", "usage", "total"]) / 1000,
            user_usec: u(s, &["cpu", "usage", "user"]) / 1000,
            system_usec: u(s, &["cpu", "usage", "kernel"]) / 1000,
            nr_periods: u(s, &["cpu", "throttling", "periods"]),
            nr_throttled: u(s, &["cpu", "throttling", "throttledPeriods"]),
            throttled_usec: u(s, &["cpu", "throttling", "throttledTime"]) / 1000,
            ..Default::default()
        }),
        memory: MessageField::some(v2::MemoryStat {
            anon: raw(s, "anon"),
            file: raw(s, "file"),
            kernel_stack: raw(s, "kernel_stack"),
            slab: raw(s, "slab"),
            sock: raw(s, "sock"),
            shmem: raw(s, "shmem"),
            file_mapped: raw(s, "file_mapped"),
            file_dirty: raw(s, "file_dirty"),
            file_writeback: raw(s, "file_writeback"),
            inactive_anon: raw(s, "inactive_anon"),
            active_anon: raw(s, "active_anon"),
            inactive_file: raw(s, "inactive_file"),
            active_file: raw(s, "active_file"),
            unevictable: raw(s, "unevictable"),
            pgfault: raw(s, "pgfault"),
            pgmajfault: raw(s, "pgmajfault"),
            usage: u(s, &["memory", "usage", "usage"]),
            usage_limit: u(s, &["memory", "usage", "limit"]),
            max_usage: u(s, &["memory", "usage", "max"]),
            swap_usage: u(s, &["memory", "swap", "usage"]),
            swap_limit: u(s, &["memory", "swap", "limit"]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pack<M: MessageFull>(m: &M) -> Result<Any, containerd_shim_protos::protobuf::Error> {
    Ok(Any {
        type_url: M::descriptor().full_name().to_string(),
        value: m.write_to_bytes()?,
        ..Default::default()
    })
}

/// Packs the stats for this host: v2 metrics only where the v2 hierarchy is the only one.
pub fn pack_for_host(s: &Value) -> Result<Any, containerd_shim_protos::protobuf::Error> {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        pack(&to_v2(s))
    } else {
        pack(&to_v1(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_runc_stats_to_v1_metrics() {
        let s: Value = serde_json::from_str(
            r#"{"cpu":{"usage":{"total":5000,"percpu":[2000,3000],"kernel":1000,"user":4000},
                "throttling":{"periods":3,"throttledPeriods":1,"throttledTime":7}},
                "memory":{"usage":{"limit":1048576,"usage":4096,"max":8192,"failcnt":2},
                "raw":{"cache":10,"rss":20,"total_rss":21}},
                "pids":{"current":2,"limit":100},
                "hugetlb":{"2MB":{"usage":1,"max":2,"failcnt":0}}}"#,
        )
        .unwrap();
        let m = to_v1(&s);
        assert_eq!(m.pids.current, 2);
        assert_eq!(m.pids.limit, 100);
        assert_eq!(m.cpu.usage.per_cpu, vec![2000, 3000]);
        assert_eq!(m.cpu.throttling.throttled_periods, 1);
        assert_eq!(m.memory.usage.limit, 1048576);
        assert_eq!(m.memory.usage.failcnt, 2);
        assert_eq!(m.memory.total_rss, 21);
        assert_eq!(m.hugetlb[0].pagesize, "2MB");
        let any = pack(&m).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let v2 = to_v2(&s);
        assert_eq!(v2.cpu.usage_usec, 5);
        assert_eq!(v2.memory.usage_limit, 1048576);
    }
}
