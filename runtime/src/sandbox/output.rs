//! `--output` for a stdout or stderr that is not a regular file (the caller's pipe, socket or
//! terminal), where `RLIMIT_FSIZE` doesn't reach: the program writes into a pipe husk made,
//! and husk copies it on to the caller's descriptor, counting. Past the limit the copy stops
//! and the program is killed: OLE.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::limits::Options;

/// One relayed stream.
struct Relay {
    from: OwnedFd,
    to: RawFd,
    open: bool,
}

/// The relays of one run.
pub struct Forward {
    relays: Vec<Relay>,
    limit: u64,
    written: u64,
    pub exceeded: bool,
}

/// The program's side of each relay: (its fd number, the pipe's write end).
pub type ProgramEnds = Vec<(RawFd, OwnedFd)>;

fn is_regular(fd: RawFd) -> bool {
    // SAFETY: fstat writes into a zeroed stat that lives through the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; a closed fd just fails.
    let r = unsafe { libc::fstat(fd, &mut st) };
    r == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG
}

impl Forward {
    /// Relays for the streams `o` leaves to the caller and that `--output` can't bound by
    /// itself; None when there is nothing to relay.
    pub fn setup(o: &Options) -> Result<Option<(Forward, ProgramEnds)>, nix::Error> {
        let Some(limit) = o.output else {
            return Ok(None);
        };
        let mut relays = Vec::new();
        let mut ends = Vec::new();
        for (fd, file) in [(1, &o.stdout), (2, &o.stderr)] {
            if file.is_some() || is_regular(fd) {
                continue;
            }
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            relays.push(Relay {
                from: r,
                to: fd,
                open: true,
            });
            ends.push((fd, w));
        }
        if relays.is_empty() {
            return Ok(None);
        }
        Ok(Some((
            Forward {
                relays,
                limit,
                written: 0,
                exceeded: false,
            },
            ends,
        )))
    }

    /// The read ends still open, to poll.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.relays
            .iter()
            .filter(|r| r.open)
            .map(|r| r.from.as_fd())
            .collect()
    }

    /// Copy what is readable on the `i`-th open relay; true when the limit was passed.
    pub fn pump(&mut self, i: usize) -> bool {
        let Some(r) = self.relays.iter_mut().filter(|r| r.open).nth(i) else {
            return self.exceeded;
        };
        let mut buf = [0u8; 65536];
        match nix::unistd::read(r.from.as_raw_fd(), &mut buf) {
            Ok(0) => r.open = false,
            Ok(n) => {
                let room = self.limit.saturating_sub(self.written) as usize;
                let out = &buf[..n.min(room)];
                write_all(r.to, out);
                self.written += n as u64;
                if self.written > self.limit {
                    self.exceeded = true;
                    r.open = false;
                }
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(_) => r.open = false,
        }
        self.exceeded
    }

    /// After the program ended: copy what is left (every writer is gone, so this ends).
    pub fn drain(&mut self) {
        while !self.exceeded && self.relays.iter().any(|r| r.open) {
            self.pump(0);
        }
    }
}

fn write_all(fd: RawFd, mut bytes: &[u8]) {
    // SAFETY: the caller's stdout/stderr stay open for the life of husk.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            // The caller closed its end: the rest is dropped, as a pipe would.
            Err(_) => return,
        }
    }
}
