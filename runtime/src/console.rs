//! Terminals: `--console-socket` connection in the parent, pty creation and master fd passing in
//! the container.
//!
//! The protocol is runc's (libcontainer/utils.SendFd): one `sendmsg` on the console socket whose
//! payload is the master's file name ("/dev/ptmx", shorter than 4096 bytes) and whose control data
//! is a single SCM_RIGHTS message with exactly one fd. containerd (go-runc's `ReceivePtyMaster`),
//! podman/conmon and runc's `recvtty` all check that shape.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::socket::{
    self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use nix::sys::stat::Mode;

/// The payload runc sends with the master fd: the name containerd/console gives the file.
pub const MASTER_NAME: &str = "/dev/ptmx";

/// Longest name a receiver accepts (runc's `utils.MaxNameLen`, exclusive).
const MAX_NAME_LEN: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("connect to console socket {path:?}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A failed step of pty setup, e.g. "open /dev/ptmx" or "send pty master over console socket".
    #[error("{step}")]
    Step {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

fn step(step: &'static str) -> impl FnOnce(Errno) -> ConsoleError {
    move |e| ConsoleError::Step {
        step,
        source: e.into(),
    }
}

/// Connect to the console socket given with `--console-socket` (done by the parent before clone,
/// so the path is resolved in the caller's mount namespace).
///
/// Paths longer than `sun_path` (108 bytes; containerd's state paths can get there) are reached
/// through an O_PATH handle on the parent directory, `/proc/self/fd/N/<name>`.
pub fn connect(path: &Path) -> Result<OwnedFd, ConsoleError> {
    let err = |source: std::io::Error| ConsoleError::Connect {
        path: path.to_path_buf(),
        source,
    };
    let sock = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| err(e.into()))?;
    match UnixAddr::new(path) {
        Ok(addr) => socket::connect(sock.as_raw_fd(), &addr).map_err(|e| err(e.into()))?,
        Err(Errno::ENAMETOOLONG) => {
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                return Err(err(Errno::ENAMETOOLONG.into()));
            };
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            let dirfd = nix::fcntl::open(
                dir,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| err(e.into()))?;
            // SAFETY: open just returned this fd; we are its only owner.
            let dirfd = unsafe { OwnedFd::from_raw_fd(dirfd) };
            let mut short = PathBuf::from(format!("/proc/self/fd/{}", dirfd.as_raw_fd()));
            short.push(name);
            let addr = UnixAddr::new(&short).map_err(|e| err(e.into()))?;
            socket::connect(sock.as_raw_fd(), &addr).map_err(|e| err(e.into()))?;
        }
        Err(e) => return Err(err(e.into())),
    }
    Ok(sock)
}

/// A new pty in the container: the slave (O_RDWR|O_NOCTTY|O_CLOEXEC) and its path.
#[derive(Debug)]
pub struct Pty {
    pub slave: OwnedFd,
    /// `/dev/pts/N`, e.g. for bind-mounting onto `/dev/console`. Prefer mounting from
    /// `/proc/self/fd/<slave>` over this path, which a process in the container could swap
    /// (CVE-2025-52565).
    pub path: PathBuf,
}

/// In the container (after `/dev/pts` is mounted and the root pivoted): open a new pty from
/// `/dev/ptmx`, send its master over `socket` with SCM_RIGHTS, set the window size, and return
/// the slave, which the caller makes its stdio and controlling terminal ([`make_controlling`]).
pub fn setup(
    socket: OwnedFd,
    size: Option<&oci_spec::runtime::Box>,
) -> Result<OwnedFd, ConsoleError> {
    setup_pty(socket, size).map(|pty| pty.slave)
}

/// [`setup`], also returning the slave's path. The master is closed here once sent: only the
/// receiver holds it, so the container sees EOF/SIGHUP semantics as with runc.
pub fn setup_pty(
    socket: OwnedFd,
    size: Option<&oci_spec::runtime::Box>,
) -> Result<Pty, ConsoleError> {
    let (master, slave, path) = open_pty()?;
    if let Some(size) = size {
        // runc leaves the kernel's 0x0 when either dimension is unset.
        if size.height() != 0 && size.width() != 0 {
            set_size(master.as_fd(), size.height(), size.width())?;
        }
    }
    send_fd(socket.as_fd(), MASTER_NAME, master.as_fd())
        .map_err(step("send pty master over console socket"))?;
    Ok(Pty { slave, path })
}

