//! The parent/child sync protocol over a `SOCK_SEQPACKET` socketpair: one message per datagram.
//!
//! ```text
//!  child (container init)                 parent (husk create)
//!                                         [clone; add the child to the cgroup]
//!                               <-- CgroupDone
//!                               <-- Stats{cpu, peak}  (a sandbox's, when its cgroup was
//!                                                      made after the clone)
//!  [new user ns]  IdMapsPlease  -->       [write uid_map, setgroups, gid_map]
//!                               <-- IdMapsDone
//!  [forked for a new pid ns]  Pid{pid} --> [the init is the grandchild from now on]
//!  [mounts done] HooksPlease    -->       [prestart + createRuntime hooks]
//!                               <-- HooksDone
//!                 Ready         -->       [write state.json, --pid-file; exit]
//!  (any step)     Error{failure} -->      [kill, clean up, print the failure]
//! ```
//! The child blocks on `exec.fifo` after `Ready`; `husk start` opens it for reading.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recv, recvmsg, send, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    CgroupDone,
    /// The cgroup files a sandbox's reaper samples and resets at its handover
    /// ([`crate::init::reaper::Reporting`]), attached in this order where present: made after
    /// the clone, they could not be inherited.
    Stats {
        cpu: bool,
        peak: bool,
    },
    IdMapsPlease,
    IdMapsDone,
    Pid {
        pid: i32,
    },
    HooksPlease,
    HooksDone,
    Ready,
    Error(Failure),
}

/// What went wrong in the child, as the parent reports it: the step, its errno (0 when there
/// is none) and the whole message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub step: String,
    pub errno: i32,
    pub message: String,
}

impl Failure {
    /// A failure of `step` with the error's errno and whole chain.
    pub fn new(step: &str, e: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            step: step.to_string(),
            errno: errno_of(e),
            message: super::chain(e),
        }
    }

    /// A failure whose only record is its text (an old peer, or a truncated message).
    pub fn message(message: impl Into<String>) -> Self {
        Self {
            step: String::new(),
            errno: 0,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The first errno found down an error's source chain.
pub fn errno_of<'a>(e: &'a (dyn std::error::Error + 'static)) -> i32 {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(n) = c.downcast_ref::<nix::Error>() {
            return *n as i32;
        }
        if let Some(n) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|i| i.raw_os_error())
        {
            return n;
        }
        if let Some(child) = c.downcast_ref::<super::ChildError>() {
            match child {
                super::ChildError::Step { source, .. } => return *source as i32,
                super::ChildError::Lookup { errno, .. } | super::ChildError::Exec { errno, .. } => {
                    return *errno as i32
                }
                _ => {}
            }
        }
        cur = c.source();
    }
    0
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

/// The most descriptors one message carries: a `tasks` file per v1 hierarchy.
const MAX_FDS: usize = 32;

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
            if let Msg::Error(f) = msg {
                let cut = Failure {
                    step: f.step.chars().take(256).collect(),
                    errno: f.errno,
                    message: f.message.chars().take(MAX_MSG / 2).collect(),
                };
                bytes = serde_json::to_vec(&Msg::Error(cut))
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

    /// Send `msg` with descriptors attached (SCM_RIGHTS); the receiver takes them with
    /// [`Channel::expect_fds`].
    pub fn send_fds(&self, msg: &Msg, fds: &[OwnedFd]) -> Result<(), SyncError> {
        if fds.is_empty() {
            return self.send(msg);
        }
        let bytes = serde_json::to_vec(msg).map_err(|e| SyncError::Garbled(e.to_string()))?;
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let cmsg = [ControlMessage::ScmRights(&raw)];
        sendmsg::<()>(
            self.0.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map(drop)
        .map_err(|source| SyncError::Send {
            msg: msg.name(),
            source,
        })
    }

    /// [`Channel::expect`], also taking the descriptors that came with the message.
    pub fn expect_fds(&self, want: Msg) -> Result<Vec<OwnedFd>, SyncError> {
        match self.recv_fds()? {
            (got, fds) if got == want => Ok(fds),
            (got, _) => Err(SyncError::Unexpected {
                expected: want.name(),
                got,
            }),
        }
    }

    /// One message and the descriptors that came with it (SCM_RIGHTS).
    pub fn recv_fds(&self) -> Result<(Msg, Vec<OwnedFd>), SyncError> {
        let mut buf = [0u8; MAX_MSG];
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let (n, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.0.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(SyncError::Recv(e)),
                Ok(m) => {
                    let mut fds = Vec::new();
                    for c in m.cmsgs().map_err(SyncError::Recv)? {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            // SAFETY: the kernel just installed these descriptors in this
                            // process for this message; nothing else owns them.
                            fds.extend(
                                raw.into_iter()
                                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                            );
                        }
                    }
                    break (m.bytes, fds);
                }
            }
        };
        if n == 0 {
            return Err(SyncError::Closed);
        }
        let got: Msg =
            serde_json::from_slice(&buf[..n]).map_err(|e| SyncError::Garbled(e.to_string()))?;
        Ok((got, fds))
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
    pub fn pending_error(&self) -> Option<Failure> {
        let mut buf = [0u8; MAX_MSG];
        while let Ok(n) = recv(self.0.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            if n == 0 {
                break;
            }
            if let Ok(Msg::Error(f)) = serde_json::from_slice(&buf[..n]) {
                return Some(f);
            }
        }
        None
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.0
    }
}

