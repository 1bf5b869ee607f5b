//! The parent/child sync protocol over a `SOCK_SEQPACKET` socketpair: one message per datagram.
//!
//! ```text
//!  child (container init)                 parent (husk create)
//!                                         [clone; add the child to the cgroup]
//!                               <-- CgroupDone
//!  [new user ns]  IdMapsPlease  -->       [write uid_map, setgroups, gid_map]
//!                               <-- IdMapsDone
//!  [forked for a new pid ns]  Pid{pid} --> [the init is the grandchild from now on]
//!  [mounts done] HooksPlease    -->       [prestart + createRuntime hooks]
//!                               <-- HooksDone
//!                 Ready         -->       [write state.json, --pid-file; exit]
//!  (any step)     Error{msg}    -->       [kill, clean up, print msg]
//! ```
//! The child blocks on `exec.fifo` after `Ready`; `husk start` opens it for reading.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    CgroupDone,
    IdMapsPlease,
    IdMapsDone,
    Pid { pid: i32 },
    HooksPlease,
    HooksDone,
    Ready,
    Error { message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("create sync socket")]
    Socket(#[source] nix::Error),
    #[error("send {msg:?} on sync socket")]
    Send {
        msg: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("read sync socket")]
    Recv(#[source] nix::Error),
    #[error("the container init exited before it was ready")]
    Closed,
    #[error("bad message on sync socket: {0}")]
    Garbled(String),
    #[error("expected {expected} from the other side, got {got:?}")]
    Unexpected { expected: &'static str, got: Msg },
}

/// The largest message: an init error with a long chain still fits.
const MAX_MSG: usize = 8 * 1024;

/// One end of the sync socket.
#[derive(Debug)]
pub struct Channel(OwnedFd);

pub fn pair() -> Result<(Channel, Channel), SyncError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(SyncError::Socket)?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<(), SyncError> {
        let mut bytes = serde_json::to_vec(msg).map_err(|e| SyncError::Garbled(e.to_string()))?;
        if bytes.len() > MAX_MSG {
            // Only an error message can be this long: keep its start, which names the step.
            if let Msg::Error { message } = msg {
                let cut: String = message.chars().take(MAX_MSG / 2).collect();
                bytes = serde_json::to_vec(&Msg::Error { message: cut })
                    .map_err(|e| SyncError::Garbled(e.to_string()))?;
            }
        }
        send(self.0.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL)
            .map(drop)
            .map_err(|source| SyncError::Send {
                msg: msg.name(),
                source,
            })
    }

    pub fn recv(&self) -> Result<Msg, SyncError> {
        // Messages are small; a stack buffer spares the fresh heap pages (and their page faults)
        // a zeroed 64 KiB vector would cost on every message.
        let mut buf = [0u8; MAX_MSG];
        let n = loop {
            match recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(nix::Error::EINTR) => continue,
                r => break r.map_err(SyncError::Recv)?,
            }
        };
        if n == 0 {
            return Err(SyncError::Closed);
        }
        serde_json::from_slice(&buf[..n]).map_err(|e| SyncError::Garbled(e.to_string()))
    }

    /// Receive and insist on one message; an `Error` from the other side is returned as such.
    pub fn expect(&self, want: Msg) -> Result<(), SyncError> {
        match self.recv()? {
            m if m == want => Ok(()),
            got => Err(SyncError::Unexpected {
                expected: want.name(),
                got,
            }),
        }
    }

    /// An `Error` the other side sent that nobody read yet (without blocking).
    pub fn pending_error(&self) -> Option<String> {
        let mut buf = [0u8; MAX_MSG];
        while let Ok(n) = recv(self.0.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            if n == 0 {
                break;
            }
            if let Ok(Msg::Error { message }) = serde_json::from_slice(&buf[..n]) {
                return Some(message);
            }
        }
        None
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.0
    }
}

impl Msg {
    fn name(&self) -> &'static str {
        match self {
            Msg::CgroupDone => "CgroupDone",
            Msg::IdMapsPlease => "IdMapsPlease",
            Msg::IdMapsDone => "IdMapsDone",
            Msg::Pid { .. } => "Pid",
            Msg::HooksPlease => "HooksPlease",
            Msg::HooksDone => "HooksDone",
            Msg::Ready => "Ready",
            Msg::Error { .. } => "Error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let (a, b) = pair().expect("pair");
        for m in [
            Msg::CgroupDone,
            Msg::Pid { pid: 42 },
            Msg::Error {
                message: "mount \"/proc\": EPERM".into(),
            },
        ] {
            a.send(&m).expect("send");
            assert_eq!(b.recv().expect("recv"), m);
        }
        drop(a);
        assert!(matches!(b.recv(), Err(SyncError::Closed)));
    }

    #[test]
    fn expect_reports_what_came() {
        let (a, b) = pair().expect("pair");
        a.send(&Msg::Ready).expect("send");
        assert!(matches!(
            b.expect(Msg::HooksDone),
            Err(SyncError::Unexpected {
                got: Msg::Ready,
                ..
            })
        ));
    }
}
