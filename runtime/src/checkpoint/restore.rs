//! `restore`: a new container from a checkpoint image and a bundle.
//!
//! 1. find CRIU; check the image directory is a checkpoint; load the bundle's spec;
//! 2. claim the id (an existing one is refused) and create the cgroup with its resources;
//! 3. make the mount points, bind the rootfs at `<state>/criu-root`, describe external mounts,
//!    namespaces joined by path, and the init's old pipes (now ours: `inherit_fd`);
//! 4. start `criu swrk`, move it into the cgroup (the restored tasks start there) and tell CRIU
//!    where each controller's root is now; RESTORE, answering its notifications: the prestart
//!    and createRuntime hooks at `setup-namespaces`, the terminal to `--console-socket` at
//!    `orphan-pts-master`, the state file (running, new pid) at `post-restore`;
//! 5. `--pid-file`; unless `--detach`, wait for the container like `run` and delete it.
//!
//! Any failure in 2–4 kills what was restored, removes the cgroup, the bind mount and the state
//! directory: nothing half-restored stays behind.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rust_criu::rust_criu_protobuf::rpc::{Cgroup_root, Criu_req_type, Inherit_fd, Join_namespace};

use super::mounts::{self, RootBind};
use super::rpc::{extra_fd_number, Fds, Swrk};
use super::{criu, CheckpointError, CommonOptions};
use crate::cgroups::Cgroup;
use crate::container::{CgroupManager, ContainerError};
use crate::hooks::{self, HookKind};
use crate::spec;
use crate::state::{self, State, StateDir};

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub common: CommonOptions,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    /// Accepted as runc does; CRIU restores the mount namespace itself, pivot or not.
    pub no_pivot: bool,
    pub cgroup_manager: CgroupManager,
    pub lsm_profile: Option<String>,
    pub lsm_mount_context: Option<String>,
}

/// Restore; returns the container's exit status when not detached (0 when detached).
pub fn restore(opts: &RestoreOptions) -> Result<i32, CheckpointError> {
    let criu = criu::locate(opts.common.criu.as_deref())?;
    state::check_id(&opts.id)?;
    let images = std::path::absolute(&opts.common.image_path)
        .unwrap_or_else(|_| opts.common.image_path.clone());
    if !images.join("inventory.img").is_file() {
        return Err(CheckpointError::Path {
            flag: "--image-path",
            path: images,
            message: "is not a checkpoint (no inventory.img in it)".into(),
        });
    }
    let descriptors = read_descriptors(&images)?;
    let plan = spec::load(&opts.bundle).map_err(ContainerError::from)?;
    let terminal = plan.process.terminal().unwrap_or(false);
    let console = match (&opts.console_socket, terminal) {
        (Some(p), true) => Some(crate::console::connect(p).map_err(ContainerError::from)?),
        (None, true) => {
            return Err(CheckpointError::Unsupported(
                "process.terminal is true but no --console-socket was given: the restored \
                 terminal has to go somewhere"
                    .into(),
            ))
        }
        _ => None,
    };
    let linux = plan.spec.linux().as_ref();
    let cgroup = crate::container::cgroup_for(opts.cgroup_manager, &plan, &opts.id)?;
    let resources = linux.and_then(|l| l.resources().as_ref());
    let dir = StateDir::create(&opts.root, &opts.id)?;
    let mut st = crate::container::initial_state(&plan, &opts.id, &cgroup);
    let mut restored_pid = 0;
    let res = (|| {
        dir.save(&st)?;
        cgroup.create(resources)?;
        bring_back(
            opts,
            &criu,
            &images,
            &descriptors,
            &dir,
            &mut st,
            &cgroup,
            console,
            &mut restored_pid,
        )
    })();
    if let Err(e) = res {
        // Nothing half-restored stays: the restored tree (if CRIU got that far), the cgroup
        // and whatever is left in it, the state directory.
        if restored_pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(restored_pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(restored_pid), None);
        }
        let _ = cgroup.destroy();
        let _ = dir.remove();
        return Err(e);
    }
    if let Some(p) = &opts.pid_file {
        crate::state::write_pid_file(p, st.pid)?;
    }
    if opts.detach {
        return Ok(0);
    }
    drop(dir);
    let mask = crate::container::forwardable();
    let mut old = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&mask),
        Some(&mut old),
    );
    let code = crate::container::wait_exit(st.pid, &mask, None);
    let _ =
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&old), None);
    let code = code?;
    crate::container::delete(&opts.root, &opts.id, true)?;
    Ok(code)
}

