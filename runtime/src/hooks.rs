//! OCI hooks: run each with the container state on stdin, its args/env, and its timeout.
//!
//! Hooks also run inside the container init (createContainer, startContainer), which is
//! single-threaded and must stay so: each hook is a plain fork + execve, the state goes through a
//! pipe written with non-blocking writes while we poll for the hook's exit, and the timeout is a
//! poll deadline on a pidfd (Linux 5.3; older kernels fall back to polling `waitpid`). No threads.
//!
//! Assumes SIGPIPE is ignored in the calling process (Rust binaries do that at startup), so a hook
//! that exits without reading its stdin gives EPIPE, which is not an error (as in runc, whose Go
//! exec ignores EPIPE on stdin).

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{Hook, Hooks, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl HookKind {
    pub const ALL: [HookKind; 6] = [
        HookKind::Prestart,
        HookKind::CreateRuntime,
        HookKind::CreateContainer,
        HookKind::StartContainer,
        HookKind::Poststart,
        HookKind::Poststop,
    ];

    /// The kind's key under `hooks` in config.json.
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        }
    }

    /// The hooks of this kind in `hooks` (empty when absent).
    pub fn select(self, hooks: &Hooks) -> &[Hook] {
        #[allow(deprecated)] // prestart is deprecated in the spec but still honoured, as runc does.
        let list = match self {
            HookKind::Prestart => hooks.prestart(),
            HookKind::CreateRuntime => hooks.create_runtime(),
            HookKind::CreateContainer => hooks.create_container(),
            HookKind::StartContainer => hooks.start_container(),
            HookKind::Poststart => hooks.poststart(),
            HookKind::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or(&[])
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A config error; `field` is the JSON path, e.g. `hooks.prestart[0].timeout`.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{kind} hook {}: {step}", .path.display())]
    Io {
        kind: HookKind,
        path: PathBuf,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{kind} hook {}: exec: {source}", .path.display())]
    Exec {
        kind: HookKind,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{kind} hook {} timed out after {secs} s", .path.display())]
    TimedOut {
        kind: HookKind,
        path: PathBuf,
        secs: i64,
    },
    #[error("{kind} hook {} exited with status {code}", .path.display())]
    Exited {
        kind: HookKind,
        path: PathBuf,
        code: i32,
    },
    #[error("{kind} hook {} killed by signal {signal}", .path.display())]
    Signaled {
        kind: HookKind,
        path: PathBuf,
        signal: Signal,
    },
    #[error("{kind} hook {}: {reason}", .path.display())]
    Failed {
        kind: HookKind,
        path: PathBuf,
        reason: String,
    },
}

/// Check every hook of every kind: absolute path, timeout > 0, no NUL bytes in args or env.
pub fn validate(hooks: &Hooks) -> Result<(), HookError> {
    for kind in HookKind::ALL {
        for (i, hook) in kind.select(hooks).iter().enumerate() {
            Prepared::new(kind, i, hook)?;
        }
    }
    Ok(())
}

/// Run `hooks` in order. For prestart, createRuntime, createContainer and startContainer the
/// first failure stops the rest (and the operation). For poststart and poststop a failure is
/// only a warning (runtime-spec: "the runtime MUST log a warning, but the remaining hooks and
/// lifecycle continue"): every hook runs, each failure is logged, and the first is returned.
pub fn run(kind: HookKind, hooks: &[Hook], state: &State) -> Result<(), HookError> {
    if hooks.is_empty() {
        return Ok(());
    }
    let state = serde_json::to_vec(state).map_err(|e| HookError::Failed {
        kind,
        path: PathBuf::new(),
        reason: format!("serialize state: {e}"),
    })?;
    let warn_only = matches!(kind, HookKind::Poststart | HookKind::Poststop);
    let mut first = None;
    for (i, hook) in hooks.iter().enumerate() {
        let r = Prepared::new(kind, i, hook).and_then(|p| p.run(&state));
        match r {
            Err(e) if !warn_only => return Err(e),
            Err(e) => {
                if first.is_some() {
                    crate::logging::warn(&crate::child::chain(&e));
                } else {
                    first = Some(e);
                }
            }
            Ok(()) => {}
        }
    }
    first.map_or(Ok(()), Err)
}

/// A hook with everything execve needs built before fork, so the child allocates nothing.
struct Prepared<'a> {
    kind: HookKind,
    path: &'a Path,
    timeout: Option<i64>,
    c_path: CString,
    _args: Vec<CString>,
    _env: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

fn cstring(bytes: &[u8], field: impl FnOnce() -> String) -> Result<CString, HookError> {
    CString::new(bytes).map_err(|_| HookError::Invalid {
        field: field(),
        reason: "contains a NUL byte".into(),
    })
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

impl<'a> Prepared<'a> {
    fn new(kind: HookKind, index: usize, hook: &'a Hook) -> Result<Self, HookError> {
        let at = |field: &str| format!("hooks.{kind}[{index}].{field}");
        let path = hook.path().as_path();
        if !path.is_absolute() {
            return Err(HookError::Invalid {
                field: at("path"),
                reason: format!("{} is not an absolute path", path.display()),
            });
        }
        let timeout = hook.timeout();
        if let Some(t) = timeout {
            if t <= 0 {
                return Err(HookError::Invalid {
                    field: at("timeout"),
                    reason: format!("must be greater than zero, found {t}"),
                });
            }
        }
        let c_path = cstring(path.as_os_str().as_bytes(), || at("path"))?;
        let args = match hook.args().as_deref() {
            Some(args) if !args.is_empty() => args
                .iter()
                .enumerate()
                .map(|(i, a)| cstring(a.as_bytes(), || at(&format!("args[{i}]"))))
                .collect::<Result<Vec<_>, _>>()?,
            // Like Go's exec.Cmd (runc): without args, argv[0] is the path.
            _ => vec![c_path.clone()],
        };
        let env = hook
            .env()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .enumerate()
            .map(|(i, e)| cstring(e.as_bytes(), || at(&format!("env[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let argv = null_terminated(&args);
        let envp = null_terminated(&env);
        Ok(Prepared {
            kind,
            path,
            timeout,
            c_path,
            _args: args,
            _env: env,
            argv,
            envp,
        })
    }

    fn io(&self, step: &'static str, source: impl Into<std::io::Error>) -> HookError {
        HookError::Io {
            kind: self.kind,
            path: self.path.to_path_buf(),
            step,
            source: source.into(),
        }
    }

    fn run(&self, state: &[u8]) -> Result<(), HookError> {
        let (stdin_r, stdin_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| self.io("create stdin pipe", e))?;
        let (err_r, err_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| self.io("create exec pipe", e))?;
        let start = Instant::now();

        // SAFETY: the child only makes async-signal-safe calls (signal, sigprocmask, dup2, fcntl,
        // close_range, execve, write, _exit) on memory prepared before the fork, then execs or
        // exits; it never returns into Rust code, so a multi-threaded caller (tests) is fine too.
        let pid = match unsafe { libc::fork() } {
            -1 => return Err(self.io("fork", std::io::Error::last_os_error())),
            0 => self.exec_child(stdin_r.as_raw_fd(), err_w.as_raw_fd()),
            pid => Pid::from_raw(pid),
        };
        drop(stdin_r);
        drop(err_w);
        let child = Child::new(pid);

        // The exec pipe closes on a successful execve; otherwise it carries the errno.
        let mut errno = [0u8; 4];
        match read_full(err_r.as_fd(), &mut errno) {
            Ok(4) => {
                let _ = child.reap();
                return Err(HookError::Exec {
                    kind: self.kind,
                    path: self.path.to_path_buf(),
                    source: std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno)),
                });
            }
            Ok(_) => {}
            Err(e) => {
                child.kill_and_reap();
                return Err(self.io("read exec status", e));
            }
        }
        drop(err_r);

        let deadline = self
            .timeout
            .map(|secs| start + Duration::from_secs(secs.unsigned_abs()));
        match child.feed_and_wait(stdin_w, state, deadline) {
            Ok(Some(status)) => self.check(status),
            Ok(None) => {
                child.kill_and_reap();
                Err(HookError::TimedOut {
                    kind: self.kind,
                    path: self.path.to_path_buf(),
                    secs: self.timeout.unwrap_or_default(),
                })
            }
            Err((step, e)) => {
                child.kill_and_reap();
                Err(self.io(step, e))
            }
        }
    }

    fn check(&self, status: WaitStatus) -> Result<(), HookError> {
        let path = self.path.to_path_buf();
        match status {
            WaitStatus::Exited(_, 0) => Ok(()),
            WaitStatus::Exited(_, code) => Err(HookError::Exited {
                kind: self.kind,
                path,
                code,
            }),
            WaitStatus::Signaled(_, signal, _) => Err(HookError::Signaled {
                kind: self.kind,
                path,
                signal,
            }),
            other => Err(HookError::Failed {
                kind: self.kind,
                path,
                reason: format!("unexpected wait status {other:?}"),
            }),
        }
    }

    /// In the forked child: make the pipe stdin, reset signal state, exec. Never returns.
    fn exec_child(&self, stdin: RawFd, err_pipe: RawFd) -> ! {
        // SAFETY: only async-signal-safe libc calls on pointers into memory that was fully built
        // before fork (`self`'s CStrings and pointer arrays, a stack sigset); `_exit` ends the
        // child without running Rust destructors or atexit handlers that belong to the parent.
        unsafe {
            // A hook starts with default dispositions and nothing blocked, whatever the runtime
            // (or the container init) set up for itself; handlers reset on exec anyway, but
            // ignored signals (SIGPIPE) and the mask would be inherited.
            for sig in 1..libc::SIGRTMAX() {
                libc::signal(sig, libc::SIG_DFL);
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());

            if stdin == 0 {
                // dup2 onto itself keeps O_CLOEXEC; clear it by hand.
                libc::fcntl(0, libc::F_SETFD, 0);
            } else if libc::dup2(stdin, 0) == -1 {
                fail_child(err_pipe);
            }
            // Only stdio goes to the hook: descriptors the runtime holds on purpose without
            // CLOEXEC (preserved fds, the sync socket) must not leak into it.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            libc::execve(self.c_path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
            fail_child(err_pipe)
        }
    }
}

/// Report errno over the exec pipe and exit; async-signal-safe.
fn fail_child(err_pipe: RawFd) -> ! {
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let bytes = errno.to_ne_bytes();
    // SAFETY: write from a stack buffer is async-signal-safe; nothing else runs.
    unsafe { libc::write(err_pipe, bytes.as_ptr().cast(), bytes.len()) };
    crate::sys::exit_now(127)
}

fn read_full(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// A forked, not yet reaped hook process. The pid cannot be reused before we reap it, so
/// `kill` by pid is safe.
struct Child {
    pid: Pid,
    /// None when pidfd_open is unavailable (Linux < 5.3, or seccomp'd); then we poll waitpid.
    pidfd: Option<OwnedFd>,
}

/// How often to check for exit without a pidfd.
const WAIT_POLL: Duration = Duration::from_millis(5);

impl Child {
    fn new(pid: Pid) -> Self {
        #[cfg(test)]
        if tests::NO_PIDFD.with(|c| c.get()) {
            return Child { pid, pidfd: None };
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        let pidfd = (fd >= 0).then(|| {
            // SAFETY: the syscall just returned this fd to us; nothing else owns it.
            unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
        });
        Child { pid, pidfd }
    }

    fn reap(&self) -> nix::Result<WaitStatus> {
        loop {
            match waitpid(self.pid, None) {
                Err(Errno::EINTR) => continue,
                other => return other,
            }
        }
    }

    fn kill_and_reap(&self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = self.reap();
    }

    fn try_reap(&self) -> nix::Result<Option<WaitStatus>> {
        match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => Ok(None),
            Ok(status) => Ok(Some(status)),
            Err(e) => Err(e),
        }
    }

    /// Write `state` to the hook's stdin and wait for it to exit, both bounded by `deadline`.
    /// Returns None when the deadline passes first.
    fn feed_and_wait(
        &self,
        stdin: OwnedFd,
        state: &[u8],
        deadline: Option<Instant>,
    ) -> Result<Option<WaitStatus>, (&'static str, std::io::Error)> {
        // Non-blocking, so a hook that doesn't read a state larger than the pipe buffer can't
        // hang us past the deadline.
        nix::fcntl::fcntl(
            stdin.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
        )
        .map_err(|e| ("set stdin pipe non-blocking", e.into()))?;
        let mut stdin = Some(stdin);
        let mut written = 0;
        loop {
            if let Some(fd) = &stdin {
                match nix::unistd::write(fd, &state[written..]) {
                    Ok(n) => written += n,
                    Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                    // The hook closed its stdin: it doesn't want the state, not an error.
                    Err(Errno::EPIPE) => written = state.len(),
                    Err(e) => return Err(("write state to stdin", e.into())),
                }
                if written == state.len() {
                    stdin = None; // EOF for the hook
                }
            }
            if self.pidfd.is_none() {
                if let Some(status) = self.try_reap().map_err(|e| ("wait", e.into()))? {
                    return Ok(Some(status));
                }
            }

            let remaining = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return Ok(None),
                },
                None => None,
            };
            let wait = match (&self.pidfd, remaining) {
                (Some(_), r) => r,
                (None, Some(r)) => Some(r.min(WAIT_POLL)),
                (None, None) => Some(WAIT_POLL),
            };
            let timeout = match wait {
                // Round up so we never spin on a sub-millisecond remainder.
                Some(d) => PollTimeout::try_from(
                    d.as_millis().saturating_add(1).min(i32::MAX as u128) as i32,
                )
                .unwrap_or(PollTimeout::MAX),
                None => PollTimeout::NONE,
            };
            let mut fds = Vec::with_capacity(2);
            if let Some(pidfd) = &self.pidfd {
                fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
            }
            if let Some(fd) = &stdin {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
            }
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(("poll", e.into())),
            }
            let exited = self.pidfd.is_some()
                && fds[0]
                    .revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP));
            drop(fds);
            if exited {
                return self.reap().map(Some).map_err(|e| ("wait", e.into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::undocumented_unsafe_blocks)]
    use super::*;
    use oci_spec::runtime::{ContainerState, HookBuilder, HooksBuilder, StateBuilder};
    use std::collections::HashMap;

    thread_local! {
        /// Makes this test thread's hooks wait without a pidfd, as on Linux < 5.3.
        pub(super) static NO_PIDFD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[test]
    fn works_without_pidfd() {
        NO_PIDFD.with(|c| c.set(true));
        let dir = TempDir::new("nopidfd");
        let out = dir.file("state.json");
        let st = state(None);
        run(
            HookKind::CreateRuntime,
            &[sh(&format!("cat > {}", out.display()), &[], Some(5))],
            &st,
        )
        .unwrap();
        let got: State = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(got, st);
        let err = run(HookKind::Poststop, &[sh("exit 4", &[], None)], &st).unwrap_err();
        assert!(matches!(err, HookError::Exited { code: 4, .. }), "{err}");
        let t = Instant::now();
        let err = run(
            HookKind::Poststop,
            &[sh("exec sleep 30", &[], Some(1))],
            &st,
        )
        .unwrap_err();
        assert!(matches!(err, HookError::TimedOut { .. }), "{err}");
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "husk-hooks-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn state(annotations: Option<HashMap<String, String>>) -> State {
        let mut b = StateBuilder::default()
            .version("1.3.0")
            .id("hooktest")
            .status(ContainerState::Creating)
            .pid(42)
            .bundle("/tmp/bundle");
        if let Some(a) = annotations {
            b = b.annotations(a);
        }
        b.build().unwrap()
    }

    fn sh(script: &str, env: &[&str], timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".to_string(), "-c".into(), script.into()])
            .env(env.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    #[test]
    fn state_arrives_on_stdin() {
        let dir = TempDir::new("stdin");
        let out = dir.file("state.json");
        let hook = sh(&format!("cat > {}", out.display()), &[], Some(5));
        let st = state(None);
        run(HookKind::CreateRuntime, &[hook], &st).unwrap();
        let got: State = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(got, st);
    }

    #[test]
    fn env_is_exactly_the_hooks() {
        let dir = TempDir::new("env");
        let out = dir.file("environ");
        // /proc/$$/environ is the block execve got, before the shell adds PWD and friends.
        let script = format!("cat /proc/$$/environ > {}", out.display());
        run(
            HookKind::Prestart,
            &[sh(&script, &["A=1", "B=two words"], None)],
            &state(None),
        )
        .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"A=1\0B=two words\0");

        // No env at all: an empty environment, not the runtime's.
        let hook = HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".to_string(), "-c".into(), script])
            .build()
            .unwrap();
        run(HookKind::Prestart, &[hook], &state(None)).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"");
    }

    #[test]
    fn argv0_is_args0_or_path() {
        let dir = TempDir::new("argv0");
        let out = dir.file("argv0");
        let hook = HookBuilder::default()
            .path("/bin/sh")
            .args(vec![
                "custom-name".to_string(),
                "-c".into(),
                format!("echo \"$0\" > {}", out.display()),
            ])
            .build()
            .unwrap();
        run(HookKind::Poststart, &[hook], &state(None)).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "custom-name\n");

        let script = dir.file("hook.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$0\" > {}\n", out.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let hook = HookBuilder::default().path(&script).build().unwrap();
        run(HookKind::Poststart, &[hook], &state(None)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("{}\n", script.display())
        );
    }

    #[test]
    fn timeout_kills_the_hook() {
        let dir = TempDir::new("timeout");
        let pidfile = dir.file("pid");
        let hook = sh(
            &format!("echo $$ > {}; exec sleep 30", pidfile.display()),
            &[],
            Some(1),
        );
        let t = Instant::now();
        let err = run(HookKind::CreateContainer, &[hook], &state(None)).unwrap_err();
        let elapsed = t.elapsed();
        assert!(matches!(err, HookError::TimedOut { secs: 1, .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "createContainer hook /bin/sh timed out after 1 s"
        );
        assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        // Killed and reaped: the pid is gone.
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH));
    }

    #[test]
    fn timeout_while_hook_ignores_large_state() {
        // The state is larger than the pipe buffer and the hook never reads it: the write must
        // not block past the deadline.
        let big: HashMap<String, String> = (0..2000)
            .map(|i| (format!("key{i}"), "x".repeat(200)))
            .collect();
        let hook = sh("exec sleep 30", &[], Some(1));
        let t = Instant::now();
        let err = run(HookKind::StartContainer, &[hook], &state(Some(big))).unwrap_err();
        assert!(matches!(err, HookError::TimedOut { .. }), "{err}");
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn large_state_is_delivered_whole() {
        let dir = TempDir::new("large");
        let out = dir.file("state.json");
        let big: HashMap<String, String> = (0..2000)
            .map(|i| (format!("key{i}"), "y".repeat(200)))
            .collect();
        let st = state(Some(big));
        let hook = sh(
            &format!("sleep 0.2; cat > {}", out.display()),
            &[],
            Some(10),
        );
        run(HookKind::CreateRuntime, &[hook], &st).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.len() > 400_000);
        let got: State = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(got, st);
        // A hook that doesn't read a large state and exits 0 is fine (EPIPE is not an error).
        run(HookKind::CreateRuntime, &[sh("exit 0", &[], None)], &st).unwrap();
    }

    #[test]
    fn failures_are_reported() {
        let err = run(HookKind::Poststop, &[sh("exit 3", &[], None)], &state(None)).unwrap_err();
        assert!(matches!(err, HookError::Exited { code: 3, .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "poststop hook /bin/sh exited with status 3"
        );

        let err = run(
            HookKind::Poststop,
            &[sh("kill -9 $$", &[], None)],
            &state(None),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                HookError::Signaled {
                    signal: Signal::SIGKILL,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "poststop hook /bin/sh killed by signal SIGKILL"
        );

        let missing = HookBuilder::default()
            .path("/nonexistent/hook")
            .build()
            .unwrap();
        let err = run(HookKind::Prestart, &[missing], &state(None)).unwrap_err();
        assert!(matches!(err, HookError::Exec { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("prestart hook /nonexistent/hook: exec: No such file"),
            "{err}"
        );
    }

    #[test]
    fn first_failure_stops_the_rest() {
        let dir = TempDir::new("order");
        let out = dir.file("ran");
        let hooks = [
            sh(&format!("echo 1 >> {}", out.display()), &[], None),
            sh("exit 1", &[], None),
            sh(&format!("echo 3 >> {}", out.display()), &[], None),
        ];
        assert!(run(HookKind::CreateRuntime, &hooks, &state(None)).is_err());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "1\n");
    }

    #[test]
    fn hook_does_not_inherit_extra_fds() {
        let dir = TempDir::new("fds");
        let out = dir.file("fds");
        // A descriptor without CLOEXEC, as a preserved fd would be.
        let leak = unsafe { libc::dup(2) };
        assert!(leak > 2);
        let hook = sh(&format!("ls /proc/$$/fd > {}", out.display()), &[], None);
        let res = run(HookKind::CreateRuntime, &[hook], &state(None));
        unsafe { libc::close(leak) };
        res.unwrap();
        let fds = std::fs::read_to_string(&out).unwrap();
        // 0, 1, 2 and the fd `ls` itself opens on the directory, nothing from us.
        assert!(!fds.lines().any(|l| l == leak.to_string()), "{fds}");
    }

    #[test]
    fn validate_names_the_json_path() {
        let ok = sh("true", &[], Some(1));
        let zero = sh("true", &[], Some(0));
        let relative = HookBuilder::default().path("bin/hook").build().unwrap();
        #[allow(deprecated)]
        let hooks = HooksBuilder::default()
            .prestart(vec![ok.clone(), zero.clone()])
            .build()
            .unwrap();
        let err = validate(&hooks).unwrap_err();
        assert_eq!(
            err.to_string(),
            "hooks.prestart[1].timeout: must be greater than zero, found 0"
        );
        let hooks = HooksBuilder::default()
            .create_runtime(vec![ok.clone()])
            .poststop(vec![ok.clone(), ok.clone(), relative])
            .build()
            .unwrap();
        let err = validate(&hooks).unwrap_err();
        assert_eq!(
            err.to_string(),
            "hooks.poststop[2].path: bin/hook is not an absolute path"
        );
        let negative = sh("true", &[], Some(-5));
        let err = run(HookKind::StartContainer, &[negative], &state(None)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("hooks.startContainer[0].timeout"),
            "{err}"
        );
        let nul = sh("true", &["A=\0"], None);
        let hooks = HooksBuilder::default()
            .create_container(vec![nul])
            .build()
            .unwrap();
        assert_eq!(
            validate(&hooks).unwrap_err().to_string(),
            "hooks.createContainer[0].env[0]: contains a NUL byte"
        );
        let hooks = HooksBuilder::default()
            .create_runtime(vec![ok])
            .build()
            .unwrap();
        validate(&hooks).unwrap();
    }
}
