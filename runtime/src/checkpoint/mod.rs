//! Checkpoint and restore with CRIU, as runc does them: `checkpoint` asks CRIU to dump the
//! container's process tree into an image directory; `restore` makes a new container (state
//! directory, cgroup, rootfs mount points) and asks CRIU to bring the tree back into it. CRIU
//! does the process work itself (namespaces, mounts, memory, files, seccomp); husk's init is not
//! involved in a restore.
//!
//! - [`criu`] finds a CRIU that works on this kernel (≥ 4.1);
//! - [`rpc`] is the `criu swrk` socket conversation;
//! - [`mounts`] says which mounts are external and prepares the rootfs for a restore;
//! - `dump` and `restore` (the modules behind [`checkpoint`] and [`restore()`]) are the two verbs.
//!
//! On failure both name the step and CRIU's log file (`dump.log`/`restore.log` in the work
//! directory, which defaults to the image directory) and quote its first error line.

pub mod criu;
mod dump;
pub mod mounts;
mod restore;
pub mod rpc;

use std::path::{Path, PathBuf};

pub use dump::{checkpoint, CheckpointOptions};
pub use restore::{restore, RestoreOptions};

use crate::container::ContainerError;
use crate::state::StateError;

/// `descriptors.json` in the image directory: what fds 0–2 of the init were (runc's format, a
/// JSON array of `/proc/<pid>/fd/N` link targets), so a restore can hand new pipes in their place.
pub const DESCRIPTORS: &str = "descriptors.json";
/// `husk-stdio.json`: for fds 0–2 that were files outside the container, CRIU's external key
/// (else null).
pub const EXTERNAL_STDIO: &str = "husk-stdio.json";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Criu(#[from] criu::CriuError),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error("{flag} {path:?}: {message}")]
    Path {
        flag: &'static str,
        path: PathBuf,
        message: String,
    },
    /// CRIU itself failed (or died) during `step`.
    #[error("{step}: see CRIU's log {log}{quote}", log = log.display())]
    Rpc {
        step: &'static str,
        log: PathBuf,
        quote: String,
        #[source]
        source: Box<rpc::RpcError>,
    },
    #[error("{step}: {message}")]
    Step { step: &'static str, message: String },
    #[error("{0}")]
    Unsupported(String),
}

/// runc's `--manage-cgroups-mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CgroupsMode {
    /// CRIU's default (soft).
    #[default]
    Default,
    Soft,
    Full,
    Strict,
    Ignore,
}

impl std::str::FromStr for CgroupsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "" => Self::Default,
            "soft" => Self::Soft,
            "full" => Self::Full,
            "strict" => Self::Strict,
            "ignore" => Self::Ignore,
            other => {
                return Err(format!(
                    "--manage-cgroups-mode {other:?}: expected soft, full, strict or ignore"
                ))
            }
        })
    }
}

impl CgroupsMode {
    fn rpc(self) -> rust_criu::rust_criu_protobuf::rpc::Criu_cg_mode {
        use rust_criu::rust_criu_protobuf::rpc::Criu_cg_mode as M;
        match self {
            Self::Default => M::DEFAULT,
            Self::Soft => M::SOFT,
            Self::Full => M::FULL,
            Self::Strict => M::STRICT,
            Self::Ignore => M::IGNORE,
        }
    }
}

/// The options the two verbs share (runc's CriuOpts).
#[derive(Debug, Clone, Default)]
pub struct CommonOptions {
    /// `--criu`.
    pub criu: Option<PathBuf>,
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub manage_cgroups_mode: CgroupsMode,
    /// `--empty-ns`: only `network` is accepted (runc's rule).
    pub empty_ns: Vec<String>,
    pub auto_dedup: bool,
}

impl CommonOptions {
    /// runc's mask: the network namespace is always "empty" (CRIU makes one but restores no
    /// devices into it: runc does not manage network devices), plus what `--empty-ns` names.
    fn empty_ns_mask(&self) -> Result<u32, CheckpointError> {
        for ns in &self.empty_ns {
            if ns != "network" {
                return Err(CheckpointError::Unsupported(format!(
                    "--empty-ns {ns:?}: only \"network\" is supported (as with runc)"
                )));
            }
        }
        Ok(libc::CLONE_NEWNET as u32)
    }

    /// The options every request carries.
    fn base(
        &self,
        log_file: &str,
    ) -> Result<rust_criu::rust_criu_protobuf::rpc::Criu_opts, CheckpointError> {
        let mut o = rust_criu::rust_criu_protobuf::rpc::Criu_opts::new();
        o.set_log_level(4);
        o.set_log_file(log_file.to_string());
        o.set_manage_cgroups(true);
        o.set_manage_cgroups_mode(self.manage_cgroups_mode.rpc());
        o.set_notify_scripts(true);
        o.set_shell_job(self.shell_job);
        o.set_tcp_established(self.tcp_established);
        o.set_ext_unix_sk(self.ext_unix_sk);
        o.set_file_locks(self.file_locks);
        o.set_empty_ns(self.empty_ns_mask()?);
        o.set_orphan_pts_master(true);
        o.set_auto_dedup(self.auto_dedup);
        Ok(o)
    }
}

