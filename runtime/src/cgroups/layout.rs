//! Where the cgroup hierarchies are mounted, and the small file reads and writes every backend uses.
//!
//! The layout is read from `/proc/self/mountinfo` and kept for a second: one `husk run` asks for it
//! at create, join and delete (each read is an open and a parse on the ≤ 1 ms cgroup budget), while
//! a long-lived caller (the sandbox's batch mode) still sees a controller an administrator mounts
//! later. Tests build a [`Layout`] over a tempdir instead (Firecracker's MockCgroupFs idea), so no
//! root is needed.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::CgroupError;

/// The v1 controllers runc's fs manager knows, in the order it applies them (libcontainer/cgroups/fs).
/// `name=systemd` is a named hierarchy runc also joins; the hybrid cgroup2 mount is handled apart.
pub(crate) const V1_SUBSYSTEMS: &[&str] = &[
    "cpuset",
    "devices",
    "memory",
    "cpu",
    "cpuacct",
    "pids",
    "blkio",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "freezer",
    "rdma",
    "name=systemd",
];

/// One mounted v1 hierarchy: the controllers it carries (e.g. `cpu` and `cpuacct` together) and
/// where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    pub controllers: Vec<String>,
    pub mountpoint: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Legacy or hybrid: one hierarchy per controller group, plus (hybrid) a controller-less cgroup2.
    V1 {
        hierarchies: Vec<Hierarchy>,
        unified: Option<PathBuf>,
    },
    /// The single unified hierarchy; `controllers` is the root's `cgroup.controllers`.
    V2 {
        root: PathBuf,
        controllers: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub mode: Mode,
    /// Tests point the layout at plain directories, where control files do not appear by themselves.
    pub create_files: bool,
}

