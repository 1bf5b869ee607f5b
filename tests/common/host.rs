//! What the host shows about a case: processes, cgroups, mounts, namespaces.

use std::fs;
use std::path::{Path, PathBuf};

use super::MARK;

/// Field 22 of /proc/<pid>/stat (start time), None when the process is gone or a zombie.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Pids of all processes whose cgroup (in any hierarchy) is `cg` or below it.
pub fn pids_in_cgroup(cg: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return pids;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(text) = fs::read_to_string(e.path().join("cgroup")) else {
            continue;
        };
        let hit = text.lines().any(|l| {
            let path = l.splitn(3, ':').nth(2).unwrap_or("");
            path == cg || path.starts_with(&format!("{cg}/"))
        });
        if hit && start_time(pid).is_some() {
            pids.push(pid);
        }
    }
    pids
}

/// Pids of live processes whose environment holds `MARK=id`.
pub fn marked_pids(id: &str) -> Vec<i32> {
    let want = format!("{MARK}={id}");
    let mut pids = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return pids;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = fs::read(e.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == want.as_bytes()) && start_time(pid).is_some() {
            pids.push(pid);
        }
    }
    pids
}

/// The dirs of cgroup `cg` under every hierarchy mounted in /sys/fs/cgroup.
pub fn cgroup_dirs(cg: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let rel = cg.trim_start_matches('/');
    if rel.is_empty() {
        return dirs;
    }
    if Path::new("/sys/fs/cgroup").join(rel).is_dir() {
        dirs.push(Path::new("/sys/fs/cgroup").join(rel)); // pure cgroup v2
    }
    let Ok(rd) = fs::read_dir("/sys/fs/cgroup") else {
        return dirs;
    };
    for e in rd.flatten() {
        let ty = e.file_type();
        if ty.map(|t| t.is_symlink()).unwrap_or(true) {
            continue; // cpu -> cpu,cpuacct and friends: the real dir is listed too
        }
        let d = e.path().join(rel);
        if d.is_dir() {
            dirs.push(d);
        }
    }
    dirs
}

pub fn rmdir_tree(d: &Path) {
    if let Ok(rd) = fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(d);
}

/// Mount points in this mount namespace at or under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let d = dir.to_string_lossy();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == d || m.starts_with(&format!("{d}/")))
        .map(str::to_string)
        .collect()
}

/// The inode link of each /proc/<pid>/ns/* entry, by name.
pub fn namespaces_of(pid: &str) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for name in ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"] {
        if let Ok(l) = fs::read_link(format!("/proc/{pid}/ns/{name}")) {
            v.push((name.to_string(), l.to_string_lossy().into_owned()));
        }
    }
    v
}

/// The OCI namespace type for a /proc/<pid>/ns file name.
pub fn oci_ns_type(name: &str) -> &str {
    match name {
        "mnt" => "mount",
        "net" => "network",
        other => other,
    }
}
