//! `run`: create without the start barrier, then (unless detached) forward signals to the init,
//! relay its terminal, wait for it, and delete it. The exit status is the container's: its
//! exit code, or 128+N when signal N killed it.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{create, delete, ContainerError, CreateOptions, Status};

pub fn run(mut opts: CreateOptions, detach: bool, keep: bool) -> Result<i32, ContainerError> {
    let sys = |step: &str| {
        let step = step.to_string();
        move |source| ContainerError::Sys { step, source }
    };
    opts.start_barrier = detach;
    // The init may be a grandchild (forked into its pid namespace): adopt it to wait for it.
    if !detach {
        nix::sys::prctl::set_child_subreaper(true).map_err(sys("become child subreaper"))?;
    }
    // Signals are taken through a signalfd: block them before the init exists so none is lost
    // between its birth and the loop. The init restores an empty mask before exec.
    let mask = forwardable();
    let old = {
        let mut old = SigSet::empty();
        signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old))
            .map_err(sys("block signals"))?;
        old
    };
    let console = if !detach && opts.console_socket.is_none() {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(sys("create console socket"))?;
        opts.console_fd = Some(theirs);
        Some(ours)
    } else {
        None
    };
    let (root, id) = (opts.root.clone(), opts.id.clone());
    let created = create(opts)?;
    let terminal = created
        .state
        .config
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if detach {
        drop(created);
        super::start(&root, &id)?;
        let _ = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        return Ok(0);
    }
    super::start::poststart(&created.state, Status::Running);
    let master = match (terminal, console) {
        (true, Some(sock)) => Some(crate::console::receive(sock.as_fd())?.0),
        _ => None,
    };
    let pid = created.pid;
    drop(created.dir);
    let code = wait_exit(pid, &mask, master.as_ref());
    let _ = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    let code = code?;
    // A program that could not be executed: the init said why before it exited.
    // The exit status stays the program's (126/127, as a shell's); the reason goes where
    // errors go.
    if let Some(f) = created.chan.pending_error() {
        crate::logging::fatal(&f.message);
    }
    if !keep {
        delete(&root, &id, true)?;
    }
    Ok(code)
}

/// Signals 1-64. Not `SigSet::all()`: that is `sigfillset`, which on musl leaves out 32-34 (the
/// C library's own), but to the kernel and to a container they are ordinary real-time signals,
/// and 34 is the `SIGRTMIN` of glibc and Go.
fn every_signal() -> SigSet {
    // SAFETY: sigset_t is plain integers, so all-zero is valid; the kernel reads the first
    // _NSIG / 8 = 8 bytes, which are set to all ones (bit n-1 is signal n).
    unsafe {
        let mut raw: libc::sigset_t = std::mem::zeroed();
        std::ptr::write_bytes(&mut raw as *mut libc::sigset_t as *mut u8, 0xff, 8);
        SigSet::from_sigset_t_unchecked(raw)
    }
}

/// Every signal a caller may send that makes sense to pass on (not SIGKILL/SIGSTOP, which
/// can't be caught, nor the synchronous fault signals).
pub(crate) fn forwardable() -> SigSet {
    let mut set = every_signal();
    for s in [
        Signal::SIGKILL,
        Signal::SIGSTOP,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
    ] {
        set.remove(s);
    }
    set
}

/// Forward signals to `pid` until it exits; reap adopted orphans on the way. With a terminal,
/// copy stdin to it and its output to stdout.
pub fn wait_exit(pid: i32, mask: &SigSet, master: Option<&OwnedFd>) -> Result<i32, ContainerError> {
    let sfd = SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC).map_err(|source| {
        ContainerError::Sys {
            step: "create signalfd".into(),
            source,
        }
    })?;
    let _raw = master.map(|m| RawTerminal::enter(m.as_fd()));
    let stdin = std::io::stdin();
    let mut stdin_open = master.is_some();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if let Some(code) = reap(pid) {
            if let Some(m) = master {
                drain(m, &mut buf);
            }
            return Ok(code);
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = master {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(source) => {
                return Err(ContainerError::Sys {
                    step: "poll".into(),
                    source,
                })
            }
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            if let Ok(Some(info)) = sfd.read_signal() {
                let sig = info.ssi_signo as i32;
                if sig == libc::SIGWINCH {
                    if let Some(m) = master {
                        copy_winsize(m.as_raw_fd());
                    }
                } else if sig != libc::SIGCHLD {
                    if let Ok(s) = Signal::try_from(sig) {
                        let _ = signal::kill(Pid::from_raw(pid), s);
                    }
                }
            }
        }
        if let Some(m) = master {
            if ready.get(1) == Some(&true) {
                match nix::unistd::read(m.as_raw_fd(), &mut buf) {
                    Ok(n) if n > 0 => {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&buf[..n]);
                        let _ = out.flush();
                    }
                    // EIO: the last process holding the slave exited; its exit status follows.
                    _ => {}
                }
            }
            if ready.get(2) == Some(&true) {
                match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                    Ok(n) if n > 0 => {
                        let _ = nix::unistd::write(m, &buf[..n]);
                    }
                    _ => stdin_open = false,
                }
            }
        }
    }
}

fn drain(m: &OwnedFd, buf: &mut [u8]) {
    let mut out = std::io::stdout().lock();
    loop {
        let mut fds = [PollFd::new(m.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
            break;
        }
        match nix::unistd::read(m.as_raw_fd(), buf) {
            Ok(n) if n > 0 => {
                let _ = out.write_all(&buf[..n]);
            }
            _ => break,
        }
    }
    let _ = out.flush();
}

/// Reap whatever exited; the init's status when it was among them.
fn reap(pid: i32) -> Option<i32> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return Some(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                return Some(128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

fn copy_winsize(master: impl AsRawFd) {
    let mut ws: libc::winsize = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read and write one winsize struct we own.
    unsafe {
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// The caller's terminal in raw mode while it relays the container's, restored on drop.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enter(master: BorrowedFd) -> Self {
        use nix::sys::termios;
        let stdin = std::io::stdin();
        let Ok(orig) = termios::tcgetattr(&stdin) else {
            return Self(None);
        };
        copy_winsize(master);
        let mut raw = orig.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw);
        Self(Some(orig))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_real_time_signal_is_forwarded_but_kill_stop_and_faults_are_not() {
        let set = forwardable();
        let raw: &libc::sigset_t = set.as_ref();
        // SAFETY: sigset_t is at least 8 bytes on Linux; the first 8 hold signals 1-64.
        let bits = unsafe { std::ptr::read_unaligned(raw as *const libc::sigset_t as *const u64) };
        let has = |sig: i32| bits & (1u64 << (sig - 1)) != 0;
        // 32-34 too: musl's sigfillset leaves them out; glibc's and Go's SIGRTMIN is 34.
        for sig in [
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGUSR1,
            32,
            33,
            34,
            35,
            64,
        ] {
            assert!(has(sig), "signal {sig} is not forwarded");
        }
        for sig in [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
        ] {
            assert!(!has(sig), "signal {sig} is forwarded");
        }
    }
}
