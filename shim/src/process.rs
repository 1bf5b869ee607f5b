//! One process of a container: the init (exec id "") or an exec. Same struct for both, as the
//! task API treats them alike except for who runs them (`create`/`start` vs `exec --detach`).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::types::task::Status as TaskStatus;
use tokio::sync::watch;

use crate::io::{Held, Paths};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Registered (exec) or created by the runtime (init), not started.
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn to_proto(self) -> TaskStatus {
        match self {
            Status::Created => TaskStatus::CREATED,
            Status::Running => TaskStatus::RUNNING,
            Status::Paused => TaskStatus::PAUSED,
            Status::Stopped => TaskStatus::STOPPED,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub status: u32,
    /// Seconds and nanoseconds since the epoch.
    pub at: (i64, i32),
}

impl Exit {
    pub fn now(status: i32) -> Exit {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Exit {
            status: u32::try_from(status).unwrap_or(255),
            at: (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                i32::try_from(d.subsec_nanos()).unwrap_or(0),
            ),
        }
    }

    pub fn timestamp(&self) -> Timestamp {
        Timestamp {
            seconds: self.at.0,
            nanos: self.at.1,
            ..Default::default()
        }
    }
}

pub struct Process {
    pub exec_id: String,
    pub pid: u32,
    pub status: Status,
    pub paths: Paths,
    pub io: Held,
    /// The exec's process.json (written by `Exec`, consumed by `Start`).
    pub spec: Option<PathBuf>,
    exit: watch::Sender<Option<Exit>>,
}

impl Process {
    pub fn new(exec_id: &str, paths: Paths) -> Process {
        Process {
            exec_id: exec_id.to_string(),
            pid: 0,
            status: Status::Created,
            paths,
            io: Held::default(),
            spec: None,
            exit: watch::channel(None).0,
        }
    }

    pub fn exit(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    /// Records the exit and wakes every `Wait`.
    pub fn set_exited(&mut self, status: i32) -> Exit {
        let e = Exit::now(status);
        self.status = Status::Stopped;
        self.io.close_outputs();
        self.exit.send_replace(Some(e));
        e
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Exit>> {
        self.exit.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn wait_sees_the_exit() {
        let mut p = Process::new("", Paths::default());
        let mut rx = p.subscribe();
        assert_eq!(p.exit(), None);
        p.set_exited(3);
        let e = rx.wait_for(|e| e.is_some()).await.unwrap().unwrap();
        assert_eq!(e.status, 3);
        assert_eq!(p.status, Status::Stopped);
    }
}
