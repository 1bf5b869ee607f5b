//! `husk checkpoint` and `husk restore`: runc's flags over the library's checkpoint module.
//! CRIU is found by `--criu PATH`, then `$HUSK_CRIU`, then `criu` on `$PATH`, then
//! /opt/criu/sbin/criu (where scripts/setup installs it); it must be 4.1 or newer.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use husk_runtime::checkpoint::{self, CheckpointOptions, CommonOptions, RestoreOptions};

use crate::Cli;

/// What `--help` adds: where CRIU comes from and what depends on this kernel.
pub const HELP: &str =
    "CRIU: --criu PATH, else $HUSK_CRIU, else criu on PATH, else /opt/criu/sbin/criu \
(scripts/setup builds it); 4.1 or newer. Not supported: --lazy-pages, --page-server, --status-fd. \
--pre-dump and --parent-path need the kernel's soft-dirty tracking and are refused without it. \
`husk features` shows what this host has (annotations io.husk.checkpoint.*).";

#[derive(Args, Debug)]
pub struct Shared {
    /// Path for the CRIU image files (default: ./checkpoint).
    #[arg(long = "image-path")]
    image_path: Option<PathBuf>,
    /// Path for CRIU's work files and log (default: the image path).
    #[arg(long = "work-path")]
    work_path: Option<PathBuf>,
    /// Allow open TCP connections.
    #[arg(long = "tcp-established")]
    tcp_established: bool,
    /// Allow external unix sockets.
    #[arg(long = "ext-unix-sk")]
    ext_unix_sk: bool,
    /// Allow shell jobs.
    #[arg(long = "shell-job")]
    shell_job: bool,
    /// Handle file locks.
    #[arg(long = "file-locks")]
    file_locks: bool,
    /// Cgroups mode: soft|full|strict|ignore (default: CRIU's, soft).
    #[arg(long = "manage-cgroups-mode", default_value = "")]
    manage_cgroups_mode: String,
    /// Create a namespace, but don't restore its properties (only "network").
    #[arg(long = "empty-ns")]
    empty_ns: Vec<String>,
    /// Enable auto deduplication of memory images.
    #[arg(long = "auto-dedup")]
    auto_dedup: bool,
    /// Lazy pages (userfaultfd): not supported by husk.
    #[arg(long = "lazy-pages")]
    lazy_pages: bool,
    id: String,
}

/// Checkpoint a running container with CRIU (needs CRIU >= 4.1; see --criu).
#[derive(Args, Debug)]
pub struct CheckpointArgs {
    #[command(flatten)]
    shared: Shared,
    /// Path for previous image files, relative to --image-path (needs soft-dirty tracking).
    #[arg(long = "parent-path")]
    parent_path: Option<PathBuf>,
    /// Leave the processes running after the checkpoint.
    #[arg(long = "leave-running")]
    leave_running: bool,
    /// Skip in-flight TCP connections.
    #[arg(long = "tcp-skip-in-flight")]
    tcp_skip_in_flight: bool,
    /// Link unlinked files back when possible.
    #[arg(long = "link-remap")]
    link_remap: bool,
    /// Dump memory only and leave the container running (needs soft-dirty tracking).
    #[arg(long = "pre-dump")]
    pre_dump: bool,
    /// Page server ADDRESS:PORT: not supported by husk.
    #[arg(long = "page-server")]
    page_server: Option<String>,
    /// Status fd for lazy pages: not supported by husk.
    #[arg(long = "status-fd")]
    status_fd: Option<i32>,
}

/// Restore a container from a CRIU checkpoint (needs CRIU >= 4.1; see --criu).
#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    shared: Shared,
    /// Path to the root of the bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Return once the container is restored.
    #[arg(short, long)]
    detach: bool,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility (CRIU restores the mount namespace itself).
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for runc compatibility.
    #[arg(long = "no-subreaper")]
    no_subreaper: bool,
    #[arg(long = "lsm-profile")]
    lsm_profile: Option<String>,
    #[arg(long = "lsm-mount-context")]
    lsm_mount_context: Option<String>,
}

fn common(cli: &Cli, s: &Shared) -> Result<CommonOptions> {
    if s.lazy_pages {
        anyhow::bail!("--lazy-pages is not supported by husk");
    }
    Ok(CommonOptions {
        criu: cli.criu.clone(),
        image_path: s
            .image_path
            .clone()
            .unwrap_or_else(|| PathBuf::from("checkpoint")),
        work_path: s.work_path.clone(),
        tcp_established: s.tcp_established,
        ext_unix_sk: s.ext_unix_sk,
        shell_job: s.shell_job,
        file_locks: s.file_locks,
        manage_cgroups_mode: s
            .manage_cgroups_mode
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))?,
        empty_ns: s.empty_ns.clone(),
        auto_dedup: s.auto_dedup,
    })
}

pub fn checkpoint(cli: &Cli, a: &CheckpointArgs) -> Result<i32> {
    if a.page_server.is_some() || a.status_fd.is_some() {
        anyhow::bail!("--page-server and --status-fd are not supported by husk");
    }
    let opts = CheckpointOptions {
        root: cli.root.clone(),
        id: a.shared.id.clone(),
        common: common(cli, &a.shared)?,
        leave_running: a.leave_running,
        pre_dump: a.pre_dump,
        parent_path: a.parent_path.clone(),
        tcp_skip_in_flight: a.tcp_skip_in_flight,
        link_remap: a.link_remap,
    };
    checkpoint::checkpoint(&opts)
        .with_context(|| format!("checkpoint container {}", a.shared.id))?;
    Ok(0)
}

pub fn restore(cli: &Cli, a: &RestoreArgs) -> Result<i32> {
    let _ = (a.no_subreaper, a.no_pivot);
    let opts = RestoreOptions {
        root: cli.root.clone(),
        id: a.shared.id.clone(),
        bundle: a.bundle.clone(),
        common: common(cli, &a.shared)?,
        console_socket: a.console_socket.clone(),
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        no_pivot: a.no_pivot,
        cgroup_manager: cli.cgroup_manager(),
        lsm_profile: a.lsm_profile.clone(),
        lsm_mount_context: a.lsm_mount_context.clone(),
    };
    checkpoint::restore(&opts).with_context(|| format!("restore container {}", a.shared.id))
}
