//! The raw system calls nix does not wrap (or wraps in a way the create path can't use). Every
//! `unsafe` of the create path that isn't in `process::spawn` or `seccomp` lives here.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;

mod cpu;
mod dir;
pub use cpu::{cpu_count, run_beside_caller};
pub use dir::{entry_path, list_dir, DirEntry, Kind};

/// `clone(2)` without a new stack: the child continues on a copy of the caller's stack, like
/// `fork`, but with namespace flags. Returns the child's pid in the parent and 0 in the child.
///
/// # Safety
/// The caller must be single-threaded (the child gets only the calling thread, so locks held by
/// other threads would stay locked forever in it).
pub unsafe fn clone_fork(flags: libc::c_int) -> Result<libc::pid_t, Errno> {
    // SAFETY: a null stack makes the kernel reuse the caller's stack copy-on-write, exactly as
    // fork does; the remaining pointer arguments are unused without CLONE_*TID/SETTLS flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0usize,
        )
    };
    Errno::result(ret).map(|p| p as libc::pid_t)
}

/// `fork(2)` for the single-threaded runtime.
pub fn fork() -> Result<libc::pid_t, Errno> {
    // SAFETY: husk never starts threads in the runtime library (DESIGN §2), so the child has a
    // consistent copy of every lock and allocator state.
    unsafe { clone_fork(0) }
}

