//! The cgroups a dead `husk sandbox` left behind (killed with SIGKILL before it could remove
//! them), removed by the next run.
//!
//! Only husk sandbox's own are touched: directories at a hierarchy's root named
//! `husk-sandbox-<pid>-<n>` or `husk-sandbox-<pid>-s<n>` ([`super::plan::CGROUP_PARENT`]),
//! whose creating husk is gone: no process `<pid>`, or one that started after the directory
//! was made (the pid was reused). What still runs in one is the dead run's program: it is
//! killed with the cgroup ([`crate::cgroups::Cgroup::destroy`]).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The creating pid of a sandbox cgroup's directory name, if it is one of ours.
pub fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(super::plan::CGROUP_PARENT.trim_start_matches('/'))?;
    let rest = rest.strip_prefix('-')?;
    let (pid, seq) = rest.split_once('-')?;
    let seq = seq.strip_prefix('s').unwrap_or(seq);
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|p| *p > 0)
}

/// Seconds since the epoch at which process `pid` started, if it exists.
fn started_at(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, counted after the command name (which may hold spaces) closes.
    let after = stat.rsplit_once(')')?.1;
    let ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let btime: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(btime + ticks / hz)
}

/// Is the husk that made a directory at `made` (epoch seconds) gone?
fn creator_gone(pid: i32, made: u64) -> bool {
    if pid as u32 == std::process::id() {
        return false;
    }
    match started_at(pid) {
        None => true,
        // btime is whole seconds: a margin of two keeps a live creator from looking new.
        Some(start) => start > made + 2,
    }
}

/// The roots to look in: the unified hierarchy, or the v1 ones the sandbox measures with.
fn roots() -> Vec<PathBuf> {
    match super::stats::host() {
        super::stats::Hierarchies::V2(b) => vec![b.clone()],
        super::stats::Hierarchies::V1 { cpuacct, memory } => {
            let mut v: Vec<PathBuf> = [cpuacct, memory].into_iter().flatten().cloned().collect();
            v.dedup();
            v
        }
    }
}

/// Remove every sandbox cgroup whose husk is dead. Best effort, never fails a run.
pub fn stale_cgroups() {
    let mut seen = std::collections::BTreeSet::new();
    for root in roots() {
        let Ok(dir) = crate::sys::list_dir(&root) else {
            continue;
        };
        for e in dir.iter().filter(|e| e.kind == crate::sys::Kind::Dir) {
            let Some(name) = e.name_str() else { continue };
            let Some(pid) = owner_pid(name) else { continue };
            let Ok(meta) = std::fs::symlink_metadata(crate::sys::entry_path(&root, e)) else {
                continue;
            };
            if !meta.is_dir() || !creator_gone(pid, meta.ctime().max(0) as u64) {
                continue;
            }
            if seen.insert(name.to_string()) {
                let path = Path::new("/").join(name);
                if let Err(e) = super::plan::stale_cgroup(&path).destroy() {
                    crate::logging::debug(&format!(
                        "remove the stale sandbox cgroup {path:?}: {}",
                        crate::init::chain(&e)
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_names_count() {
        assert_eq!(owner_pid("husk-sandbox-123-4"), Some(123));
        assert_eq!(owner_pid("husk-sandbox-123-s17"), Some(123));
        assert_eq!(owner_pid("husk-sandbox-123-pool-1"), None);
        assert_eq!(owner_pid("husk-sandbox"), None);
        assert_eq!(owner_pid("husk-sandbox-x-1"), None);
        assert_eq!(owner_pid("process_api"), None);
        assert_eq!(owner_pid("husk-sandbox-0-1"), None);
    }

    #[test]
    fn a_live_creator_is_not_gone() {
        let me = std::process::id() as i32;
        assert!(!creator_gone(me, 0));
        // pid 1 started long before anything made now: alive.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(!creator_gone(1, now));
        assert!(creator_gone(i32::MAX, now));
    }
}
