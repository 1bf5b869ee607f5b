//! What CRIU must be told about the container's mounts, the way runc tells it
//! (libcontainer/criu_linux.go): every mount whose source lives outside the container is
//! "external", named by its destination at dump and mapped back to a host source at restore.
//!
//! - bind mounts: key = destination; restored from the config's source (which may differ);
//! - cgroup on a v1 or hybrid host without a cgroup namespace: a tmpfs with one bind mount per
//!   hierarchy of the container's own cgroup directory (rootfs/cgroupfs.rs); restored from the
//!   new container's cgroup, which may be another path;
//! - masked files: the container's `/dev/null` bound over them, restored from the host's;
//! - device nodes from `linux.devices` (bind-mounted ones in a user namespace).
//!
//! CRIU ignores keys that match no mount, so listing a device that was made with mknod is fine.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};
use rust_criu::rust_criu_protobuf::rpc::Ext_mount_map;

use crate::rootfs::resolve::{self, Kind};

/// `/a/../b/` → `/b`: the key CRIU sees is the mount point as the kernel shows it.
fn clean_dest(p: &Path) -> String {
    let comps = resolve::clean(p);
    let mut s = String::new();
    for c in comps {
        s.push('/');
        s.push_str(&c.to_string_lossy());
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

pub fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

fn has_cgroupns(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup))
}

/// On a v1/hybrid host without a cgroup namespace, the container's view of the cgroup mount
/// at `dest` is a bind of each host hierarchy: (destination inside, host source for `cgroup`).
fn cgroup_binds(spec: &Spec, dest: &Path, cgroup: &Path) -> Vec<(String, PathBuf)> {
    let on_v2 = std::fs::metadata("/sys/fs/cgroup").is_ok()
        && nix::sys::statfs::statfs("/sys/fs/cgroup")
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if on_v2 || has_cgroupns(spec) {
        return Vec::new();
    }
    let rel = cgroup.strip_prefix("/").unwrap_or(cgroup);
    crate::rootfs::cgroupfs::hierarchies()
        .into_iter()
        .filter_map(|h| {
            let name = h.mount_point.file_name()?.to_owned();
            Some((clean_dest(&dest.join(name)), h.mount_point.join(rel)))
        })
        .collect()
}

fn masked_files(spec: &Spec, pid: i32) -> Vec<String> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
        .filter(|p| {
            // Directories are masked with a tmpfs of the container's own: not external.
            std::fs::metadata(format!("/proc/{pid}/root/{}", p.trim_start_matches('/')))
                .is_ok_and(|m| !m.is_dir())
        })
        .cloned()
        .collect()
}

fn device_paths(spec: &Spec) -> Vec<String> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
        .map(|d| clean_dest(d.path()))
        .collect()
}

fn map(key: String, val: String) -> Ext_mount_map {
    let mut m = Ext_mount_map::new();
    m.set_key(key);
    m.set_val(val);
    m
}

/// The external mounts of a running container, for the dump (`pid` is its init: masked paths
/// are looked up through its root). `cgroup` is the container's cgroup path.
pub fn for_dump(spec: &Spec, pid: i32, cgroup: &Path) -> Vec<Ext_mount_map> {
    let mut out = Vec::new();
    for m in spec.mounts().iter().flatten() {
        if is_bind(m) {
            let d = clean_dest(m.destination());
            out.push(map(d.clone(), d));
        } else if m.typ().as_deref() == Some("cgroup") {
            for (d, _) in cgroup_binds(spec, m.destination(), cgroup) {
                out.push(map(d.clone(), d));
            }
        }
    }
    for p in masked_files(spec, pid) {
        out.push(map(clean_dest(Path::new(&p)), "/dev/null".into()));
    }
    for d in device_paths(spec) {
        out.push(map(d.clone(), d));
    }
    out
}

