//! Reading a sandbox's cgroup: CPU time, peak memory and OOM kills, on v1 (`cpuacct.usage`,
//! `memory.max_usage_in_bytes`, `memory.oom_control`) and v2 (`cpu.stat`, `memory.peak`,
//! `memory.events`). Read straight from the files: these are the few numbers a verdict needs,
//! read many times a second while a run is polled.

use std::io::{Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where the hierarchies the sandbox reads are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchies {
    /// The unified hierarchy (with the cpu and memory controllers enabled in it).
    V2(PathBuf),
    /// v1: the hierarchies holding cpuacct and memory (either may be missing).
    V1 {
        cpuacct: Option<PathBuf>,
        memory: Option<PathBuf>,
    },
}

/// The host's, from the runtime's cgroup layout (one mountinfo read for both).
pub fn host() -> &'static Hierarchies {
    static H: OnceLock<Hierarchies> = OnceLock::new();
    H.get_or_init(|| match crate::cgroups::v2_root() {
        Some(root) => Hierarchies::V2(root),
        None => Hierarchies::V1 {
            cpuacct: crate::cgroups::v1_mount("cpuacct"),
            memory: crate::cgroups::v1_mount("memory"),
        },
    })
}

/// The open stat files of one cgroup.
pub struct Stats {
    v2: bool,
    cpu: Option<std::fs::File>,
    usage: Option<std::fs::File>,
    peak: Option<std::fs::File>,
    oom: Option<std::fs::File>,
}

fn join(base: &Path, cgroup: &Path, file: &str) -> PathBuf {
    base.join(cgroup.strip_prefix("/").unwrap_or(cgroup))
        .join(file)
}

impl Stats {
    /// Nothing measured (a placeholder while the real one is lent out).
    pub fn empty() -> Stats {
        Stats {
            v2: false,
            cpu: None,
            usage: None,
            peak: None,
            oom: None,
        }
    }

    /// Open the files of `cgroup` (a path relative to each hierarchy's root). Missing files
    /// leave that number unmeasured.
    pub fn open(h: &Hierarchies, cgroup: &Path) -> Stats {
        let open = |p: PathBuf| std::fs::File::open(p).ok();
        match h {
            Hierarchies::V2(base) => Stats {
                v2: true,
                cpu: open(join(base, cgroup, "cpu.stat")),
                usage: open(join(base, cgroup, "memory.current")),
                // Read-write: a write resets the peak for reads through this descriptor.
                peak: std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(join(base, cgroup, "memory.peak"))
                    .or_else(|_| std::fs::File::open(join(base, cgroup, "memory.peak")))
                    .ok(),
                oom: open(join(base, cgroup, "memory.events")),
            },
            Hierarchies::V1 { cpuacct, memory } => Stats {
                v2: false,
                cpu: cpuacct
                    .as_ref()
                    .and_then(|b| open(join(b, cgroup, "cpuacct.usage"))),
                usage: memory
                    .as_ref()
                    .and_then(|b| open(join(b, cgroup, "memory.usage_in_bytes"))),
                peak: memory.as_ref().and_then(|b| {
                    std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(join(b, cgroup, "memory.max_usage_in_bytes"))
                        .ok()
                }),
                oom: memory
                    .as_ref()
                    .and_then(|b| open(join(b, cgroup, "memory.oom_control"))),
            },
        }
    }

    /// CPU time used so far by the cgroup, in nanoseconds.
    pub fn cpu_ns(&self) -> Option<u64> {
        let f = self.cpu.as_ref()?;
        let mut buf = [0u8; 256];
        let n = f.read_at(&mut buf, 0).ok()?;
        self.cpu_ns_in(&buf[..n])
    }

    /// The CPU time in the usage file's contents as read at some moment (by the reaper, at the
    /// handover: [`cpu_fd`](Self::cpu_fd)).
    pub fn cpu_ns_in(&self, contents: &[u8]) -> Option<u64> {
        let text = std::str::from_utf8(contents).ok()?;
        if self.v2 {
            key_value(text, "usage_usec").map(|us| us * 1000)
        } else {
            text.trim().parse().ok()
        }
    }

    /// The open CPU usage file, for the reaper to sample.
    pub fn cpu_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.cpu.as_ref().map(|f| f.as_raw_fd())
    }

    /// The peak file's descriptor, for a reaper to reset right before the program starts
    /// ([`crate::init::reaper::Reporting::peak_reset`]; the same open file, so on v2, where a
    /// reset is per open file, [`Self::peak_bytes`] reads the peak since then).
    pub fn peak_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.peak.as_ref().map(|f| f.as_raw_fd())
    }

    /// Copies of the CPU usage and peak files (the same open files) for a reaper that was
    /// made before they existed: [`crate::process::spawn::Observer::stats_files`].
    pub fn reaper_files(&self) -> std::io::Result<crate::process::spawn::StatsFiles> {
        let copy = |f: &Option<std::fs::File>| {
            f.as_ref()
                .map(|f| f.try_clone().map(std::os::fd::OwnedFd::from))
                .transpose()
        };
        Ok(crate::process::spawn::StatsFiles {
            cpu: copy(&self.cpu)?,
            peak: copy(&self.peak)?,
        })
    }

    /// Memory the cgroup holds now, in bytes.
    pub fn usage_bytes(&self) -> Option<u64> {
        let mut buf = [0u8; 64];
        let n = self.usage.as_ref()?.read_at(&mut buf, 0).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
    }

    /// Forget the peak so far (the runtime's own set-up before exec).
    pub fn reset_peak(&mut self) {
        if let Some(f) = self.peak.as_mut() {
            let _ = f.write_all(b"0");
            let _ = f.rewind();
        }
    }

    /// Peak memory in bytes.
    pub fn peak_bytes(&mut self) -> Option<u64> {
        let f = self.peak.as_mut()?;
        let mut text = String::new();
        f.rewind().ok()?;
        f.read_to_string(&mut text).ok()?;
        text.trim().parse().ok()
    }

    /// How many times the OOM killer ran in the cgroup.
    pub fn oom_kills(&self) -> Option<u64> {
        let mut buf = [0u8; 512];
        let n = self.oom.as_ref()?.read_at(&mut buf, 0).ok()?;
        key_value(std::str::from_utf8(&buf[..n]).ok()?, "oom_kill")
    }
}

/// `key N` lines (cpu.stat, memory.events, memory.oom_control).
pub fn key_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values() {
        let t = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(key_value(t, "oom_kill"), Some(3));
        assert_eq!(key_value(t, "under_oom"), Some(0));
        assert_eq!(
            key_value("usage_usec 1500\nuser_usec 1000\n", "usage_usec"),
            Some(1500)
        );
        assert_eq!(key_value(t, "missing"), None);
    }
}
