//! The `criu swrk` conversation: one CRIU process per request, spoken to over a SEQPACKET
//! socket with the messages of CRIU's `rpc.proto` (generated types from the rust-criu crate).
//!
//! Why not rust-criu's own `Criu` driver: its notification callback is a plain `fn` (no state,
//! so no way to record the restored pid or answer `setup-namespaces` with the container's hooks),
//! its `restore()` drops the response, and it can't give the CRIU process chosen stdio or extra
//! descriptors (runc hands the container's pipes to CRIU as its stdio, and external namespaces
//! as fds 4..). The socket protocol itself is small: request, then notifications answered one
//! by one, then the final response (runc's `criuSwrk`).

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::socket::{
    recvmsg, send, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use protobuf::{Message, MessageField};
use rust_criu::rust_criu_protobuf::rpc::{
    Criu_features, Criu_notify as CriuNotify, Criu_opts as CriuOpts, Criu_req as CriuReq,
    Criu_req_type as ReqType, Criu_resp as CriuResp,
};

/// Largest message CRIU sends back (runc reads into 10 pages as well).
const MAX_MESSAGE: usize = 10 * 4096;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("start {path:?} swrk: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{step}: {source}")]
    Socket {
        step: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("encode or decode a CRIU message: {0}")]
    Protobuf(#[from] protobuf::Error),
    #[error("CRIU closed the connection before answering (it died; see its log)")]
    Eof,
    #[error("CRIU {kind} failed{errno}{msg}")]
    Failed {
        kind: String,
        errno: String,
        msg: String,
    },
    #[error("CRIU notification {script:?}: {message}")]
    Notify { script: String, message: String },
    #[error("unexpected CRIU answer {0:?}")]
    Unexpected(String),
    #[error("CRIU exited with {0}")]
    Exit(std::process::ExitStatus),
}

/// A notification from CRIU (`post-dump`, `setup-namespaces`, `post-restore`,
/// `orphan-pts-master`, ...) and the descriptor some of them carry.
pub struct Notice<'a> {
    pub script: &'a str,
    pub pid: i32,
    pub fd: Option<OwnedFd>,
}

/// The descriptors the CRIU process gets: its stdio (on restore they become the restored
/// process's pipes through `inherit_fd`), and `extra` from fd 4 on (fd 3 is the socket).
#[derive(Default)]
pub struct Fds<'a> {
    pub stdio: Option<[BorrowedFd<'a>; 3]>,
    pub extra: Vec<BorrowedFd<'a>>,
}

/// A started `criu swrk`, waiting for its request.
pub struct Swrk {
    child: Option<Child>,
    sock: OwnedFd,
}

/// The fd number the extra descriptor `i` has in CRIU (what `inherit_fd` must name).
pub fn extra_fd_number(i: usize) -> i32 {
    4 + i as i32
}