/// Open `/dev/ptmx` and its slave; returns (master, slave, slave path).
pub fn open_pty() -> Result<(OwnedFd, OwnedFd, PathBuf), ConsoleError> {
    let master = nix::fcntl::open(
        MASTER_NAME,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(step("open /dev/ptmx"))?;
    // SAFETY: open just returned this fd; we are its only owner.
    let master = unsafe { OwnedFd::from_raw_fd(master) };

    // grantpt is a no-op with devpts (the kernel sets owner and mode from the mount options);
    // unlockpt is TIOCSPTLCK with 0.
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer, which is valid for the call.
    Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })
        .map_err(step("unlock pty"))?;
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int to the pointer, which is valid for the call.
    Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) })
        .map_err(step("get pty number"))?;
    let path = PathBuf::from(format!("/dev/pts/{number}"));

    // TIOCGPTPEER (Linux 4.13) opens the slave from the master itself, so no path lookup that a
    // container process could redirect; fall back to the path on older kernels.
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes the open flags by value and returns a new fd or -1.
    let peer = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    let slave = if peer >= 0 {
        peer
    } else {
        nix::fcntl::open(
            &path,
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(step("open pty slave"))?
    };
    // SAFETY: the ioctl or open just returned this fd; we are its only owner.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    Ok((master, slave, path))
}

/// Set a terminal's window size (TIOCSWINSZ); dimensions beyond u16 are clamped.
pub fn set_size(tty: BorrowedFd<'_>, height: u64, width: u64) -> Result<(), ConsoleError> {
    let ws = libc::winsize {
        ws_row: u16::try_from(height).unwrap_or(u16::MAX),
        ws_col: u16::try_from(width).unwrap_or(u16::MAX),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, valid for the call.
    Errno::result(unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &ws) })
        .map_err(step("set console size"))?;
    Ok(())
}

/// Send `fd` with `name` as payload, exactly as runc's `utils.SendFd`.
pub fn send_fd(socket: BorrowedFd<'_>, name: &str, fd: BorrowedFd<'_>) -> Result<(), Errno> {
    if name.len() >= MAX_NAME_LEN {
        return Err(Errno::ENAMETOOLONG);
    }
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    loop {
        match socket::sendmsg::<()>(socket.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None) {
            Err(Errno::EINTR) => continue,
            Ok(_) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Receive one fd and its name from a console socket, with the checks of runc's `utils.RecvFd`
/// (name shorter than 4096 bytes, exactly one SCM_RIGHTS message carrying one fd). For `husk run`
/// with a terminal and no `--console-socket`, and for tests.
pub fn receive(socket: BorrowedFd<'_>) -> Result<(OwnedFd, String), ConsoleError> {
    let mut name = vec![0u8; MAX_NAME_LEN];
    let mut cmsg_buf = nix::cmsg_space!([RawFd; 1]);
    let (n, fds, truncated) = loop {
        let mut iov = [IoSliceMut::new(&mut name)];
        match socket::recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_buf),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(step("receive pty master")(e)),
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg.cmsgs().map_err(step("receive pty master"))? {
                    if let ControlMessageOwned::ScmRights(r) = c {
                        fds.extend(r);
                    }
                }
                break (msg.bytes, fds, msg.flags.contains(MsgFlags::MSG_CTRUNC));
            }
        }
    };
    // Own every received fd first so none leaks on the error paths below.
    let mut owned: Vec<OwnedFd> = fds
        .into_iter()
        // SAFETY: SCM_RIGHTS installed these fds in our table for us alone.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if truncated || owned.len() != 1 {
        return Err(ConsoleError::Other(format!(
            "receive pty master: expected one fd, got {}{}",
            owned.len(),
            if truncated { " (truncated)" } else { "" }
        )));
    }
    if n >= MAX_NAME_LEN {
        return Err(ConsoleError::Other(format!(
            "receive pty master: name too long ({n} bytes)"
        )));
    }
    name.truncate(n);
    let name = String::from_utf8_lossy(&name).into_owned();
    Ok((owned.remove(0), name))
}

