//! The receiving end of `--console-socket`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The receiving end of `--console-socket`: the runtime connects and sends the pty master.
pub struct ConsoleSocket {
    listener: std::os::unix::net::UnixListener,
    pub path: PathBuf,
}

impl ConsoleSocket {
    pub fn bind(path: PathBuf) -> ConsoleSocket {
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind console socket");
        listener
            .set_nonblocking(true)
            .expect("nonblocking console socket");
        ConsoleSocket { listener, path }
    }

    pub fn path_str(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Accepts one connection and takes the fd it passes with SCM_RIGHTS; None on timeout.
    pub fn recv_master(&self, timeout: Duration) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
                Err(e) => panic!("accept on the console socket: {e}"),
            }
        };
        stream.set_nonblocking(false).expect("blocking stream");
        stream
            .set_read_timeout(Some(timeout))
            .expect("read timeout");
        let mut name = [0u8; 4096];
        let mut iov = libc::iovec {
            iov_base: name.as_mut_ptr().cast(),
            iov_len: name.len(),
        };
        let mut cbuf = [0u64; 64]; // u64 for cmsghdr alignment; far more than one fd needs
                                   // SAFETY: zeroed msghdr is valid; the pointers set below outlive the recvmsg call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        // SAFETY: msg points at live buffers of the stated sizes.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        assert!(
            n >= 0,
            "recvmsg on the console socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR checks msg_controllen.
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        assert!(!cmsg.is_null(), "the console socket message carried no fd");
        // SAFETY: cmsg is non-null and inside cbuf.
        let (level, ty) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
        assert!(
            level == libc::SOL_SOCKET && ty == libc::SCM_RIGHTS,
            "not SCM_RIGHTS"
        );
        // SAFETY: an SCM_RIGHTS payload holds at least one int; read_unaligned copes with alignment.
        let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>()) };
        // SAFETY: the kernel just installed fd in this process; nothing else owns it.
        Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    }
}

/// Reads a pty master until the other side is closed (EIO) or `timeout` passes.
pub fn read_pty(fd: &std::os::fd::OwnedFd, timeout: Duration) -> String {
    use std::os::fd::AsRawFd;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
        if r <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: buf is writable for its length; fd is open.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break; // EIO: every slave fd is closed
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    String::from_utf8_lossy(&out).into_owned()
}