/// The CRIU configuration file runc points CRIU at: the `org.criu.config` annotation (empty:
/// none), else `/etc/criu/runc.conf`, so a host tuned for runc is tuned for husk too.
fn config_file(spec: &oci_spec::runtime::Spec) -> Option<String> {
    match spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get("org.criu.config"))
    {
        Some(f) if f.is_empty() => None,
        Some(f) => Some(f.clone()),
        None => Some("/etc/criu/runc.conf".into()),
    }
}

/// `net[<inode>]:extRootNetNS` for a namespace the config joins by path: CRIU leaves it alone at
/// dump and expects it handed back (as an inherited fd with that key) at restore.
fn external_ns_key(
    typ: oci_spec::runtime::LinuxNamespaceType,
) -> Option<(&'static str, &'static str)> {
    use oci_spec::runtime::LinuxNamespaceType as T;
    match typ {
        T::Network => Some(("net", "extRootNetNS")),
        T::Pid => Some(("pid", "extRootPidNS")),
        _ => None,
    }
}

/// The first lines of CRIU's log that say "Error", for the message (runc prints them as
/// warnings). Reads at most 4 MiB of the log.
fn quote_log(log: &Path) -> String {
    use std::io::Read;
    let mut text = String::new();
    let Ok(f) = std::fs::File::open(log) else {
        return String::new();
    };
    let _ = f.take(4 << 20).read_to_string(&mut text);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") && !l.contains("RLIMIT_NOFILE"))
        .take(3)
        .collect();
    if errors.is_empty() {
        String::new()
    } else {
        format!(", which says: {}", errors.join(" | "))
    }
}

fn rpc_error(step: &'static str, log: PathBuf) -> impl FnOnce(rpc::RpcError) -> CheckpointError {
    move |source| CheckpointError::Rpc {
        step,
        quote: quote_log(&log),
        log,
        source: Box::new(source),
    }
}

fn io_step(step: &'static str) -> impl FnOnce(std::io::Error) -> CheckpointError {
    move |e| CheckpointError::Step {
        step,
        message: e.to_string(),
    }
}

/// Open a directory for CRIU: it reaches it through `/proc/<our pid>/fd/N`, so CLOEXEC is fine.
fn open_dir(flag: &'static str, p: &Path) -> Result<std::fs::File, CheckpointError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(p)
        .map_err(|e| CheckpointError::Path {
            flag,
            path: p.to_path_buf(),
            message: format!("open: {e}"),
        })
}

/// What `husk features` says about checkpointing on this host.
pub fn feature_summary(explicit: Option<&Path>) -> serde_json::Value {
    match criu::locate(explicit) {
        Ok(c) => serde_json::json!({
            "enabled": true,
            "criu": c.path,
            "criuVersion": criu::show(c.version),
            "preDump": criu::has_mem_track(&c).unwrap_or(false),
        }),
        Err(e) => serde_json::json!({ "enabled": false, "reason": e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_modes_are_runcs() {
        for (s, m) in [
            ("", CgroupsMode::Default),
            ("soft", CgroupsMode::Soft),
            ("full", CgroupsMode::Full),
            ("strict", CgroupsMode::Strict),
            ("ignore", CgroupsMode::Ignore),
        ] {
            assert_eq!(s.parse::<CgroupsMode>(), Ok(m));
        }
        let e = "props".parse::<CgroupsMode>().unwrap_err();
        assert!(
            e.contains("--manage-cgroups-mode") && e.contains("soft"),
            "{e}"
        );
    }

    #[test]
    fn empty_ns_takes_network_only_and_always_has_it() {
        let mut o = CommonOptions::default();
        assert_eq!(o.empty_ns_mask().ok(), Some(libc::CLONE_NEWNET as u32));
        o.empty_ns = vec!["network".into()];
        assert_eq!(o.empty_ns_mask().ok(), Some(libc::CLONE_NEWNET as u32));
        o.empty_ns = vec!["pid".into()];
        let e = o.empty_ns_mask().unwrap_err().to_string();
        assert!(e.contains("--empty-ns") && e.contains("pid"), "{e}");
    }

    #[test]
    fn the_log_quote_skips_the_harmless_rlimit_line() {
        let d = crate::testutil::TempDir::new("criu-log");
        let log = d.0.join("dump.log");
        std::fs::write(
            &log,
            "(00.1) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self\n\
             (00.2) info\n(00.3) Error (criu/files-reg.c:1790): Can't lookup mount=24\n",
        )
        .unwrap();
        let q = quote_log(&log);
        assert!(
            q.contains("Can't lookup mount") && !q.contains("RLIMIT"),
            "{q}"
        );
        assert_eq!(quote_log(&d.0.join("missing.log")), "");
    }
}
