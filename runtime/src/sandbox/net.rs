//! Loopback in a new network namespace: created down, brought up from the parent (setns into
//! the child's namespace, `SIOCSIFFLAGS` on `lo`, setns back) so the init needs no change.

use std::os::fd::AsFd;

use nix::sched::CloneFlags;

fn open_ns(path: &str) -> Result<std::os::fd::OwnedFd, nix::Error> {
    crate::sys::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

/// Set `lo` up in the calling process's network namespace. Raw system calls only (no
/// allocation, errno untouched), so a namespace holder sharing husk's memory may run it too
/// ([`super::holder::NetNs`]).
pub fn loopback_up() -> Result<(), nix::Error> {
    let sock = raw(
        libc::SYS_socket,
        libc::AF_INET as usize,
        (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as usize,
        0,
    )?;
    // SAFETY: ifreq is a plain C struct (a name and a union of integers); all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name[0] = b'l' as libc::c_char;
    req.ifr_name[1] = b'o' as libc::c_char;
    let at = &mut req as *mut libc::ifreq as usize;
    let r = raw(libc::SYS_ioctl, sock, libc::SIOCGIFFLAGS as usize, at).and_then(|_| {
        // SAFETY: ifru_flags is the member SIOCGIFFLAGS just filled in.
        unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        raw(libc::SYS_ioctl, sock, libc::SIOCSIFFLAGS as usize, at)
    });
    let _ = raw(libc::SYS_close, sock, 0, 0);
    r.map(drop)
}

/// A raw system call's result: the value, or the errno (without touching the thread's errno,
/// which a holder shares with husk).
pub(super) fn raw(nr: libc::c_long, a: usize, b: usize, c: usize) -> Result<usize, nix::Error> {
    // SAFETY: every caller passes arguments valid for its system call `nr` (pointers to its
    // own live locals).
    let r = unsafe { crate::sys::raw_syscall4(nr, a, b, c, 0) };
    if r < 0 {
        Err(nix::Error::from_raw(-r as i32))
    } else {
        Ok(r as usize)
    }
}

/// Set `lo` up in the network namespace of process `pid`.
pub fn loopback_up_in(pid: i32) -> Result<(), nix::Error> {
    let own = open_ns("/proc/self/ns/net")?;
    let target = open_ns(&format!("/proc/{pid}/ns/net"))?;
    nix::sched::setns(target.as_fd(), CloneFlags::CLONE_NEWNET)?;
    let r = loopback_up();
    // Back home before anything else happens in this process; failing that is fatal for it.
    nix::sched::setns(own.as_fd(), CloneFlags::CLONE_NEWNET)?;
    r
}

/// Set `lo` up in the network namespace of process `pid`, which a user namespace of the
/// caller's owns (a non-root caller: only inside that user namespace may it configure the
/// network). A forked helper does it, as setns into a user namespace is one-way.
pub fn loopback_up_in_userns(pid: i32) -> Result<(), nix::Error> {
    let user = open_ns(&format!("/proc/{pid}/ns/user"))?;
    let net = open_ns(&format!("/proc/{pid}/ns/net"))?;
    // SAFETY: the runtime is single-threaded (DESIGN §2), so the child may run anything; it
    // ends in _exit and never returns into the caller's frames.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            let r = nix::sched::setns(user.as_fd(), CloneFlags::CLONE_NEWUSER)
                .and_then(|()| nix::sched::setns(net.as_fd(), CloneFlags::CLONE_NEWNET))
                .and_then(|()| loopback_up());
            let code = match r {
                Ok(()) => 0,
                Err(e) => e as i32,
            };
            crate::sys::exit_now(code)
        }
        nix::unistd::ForkResult::Parent { child } => loop {
            match nix::sys::wait::waitpid(child, None) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e),
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => return Ok(()),
                Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => {
                    return Err(nix::Error::from_raw(code))
                }
                Ok(_) => return Err(nix::Error::ECHILD),
            }
        },
    }
}
