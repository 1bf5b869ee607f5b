//! Direct cgroup reads for what the shim needs between runtime calls: the container's pids and
//! its OOM events. The cgroup is found from the init's `/proc/<pid>/cgroup`, so this works for
//! whatever runtime placed it (husk, runc, crun) and whatever the cgroupsPath was.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use tokio::io::unix::AsyncFd;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("read {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no memory cgroup found for pid {0}")]
    NoMemory(i32),
    #[error("register OOM eventfd on {path:?}")]
    Register {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Where a process's cgroups are: v1 memory directory and/or the v2 directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Located {
    pub memory_v1: Option<PathBuf>,
    pub pids_v1: Option<PathBuf>,
    pub unified: Option<PathBuf>,
}

impl Located {
    pub fn of(pid: i32) -> Result<Located, CgroupError> {
        let cg = read(Path::new(&format!("/proc/{pid}/cgroup")))?;
        let mounts = read(Path::new("/proc/self/mountinfo"))?;
        Ok(Located::parse(&cg, &mounts))
    }

    /// `/proc/<pid>/cgroup` lines `N:controllers:/path` joined to the mount points found in
    /// mountinfo (field 5 = mount point; after " - ", fstype and super options).
    pub fn parse(proc_cgroup: &str, mountinfo: &str) -> Located {
        let mut v1_mounts: Vec<(String, PathBuf)> = Vec::new();
        let mut v2_mount: Option<PathBuf> = None;
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let mut post = post.split_whitespace();
            let fstype = post.next().unwrap_or_default();
            let opts = post.nth(1).unwrap_or_default();
            let Some(mp) = pre.split_whitespace().nth(4) else {
                continue;
            };
            match fstype {
                "cgroup" => v1_mounts.push((opts.to_string(), PathBuf::from(mp))),
                "cgroup2" if v2_mount.is_none() => v2_mount = Some(PathBuf::from(mp)),
                _ => {}
            }
        }
        let v1 = |controller: &str, path: &str| {
            v1_mounts
                .iter()
                .find(|(opts, _)| opts.split(',').any(|o| o == controller))
                .map(|(_, mp)| mp.join(path.trim_start_matches('/')))
        };
        let mut l = Located::default();
        for line in proc_cgroup.lines() {
            let mut f = line.splitn(3, ':');
            let (_, ctrls, path) = (f.next(), f.next().unwrap_or_default(), f.next());
            let Some(path) = path else { continue };
            if ctrls.is_empty() {
                l.unified = v2_mount
                    .as_ref()
                    .map(|m| m.join(path.trim_start_matches('/')));
            }
            for c in ctrls.split(',') {
                match c {
                    "memory" => l.memory_v1 = v1("memory", path),
                    "pids" => l.pids_v1 = v1("pids", path),
                    _ => {}
                }
            }
        }
        l
    }

    /// The directory whose `cgroup.procs` lists the container's processes.
    fn procs_dir(&self) -> Option<&Path> {
        self.pids_v1
            .as_deref()
            .or(self.memory_v1.as_deref())
            .or(self.unified.as_deref())
    }

    pub fn pids(&self) -> Result<Vec<u32>, CgroupError> {
        let Some(dir) = self.procs_dir() else {
            return Ok(Vec::new());
        };
        let text = read(&dir.join("cgroup.procs"))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }
}

/// One readable fd that fires on each OOM event of a cgroup.
pub enum OomWatch {
    /// cgroup v1: an eventfd registered on `memory.oom_control` via `cgroup.event_control`.
    V1 { efd: AsyncFd<OwnedFd>, dir: PathBuf },
    /// cgroup v2: inotify on `memory.events`; an event counts when `oom_kill` grows.
    V2 {
        ino: AsyncFd<OwnedFd>,
        events: PathBuf,
        seen: u64,
    },
}

impl OomWatch {
    pub fn new(l: &Located, pid: i32) -> Result<OomWatch, CgroupError> {
        if let Some(dir) = &l.memory_v1 {
            return v1(dir);
        }
        match &l.unified {
            Some(dir) if dir.join("memory.events").exists() => v2(dir),
            _ => Err(CgroupError::NoMemory(pid)),
        }
    }

