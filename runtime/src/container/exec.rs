//! `exec`: run another process in a running container, built from the container's own
//! `process` (as runc does) with the command line's changes, or from a `--process` file.

use std::path::{Path, PathBuf};

use nix::sys::signal::{self, SigSet, SigmaskHow};
use oci_spec::runtime::{Capability, Process};

use super::{load, ContainerError, Status};
use crate::process::join::{self, Join};

#[derive(Debug, Default)]
pub struct ExecOptions {
    pub process: Option<PathBuf>,
    pub args: Vec<String>,
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub preserve_fds: u32,
    /// Socket-activation descriptors, see [`super::CreateOptions::listen_fds`].
    pub listen_fds: u32,
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
    pub ignore_paused: bool,
}

/// Runs the process; returns its exit status (0 with `detach`).
pub fn exec(root: &Path, id: &str, opts: ExecOptions) -> Result<i32, ContainerError> {
    let c = load(root, id, false)?;
    let allowed = c.status.can_exec() || (c.status == Status::Paused && opts.ignore_paused);
    if !allowed {
        return Err(ContainerError::WrongStatus {
            action: "exec in",
            id: id.to_string(),
            status: c.status,
            hint: if c.status == Status::Paused {
                " (use --ignore-paused)"
            } else {
                ""
            },
        });
    }
    let mut process = build_process(&c.state.config, &opts)?;
    super::add_listen_env(&mut process, opts.listen_fds);
    let terminal = process.terminal().unwrap_or(false);
    let console = match (&opts.console_socket, terminal) {
        (Some(p), true) => Some(crate::console::connect(p)?),
        (None, true) if opts.detach => {
            return Err(ContainerError::Invalid(
                "--tty with --detach needs --console-socket".into(),
            ))
        }
        _ => None,
    };
    let (ours, theirs) = if terminal && console.is_none() {
        let (a, b) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|source| ContainerError::Sys {
            step: "create console socket".into(),
            source,
        })?;
        (Some(a), Some(b))
    } else {
        (None, console)
    };
    let linux = c.state.config.linux().as_ref();
    let seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(
            crate::seccomp::compile(s)
                .map_err(|e| ContainerError::Invalid(crate::init::chain(&e)))?,
        ),
        None => None,
    };
    let mask = super::run::forwardable();
    let mut old = SigSet::empty();
    if !opts.detach {
        signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old)).map_err(
            |source| ContainerError::Sys {
                step: "block signals".into(),
                source,
            },
        )?;
    }
    let cgroup = c.cgroup();
    let pid = join::spawn(
        Join {
            init_pid: c.state.pid,
            process: &process,
            linux,
            seccomp: seccomp.as_ref(),
            console: theirs,
            preserve_fds: opts.listen_fds + opts.preserve_fds,
            cgroup_join: cgroup.open_join().ok(),
            seccomp_listener: match seccomp.as_ref().and_then(|s| s.listener()) {
                Some(l) => Some((
                    crate::seccomp::connect_listener(&l.path)
                        .map_err(|e| ContainerError::Invalid(crate::init::chain(&e)))?,
                    c.state.oci(Status::Running),
                )),
                None => None,
            },
        },
        &mut |pid| cgroup.add_pid(pid).map_err(|e| crate::init::chain(&e)),
    )?;
    if let Some(p) = &opts.pid_file {
        super::create::write_pid_file(p, pid)?;
    }
    if opts.detach {
        return Ok(0);
    }
    let master = match ours {
        Some(sock) => Some(crate::console::receive(std::os::fd::AsFd::as_fd(&sock))?.0),
        None => None,
    };
    let code = super::wait_exit(pid, &mask, master.as_ref());
    let _ = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    code
}

fn build_process(
    config: &oci_spec::runtime::Spec,
    opts: &ExecOptions,
) -> Result<Process, ContainerError> {
    if let Some(path) = &opts.process {
        let p: Process = crate::spec::parse_file(path)?;
        crate::spec::validate_process(&p, path)?;
        return Ok(p);
    }
    let mut p = config.process().clone().unwrap_or_default();
    p.set_args(Some(opts.args.clone()));
    p.set_terminal(Some(opts.tty));
    if let Some(cwd) = &opts.cwd {
        p.set_cwd(cwd.clone());
    }
    let mut env = p.env().clone().unwrap_or_default();
    for e in &opts.env {
        let name = e.split('=').next().unwrap_or_default();
        env.retain(|old| old.split('=').next() != Some(name));
        env.push(e.clone());
    }
    p.set_env(Some(env));
    if let Some(u) = &opts.user {
        let (uid, gid) = u
            .split_once(':')
            .map_or((u.as_str(), None), |(a, b)| (a, Some(b)));
        let bad = || {
            ContainerError::Invalid(format!(
                "--user: expected UID[:GID] as numbers, found {u:?}"
            ))
        };
        let mut user = p.user().clone();
        user.set_uid(uid.parse().map_err(|_| bad())?);
        user.set_gid(match gid {
            Some(g) => g.parse().map_err(|_| bad())?,
            None => 0,
        });
        p.set_user(user);
    }
    if !opts.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(opts.additional_gids.clone()));
        p.set_user(user);
    }
    if !opts.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &opts.caps {
            let cap: Capability = serde_json::from_value(serde_json::Value::String(name.clone()))
                .map_err(|_| {
                ContainerError::Invalid(format!("--cap: unknown capability {name:?}"))
            })?;
            // As runc: bounding, effective and permitted (ambient needs inheritable).
            for set in [
                caps.bounding().clone(),
                caps.effective().clone(),
                caps.permitted().clone(),
            ]
            .iter_mut()
            .enumerate()
            {
                let mut s = set.1.clone().unwrap_or_default();
                s.insert(cap);
                match set.0 {
                    0 => caps.set_bounding(Some(s)),
                    1 => caps.set_effective(Some(s)),
                    _ => caps.set_permitted(Some(s)),
                };
            }
        }
        p.set_capabilities(Some(caps));
    }
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(a) = &opts.apparmor {
        p.set_apparmor_profile(Some(a.clone()));
    }
    if let Some(l) = &opts.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    crate::spec::validate_process(&p, Path::new("exec arguments"))?;
    Ok(p)
}
