//! Detaching the old root after pivot_root without waiting on it.
//!
//! An unmount returns only after an RCU grace period (the kernel's `namespace_unlock`), which
//! on this kind of host — a VM whose inter-processor interrupts are slow — is most of its
//! cost: 0.2-0.3 ms, measured (`perf sched`: `synchronize_rcu_expedited < namespace_unlock <
//! path_umount` in every sandbox run). The old tree leaves the mount namespace before that
//! wait, so a helper does the unmount while the init goes on with its set-up, and
//! [`Detaching::wait`] holds back the container's program until the tree is gone.
//!
//! Gone is read from `/..`: after `pivot_root(".", ".")` the old root is stacked on the new
//! one's root, and `..` at the root crosses into whatever is mounted there (a plain lookup of
//! `/` does not), so `/..` names the old root's mount until it is detached and the new root's
//! after.

use nix::errno::Errno;
#[cfg(test)]
use std::os::fd::AsRawFd;

use crate::sys::{self, Stack};

/// A helper's stack: its body is one system call.
const STACK: usize = 16 * 1024;

/// The old root's detach, begun by [`crate::rootfs::pivot`].
#[must_use = "the container's program must not run before the old root is gone"]
pub struct Detaching {
    /// The helper unmounting it, until reaped; `None` when it was detached in place.
    helper: Option<Helper>,
}

struct Helper {
    pid: i32,
    /// Unmapped once the helper is reaped; else left mapped (the helper may still be on it)
    /// to go with this process's exit or exec.
    stack: std::mem::ManuallyDrop<Stack>,
}

impl Helper {
    fn reaped(mut self) {
        // SAFETY: the helper is reaped: nothing runs on the stack any more; taken once.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.stack) };
    }
}

/// Detach the old root, the process's working directory: on a helper when one can be made
/// (its working directory is a copy of ours: no CLONE_FS), else here.
pub fn start() -> Result<Detaching, Errno> {
    extern "C" fn body(_: *mut libc::c_void) -> libc::c_int {
        // SAFETY: a static NUL-terminated path; umount2 reads only it.
        let r = unsafe {
            sys::raw_syscall4(
                libc::SYS_umount2,
                c".".as_ptr() as usize,
                libc::MNT_DETACH as usize,
                0,
                0,
            )
        };
        // The errno as the exit status: `wait` reports it.
        (-r.min(0)) as libc::c_int
    }
    let helper = Stack::new(STACK).and_then(|mut stack| {
        // SAFETY: `body` makes one raw system call on `stack` with a static argument and
        // returns: it touches no memory of ours. The stack stays mapped until the helper is
        // reaped (`Helper::stack`).
        let pid = unsafe { sys::clone_vm(0, &mut stack, body, std::ptr::null_mut()) }?;
        Ok(Helper {
            pid,
            stack: std::mem::ManuallyDrop::new(stack),
        })
    });
    match helper {
        Ok(h) => Ok(Detaching { helper: Some(h) }),
        Err(_) => {
            nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH)?;
            Ok(Detaching::done())
        }
    }
}

impl Detaching {
    /// Nothing to wait for (no old root was stacked).
    pub fn done() -> Detaching {
        Detaching { helper: None }
    }

    /// Return once the old root is gone from the mount namespace (the helper's unmount may
    /// still be waiting for its grace period), or with the helper's error.
    pub fn wait(&mut self) -> Result<(), Errno> {
        let Some(h) = &self.helper else {
            return Ok(());
        };
        let pid = h.pid;
        while !old_root_gone()? {
            match exit_status(pid, false)? {
                None => nix::sched::sched_yield()?,
                Some(code) => {
                    if let Some(h) = self.helper.take() {
                        h.reaped();
                    }
                    // It returned and the tree is still there (a recheck: it may have gone
                    // between the two looks): its unmount failed.
                    return match code {
                        0 if old_root_gone()? => Ok(()),
                        0 => Err(Errno::EBUSY),
                        e => Err(Errno::from_raw(e)),
                    };
                }
            }
        }
        Ok(())
    }

