//! Hands a compiled program to `seccomp(2)` in the container init.

use std::os::fd::{FromRawFd, OwnedFd};

use super::bpf::Insn;
use super::translate::{FLAG_NEW_LISTENER, FLAG_WAIT_KILLABLE_RECV};
use super::{Compiled, SeccompError};

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

// The program is passed to the kernel as `struct sock_filter[]`.
const _: () = assert!(std::mem::size_of::<Insn>() == std::mem::size_of::<libc::sock_filter>());
const _: () = assert!(std::mem::align_of::<Insn>() == std::mem::align_of::<libc::sock_filter>());

/// Install the filter on the calling thread. Returns the user-notification fd when the profile
/// uses `SCMP_ACT_NOTIFY`.
///
/// Needs `no_new_privs` or CAP_SYS_ADMIN (else EACCES). Makes no allocation, so it is safe in a
/// child forked from a multi-threaded process.
pub fn install(filter: &Compiled) -> Result<Option<OwnedFd>, SeccompError> {
    let prog = fprog(filter);
    let mut flags = filter.flags;
    loop {
        // SAFETY: `prog` points at `len` initialised instructions laid out as `sock_filter`
        // (asserted above), alive for the whole call; the kernel copies them and writes nothing.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                libc::c_ulong::from(flags),
                &prog as *const libc::sock_fprog,
            )
        };
        if ret >= 0 {
            if flags & FLAG_NEW_LISTENER == 0 {
                return Ok(None);
            }
            // SAFETY: with NEW_LISTENER the kernel returns a fresh fd that nothing else owns.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as i32) }));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINVAL) && flags & FLAG_WAIT_KILLABLE_RECV != 0 {
            // Kernels before 5.19 don't know the flag; it is a refinement, not a requirement.
            flags &= !FLAG_WAIT_KILLABLE_RECV;
            continue;
        }
        return Err(SeccompError::Install(err));
    }
}

/// The kernel's view of `filter`'s program (valid while `filter` is).
fn fprog(filter: &Compiled) -> libc::sock_fprog {
    libc::sock_fprog {
        // compile() refuses programs longer than 4096 instructions.
        len: filter.program.len() as u16,
        filter: filter
            .program
            .as_ptr()
            .cast::<libc::sock_filter>()
            .cast_mut(),
    }
}

