//! The typed channel between the batch pool and its zygotes: serde values, each framed by a
//! 4-byte little-endian length on a `SOCK_STREAM` socketpair, descriptors (SCM_RIGHTS) riding
//! on the frame's header.
//!
//! Why a stream and not datagrams: a `SOCK_SEQPACKET` message must fit the socket buffer
//! (about 208 KiB here), so a long job line failed with EMSGSIZE. A stream carries any size a
//! single run accepts; [`MAX_FRAME`] only bounds what a receiver allocates.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The largest frame a receiver accepts (a job's options: args and environment).
pub const MAX_FRAME: usize = 64 << 20;

/// The most descriptors one frame carries (a job's stdin, stdout, stderr).
const MAX_FDS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("create the pool channel: {0}")]
    Socket(#[source] nix::Error),
    #[error("send on the pool channel: {0}")]
    Send(#[source] nix::Error),
    #[error("receive on the pool channel: {0}")]
    Recv(#[source] nix::Error),
    #[error("the other end of the pool channel closed")]
    Closed,
    #[error("a pool channel frame of {0} bytes is over the {MAX_FRAME}-byte bound")]
    TooLarge(usize),
    #[error("a garbled pool channel frame: {0}")]
    Garbled(String),
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel(OwnedFd);

/// A connected pair (close-on-exec: a job's program never inherits either end).
pub fn pair() -> Result<(Channel, Channel), ChannelError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(ChannelError::Socket)?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Send `value` with `fds` attached.
    pub fn send<T: Serialize>(&self, value: &T, fds: &[RawFd]) -> Result<(), ChannelError> {
        let body = serde_json::to_vec(value).map_err(|e| ChannelError::Garbled(e.to_string()))?;
        if body.len() > MAX_FRAME {
            return Err(ChannelError::TooLarge(body.len()));
        }
        let header = (body.len() as u32).to_le_bytes();
        // The header (with the descriptors) first, whole: a stream may take part of a send.
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        let mut sent = loop {
            match sendmsg::<()>(
                self.fd(),
                &[IoSlice::new(&header), IoSlice::new(&body)],
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Err(nix::Error::EINTR) => continue,
                r => break r.map_err(ChannelError::Send)?,
            }
        };
        let total = header.len() + body.len();
        while sent < total {
            let rest: Vec<u8> = if sent < header.len() {
                header[sent..].iter().chain(&body).copied().collect()
            } else {
                body[sent - header.len()..].to_vec()
            };
            match nix::sys::socket::send(self.fd(), &rest, MsgFlags::MSG_NOSIGNAL) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(ChannelError::Send(e)),
                Ok(n) => sent += n,
            }
        }
        Ok(())
    }

    /// Receive one value and the descriptors that came with it.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<(T, Vec<OwnedFd>), ChannelError> {
        let mut header = [0u8; 4];
        let mut fds = Vec::new();
        let mut got = 0;
        while got < header.len() {
            let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
            let mut iov = [IoSliceMut::new(&mut header[got..])];
            let m = match recvmsg::<()>(
                self.fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(nix::Error::EINTR) => continue,
                r => r.map_err(ChannelError::Recv)?,
            };
            for c in m.cmsgs().map_err(ChannelError::Recv)? {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: the kernel just installed these descriptors in this process for
                    // this message; nothing else owns them.
                    fds.extend(raw.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                }
            }
            if m.bytes == 0 {
                return Err(ChannelError::Closed);
            }
            got += m.bytes;
        }
        let len = u32::from_le_bytes(header) as usize;
        if len > MAX_FRAME {
            return Err(ChannelError::TooLarge(len));
        }
        let mut body = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match nix::sys::socket::recv(self.fd(), &mut body[got..], MsgFlags::empty()) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(ChannelError::Recv(e)),
                Ok(0) => return Err(ChannelError::Closed),
                Ok(n) => got += n,
            }
        }
        let value =
            serde_json::from_slice(&body).map_err(|e| ChannelError::Garbled(e.to_string()))?;
        Ok((value, fds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_mebibyte_value_and_descriptors_cross() {
        let (a, b) = pair().unwrap();
        let big = "x".repeat(1 << 20);
        let null = crate::sys::open(
            "/dev/null",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        // The reader runs meanwhile: 1 MiB is more than the socket buffer holds.
        let sent = big.clone();
        let reader = std::thread::spawn(move || b.recv::<Vec<String>>().map(|(v, f)| (v, f.len())));
        a.send(&vec![sent, "tail".to_string()], &[null.as_raw_fd()])
            .unwrap();
        let (v, nfds) = reader.join().unwrap().unwrap();
        assert_eq!(v[0].len(), 1 << 20);
        assert_eq!(v[1], "tail");
        assert_eq!(nfds, 1);
    }

    #[test]
    fn a_closed_peer_is_closed_and_a_lying_length_is_refused() {
        let (a, b) = pair().unwrap();
        drop(a);
        assert!(matches!(b.recv::<u32>(), Err(ChannelError::Closed)));
        let (a, b) = pair().unwrap();
        nix::sys::socket::send(a.fd(), &u32::MAX.to_le_bytes(), MsgFlags::empty()).unwrap();
        assert!(matches!(b.recv::<u32>(), Err(ChannelError::TooLarge(_))));
    }
}