impl Layout {
    /// The host's layout, from `/proc/self/mountinfo`.
    pub fn host() -> Result<Self, CgroupError> {
        static CACHE: Mutex<Option<(Instant, Layout)>> = Mutex::new(None);
        const FRESH: Duration = Duration::from_secs(1);
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, l)) = cache.as_ref() {
            if at.elapsed() < FRESH {
                return Ok(l.clone());
            }
        }
        let path = "/proc/self/mountinfo";
        let text = crate::sys::read_proc(path).map_err(|source| CgroupError::Io {
            op: "read",
            path: path.into(),
            source,
        })?;
        let l = Self::from_mountinfo(&text)?;
        *cache = Some((Instant::now(), l.clone()));
        Ok(l)
    }

    pub fn from_mountinfo(text: &str) -> Result<Self, CgroupError> {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        let mut unified: Option<PathBuf> = None;
        for line in text.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 5 || post.len() < 3 {
                continue;
            }
            let mountpoint = PathBuf::from(unescape(pre[4]));
            match post[0] {
                "cgroup2" if unified.is_none() => unified = Some(mountpoint),
                "cgroup" => {
                    let controllers: Vec<String> = post[2]
                        .split(',')
                        .filter(|o| V1_SUBSYSTEMS.contains(o) || o.starts_with("name="))
                        .map(str::to_string)
                        .collect();
                    // The first mount of a controller wins, as in runc's FindCgroupMountpoint.
                    let known = controllers
                        .iter()
                        .any(|c| hierarchies.iter().any(|h| h.controllers.contains(c)));
                    if !controllers.is_empty() && !known {
                        hierarchies.push(Hierarchy {
                            controllers,
                            mountpoint,
                        });
                    }
                }
                _ => {}
            }
        }
        let mode =
            match (hierarchies.is_empty(), unified) {
                (false, unified) => Mode::V1 {
                    hierarchies,
                    unified,
                },
                (true, Some(root)) => {
                    let controllers = read_controllers(&root);
                    Mode::V2 { root, controllers }
                }
                (true, None) => return Err(CgroupError::Unsupported(
                    "find cgroup hierarchies: no cgroup or cgroup2 mount in /proc/self/mountinfo"
                        .into(),
                )),
            };
        Ok(Self {
            mode,
            create_files: false,
        })
    }

    /// This layout narrowed to the v1 hierarchies that carry one of `controllers`, without the
    /// hybrid cgroup2 directory; a v2 layout (one hierarchy) is unchanged.
    pub fn only(self, controllers: &[&str]) -> Self {
        let mode = match self.mode {
            Mode::V1 { hierarchies, .. } => Mode::V1 {
                hierarchies: hierarchies
                    .into_iter()
                    .filter(|h| {
                        h.controllers
                            .iter()
                            .any(|c| controllers.contains(&c.as_str()))
                    })
                    .collect(),
                unified: None,
            },
            v2 => v2,
        };
        Self { mode, ..self }
    }

    pub fn is_v2(&self) -> bool {
        matches!(self.mode, Mode::V2 { .. })
    }

    /// The v1 hierarchy carrying `controller`, if mounted.
    pub fn v1_mount(&self, controller: &str) -> Option<&Path> {
        match &self.mode {
            Mode::V1 { hierarchies, .. } => hierarchies
                .iter()
                .find(|h| h.controllers.iter().any(|c| c == controller))
                .map(|h| h.mountpoint.as_path()),
            Mode::V2 { .. } => None,
        }
    }

    /// True when `controller` can be used: mounted on v1, listed in the root's controllers on v2.
    pub fn has(&self, controller: &str) -> bool {
        match &self.mode {
            Mode::V1 { .. } => self.v1_mount(controller).is_some(),
            Mode::V2 { controllers, .. } => controllers.iter().any(|c| c == controller),
        }
    }

    /// Every directory that makes up the cgroup at `path` (relative to each root), in runc's order:
    /// one per mounted hierarchy (each once, even when it carries several controllers), then the
    /// hybrid cgroup2 directory, which runc 1.1 also creates and joins.
    pub fn dirs(&self, path: &Path) -> Vec<PathBuf> {
        let rel = path.strip_prefix("/").unwrap_or(path);
        match &self.mode {
            Mode::V1 {
                hierarchies,
                unified,
            } => {
                let mut out: Vec<PathBuf> = Vec::new();
                for sub in V1_SUBSYSTEMS {
                    if let Some(m) = self.v1_mount(sub) {
                        let d = m.join(rel);
                        if !out.contains(&d) {
                            out.push(d);
                        }
                    }
                }
                // Named hierarchies other than systemd are someone else's business (runc skips them too).
                let _ = hierarchies;
                if let Some(u) = unified {
                    out.push(u.join(rel));
                }
                out
            }
            Mode::V2 { root, .. } => vec![root.join(rel)],
        }
    }

    pub fn root_of(&self, dir: &Path) -> Option<PathBuf> {
        let mut roots: Vec<&Path> = Vec::new();
        match &self.mode {
            Mode::V1 {
                hierarchies,
                unified,
            } => {
                roots.extend(hierarchies.iter().map(|h| h.mountpoint.as_path()));
                roots.extend(unified.iter().map(PathBuf::as_path));
            }
            Mode::V2 { root, .. } => roots.push(root),
        }
        roots
            .into_iter()
            .filter(|r| dir.starts_with(r))
            .max_by_key(|r| r.as_os_str().len())
            .map(Path::to_path_buf)
    }
}