/// Make `slave` the controlling terminal and stdio of the calling process: a new session when the
/// process doesn't lead one already, TIOCSCTTY, then dup2 onto 0, 1 and 2. The original fd stays
/// O_CLOEXEC, so only 0-2 survive the exec.
pub fn make_controlling(slave: &OwnedFd) -> Result<(), ConsoleError> {
    let me = nix::unistd::getpid();
    let leads_session = nix::unistd::getsid(None).is_ok_and(|sid| sid == me);
    if !leads_session {
        nix::unistd::setsid().map_err(step("create session for the terminal"))?;
    }
    // SAFETY: TIOCSCTTY takes an int argument by value (0: don't steal from another session).
    Errno::result(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) })
        .map_err(step("set controlling terminal"))?;
    for target in 0..=2 {
        if slave.as_raw_fd() == target {
            // dup2 onto itself would keep O_CLOEXEC: clear it so the fd survives exec.
            nix::fcntl::fcntl(
                target,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )
            .map_err(step("dup pty onto stdio"))?;
            continue;
        }
        loop {
            match nix::unistd::dup2(slave.as_raw_fd(), target) {
                Err(Errno::EINTR) | Err(Errno::EBUSY) => continue,
                Ok(_) => break,
                Err(e) => return Err(step("dup pty onto stdio")(e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::undocumented_unsafe_blocks)]
    use super::*;
    use oci_spec::runtime::BoxBuilder;
    use std::io::{Read, Write};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixListener;

    use crate::testutil::TempDir;

    fn winsize(fd: RawFd) -> (u16, u16) {
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) }, 0);
        (ws.ws_row, ws.ws_col)
    }

    fn round_trip(dir: &Path) {
        let sock_path = dir.join("console.sock");
        let listener = UnixListener::bind(&sock_path).unwrap();
        let sock = connect(&sock_path).unwrap();
        let (peer, _) = listener.accept().unwrap();

        let size = BoxBuilder::default()
            .height(24u64)
            .width(80u64)
            .build()
            .unwrap();
        let slave = setup(sock, Some(&size)).unwrap();
        let (master, name) = receive(peer.as_fd()).unwrap();
        assert_eq!(name, "/dev/ptmx");
        assert_eq!(winsize(slave.as_raw_fd()), (24, 80));

        let mut master = std::fs::File::from(master);
        let mut slave = std::fs::File::from(slave);
        // Raw-ish check through the line discipline: a full line goes master -> slave.
        master.write_all(b"hello\n").unwrap();
        let mut buf = [0u8; 64];
        let n = slave.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello\n");
        // And output from the container side comes back on the master (ONLCR adds \r).
        slave.write_all(b"out\n").unwrap();
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("out\r\n") {
            let n = master.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        // The echo of "hello" comes first, then our output.
        let text = String::from_utf8_lossy(&got);
        assert!(text.ends_with("out\r\n"), "{text:?}");
    }

    #[test]
    fn master_reaches_the_socket_and_talks_to_the_slave() {
        let dir = TempDir::new("rt");
        round_trip(&dir.0);
    }

    #[test]
    fn connect_handles_paths_longer_than_sun_path() {
        let dir = TempDir::new("long");
        let mut deep = dir.0.clone();
        while deep.as_os_str().len() < 150 {
            deep.push("a-rather-long-directory-name");
        }
        std::fs::create_dir_all(&deep).unwrap();
        assert!(deep.join("console.sock").as_os_str().as_bytes().len() > 108);
        // bind with the same /proc/self/fd trick, since std refuses the long path too.
        let dirfd = std::fs::File::open(&deep).unwrap();
        let short = format!("/proc/self/fd/{}/console.sock", dirfd.as_raw_fd());
        let listener = UnixListener::bind(&short).unwrap();
        let sock = connect(&deep.join("console.sock")).unwrap();
        let (peer, _) = listener.accept().unwrap();
        drop(sock);
        let mut buf = [0u8; 1];
        assert_eq!((&peer).read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn connect_error_names_the_path() {
        let err = connect(Path::new("/nonexistent/console.sock")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "connect to console socket \"/nonexistent/console.sock\""
        );
    }

    #[test]
    fn receive_rejects_a_message_without_fd() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        (&a).write_all(b"/dev/ptmx").unwrap();
        assert!(receive(b.as_fd()).is_err());
    }

    #[test]
    fn make_controlling_in_a_child() {
        let (master, slave, _path) = open_pty().unwrap();
        // SAFETY (test): the child makes only raw syscalls through nix (no allocation) and
        // leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = match make_controlling(&slave) {
                Ok(()) => {
                    let me = unsafe { libc::getpid() };
                    let sid_ok = unsafe { libc::tcgetsid(0) } == me;
                    let ttys = (0..=2).all(|fd| unsafe { libc::isatty(fd) } == 1);
                    // fds 0-2 must survive exec: no CLOEXEC.
                    let inherit = (0..=2).all(|fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } == 0);
                    if sid_ok && ttys && inherit {
                        0
                    } else {
                        2
                    }
                }
                Err(_) => 1,
            };
            unsafe { libc::_exit(code) };
        }
        drop(slave);
        let mut status = 0;
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 0);
        drop(master);
    }
}