/// Steps 3 and 4 of the module doc.
#[allow(clippy::too_many_arguments)]
fn bring_back(
    opts: &RestoreOptions,
    criu: &criu::Criu,
    images: &Path,
    descriptors: &[String],
    dir: &StateDir,
    st: &mut State,
    cgroup: &Cgroup,
    console: Option<OwnedFd>,
    restored_pid: &mut i32,
) -> Result<(), CheckpointError> {
    let spec = st.config.clone();
    mounts::prepare_mount_points(&spec, &st.rootfs).map_err(|message| CheckpointError::Step {
        step: "prepare the rootfs for CRIU",
        message,
    })?;
    // A mount namespace of our own (a slave of the host's: host mounts still reach it) for
    // the rootfs bind and what CRIU mounts while it works: nothing of it can outlive this
    // process and CRIU, even if both are killed, and `delete` never finds a mount in the state
    // directory. husk is single-threaded, so unshare applies to the whole process.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| {
        CheckpointError::Step {
            step: "prepare the rootfs for CRIU",
            message: format!("unshare the mount namespace: {e}"),
        }
    })?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| CheckpointError::Step {
        step: "prepare the rootfs for CRIU",
        message: format!("make / a slave mount: {e}"),
    })?;
    let root = RootBind::new(&st.rootfs, dir.dir.join("criu-root")).map_err(|message| {
        CheckpointError::Step {
            step: "prepare the rootfs for CRIU",
            message,
        }
    })?;
    let image_dir = super::open_dir("--image-path", images)?;
    let (work_dir, log_dir) = match &opts.common.work_path {
        Some(w) => {
            std::fs::create_dir_all(w).map_err(|e| CheckpointError::Path {
                flag: "--work-path",
                path: w.clone(),
                message: format!("create: {e}"),
            })?;
            (Some(super::open_dir("--work-path", w)?), w.clone())
        }
        None => (None, images.to_path_buf()),
    };
    let log = log_dir.join("restore.log");

    let mut o = opts.common.base("restore.log")?;
    o.set_images_dir_fd(image_dir.as_raw_fd());
    if let Some(w) = &work_dir {
        o.set_work_dir_fd(w.as_raw_fd());
    }
    o.set_root(root.path().to_string_lossy().into_owned());
    o.set_rst_sibling(true);
    o.set_evasive_devices(true);
    if let Some(f) = super::config_file(&spec) {
        o.set_config_file(f);
    }
    if let Some(p) = &opts.lsm_profile {
        o.set_lsm_profile(p.clone());
    }
    if let Some(c) = &opts.lsm_mount_context {
        o.set_lsm_mount_context(c.clone());
    }
    o.ext_mnt = mounts::for_restore(&spec, &st.bundle, cgroup.path());

    // Namespaces joined by path: net and pid come back as inherited fds under the key the dump
    // used; the rest CRIU joins itself.
    let mut extra: Vec<OwnedFd> = Vec::new();
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
    {
        let Some(path) = ns.path() else { continue };
        use oci_spec::runtime::LinuxNamespaceType as T;
        if let Some((_, key)) = super::external_ns_key(ns.typ()) {
            let fd: OwnedFd = std::fs::File::open(path)
                .map_err(|e| CheckpointError::Step {
                    step: "open a namespace the config joins",
                    message: format!("{}: {e}", path.display()),
                })?
                .into();
            let mut i = Inherit_fd::new();
            i.set_key(key.to_string());
            i.set_fd(extra_fd_number(extra.len()));
            o.inherit_fd.push(i);
            extra.push(fd);
        } else if ns.typ() == T::Cgroup {
            return Err(CheckpointError::Unsupported(format!(
                "linux.namespaces: CRIU can't join the cgroup namespace {}",
                path.display()
            )));
        } else {
            let name = match ns.typ() {
                T::Mount => "mnt",
                T::Uts => "uts",
                T::Ipc => "ipc",
                T::User => "user",
                T::Time => "time",
                _ => continue,
            };
            let mut j = Join_namespace::new();
            j.set_ns(name.into());
            j.set_ns_file(path.to_string_lossy().into_owned());
            o.join_ns.push(j);
        }
    }
    // The init's old pipes and fifos are replaced by ours (CRIU's stdio is ours).
    let external =
        read_json::<Vec<Option<String>>>(images, super::EXTERNAL_STDIO)?.unwrap_or_default();
    for (i, key) in external.iter().enumerate().take(3) {
        if let Some(key) = key {
            let mut f = Inherit_fd::new();
            f.set_key(key.clone());
            f.set_fd(i as i32);
            o.inherit_fd.push(f);
        }
    }
    for (i, d) in descriptors.iter().enumerate() {
        if d.contains("pipe:") {
            let mut f = Inherit_fd::new();
            f.set_key(d.clone());
            f.set_fd(i as i32);
            o.inherit_fd.push(f);
        }
    }

    let (sin, sout, serr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let stdio = [sin.as_fd(), sout.as_fd(), serr.as_fd()];
    let swrk = Swrk::start(
        &criu.path,
        Fds {
            stdio: Some(stdio),
            extra: extra.iter().map(|f| f.as_fd()).collect(),
        },
    )
    .map_err(super::rpc_error("start CRIU", log.clone()))?;
    if !cgroup.is_none() {
        cgroup.add_pid(swrk.pid())?;
        o.cg_root = cgroup_roots(swrk.pid());
    }
    let hooks_spec = spec.hooks().clone();
    let mut notify_err: Option<CheckpointError> = None;
    let res = swrk.call(Criu_req_type::RESTORE, Some(o), None, |n| {
        match n.script {
            "setup-namespaces" => {
                if let Some(h) = &hooks_spec {
                    let mut oci = st.oci(crate::container::Status::Creating);
                    oci.set_pid(Some(n.pid));
                    for kind in [HookKind::Prestart, HookKind::CreateRuntime] {
                        hooks::run(kind, kind.select(h), &oci)
                            .map_err(|e| crate::init::chain(&e))?;
                    }
                }
            }
            "orphan-pts-master" => {
                let (Some(sock), Some(master)) = (&console, n.fd) else {
                    return Err("CRIU sent a terminal but there is no --console-socket".into());
                };
                crate::console::send_fd(sock.as_fd(), "orphan-pts-master", master.as_fd())
                    .map_err(|e| format!("send the terminal to --console-socket: {e}"))?;
            }
            "post-restore" => {
                *restored_pid = n.pid;
                st.pid = n.pid;
                st.start_time = state::proc_start_time(n.pid).map(|(t, _)| t).unwrap_or(0);
                st.created = state::now_rfc3339();
                if let Err(e) = dir.save(st) {
                    let msg = crate::init::chain(&e);
                    notify_err = Some(e.into());
                    return Err(msg);
                }
            }
            _ => {}
        }
        Ok(())
    });
    drop(image_dir);
    drop(work_dir);
    drop(extra);
    drop(root);
    if let Some(e) = notify_err {
        return Err(e);
    }
    let resp = res.map_err(super::rpc_error("CRIU restore", log.clone()))?;
    if st.pid <= 0 {
        // Older CRIUs report the pid only in the answer.
        let pid = resp.restore.pid();
        *restored_pid = pid;
        st.pid = pid;
        st.start_time = state::proc_start_time(pid).map(|(t, _)| t).unwrap_or(0);
        dir.save(st)?;
    }
    Ok(())
}