/// [`install`] as one raw system call, which sets no errno: for a process that shares its
/// parent's memory (a batch job's standby init, `sandbox::job_child`). Only a filter without a
/// listener (`Err(-EINVAL)` otherwise). `Err` holds -errno.
pub fn install_raw(filter: &Compiled) -> Result<(), isize> {
    if filter.flags & FLAG_NEW_LISTENER != 0 {
        return Err(-(libc::EINVAL as isize));
    }
    let prog = fprog(filter);
    // SAFETY: as in `install`: `prog` points at the filter's instructions, alive for the call.
    let r = unsafe {
        crate::sys::raw_syscall4(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER as usize,
            filter.flags as usize,
            &prog as *const libc::sock_fprog as usize,
            0,
        )
    };
    crate::sys::raw_done(r)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::undocumented_unsafe_blocks)]

    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use serde_json::json;

    use super::*;
    use crate::seccomp::compile;
    use crate::seccomp::tests::{engine_default, profile};

    #[test]
    fn the_raw_install_refuses_a_filter_with_a_listener() {
        // Refused before the system call: nothing is installed on the test process.
        let allow = [(0x06, 0, 0, 0x7fff_0000)];
        let f = Compiled::ahead(&allow, FLAG_NEW_LISTENER);
        assert_eq!(install_raw(&f), Err(-(libc::EINVAL as isize)));
    }

    /// How a forked child ended.
    #[derive(Debug, PartialEq, Eq)]
    enum End {
        Exit(i32),
        Signal(i32),
    }

    const TRAPPED: i32 = 42;

    extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SYS_SECCOMP: the signal comes from a seccomp TRAP.
        let code = unsafe { (*info).si_code };
        unsafe { libc::_exit(if code == 1 { TRAPPED } else { 43 }) }
    }

    /// Forks; the child installs `filter` and exits with what `probe` returns. The test binary
    /// is multi-threaded, so the child only makes raw syscalls (async-signal-safe) and _exits.
    fn in_child(filter: &Compiled, probe: impl FnOnce() -> i32) -> End {
        in_child_with(Some(filter), probe)
    }

    fn in_child_with(filter: Option<&Compiled>, probe: impl FnOnce() -> i32) -> End {
        match unsafe { libc::fork() } {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                let code = unsafe {
                    let no_core = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                    let mut sa: libc::sigaction = std::mem::zeroed();
                    sa.sa_sigaction = on_sigsys as *const () as usize;
                    sa.sa_flags = libc::SA_SIGINFO;
                    libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut());
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                        100
                    } else if filter.is_some_and(|f| install(f).is_err()) {
                        101
                    } else {
                        probe()
                    }
                };
                crate::sys::exit_now(code)
            }
            pid => {
                let mut status = 0;
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                if libc::WIFSIGNALED(status) {
                    End::Signal(libc::WTERMSIG(status))
                } else {
                    End::Exit(libc::WEXITSTATUS(status))
                }
            }
        }
    }

    /// errno of a raw syscall, 0 on success.
    fn errno_of(nr: libc::c_long, args: [libc::c_long; 3]) -> i32 {
        let ret = unsafe { libc::syscall(nr, args[0], args[1], args[2]) };
        if ret == -1 {
            unsafe { *libc::__errno_location() }
        } else {
            0
        }
    }

    fn filter(default: &str, rules: serde_json::Value) -> Compiled {
        compile(&profile(
            json!({"defaultAction": default, "syscalls": rules}),
        ))
        .expect("compile")
    }

    #[test]
    fn errno_default_errno_and_allow() {
        let f = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["exit_group", "exit", "getpid", "getppid"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 33}
            ]
        })))
        .expect("compile");
        let end = in_child(&f, || {
            if errno_of(libc::SYS_getpid, [0; 3]) != 0 {
                return 1;
            }
            if errno_of(libc::SYS_getuid, [0; 3]) != libc::EDOM {
                return 2;
            }
            if errno_of(libc::SYS_getgid, [0; 3]) != libc::ENOSYS {
                return 3;
            }
            0
        });
        assert_eq!(end, End::Exit(0));
    }

    #[test]
    fn a_process_whose_filter_refuses_exit_still_ends() {
        // exit_group and exit both fail; the process must not spin (musl's _exit retries
        // exit forever). The alarm ends a spinning child (SIGALRM) so the test fails, not hangs.
        let f = filter(
            "SCMP_ACT_ALLOW",
            json!([{"names": ["exit_group", "exit"], "action": "SCMP_ACT_ERRNO"}]),
        );
        let end = in_child(&f, || {
            unsafe { libc::alarm(5) };
            7
        });
        assert_eq!(end, End::Signal(libc::SIGILL));
    }

    #[test]
    fn errno_defaults_to_eperm() {
        let f = filter(
            "SCMP_ACT_ALLOW",
            json!([{"names": ["getuid"], "action": "SCMP_ACT_ERRNO"}]),
        );
        assert_eq!(
            in_child(&f, || errno_of(libc::SYS_getuid, [0; 3])),
            End::Exit(libc::EPERM)
        );
    }

    #[test]
    fn kill_actions_end_with_sigsys() {
        for action in [
            "SCMP_ACT_KILL",
            "SCMP_ACT_KILL_THREAD",
            "SCMP_ACT_KILL_PROCESS",
        ] {
            let f = filter(
                "SCMP_ACT_ALLOW",
                json!([{"names": ["getppid"], "action": action}]),
            );
            let end = in_child(&f, || {
                errno_of(libc::SYS_getppid, [0; 3]);
                0
            });
            assert_eq!(end, End::Signal(libc::SIGSYS), "{action}");
        }
    }

    #[test]
    fn trap_delivers_a_catchable_sigsys() {
        let f = filter(
            "SCMP_ACT_ALLOW",
            json!([{"names": ["getppid"], "action": "SCMP_ACT_TRAP"}]),
        );
        let end = in_child(&f, || {
            errno_of(libc::SYS_getppid, [0; 3]);
            0
        });
        assert_eq!(end, End::Exit(TRAPPED));
    }

    #[test]
    fn log_and_trace_let_the_call_through_or_fail_with_enosys() {
        let f = filter(
            "SCMP_ACT_ALLOW",
            json!([{"names": ["getppid"], "action": "SCMP_ACT_LOG"}, {"names": ["getuid"], "action": "SCMP_ACT_TRACE"}]),
        );
        // Without a tracer the kernel fails a TRACE'd syscall with ENOSYS.
        let end = in_child(&f, || {
            errno_of(libc::SYS_getppid, [0; 3]) * 100 + errno_of(libc::SYS_getuid, [0; 3])
        });
        assert_eq!(end, End::Exit(libc::ENOSYS));
    }

    #[test]
    fn masked_eq_and_several_conditions() {
        // dup3(oldfd, newfd, flags): EXDEV when flags has O_CLOEXEC and newfd >= 100, EPERM when
        // oldfd == 9077 (a second rule), else the kernel answers (EBADF on these bogus fds).
        let f = filter(
            "SCMP_ACT_ALLOW",
            json!([
                {"names": ["dup3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18, "args": [
                    {"index": 2, "value": libc::O_CLOEXEC, "valueTwo": libc::O_CLOEXEC, "op": "SCMP_CMP_MASKED_EQ"},
                    {"index": 1, "value": 100, "op": "SCMP_CMP_GE"}]},
                {"names": ["dup3"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 9077, "op": "SCMP_CMP_EQ"}]}
            ]),
        );
        let end = in_child(&f, || {
            let cloexec = libc::O_CLOEXEC as libc::c_long;
            let cases = [
                ([9000, 100, cloexec], libc::EXDEV),
                (
                    [9000, 100, cloexec | libc::O_RDWR as libc::c_long],
                    libc::EXDEV,
                ),
                ([9000, 99, cloexec], libc::EBADF),
                ([9000, 100, 0], libc::EBADF),
                ([9077, 5, 0], libc::EPERM),
                ([9077, 100, cloexec], libc::EXDEV),
                // 64-bit argument: the high word must match too.
                ([9077 | (1 << 32), 5, 0], libc::EBADF),
            ];
            for (i, (args, want)) in cases.into_iter().enumerate() {
                if errno_of(libc::SYS_dup3, args) != want {
                    return 10 + i as i32;
                }
            }
            0
        });
        assert_eq!(end, End::Exit(0));
    }

    #[test]
    fn engine_default_profile_in_a_child() {
        let Some(p) = engine_default() else { return };
        let f = compile(&p).expect("compile");
        let end = in_child(&f, || {
            if errno_of(libc::SYS_getpid, [0; 3]) != 0 {
                return 1;
            }
            if errno_of(libc::SYS_userfaultfd, [0; 3]) != libc::EPERM {
                return 2;
            }
            // Not in the profile: the default, ENOSYS (this profile version allows keyctl).
            if errno_of(libc::SYS_add_key, [0; 3]) != libc::ENOSYS {
                return 3;
            }
            let keyctl = errno_of(libc::SYS_keyctl, [0, -3, 0]);
            if keyctl == libc::EPERM || keyctl == libc::ENOSYS {
                return 4;
            }
            if errno_of(
                libc::SYS_socket,
                [
                    libc::AF_NETLINK as _,
                    libc::SOCK_RAW as _,
                    libc::NETLINK_AUDIT as _,
                ],
            ) != libc::EINVAL
            {
                return 5;
            }
            if errno_of(libc::SYS_personality, [0x1234, 0, 0]) != libc::ENOSYS {
                return 6;
            }
            0
        });
        assert_eq!(end, End::Exit(0));
    }

    const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
    const NOTIF_SEND: libc::c_ulong = 0xc018_2101;

    #[repr(C)]
    struct Notif {
        id: u64,
        pid: u32,
        flags: u32,
        nr: i32,
        arch: u32,
        ip: u64,
        args: [u64; 6],
    }

    #[repr(C)]
    struct NotifResp {
        id: u64,
        val: i64,
        error: i32,
        flags: u32,
    }

    /// NOTIFY: the child gets a listener fd from install() and reports its number over a pipe;
    /// the parent takes it with pidfd_getfd (as runc does), receives the child's mkdir and
    /// answers EXDEV on its behalf.
    #[test]
    fn notify_hands_the_syscall_to_the_listener() {
        let f = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/husk-test-agent.sock",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        })))
        .expect("compile");
        assert!(f.uses_notify());
        let mut pipe = [0; 2];
        assert_eq!(
            unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) },
            0
        );
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = unsafe {
                libc::close(pipe[0]);
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                match install(&f) {
                    Ok(Some(fd)) => {
                        let n: i32 = fd.as_raw_fd();
                        libc::write(pipe[1], (&n as *const i32).cast(), 4);
                        std::mem::forget(fd);
                        let path = c"/nonexistent-husk-notify-test";
                        if libc::mkdir(path.as_ptr(), 0o755) == -1
                            && *libc::__errno_location() == libc::EXDEV
                        {
                            0
                        } else {
                            1
                        }
                    }
                    _ => 2,
                }
            };
            unsafe { libc::_exit(code) }
        }
        unsafe { libc::close(pipe[1]) };
        let mut n: i32 = -1;
        let got = unsafe { libc::read(pipe[0], (&mut n as *mut i32).cast(), 4) };
        unsafe { libc::close(pipe[0]) };
        let listener = (got == 4).then(|| {
            let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
            assert!(
                pidfd >= 0,
                "pidfd_open: {}",
                std::io::Error::last_os_error()
            );
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, n, 0) } as i32;
            unsafe { libc::close(pidfd) };
            assert!(fd >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
            unsafe { OwnedFd::from_raw_fd(fd) }
        });
        if let Some(listener) = &listener {
            let mut req: Notif = unsafe { std::mem::zeroed() };
            assert_eq!(
                unsafe { libc::ioctl(listener.as_raw_fd(), NOTIF_RECV as _, &mut req) },
                0
            );
            assert_eq!((req.nr, req.pid), (libc::SYS_mkdir as i32, pid as u32));
            let resp = NotifResp {
                id: req.id,
                val: 0,
                error: -libc::EXDEV,
                flags: 0,
            };
            assert_eq!(
                unsafe { libc::ioctl(listener.as_raw_fd(), NOTIF_SEND as _, &resp) },
                0
            );
        }
        let mut status = 0;
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(listener.is_some(), "child sent no listener fd");
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "status {status:#x}"
        );
    }

    #[test]
    fn flags_reach_the_kernel() {
        let f = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [{"names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3}]
        })))
        .expect("compile");
        assert_eq!(
            in_child(&f, || errno_of(libc::SYS_getuid, [0; 3])),
            End::Exit(3)
        );
    }

    /// i386 syscalls through `int 0x80` from this 64-bit process: the kernel reports
    /// AUDIT_ARCH_I386 and i386 numbers, so the compat part of the filter decides.
    #[test]
    fn i386_abi_is_filtered() {
        fn int80(nr: u32) -> i32 {
            let mut ret: i64 = nr as i64;
            unsafe { std::arch::asm!("int 0x80", inout("rax") ret, options(nostack)) };
            ret as i32
        }
        let works = in_child_with(None, || i32::from(int80(20) != unsafe { libc::getpid() }));
        if works != End::Exit(0) {
            eprintln!("skip: no IA32 emulation here ({works:?})");
            return;
        }
        let with_x86 = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5}]
        })))
        .expect("compile");
        // i386 getpid is 20 (x86_64 20 is writev); i386 getppid is 64.
        let end = in_child(&with_x86, || {
            if int80(20) != -libc::EIO {
                return 1;
            }
            if int80(64) <= 0 {
                return 2;
            }
            0
        });
        assert_eq!(end, End::Exit(0));
        let native_only = filter("SCMP_ACT_ALLOW", json!([]));
        assert_eq!(
            in_child(&native_only, || int80(20)),
            End::Signal(libc::SIGSYS),
            "unlisted arch: bad-arch kill"
        );
    }
}