/// `openat2(2)` with `how.resolve` flags, e.g. `RESOLVE_IN_ROOT` to resolve a path the way the
/// container would see it, whatever symlinks it plants.
pub fn openat2(
    dirfd: RawFd,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> Result<OwnedFd, Errno> {
    let c = cstr(path)?;
    let mut how: libc::open_how = open_how_zeroed();
    how.flags = flags as u64;
    how.mode = if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
        mode as u64
    } else {
        0
    };
    how.resolve = resolve;
    loop {
        // SAFETY: `c` is a valid C string and `how` a properly sized open_how for this call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        match Errno::result(fd) {
            // SAFETY: the kernel returned a new descriptor that nothing else owns.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            // openat2 returns EAGAIN when a concurrent rename raced the RESOLVE_IN_ROOT walk.
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn open_how_zeroed() -> libc::open_how {
    // SAFETY: open_how is a plain C struct of integers; all-zero is its documented default.
    unsafe { std::mem::zeroed() }
}

/// Mark every descriptor from `first` up close-on-exec (`close_range(2)` with CLOSE_RANGE_CLOEXEC).
pub fn cloexec_from(first: u32) -> Result<(), Errno> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes flags of this process's descriptors.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    Errno::result(r).map(drop)
}

/// `open_tree(2)`: a detached copy of the mount at `path` (with `OPEN_TREE_CLONE`), to be
/// changed with [`mount_setattr`] and attached with [`move_mount`](move_mount_fd).
pub fn open_tree(dirfd: RawFd, path: &Path, flags: u32) -> Result<OwnedFd, Errno> {
    let c = cstr(path)?;
    // SAFETY: valid C string; the call returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, c.as_ptr(), flags) };
    // SAFETY: a non-negative return is a new descriptor we own.
    Errno::result(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `mount_setattr(2)`, used for idmapped mounts and recursive mount flags (`rro`, `rnosuid`, ...).
pub fn mount_setattr(
    dirfd: RawFd,
    path: &Path,
    flags: u32,
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: Option<RawFd>,
) -> Result<(), Errno> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let c = cstr(path)?;
    let attr = MountAttr {
        attr_set,
        attr_clr,
        propagation,
        userns_fd: userns_fd.map(|f| f as u64).unwrap_or(0),
    };
    // SAFETY: `attr` matches the kernel's struct mount_attr (v0, 32 bytes) and outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            c.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r).map(drop)
}

/// `move_mount(2)` of a detached tree (`from_fd`, empty path) onto `to_fd` (empty path).
pub fn move_mount_fd(from_fd: &OwnedFd, to_fd: &OwnedFd) -> Result<(), Errno> {
    const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
    let empty = c"";
    // SAFETY: both descriptors are valid for the call and the paths are empty C strings.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from_fd.as_raw_fd(),
            empty.as_ptr(),
            to_fd.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(r).map(drop)
}

/// `/proc/self/fd/<n>`: the path through which mount(2) and friends reach an fd's file without
/// resolving any path in the (untrusted) rootfs again.
pub fn fd_path(fd: &impl AsRawFd) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `realpath(3)` of `path`, and whether it is a directory: the kernel's name for the file
/// `path` opens (`/proc/self/fd`). Not `std::fs::canonicalize`: musl's `realpath` returns a
/// string from musl's own malloc, which maps a page for it and unmaps it when freed (a TLB
/// shootdown of each CPU with husk's memory loaded; see [`list_dir`]).
pub fn canonicalize(path: &Path) -> std::io::Result<(std::path::PathBuf, bool)> {
    use nix::fcntl::OFlag;
    let fd = open(
        path,
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let dir = nix::sys::stat::fstat(fd.as_raw_fd())?.st_mode & libc::S_IFMT == libc::S_IFDIR;
    match std::fs::read_link(fd_path(&fd)) {
        Ok(p) if p.is_absolute() => Ok((p, dir)),
        // No /proc: the C library's way.
        _ => Ok((std::fs::canonicalize(path)?, dir)),
    }
}

pub fn cstr(path: &Path) -> Result<CString, Errno> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// `_exit(2)`: leave the child without running the parent's atexit handlers or destructors.
///
/// By system calls of its own, then a fault: a container's seccomp filter may refuse both
/// `exit_group` and `exit` (the fuzz suite's random profiles do), and musl's `_exit` then
/// retries `exit` forever, a process spinning at full speed where it should be gone. glibc's
/// executes `hlt` after them; an undefined instruction (SIGILL, which no filter stops and
/// which nothing here handles) ends it the same way.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: exit_group and exit take an integer; if they return, the fault ends the process
    // without touching memory.
    unsafe {
        raw_syscall4(libc::SYS_exit_group, code as usize, 0, 0, 0);
        raw_syscall4(libc::SYS_exit, code as usize, 0, 0, 0);
        #[cfg(target_arch = "x86_64")]
        std::arch::asm!("ud2", options(noreturn));
        #[cfg(target_arch = "aarch64")]
        std::arch::asm!("udf #0", options(noreturn));
    }
}

/// End this process with SIGABRT, as `abort(3)` would, but by system calls alone. musl's
/// `abort` signals the thread id it cached at the process's start, and a child made by a raw
/// `clone` (every fork of the runtime's) inherits its parent's: a panic there (the release
/// build aborts on panic) would kill the parent and leave the child to crash. The default
/// action is restored and the signal unblocked first; `_exit(134)` should it still return.
pub fn abort_self() -> ! {
    // SAFETY: SIG_DFL installs no handler; the rest are system calls on integers.
    unsafe {
        libc::signal(libc::SIGABRT, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGABRT);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        let pid = raw_syscall4(libc::SYS_getpid, 0, 0, 0, 0);
        let tid = raw_syscall4(libc::SYS_gettid, 0, 0, 0, 0);
        raw_syscall4(
            libc::SYS_tgkill,
            pid as usize,
            tid as usize,
            libc::SIGABRT as usize,
            0,
        );
    }
    exit_now(134)
}

/// `open(2)` returning an owned descriptor (nix 0.29's `open` hands back a raw one).
pub fn open<P: ?Sized + nix::NixPath>(
    path: &P,
    flags: nix::fcntl::OFlag,
    mode: nix::sys::stat::Mode,
) -> Result<OwnedFd, Errno> {
    let fd = nix::fcntl::open(path, flags, mode)?;
    // SAFETY: open just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(2)` returning an owned descriptor.
pub fn openat<P: ?Sized + nix::NixPath>(
    dirfd: RawFd,
    path: &P,
    flags: nix::fcntl::OFlag,
    mode: nix::sys::stat::Mode,
) -> Result<OwnedFd, Errno> {
    let fd = nix::fcntl::openat(Some(dirfd), path, flags, mode)?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `clone3(2)` without a new stack (fork-like, see [`clone_fork`]), optionally straight into the
/// cgroup v2 directory `cgroup` (`CLONE_INTO_CGROUP`).
///
/// # Safety
/// As [`clone_fork`]: the caller must be single-threaded.
pub unsafe fn clone3_fork(flags: u64, cgroup: Option<RawFd>) -> Result<libc::pid_t, Errno> {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let args = CloneArgs {
        flags: flags
            | if cgroup.is_some() {
                CLONE_INTO_CGROUP
            } else {
                0
            },
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.map(|fd| fd as u64).unwrap_or(0),
        ..Default::default()
    };
    // SAFETY: `args` is a valid clone_args (v2 layout, its size passed along); without a stack
    // the child continues on a copy-on-write copy of ours, as with fork.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    Errno::result(ret).map(|p| p as libc::pid_t)
}

/// A procfs file whole (mountinfo, uid_map), read with room for it up front: procfs reports
/// size 0, and `std::fs::read_to_string` then grows its buffer from 32 bytes, a read per
/// doubling (nine for a short mountinfo, each a walk of the mount table). The kernel writes
/// these files; their size is the mount table's or the id map's.
pub fn read_proc(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::with_capacity(16 << 10);
    std::fs::File::open(path)?.read_to_string(&mut text)?;
    Ok(text)
}

/// True when husk runs without real root: a non-zero euid, or root of a user namespace other
/// than the initial one (rootless podman runs its runtime so). As runc's rootless detection.
pub fn rootless() -> bool {
    !nix::unistd::geteuid().is_root() || in_user_namespace()
}

/// `readlink /proc/self/ns/user` in the initial user namespace.
const INITIAL_USER_NS: &str = "user:[4026531837]";

/// True in a user namespace other than the initial one, which maps the whole id range.
pub fn in_user_namespace() -> bool {
    // The initial user namespace has a fixed inode (the kernel's PROC_USER_INIT_INO): one
    // readlink answers the common case, for an open, a read and a close of uid_map (the init
    // of every container and sandbox run asks, and husk's parent once more).
    if std::fs::read_link("/proc/self/ns/user").is_ok_and(|l| l.as_os_str() == INITIAL_USER_NS) {
        return false;
    }
    // Elsewhere runc's rule: a namespace mapping the whole range counts as the initial one.
    read_proc("/proc/self/uid_map").is_ok_and(|m| {
        let f: Vec<&str> = m.split_whitespace().collect();
        f != ["0", "0", "4294967295"]
    })
}

/// A child's own stack: `size` bytes below a guard page (an overflow faults instead of
/// writing over the memory it shares with its parent), mapped once and reused.
pub struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

// SAFETY: a Stack owns its private mapping outright; moving the owner to another thread
// moves nothing the mapping's users share.
unsafe impl Send for Stack {}

impl Stack {
    pub fn new(size: usize) -> Result<Stack, Errno> {
        let page = 4096;
        let len = size.div_ceil(page) * page + page;
        // SAFETY: an anonymous private mapping at an address the kernel picks; no memory of
        // ours is referenced.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let stack = Stack { base, len };
        // SAFETY: the lowest page of the mapping just made (stacks grow down onto it).
        Errno::result(unsafe { libc::mprotect(base, page, libc::PROT_NONE) })?;
        Ok(stack)
    }

    /// The usable part (above the guard page), for a `clone` that takes a slice.
    pub fn slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping's pages above the guard are readable and writable and owned by
        // this struct for as long as the borrow lasts.
        unsafe { std::slice::from_raw_parts_mut(self.base.cast::<u8>().add(4096), self.len - 4096) }
    }

    /// The initial stack pointer: the top, 16-byte aligned (the mapping is page aligned).
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping this struct owns.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// `clone(2)` of a child that shares this process's memory (`CLONE_VM`, plus `flags`) and runs
/// `entry(arg)` on `stack`; its return value is the child's exit status. Nothing is allocated
/// here: nix's `clone` frees a box in the parent after the call, which a child running on the
/// same heap could be using at that moment.
///
/// # Safety
/// Until the child has stopped using memory other than `stack` and `arg` (exec, exit, or a
/// handshake of the caller's), the caller must not run code that uses that memory either: the
/// allocator and thread-local state (errno) are shared, with no lock between the two. `stack`
/// must not be in use by another child, and `arg` must outlive the child's use of it.
pub unsafe fn clone_vm(
    flags: libc::c_int,
    stack: &mut Stack,
    entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> Result<libc::pid_t, Errno> {
    // SAFETY: the stack is a mapping of our own that no one else runs on (the caller's
    // contract); the rest is the caller's contract above.
    let pid = unsafe {
        libc::clone(
            entry,
            stack.top(),
            flags | libc::CLONE_VM | libc::SIGCHLD,
            arg,
        )
    };
    Errno::result(pid)
}

/// A system call that returns `-errno` rather than setting errno (thread-local state that a
/// child sharing the caller's memory must not write: see [`clone_vm`]).
///
/// # Safety
/// As for the system call `nr` with these arguments.
pub unsafe fn raw_syscall4(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
    // SAFETY: the caller's contract; a fifth argument is ignored by a call that takes four.
    unsafe { raw_syscall5(nr, a, b, c, d, 0) }
}

/// A raw system call's result as `Ok` or `Err(-errno)`, for calls whose success value means
/// nothing.
pub fn raw_done(r: isize) -> Result<(), isize> {
    if r < 0 {
        Err(r)
    } else {
        Ok(())
    }
}

/// [`raw_syscall4`] with a fifth argument (`mount`).
///
/// # Safety
/// As for the system call `nr` with these arguments.
pub unsafe fn raw_syscall5(
    nr: libc::c_long,
    a: usize,
    b: usize,
    c: usize,
    d: usize,
    e: usize,
) -> isize {
    let ret: isize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the x86_64 Linux system call convention; rcx and r11 are clobbered by the
    // instruction itself. Memory the call reads or writes is the caller's contract.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            in("r8") e,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the aarch64 Linux system call convention (number in x8, result in x0).
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a as isize => ret,
            in("x1") b,
            in("x2") c,
            in("x3") d,
            in("x4") e,
            options(nostack),
        );
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        // Elsewhere through libc, which does set errno: the zygote's job init (the one user
        // that shares memory) then shares errno with the zygote during its wait.
        // SAFETY: the caller's contract.
        let r = unsafe { libc::syscall(nr, a, b, c, d, e) };
        ret = if r < 0 {
            -(Errno::last_raw() as isize)
        } else {
            r as isize
        };
    }
    ret
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path's constant names the namespace uid_map's rule calls the initial one.
    #[test]
    fn the_initial_user_namespace_inode_agrees_with_uid_map() {
        let link = std::fs::read_link("/proc/self/ns/user").expect("readlink /proc/self/ns/user");
        let map = read_proc("/proc/self/uid_map").expect("read uid_map");
        let full = map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"];
        if link.as_os_str() == INITIAL_USER_NS {
            assert!(full, "the initial user namespace maps {map:?}");
            assert!(!in_user_namespace());
        } else {
            assert_eq!(in_user_namespace(), !full, "{link:?}: {map:?}");
        }
    }

    #[test]
    fn abort_self_ends_the_child_of_a_raw_clone_and_not_its_parent() {
        // A raw clone, as the runtime forks: the child's C library still has the parent's
        // thread id cached (musl's abort would signal the parent, this test's process).
        match fork().unwrap() {
            0 => abort_self(),
            child => {
                let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None).unwrap();
                assert!(
                    matches!(
                        st,
                        nix::sys::wait::WaitStatus::Signaled(
                            _,
                            nix::sys::signal::Signal::SIGABRT,
                            _
                        )
                    ),
                    "{st:?}"
                );
            }
        }
    }
}