/// runc's `criuApplyCgroups`: each controller's root is wherever the CRIU process now is.
fn cgroup_roots(pid: i32) -> Vec<Cgroup_root> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        for c in ctrls.split(',') {
            let mut r = Cgroup_root::new();
            r.set_ctrl(c.to_string());
            r.set_path(path.to_string());
            out.push(r);
        }
    }
    out
}

/// descriptors.json; a checkpoint without one restores with no pipes mapped.
fn read_descriptors(images: &Path) -> Result<Vec<String>, CheckpointError> {
    Ok(read_json(images, super::DESCRIPTORS)?.unwrap_or_default())
}

/// A small JSON file of the image directory (at most 64 KiB); `None` when absent.
fn read_json<T: serde::de::DeserializeOwned>(
    images: &Path,
    name: &str,
) -> Result<Option<T>, CheckpointError> {
    use std::io::Read;
    let path = images.join(name);
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CheckpointError::Path {
                flag: "--image-path",
                path,
                message: e.to_string(),
            })
        }
    };
    let mut buf = Vec::new();
    f.take(64 << 10)
        .read_to_end(&mut buf)
        .map_err(super::io_step("read the checkpoint's descriptors"))?;
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(|e| CheckpointError::Path {
            flag: "--image-path",
            path,
            message: format!("expected a JSON array of strings: {e}"),
        })
}
