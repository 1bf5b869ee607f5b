//! Task events published to containerd: TaskCreate, TaskStart, TaskExit, TaskOOM,
//! TaskExecAdded, TaskExecStarted, TaskPaused, TaskResumed, TaskDelete.
//!
//! The crate's publisher queues and retries; a failure here is logged, never returned to the
//! request that caused it (the task did change state, whether or not containerd heard).

use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::event::Event;
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::ttrpc::context::Context;

use crate::io::Paths;
use crate::process::Exit;

pub struct Events {
    publisher: RemotePublisher,
    namespace: String,
}

impl Events {
    pub fn new(publisher: RemotePublisher, namespace: &str) -> Events {
        Events {
            publisher,
            namespace: namespace.to_string(),
        }
    }

    async fn send<E: Event + 'static>(&self, e: E) {
        let topic = e.topic();
        if let Err(err) = self
            .publisher
            .publish(Context::default(), &topic, &self.namespace, Box::new(e))
            .await
        {
            log::warn!("publish {topic}: {err}");
        }
    }

    pub async fn create(&self, id: &str, bundle: &str, io: &Paths, pid: u32) {
        self.send(TaskCreate {
            container_id: id.to_string(),
            bundle: bundle.to_string(),
            io: MessageField::some(TaskIO {
                stdin: io.stdin.clone(),
                stdout: io.stdout.clone(),
                stderr: io.stderr.clone(),
                terminal: io.terminal,
                ..Default::default()
            }),
            pid,
            ..Default::default()
        })
        .await
    }

    pub async fn start(&self, id: &str, pid: u32) {
        self.send(TaskStart {
            container_id: id.to_string(),
            pid,
            ..Default::default()
        })
        .await
    }

    pub async fn exec_added(&self, id: &str, exec_id: &str) {
        self.send(TaskExecAdded {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        })
        .await
    }

    pub async fn exec_started(&self, id: &str, exec_id: &str, pid: u32) {
        self.send(TaskExecStarted {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            pid,
            ..Default::default()
        })
        .await
    }

    /// `process_id` is the exec id, or the container id for the init (as runc's shim sends it).
    pub async fn exit(&self, id: &str, process_id: &str, pid: u32, e: Exit) {
        self.send(TaskExit {
            container_id: id.to_string(),
            id: process_id.to_string(),
            pid,
            exit_status: e.status,
            exited_at: MessageField::some(e.timestamp()),
            ..Default::default()
        })
        .await
    }

    pub async fn oom(&self, id: &str) {
        self.send(TaskOOM {
            container_id: id.to_string(),
            ..Default::default()
        })
        .await
    }

    pub async fn paused(&self, id: &str) {
        self.send(TaskPaused {
            container_id: id.to_string(),
            ..Default::default()
        })
        .await
    }

    pub async fn resumed(&self, id: &str) {
        self.send(TaskResumed {
            container_id: id.to_string(),
            ..Default::default()
        })
        .await
    }

    pub async fn delete(&self, id: &str, pid: u32, e: Exit) {
        self.send(TaskDelete {
            container_id: id.to_string(),
            pid,
            exit_status: e.status,
            exited_at: MessageField::some(e.timestamp()),
            ..Default::default()
        })
        .await
    }
}