impl Swrk {
    pub fn start(criu: &Path, fds: Fds<'_>) -> Result<Self, RpcError> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|source| RpcError::Socket {
            step: "create the CRIU socket pair",
            source,
        })?;
        // Park every descriptor the child needs above the numbers it will get, so that the
        // dup2s in the child never overwrite one still to be moved.
        let park = |fd: BorrowedFd<'_>| -> Result<OwnedFd, RpcError> {
            nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(64))
                // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
                .map(|n| unsafe { OwnedFd::from_raw_fd(n) })
                .map_err(|source| RpcError::Socket {
                    step: "duplicate a descriptor for CRIU",
                    source,
                })
        };
        let mut moves: Vec<(OwnedFd, RawFd)> = vec![(park(theirs.as_fd())?, 3)];
        for (i, fd) in fds.extra.iter().enumerate() {
            moves.push((park(*fd)?, extra_fd_number(i)));
        }
        let plan: Vec<(RawFd, RawFd)> = moves.iter().map(|(f, n)| (f.as_raw_fd(), *n)).collect();
        let mut cmd = Command::new(criu);
        cmd.arg("swrk").arg("3");
        match fds.stdio {
            Some([i, o, e]) => {
                let own = |fd: BorrowedFd<'_>| {
                    fd.try_clone_to_owned()
                        .map(Stdio::from)
                        .map_err(|source| RpcError::Spawn {
                            path: criu.to_path_buf(),
                            source,
                        })
                };
                cmd.stdin(own(i)?).stdout(own(o)?).stderr(own(e)?);
            }
            None => {
                cmd.stdin(Stdio::null());
            }
        }
        // SAFETY: the closure runs between fork and exec and calls only dup2, which is
        // async-signal-safe; it allocates nothing (`plan` was built before the fork).
        unsafe {
            cmd.pre_exec(move || {
                for &(from, to) in &plan {
                    if libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| RpcError::Spawn {
            path: criu.to_path_buf(),
            source,
        })?;
        // Our copies of the child's ends go now: if CRIU dies, reads see EOF instead of hanging.
        drop(moves);
        drop(theirs);
        Ok(Self {
            child: Some(child),
            sock: ours,
        })
    }

    /// The CRIU process (runc moves it into the container's cgroup before a restore, so that
    /// the restored tasks start there).
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Send one request and answer its notifications with `on_notify` until the final
    /// response; then wait for CRIU to exit.
    pub fn call(
        mut self,
        kind: ReqType,
        opts: Option<CriuOpts>,
        features: Option<Criu_features>,
        mut on_notify: impl FnMut(Notice<'_>) -> Result<(), String>,
    ) -> Result<CriuResp, RpcError> {
        let mut req = CriuReq::new();
        req.set_type(kind);
        if let Some(o) = opts {
            req.opts = MessageField::some(o);
        }
        if let Some(f) = features {
            req.features = MessageField::some(f);
        }
        self.send(&req)?;
        let resp = loop {
            let (resp, fd) = self.recv()?;
            if !resp.success() {
                return Err(failed(&resp));
            }
            if resp.type_() != ReqType::NOTIFY {
                break resp;
            }
            let n: &CriuNotify = &resp.notify;
            let script = n.script().to_string();
            let outcome = on_notify(Notice {
                script: &script,
                pid: n.pid(),
                fd,
            });
            let mut ack = CriuReq::new();
            ack.set_type(ReqType::NOTIFY);
            ack.set_notify_success(outcome.is_ok());
            self.send(&ack)?;
            if let Err(message) = outcome {
                return Err(RpcError::Notify { script, message });
            }
        };
        if resp.type_() != kind {
            return Err(RpcError::Unexpected(format!("{:?}", resp.type_())));
        }
        let _ =
            nix::sys::socket::shutdown(self.sock.as_raw_fd(), nix::sys::socket::Shutdown::Write);
        if let Some(mut child) = self.child.take() {
            let status = child.wait().map_err(|source| RpcError::Spawn {
                path: PathBuf::from("criu"),
                source,
            })?;
            // A PRE_DUMP answer leaves CRIU waiting for the next iteration: it ends on EOF.
            if !status.success() && kind != ReqType::PRE_DUMP {
                return Err(RpcError::Exit(status));
            }
        }
        Ok(resp)
    }

    fn send(&self, req: &CriuReq) -> Result<(), RpcError> {
        let bytes = req.write_to_bytes()?;
        send(self.sock.as_raw_fd(), &bytes, MsgFlags::empty()).map_err(|source| {
            RpcError::Socket {
                step: "send a request to CRIU",
                source,
            }
        })?;
        Ok(())
    }

    fn recv(&self) -> Result<(CriuResp, Option<OwnedFd>), RpcError> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let (n, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(source) => {
                    return Err(RpcError::Socket {
                        step: "read CRIU's answer",
                        source,
                    })
                }
                Ok(msg) => {
                    let mut fd = None;
                    for c in msg.cmsgs().into_iter().flatten() {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for (i, raw) in fds.into_iter().enumerate() {
                                // SAFETY: SCM_RIGHTS installed these descriptors in this
                                // process just now; nothing else owns them.
                                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                                if i == 0 {
                                    fd = Some(owned);
                                }
                            }
                        }
                    }
                    break (msg.bytes, fd);
                }
            }
        };
        if n == 0 {
            return Err(RpcError::Eof);
        }
        if n >= MAX_MESSAGE {
            return Err(RpcError::Unexpected(format!(
                "a message of {n} bytes or more (the limit is {MAX_MESSAGE})"
            )));
        }
        Ok((CriuResp::parse_from_bytes(&buf[..n])?, fd))
    }
}

impl Drop for Swrk {
    fn drop(&mut self) {
        // A conversation that ended in an error: CRIU must not outlive it.
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn failed(resp: &CriuResp) -> RpcError {
    let errno = match resp.cr_errno() {
        0 => String::new(),
        e => format!(
            " (errno {e}: {})",
            std::io::Error::from_raw_os_error(e)
                .to_string()
                .split(" (os error")
                .next()
                .unwrap_or("")
        ),
    };
    let msg = match resp.cr_errmsg() {
        // Root lacks CAP_SYS_RESOURCE on some hosts: CRIU logs this first, and goes on.
        "" => String::new(),
        m if m.contains("RLIMIT_NOFILE") => String::new(),
        m => format!(": {}", m.trim()),
    };
    RpcError::Failed {
        kind: format!("{:?}", resp.type_()).to_lowercase(),
        errno,
        msg,
    }
}