/// The same keys mapped to this host's sources, for a restore from `bundle` into `cgroup`.
pub fn for_restore(spec: &Spec, bundle: &Path, cgroup: &Path) -> Vec<Ext_mount_map> {
    let mut out = Vec::new();
    for m in spec.mounts().iter().flatten() {
        if is_bind(m) {
            let src = m.source().clone().unwrap_or_default();
            let src = if src.is_relative() {
                bundle.join(src)
            } else {
                src
            };
            out.push(map(
                clean_dest(m.destination()),
                src.to_string_lossy().into_owned(),
            ));
        } else if m.typ().as_deref() == Some("cgroup") {
            for (d, src) in cgroup_binds(spec, m.destination(), cgroup) {
                out.push(map(d, src.to_string_lossy().into_owned()));
            }
        }
    }
    let masks = spec
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().as_ref())
        .is_some_and(|m| !m.is_empty());
    if masks {
        out.push(map("/dev/null".into(), "/dev/null".into()));
    }
    for d in device_paths(spec) {
        out.push(map(d.clone(), d));
    }
    out
}

/// Create the mount points the container's mounts need in `rootfs`, as create would have:
/// CRIU mounts onto them but does not make them. Points under a tmpfs of the config are
/// skipped (CRIU restores the tmpfs with its contents), and so is the cgroup mount (its
/// directories come with /sys or the tmpfs). Returns nothing to undo: they are directories
/// and empty files that create makes as well.
pub fn prepare_mount_points(spec: &Spec, rootfs: &Path) -> Result<(), String> {
    let root: OwnedFd = resolve::open_root(rootfs)
        .map_err(|e| format!("open the rootfs {}: {e}", rootfs.display()))?;
    let mounts: Vec<&Mount> = spec.mounts().iter().flatten().collect();
    let on_tmpfs = |dest: &Path| {
        mounts.iter().any(|m| {
            m.typ().as_deref() == Some("tmpfs")
                && dest != m.destination()
                && dest.starts_with(m.destination())
        })
    };
    for m in &mounts {
        if m.typ().as_deref() == Some("cgroup") || on_tmpfs(m.destination()) {
            continue;
        }
        let kind = match m.source() {
            Some(src) if is_bind(m) => {
                if std::fs::metadata(src).is_ok_and(|md| !md.is_dir()) {
                    Kind::File
                } else {
                    Kind::Dir
                }
            }
            _ => Kind::Dir,
        };
        resolve::create(&root, m.destination(), kind).map_err(|e| {
            format!(
                "create the mount point {} in {}: {e}",
                m.destination().display(),
                rootfs.display()
            )
        })?;
    }
    Ok(())
}

/// CRIU wants the root it restores into to be a mount point whose parent is not overmounted:
/// the rootfs is bound at `<state dir>/criu-root` for the duration (runc does the same).
pub struct RootBind {
    path: PathBuf,
    mounted: bool,
}

impl RootBind {
    pub fn new(rootfs: &Path, at: PathBuf) -> Result<Self, String> {
        std::fs::create_dir(&at).map_err(|e| format!("create {}: {e}", at.display()))?;
        let mut me = Self {
            path: at,
            mounted: false,
        };
        mount(
            Some(rootfs),
            &me.path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| {
            format!(
                "bind the rootfs {} at {}: {e}",
                rootfs.display(),
                me.path.display()
            )
        })?;
        // Private, so that nothing CRIU mounts under it shows up in the bundle's rootfs.
        let _ = mount(
            None::<&str>,
            &me.path,
            None::<&str>,
            MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            None::<&str>,
        );
        me.mounted = true;
        Ok(me)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RootBind {
    fn drop(&mut self) {
        if self.mounted {
            let _ = umount2(&self.path, MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).expect("spec")
    }

    #[test]
    fn binds_are_external_under_their_destination() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
               "mounts":[{"destination":"/data/../srv/","type":"bind","source":"rel"},
                         {"destination":"/tmp","type":"tmpfs","source":"tmpfs"},
                         {"destination":"/x","type":"none","source":"/host","options":["rbind"]}]}"#,
        );
        let dump: Vec<(String, String)> = for_dump(&s, std::process::id() as i32, Path::new("/c"))
            .iter()
            .map(|m| (m.key().to_string(), m.val().to_string()))
            .collect();
        assert_eq!(
            dump,
            [("/srv".into(), "/srv".into()), ("/x".into(), "/x".into())]
        );
        let rst: Vec<(String, String)> = for_restore(&s, Path::new("/b"), Path::new("/c"))
            .iter()
            .map(|m| (m.key().to_string(), m.val().to_string()))
            .collect();
        assert_eq!(
            rst,
            [
                ("/srv".into(), "/b/rel".into()),
                ("/x".into(), "/host".into())
            ]
        );
    }
}