    /// Waits for the next OOM event; `None` once the cgroup is gone.
    pub async fn next(&mut self) -> Option<()> {
        match self {
            OomWatch::V1 { efd, dir } => loop {
                let mut guard = efd.readable().await.ok()?;
                let mut v = [0u8; 8];
                match guard.try_io(|fd| {
                    nix::unistd::read(fd.get_ref().as_raw_fd(), &mut v).map_err(Into::into)
                }) {
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => return None,
                    Err(_would_block) => continue,
                }
                // The eventfd also fires when the cgroup is removed.
                if !dir.join("memory.oom_control").exists() {
                    return None;
                }
                return Some(());
            },
            OomWatch::V2 { ino, events, seen } => loop {
                let mut guard = ino.readable().await.ok()?;
                let mut buf = [0u8; 1024];
                match guard.try_io(|fd| {
                    nix::unistd::read(fd.get_ref().as_raw_fd(), &mut buf).map_err(Into::into)
                }) {
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => return None,
                    Err(_would_block) => continue,
                }
                let text = std::fs::read_to_string(&*events).ok()?;
                let n = oom_kills(&text);
                if n > *seen {
                    *seen = n;
                    return Some(());
                }
            },
        }
    }
}

fn oom_kills(memory_events: &str) -> u64 {
    memory_events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn v1(dir: &Path) -> Result<OomWatch, CgroupError> {
    let control = dir.join("memory.oom_control");
    let reg_err = |source| CgroupError::Register {
        path: control.clone(),
        source,
    };
    let oom = std::fs::File::open(&control).map_err(|source| CgroupError::Read {
        path: control.clone(),
        source,
    })?;
    // SAFETY: eventfd takes no pointers; the result is checked before use.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if efd < 0 {
        return Err(reg_err(std::io::Error::last_os_error()));
    }
    // SAFETY: efd is a fresh descriptor returned above and owned by nothing else.
    let efd = unsafe { OwnedFd::from_raw_fd(efd) };
    let line = format!("{} {}", efd.as_raw_fd(), oom.as_raw_fd());
    std::fs::write(dir.join("cgroup.event_control"), line).map_err(reg_err)?;
    Ok(OomWatch::V1 {
        efd: crate::io::async_fd(efd).map_err(reg_err)?,
        dir: dir.to_path_buf(),
    })
}

fn v2(dir: &Path) -> Result<OomWatch, CgroupError> {
    let events = dir.join("memory.events");
    let reg_err = |source| CgroupError::Register {
        path: events.clone(),
        source,
    };
    // SAFETY: inotify_init1 takes no pointers; the result is checked before use.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        return Err(reg_err(std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor returned above and owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let c = std::ffi::CString::new(events.as_os_str().as_encoded_bytes())
        .map_err(|e| reg_err(std::io::Error::other(e)))?;
    // SAFETY: c is a NUL-terminated path that outlives the call.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) } < 0 {
        return Err(reg_err(std::io::Error::last_os_error()));
    }
    let seen = oom_kills(&read(&events)?);
    Ok(OomWatch::V2 {
        ino: crate::io::async_fd(fd).map_err(reg_err)?,
        events,
        seen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn locates_v1_and_unified_dirs() {
        let pc = "12:pids:/husk/c1\n7:memory:/husk/c1\n4:cpu,cpuacct:/husk/c1\n0::/husk/c1\n";
        let l = Located::parse(pc, MOUNTINFO);
        assert_eq!(
            l.memory_v1.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/husk/c1"))
        );
        assert_eq!(
            l.pids_v1.as_deref(),
            Some(Path::new("/sys/fs/cgroup/pids/husk/c1"))
        );
        assert_eq!(
            l.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified/husk/c1"))
        );
    }

    #[test]
    fn counts_oom_kills() {
        assert_eq!(oom_kills("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n"), 2);
        assert_eq!(oom_kills(""), 0);
    }
}