    /// [`Self::wait`], then wait for the helper to exit and reap it: a process about to exec
    /// must leave no child of its own to the container's program.
    pub fn reap(mut self) -> Result<(), Errno> {
        self.wait()?;
        let Some(h) = self.helper.take() else {
            return Ok(());
        };
        let code = exit_status(h.pid, true)?.unwrap_or(libc::EIO);
        h.reaped();
        match code {
            0 => Ok(()),
            e => Err(Errno::from_raw(e)),
        }
    }
}

/// The helper's exit status (the errno of its unmount) once it has exited, and it reaped;
/// `None` while it runs (only when not `block`ing).
fn exit_status(pid: i32, block: bool) -> Result<Option<i32>, Errno> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let flags = (!block).then_some(WaitPidFlag::WNOHANG);
    loop {
        return match waitpid(nix::unistd::Pid::from_raw(pid), flags) {
            Err(Errno::EINTR) => continue,
            Ok(WaitStatus::Exited(_, c)) => Ok(Some(c)),
            Ok(WaitStatus::StillAlive) => Ok(None),
            Ok(_) => Ok(Some(libc::EIO)),
            Err(e) => Err(e),
        };
    }
}

/// Is `/..` the same mount as `/` (see the module's documentation)?
fn old_root_gone() -> Result<bool, Errno> {
    Ok(mount_id(c"/..")? == mount_id(c"/")?)
}

/// `statx`'s mount id of `path` (not following a last symlink).
fn mount_id(path: &std::ffi::CStr) -> Result<u64, Errno> {
    // SAFETY: statx is plain integers; all-zero is valid and statx overwrites it.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and an out-buffer valid for the call.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            &mut st,
        )
    };
    Errno::result(r)?;
    Ok(st.stx_mnt_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a forked child with a mount namespace of its own: the gate's predicate is false
    /// while the old root is stacked on a new one (a tmpfs) and true once it is detached;
    /// then `pivot` onto a second tmpfs and `reap` leave that one alone. The child's exit
    /// status names the check that failed.
    #[test]
    fn the_gate_sees_the_old_root_until_it_is_detached() {
        if !nix::unistd::geteuid().is_root() {
            println!("SKIP: a mount namespace needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("husk-detach-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let check = |ok: bool, code: i32| {
            if !ok {
                sys::exit_now(code)
            }
        };
        // SAFETY: the child makes system calls only (no lock another thread may hold) and
        // exits; the parent waits for it.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                use nix::mount::{mount, MsFlags};
                let none = None::<&str>;
                let tmpfs = |at: &std::path::Path| {
                    mount(Some("tmpfs"), at, Some("tmpfs"), MsFlags::empty(), none).is_ok()
                };
                check(
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).is_ok(),
                    10,
                );
                let private = MsFlags::MS_PRIVATE | MsFlags::MS_REC;
                check(mount(none, "/", none, private, none).is_ok(), 11);
                check(tmpfs(&dir), 12);
                // By hand, as `pivot` does: stacked, then detached.
                let old = sys::open(
                    "/",
                    nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY,
                    nix::sys::stat::Mode::empty(),
                );
                check(old.is_ok(), 13);
                check(nix::unistd::chdir(&dir).is_ok(), 14);
                check(nix::unistd::pivot_root(".", ".").is_ok(), 15);
                check(old_root_gone() == Ok(false), 16);
                check(
                    old.is_ok_and(|o| nix::unistd::fchdir(o.as_raw_fd()).is_ok()),
                    17,
                );
                check(
                    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH).is_ok(),
                    18,
                );
                check(nix::unistd::chdir("/").is_ok(), 19);
                check(old_root_gone() == Ok(true), 20);
                // And through `pivot`, its helper reaped.
                let next = std::path::Path::new("/next");
                check(
                    nix::unistd::mkdir(next, nix::sys::stat::Mode::S_IRWXU).is_ok(),
                    21,
                );
                check(tmpfs(next), 22);
                let detaching = crate::rootfs::pivot(next, false);
                check(detaching.is_ok_and(|d| d.reap().is_ok()), 23);
                check(old_root_gone() == Ok(true), 24);
                // The first tmpfs is gone: `/next` no longer exists.
                check(!next.exists(), 25);
                sys::exit_now(0)
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                let _ = std::fs::remove_dir(&dir);
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
