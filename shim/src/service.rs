//! The shim's lifecycle as containerd drives it: `start` (spawn or reuse the server process),
//! `delete` (clean up after a shim that died), serve, wait for shutdown.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::asynchronous::{spawn, ExitSignal, Shim};
use containerd_shim::util::write_str_to_file;
use containerd_shim::{Config, Error, Flags, StartOpts};
use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::MessageField;

use crate::events::Events;
use crate::options::Options;
use crate::process::Exit;
use crate::reaper::Reaper;
use crate::runtime::Runtime;
use crate::task::{unmount_rootfs, TaskService};

/// Containers with the same value of this annotation share one shim (a Kubernetes pod).
const GROUP_LABEL: &str = "io.kubernetes.cri.sandbox-id";

pub struct Service {
    id: String,
    /// The socket this server listens on (`-socket`, serve mode only).
    socket: String,
    namespace: String,
    bundle: PathBuf,
    exit: Arc<ExitSignal>,
}

/// The grouping key: the pod's sandbox id when the bundle names one, else the container id.
fn grouping(id: &str, config_json: Option<&str>) -> String {
    config_json
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .and_then(|v| {
            v.pointer("/annotations")?
                .get(GROUP_LABEL)?
                .as_str()
                .map(str::to_string)
        })
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| id.to_string())
}

#[async_trait]
impl Shim for Service {
    type T = TaskService;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        let bundle = if args.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&args.bundle)
        };
        Service {
            id: args.id.clone(),
            socket: args.socket.clone(),
            namespace: args.namespace.clone(),
            bundle,
            exit: Arc::new(ExitSignal::default()),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let config = std::fs::read_to_string(self.bundle.join("config.json")).ok();
        let group = grouping(&opts.id, config.as_deref());
        let address = spawn(opts, &group, Vec::new()).await?;
        write_str_to_file("address", &address).await?;
        Ok(address)
    }

    /// containerd runs `shim delete` when the shim is gone: kill and delete what the runtime
    /// still has for the container, unmount the rootfs. Exit status 137, as runc's shim says.
    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        match Options::load(&self.bundle) {
            Ok(opts) => {
                let reaper = Reaper::start().map_err(|e| Error::Other(e.to_string()))?;
                let runtime = Runtime::new(opts, reaper);
                if let Err(e) = runtime.delete(&self.id, true).await {
                    log::warn!("delete {}: {e}", self.id);
                }
            }
            // No options: the create never got that far, there is nothing of the runtime's.
            Err(e) => log::info!("{e}"),
        }
        unmount_rootfs(&self.bundle);
        // A killed shim cannot remove its socket; `start` recorded it in the bundle.
        if let Ok(address) = std::fs::read_to_string(self.bundle.join("address")) {
            remove_socket(address.trim());
        }
        let exit = Exit::now(128 + libc::SIGKILL);
        Ok(DeleteResponse {
            pid: 0,
            exit_status: exit.status,
            exited_at: MessageField::some(exit.timestamp()),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
        // The crate removes the socket named in ./address, but a pod's shim may outlive the
        // bundle it started in (its first container's): remove the one we listen on.
        remove_socket(&self.socket);
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        let reaper = match Reaper::start() {
            Ok(r) => r,
            Err(e) => {
                // Without SIGCHLD no exit is ever seen: better not to serve at all.
                eprintln!("containerd-shim-husk-v2: watch SIGCHLD: {e}");
                std::process::exit(1);
            }
        };
        TaskService::new(
            &self.namespace,
            self.exit.clone(),
            Events::new(publisher, &self.namespace),
            reaper,
        )
    }
}

/// Removes a `unix://` shim socket, if it is one.
fn remove_socket(address: &str) {
    use std::os::unix::fs::FileTypeExt;
    let path = address.strip_prefix("unix://").unwrap_or(address);
    if path.is_empty() {
        return;
    }
    let is_socket = std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false);
    if is_socket {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_sandbox_id() {
        let c = r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}"#;
        assert_eq!(grouping("c1", Some(c)), "pod1");
        assert_eq!(grouping("c1", Some("{}")), "c1");
        assert_eq!(grouping("c1", None), "c1");
    }
}
