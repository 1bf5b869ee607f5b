//! `checkpoint`: dump a running (or paused) container with CRIU.
//!
//! 1. find CRIU; load the container (locked) and refuse anything but running/paused;
//! 2. the image directory: made if missing, refused if it holds anything (a second dump into
//!    it would mix two checkpoints); `--parent-path`/`--pre-dump` only where the kernel tracks
//!    memory changes;
//! 3. `descriptors.json`, the request (root, pid, freezer cgroup, external mounts and
//!    namespaces), CRIU's DUMP;
//! 4. unless `--leave-running` or `--pre-dump`: the processes are gone (CRIU killed them), so
//!    the container is deleted as runc's `Destroy` does. If CRIU fails, it resumes the tasks:
//!    the container keeps running and only the image directory (with the log) is left.

use std::path::{Path, PathBuf};

use rust_criu::rust_criu_protobuf::rpc::Criu_req_type;

use super::rpc::{Fds, Swrk};
use super::{criu, mounts, CheckpointError, CommonOptions};
use crate::container::{self, ContainerError, Status};

#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    pub root: PathBuf,
    pub id: String,
    pub common: CommonOptions,
    pub leave_running: bool,
    pub pre_dump: bool,
    /// Relative to the image directory (runc's rule).
    pub parent_path: Option<PathBuf>,
    pub tcp_skip_in_flight: bool,
    pub link_remap: bool,
}

pub fn checkpoint(opts: &CheckpointOptions) -> Result<(), CheckpointError> {
    let criu = criu::locate(opts.common.criu.as_deref())?;
    let loaded = container::load(&opts.root, &opts.id, true)?;
    if !matches!(loaded.status, Status::Running | Status::Paused) {
        return Err(ContainerError::WrongStatus {
            action: "checkpoint",
            id: opts.id.clone(),
            status: loaded.status,
            hint: " (only a running or paused container can be checkpointed)",
        }
        .into());
    }
    let st = &loaded.state;
    check_session(st.pid)?;
    let images = prepare_image_dir(&opts.common.image_path)?;
    if let Some(parent) = &opts.parent_path {
        check_parent(&images, parent)?;
    }
    if opts.pre_dump || opts.parent_path.is_some() {
        let flag = if opts.pre_dump {
            "--pre-dump"
        } else {
            "--parent-path"
        };
        let ok = criu::has_mem_track(&criu).map_err(super::rpc_error(
            "check CRIU's memory tracking",
            images.join("dump.log"),
        ))?;
        if !ok {
            return Err(CheckpointError::Unsupported(format!(
                "{flag} needs memory change tracking (soft-dirty bits), which this kernel lacks \
                 (CONFIG_MEM_SOFT_DIRTY): take a full checkpoint without {flag}"
            )));
        }
    }
    let image_dir = super::open_dir("--image-path", &images)?;
    let (work_dir, log_dir) = match &opts.common.work_path {
        Some(w) => {
            make_dir(w, "--work-path")?;
            (Some(super::open_dir("--work-path", w)?), w.clone())
        }
        None => (None, images.clone()),
    };
    let log = log_dir.join("dump.log");

    let mut o = opts.common.base("dump.log")?;
    use std::os::fd::AsRawFd;
    o.set_images_dir_fd(image_dir.as_raw_fd());
    if let Some(w) = &work_dir {
        o.set_work_dir_fd(w.as_raw_fd());
    }
    o.set_root(st.rootfs.to_string_lossy().into_owned());
    o.set_pid(st.pid);
    o.set_leave_running(opts.leave_running);
    o.set_tcp_skip_in_flight(opts.tcp_skip_in_flight);
    o.set_link_remap(opts.link_remap);
    if let Some(f) = super::config_file(&st.config) {
        o.set_config_file(f);
    }
    if let Some(p) = &opts.parent_path {
        o.set_parent_img(p.to_string_lossy().into_owned());
        o.set_track_mem(true);
    }
    if let Some(f) = freezer_path(&st.cgroup) {
        o.set_freeze_cgroup(f.to_string_lossy().into_owned());
    }
    for ns in st
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
    {
        let (Some((name, key)), Some(path)) = (super::external_ns_key(ns.typ()), ns.path()) else {
            continue;
        };
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(path)
            .map_err(|e| CheckpointError::Step {
                step: "describe an external namespace to CRIU",
                message: format!("stat {}: {e}", path.display()),
            })?
            .ino();
        o.external.push(format!("{name}[{ino}]:{key}"));
    }
    let kind = if opts.pre_dump {
        Criu_req_type::PRE_DUMP
    } else {
        o.ext_mnt = mounts::for_dump(&st.config, st.pid, &st.cgroup);
        write_descriptors(&images, st.pid)?;
        o.external.extend(external_stdio(&images, st.pid)?);
        Criu_req_type::DUMP
    };

    let swrk = Swrk::start(&criu.path, Fds::default())
        .map_err(super::rpc_error("start CRIU", log.clone()))?;
    swrk.call(kind, Some(o), None, |_| Ok(()))
        .map_err(super::rpc_error("CRIU dump", log.clone()))?;
    drop(image_dir);
    drop(work_dir);

    if !opts.leave_running && !opts.pre_dump {
        // CRIU killed the tasks; what is left is the state and the cgroup.
        drop(loaded);
        container::delete(&opts.root, &opts.id, true)?;
    }
    Ok(())
}