fn read_controllers(root: &Path) -> Vec<String> {
    fs::read_to_string(root.join("cgroup.controllers"))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            let v = oct.iter().try_fold(0u32, |acc, c| {
                (b'0'..=b'7')
                    .contains(c)
                    .then(|| acc * 8 + u32::from(c - b'0'))
            });
            if let Some(v) = v.and_then(|v| u8::try_from(v).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Write one value to a control file, as runc's `cgroups.WriteFile` does: a single write, so the
/// kernel sees exactly `value`.
pub(crate) fn write(
    layout: &Layout,
    dir: &Path,
    file: &str,
    value: &str,
) -> Result<(), CgroupError> {
    Control::open(layout, dir, file, value)?.write(value)
}

/// A control file open for one or more writes, each of which the kernel takes as one value
/// (device rules are a dozen writes to `devices.allow`: one open serves them all).
pub(crate) struct Control {
    path: PathBuf,
    file: fs::File,
    fake: bool,
}

impl Control {
    /// `first` is only for the error message, should the open fail.
    pub(crate) fn open(
        layout: &Layout,
        dir: &Path,
        file: &str,
        first: &str,
    ) -> Result<Self, CgroupError> {
        let path = dir.join(file);
        let fake = layout.create_files;
        // A fake hierarchy keeps every write, one per line, so tests can check order and values.
        let res = if fake {
            fs::OpenOptions::new().append(true).create(true).open(&path)
        } else {
            fs::OpenOptions::new().write(true).open(&path)
        };
        match res {
            Ok(file) => Ok(Self { path, file, fake }),
            Err(source) => Err(CgroupError::Write {
                path,
                value: first.to_string(),
                source,
            }),
        }
    }

    pub(crate) fn write(&mut self, value: &str) -> Result<(), CgroupError> {
        let res = if self.fake {
            self.file.write_all(format!("{value}\n").as_bytes())
        } else {
            self.file.write_all(value.as_bytes())
        };
        res.map_err(|source| CgroupError::Write {
            path: self.path.clone(),
            value: value.to_string(),
            source,
        })
    }
}

/// Remove one cgroup directory. The kernel removes its control files with it; in a fake hierarchy
/// they are plain files and go first.
pub(crate) fn remove_dir(layout: &Layout, dir: &Path) -> std::io::Result<()> {
    if layout.create_files {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    fs::remove_file(e.path())?;
                }
            }
        }
    }
    fs::remove_dir(dir)
}

/// Read a control file; `Ok(None)` when it does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/systemd rw,relatime shared:13 - cgroup cgroup rw,name=systemd
35 30 0:31 / /sys/fs/cgroup/unified rw,relatime shared:14 - cgroup2 cgroup2 rw
36 30 0:32 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
37 30 0:29 / /mnt/again\\040x rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn parses_hybrid_mountinfo() {
        let l = Layout::from_mountinfo(HYBRID).unwrap();
        assert!(!l.is_v2());
        assert_eq!(
            l.v1_mount("memory"),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            l.v1_mount("net_prio"),
            Some(Path::new("/sys/fs/cgroup/net_cls,net_prio"))
        );
        assert!(l.has("cpuacct") && !l.has("hugetlb"));
        let dirs = l.dirs(Path::new("/husk/a"));
        let want: Vec<PathBuf> = [
            "/sys/fs/cgroup/memory/husk/a",
            "/sys/fs/cgroup/cpu/husk/a",
            "/sys/fs/cgroup/cpuacct/husk/a",
            "/sys/fs/cgroup/net_cls,net_prio/husk/a",
            "/sys/fs/cgroup/systemd/husk/a",
            "/sys/fs/cgroup/unified/husk/a",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(dirs, want);
        assert_eq!(
            l.root_of(Path::new("/sys/fs/cgroup/cpuacct/husk/a")),
            Some(PathBuf::from("/sys/fs/cgroup/cpuacct"))
        );
    }

    #[test]
    fn parses_pure_v2_and_unescapes() {
        let l = Layout::from_mountinfo(
            "28 22 0:25 / /sys/fs/cgroup\\040v2 rw - cgroup2 cgroup2 rw,nsdelegate\n",
        )
        .unwrap();
        match l.mode {
            Mode::V2 { root, .. } => assert_eq!(root, PathBuf::from("/sys/fs/cgroup v2")),
            m => panic!("{m:?}"),
        }
        assert!(Layout::from_mountinfo("1 0 0:1 / / rw - ext4 /dev/vda rw\n").is_err());
    }
}