/// Fork into a pid namespace entered by setns or unshare (which move only children): the
/// parent sends the child's pid (`Msg::Pid`) and exits 0; the child returns once that is sent,
/// so nothing the child sends can overtake it. (Without the wait, a child that got to `Ready`
/// first had the runtime record the parent's pid, or `exec` fail on a late `Pid`.)
pub fn fork_reporting_pid(chan: &Channel) -> Result<(), nix::Error> {
    let (sent_r, sent_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    match crate::sys::fork()? {
        0 => {
            drop(sent_w);
            let mut b = [0u8; 1];
            // End of file once the parent has sent it, or died: it is done with the socket.
            while let Err(nix::Error::EINTR) = nix::unistd::read(sent_r.as_raw_fd(), &mut b) {}
            Ok(())
        }
        pid => {
            let _ = chan.send(&Msg::Pid { pid });
            drop(sent_w);
            crate::sys::exit_now(0)
        }
    }
}

impl Msg {
    fn name(&self) -> &'static str {
        match self {
            Msg::CgroupDone => "CgroupDone",
            Msg::Stats { .. } => "Stats",
            Msg::IdMapsPlease => "IdMapsPlease",
            Msg::IdMapsDone => "IdMapsDone",
            Msg::Pid { .. } => "Pid",
            Msg::HooksPlease => "HooksPlease",
            Msg::HooksDone => "HooksDone",
            Msg::Ready => "Ready",
            Msg::Error(_) => "Error",
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
            Msg::Stats {
                cpu: true,
                peak: false,
            },
            Msg::Pid { pid: 42 },
            Msg::Error(Failure {
                step: "mount".into(),
                errno: libc::EPERM,
                message: "mount \"/proc\": EPERM".into(),
            }),
        ] {
            a.send(&m).expect("send");
            assert_eq!(b.recv().expect("recv"), m);
        }
        drop(a);
        assert!(matches!(b.recv(), Err(SyncError::Closed)));
    }

    #[test]
    fn descriptors_travel_with_a_message() {
        let (a, b) = pair().expect("pair");
        let (r, w) = nix::unistd::pipe().expect("pipe");
        a.send_fds(&Msg::CgroupDone, &[w]).expect("send");
        let fds = b.expect_fds(Msg::CgroupDone).expect("recv");
        assert_eq!(fds.len(), 1);
        nix::unistd::write(&fds[0], b"x").expect("write through the passed fd");
        let mut buf = [0u8; 1];
        assert_eq!(nix::unistd::read(r.as_raw_fd(), &mut buf).expect("read"), 1);
        // Without descriptors, the same call takes a plain message.
        a.send(&Msg::CgroupDone).expect("send");
        assert!(b.expect_fds(Msg::CgroupDone).expect("recv").is_empty());
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