fn make_dir(p: &Path, flag: &'static str) -> Result<(), CheckpointError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .map_err(|e| CheckpointError::Path {
            flag,
            path: p.to_path_buf(),
            message: format!("create: {e}"),
        })
}

/// The image directory, made if missing; one that holds anything is refused.
fn prepare_image_dir(p: &Path) -> Result<PathBuf, CheckpointError> {
    let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match std::fs::read_dir(&p) {
        Ok(mut rd) => {
            if let Some(e) = rd.next() {
                let name = e.map(|e| e.file_name()).unwrap_or_default();
                return Err(CheckpointError::Path {
                    flag: "--image-path",
                    path: p,
                    message: format!(
                        "exists and is not empty (it holds {name:?}): give an empty or new \
                         directory, a checkpoint must not mix with another"
                    ),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => make_dir(&p, "--image-path")?,
        Err(e) => {
            return Err(CheckpointError::Path {
                flag: "--image-path",
                path: p,
                message: e.to_string(),
            })
        }
    }
    Ok(p)
}

fn check_parent(images: &Path, parent: &Path) -> Result<(), CheckpointError> {
    if parent.is_absolute() {
        return Err(CheckpointError::Path {
            flag: "--parent-path",
            path: parent.to_path_buf(),
            message: "must be relative to --image-path".into(),
        });
    }
    let real = images.join(parent);
    if !real.is_dir() {
        return Err(CheckpointError::Path {
            flag: "--parent-path",
            path: real,
            message: "is not a directory".into(),
        });
    }
    Ok(())
}

/// runc's descriptors.json: the targets of the init's fds 0, 1 and 2.
fn write_descriptors(images: &Path, pid: i32) -> Result<(), CheckpointError> {
    let fds: Vec<String> = (0..3)
        .map(|n| {
            std::fs::read_link(format!("/proc/{pid}/fd/{n}"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "/dev/null".into())
        })
        .collect();
    let path = images.join(super::DESCRIPTORS);
    let json = serde_json::to_vec(&fds).unwrap_or_default();
    std::fs::write(&path, json).map_err(super::io_step("write descriptors.json"))
}

/// The container's freezer cgroup, so CRIU freezes the whole tree at once instead of seizing
/// tasks one by one with ptrace: v1's freezer hierarchy, else the cgroup2 directory.
fn freezer_path(cgroup: &Path) -> Option<PathBuf> {
    if cgroup.as_os_str().is_empty() {
        return None;
    }
    let rel = cgroup.strip_prefix("/").unwrap_or(cgroup);
    let hs = crate::rootfs::cgroupfs::hierarchies();
    let pick = hs
        .iter()
        .find(|h| h.fstype == "cgroup" && h.options.split(',').any(|o| o == "freezer"))
        .or_else(|| hs.iter().find(|h| h.fstype == "cgroup2"))?;
    let p = pick.mount_point.join(rel);
    p.is_dir().then_some(p)
}

/// Fds 0–2 that are files outside the container's mounts — the containerd shim hands the
/// client's fifos to the container as they are, conmon gives a detached container the host's
/// /dev/null (runc's init reopens that inside the container, husk's does not yet) — can't be
/// dumped by CRIU ("Can't lookup mount"). They are declared external instead
/// (`file[<mnt_id>:<inode>]`, CRIU's key) and the restore hands in its own stdio in their place,
/// as it does for pipes. Recorded in `husk-stdio.json`. Pipes, sockets and terminals are
/// CRIU's own business.
fn external_stdio(images: &Path, pid: i32) -> Result<Vec<String>, CheckpointError> {
    use std::os::unix::fs::MetadataExt;
    let inside: Vec<u32> = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    let mut keys: Vec<Option<String>> = Vec::new();
    for n in 0..3 {
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{n}")).unwrap_or_default();
        let t = target.to_string_lossy();
        let special = ["pipe:", "socket:", "anon_inode:"]
            .iter()
            .any(|p| t.starts_with(p));
        let key = match std::fs::metadata(format!("/proc/{pid}/fd/{n}")) {
            Ok(m) if !special && !is_tty(&m) => {
                let info =
                    std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{n}")).unwrap_or_default();
                info.lines()
                    .find_map(|l| l.strip_prefix("mnt_id:"))
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .filter(|mnt| !inside.contains(mnt))
                    .map(|mnt| format!("file[{mnt:x}:{:x}]", m.ino()))
            }
            _ => None,
        };
        keys.push(key);
    }
    if keys.iter().all(Option::is_none) {
        return Ok(Vec::new());
    }
    let json = serde_json::to_vec(&keys).unwrap_or_default();
    std::fs::write(images.join(super::EXTERNAL_STDIO), json)
        .map_err(super::io_step("write husk-stdio.json"))?;
    let mut uniq: Vec<String> = keys.into_iter().flatten().collect();
    uniq.sort();
    uniq.dedup();
    Ok(uniq)
}

/// Terminals (ttys, ptys): CRIU dumps them itself (`--shell-job` for one outside).
fn is_tty(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let major = nix::sys::stat::major(m.rdev());
    m.file_type().is_char_device() && matches!(major, 4 | 5 | 136..=143)
}

/// CRIU refuses a tree whose session leader is outside its pid namespace (it sees sid 0), and
/// says so only deep in its log: check first. runc's init always calls setsid(); an init that
/// did not (a container created by an older husk) can't be checkpointed.
fn check_session(pid: i32) -> Result<(), CheckpointError> {
    let ns = |p: &str| std::fs::read_link(p).ok();
    if ns(&format!("/proc/{pid}/ns/pid")) == ns("/proc/self/ns/pid") {
        return Ok(());
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command: state, ppid, pgrp, session.
    let sid = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 2..))
        .and_then(|rest| rest.split(' ').nth(3))
        .and_then(|s| s.parse::<i32>().ok());
    match sid {
        Some(sid) if sid != pid => Err(CheckpointError::Unsupported(format!(
            "the container's init (pid {pid}) is not a session leader (its session is {sid}, \
             outside the container's pid namespace), and CRIU can't dump such a tree; an init \
             made by a husk that calls setsid() can (runc's always does): recreate the container"
        ))),
        _ => Ok(()),
    }
}
