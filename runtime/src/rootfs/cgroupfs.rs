//! A `cgroup` mount: the container's view of its own cgroup.
//!
//! On a v2 host it is one cgroup2 mount. On a v1 (or hybrid) host it is a tmpfs with one
//! directory per hierarchy, as runc builds it. With a cgroup namespace each hierarchy is mounted
//! fresh (its root is the container's cgroup); without one, the container's cgroup directory of
//! each host hierarchy is bind-mounted, so the container never sees its parents' siblings.

use std::path::{Path, PathBuf};

use nix::mount::{mount as sys_mount, MsFlags};
use oci_spec::runtime::Mount;

use super::mount::Ctx;
use super::options::Options;
use super::resolve::{self, Kind};
use super::RootfsError;
use crate::sys;

/// A mounted cgroup hierarchy of the host: where, which type, and its super options.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    pub mount_point: PathBuf,
    pub fstype: String,
    /// For v1: the controllers or `name=...` that identify the hierarchy.
    pub options: String,
}

/// The cgroup hierarchies mounted under /sys/fs/cgroup, from `/proc/self/mountinfo`.
pub fn hierarchies() -> Vec<Hierarchy> {
    let Ok(info) = crate::sys::read_proc("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        let (Some(mp), Some(fstype), Some(sopts)) = (f.get(4), r.first(), r.get(2)) else {
            continue;
        };
        if (*fstype == "cgroup" || *fstype == "cgroup2") && mp.starts_with("/sys/fs/cgroup") {
            let options = sopts
                .split(',')
                .filter(|o| is_identity(o))
                .collect::<Vec<_>>()
                .join(",");
            out.push(Hierarchy {
                mount_point: PathBuf::from(mp),
                fstype: fstype.to_string(),
                options,
            });
        }
    }
    out
}

/// The super options that name a v1 hierarchy: its controllers and `name=`; not the flags.
fn is_identity(o: &str) -> bool {
    !matches!(
        o,
        "rw" | "ro"
            | "xattr"
            | "noprefix"
            | "clone_children"
            | "cpuset_v2_mode"
            | "nsdelegate"
            | "memory_recursiveprot"
            | "memory_localevents"
            | "favordynmods"
            | "memory_hugetlb_accounting"
    ) && !o.starts_with("release_agent")
}

/// This process's cgroup path in the hierarchy identified by `options` (v1) or in v2.
fn own_cgroup(h: &Hierarchy, text: &str) -> Option<PathBuf> {
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if h.fstype == "cgroup2" {
            ctrls.is_empty()
        } else {
            let mut a: Vec<&str> = ctrls.split(',').collect();
            let mut b: Vec<&str> = h.options.split(',').filter(|o| !o.is_empty()).collect();
            a.sort_unstable();
            b.sort_unstable();
            !a.is_empty() && a == b
        };
        if matches {
            return Some(PathBuf::from(path));
        }
    }
    None
}

pub fn mount(cx: &Ctx, m: &Mount, opts: &Options) -> Result<(), RootfsError> {
    let dest = m.destination();
    let e = |what: &str, err: nix::Error| RootfsError::Mount {
        dest: dest.clone(),
        message: format!("{what}: {err}"),
    };
    let flags = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    let all = hierarchies();
    // Where this process sits in each hierarchy (read once, used for every bind).
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let unified_only = all.len() == 1
        && all[0].fstype == "cgroup2"
        && all[0].mount_point == Path::new("/sys/fs/cgroup");
    if unified_only {
        return one(cx, &all[0], dest, flags, &own).map_err(|err| e("mount cgroup2", err));
    }
    let target =
        resolve::create(cx.root, dest, Kind::Dir).map_err(|err| e("create target", err))?;
    sys_mount(
        Some("tmpfs"),
        &sys::fd_path(&target),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .map_err(|err| e("mount tmpfs for cgroups", err))?;
    for h in &all {
        let name = h
            .mount_point
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_default();
        // A hybrid host's cgroup2 mount has no controllers; runc leaves it out of the
        // container's view, and so do we.
        if name.as_os_str().is_empty() || name == Path::new("cgroup") || h.fstype == "cgroup2" {
            continue;
        }
        one(cx, h, &dest.join(&name), flags, &own)
            .map_err(|err| e(&format!("mount cgroup hierarchy {name:?}"), err))?;
        // cpu,cpuacct-style combined hierarchies are reached by each controller's name too.
        if h.fstype == "cgroup" {
            let combined = name.to_string_lossy().to_string();
            if combined.contains(',') {
                for c in combined.split(',') {
                    let link = dest.join(c);
                    let root_path = sys::fd_path(cx.root);
                    let _ = std::os::unix::fs::symlink(
                        &combined,
                        root_path.join(resolve::clean(&link).iter().collect::<PathBuf>()),
                    );
                }
            }
        }
    }
    // As runc: the tmpfs itself stays writable (only the hierarchies are read-only), so the
    // container sees the same /sys/fs/cgroup under both.
    Ok(())
}

fn one(cx: &Ctx, h: &Hierarchy, dest: &Path, flags: MsFlags, own: &str) -> Result<(), nix::Error> {
    let target = resolve::create(cx.root, dest, Kind::Dir)?;
    let fl = flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if cx.cgroupns {
        let data = if h.fstype == "cgroup2" {
            String::new()
        } else {
            h.options.clone()
        };
        // runc names a named hierarchy's mount after it ("systemd"), the others "cgroup".
        let source = h
            .options
            .split(',')
            .find_map(|o| o.strip_prefix("name="))
            .unwrap_or(h.fstype.as_str());
        sys_mount(
            Some(source),
            &sys::fd_path(&target),
            Some(h.fstype.as_str()),
            fl,
            Some(data.as_str()),
        )
    } else {
        let own = own_cgroup(h, own).unwrap_or_else(|| PathBuf::from("/"));
        let src = h.mount_point.join(own.strip_prefix("/").unwrap_or(&own));
        sys_mount(
            Some(&src),
            &sys::fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )?;
        if fl != MsFlags::empty() {
            let mounted = resolve::open(cx.root, dest)?;
            sys_mount(
                None::<&str>,
                &sys::fd_path(&mounted),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | fl,
                None::<&str>,
            )?;
        }
        Ok(())
    }
}
