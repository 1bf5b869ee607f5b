//! OCI seccomp profiles compiled to BPF in the parent before clone, installed by init right before
//! `execve`.
//!
//! [`compile`] is pure and runs while nothing exists yet, so a bad profile fails `husk create` with
//! the JSON path of the culprit. [`install`] runs in the container init (single-threaded, after
//! `no_new_privs` or with CAP_SYS_ADMIN) and only hands the ready program to `seccomp(2)`.
//! With `SCMP_ACT_NOTIFY` it returns the listener fd; [`send_to_listener`] passes it on to the
//! agent at `listenerPath` the way runc does.
//!
//! Why not seccompiler (the crate first chosen): seccompiler 0.5 builds a filter for one target
//! arch, so the x86 and x32 compat ABIs a profile lists stay unfiltered or killed; it has no
//! `SECCOMP_RET_USER_NOTIF`, no filter flags and no listener fd; and its rule semantics differ
//! from libseccomp's (which runc users rely on). Linking libseccomp instead would cost a shared
//! library load per `husk` run and the C dependency. A profile → BPF compiler is small: syscall
//! tables (`tables`, generated from the kernel headers by `gen_tables.py`), the translation with
//! runc's semantics (`translate`), and a code generator (`bpf`).

mod bpf;
mod install;
mod notify;
mod tables;
mod translate;

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;

pub use bpf::Insn;
pub use install::{install, install_raw};
pub use notify::{connect_listener, send_on, send_to_listener};

/// The kernel's BPF_MAXINSNS.
const MAX_INSNS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A profile field husk cannot compile; `path` is its JSON path (`linux.seccomp.…`).
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("compile seccomp filter: {0} BPF instructions, more than the kernel's {MAX_INSNS}")]
    TooLong(usize),
    #[error("install seccomp filter")]
    Install(#[source] std::io::Error),
    #[error("connect to seccomp listener {path:?}")]
    ListenerConnect {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("send seccomp notify fd to listener {path:?}")]
    ListenerSend {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("encode container process state for seccomp listener")]
    ListenerState(#[source] serde_json::Error),
}

/// Where the notify fd goes: `listenerPath` and `listenerMetadata` of the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub path: PathBuf,
    pub metadata: Option<String>,
}

/// A filter ready to install: pure data, made in the parent.
#[derive(Debug, Clone)]
pub struct Compiled {
    program: Vec<Insn>,
    flags: u32,
    listener: Option<Listener>,
}

impl Compiled {
    /// A filter [`compile`] made ahead of time (the sandbox's judge filter, checked against
    /// `compile` by its test): the program and flags it returned, without a listener.
    pub fn ahead(program: &[(u16, u8, u8, u32)], flags: u32) -> Compiled {
        Compiled {
            program: program
                .iter()
                .map(|&(code, jt, jf, k)| Insn { code, jt, jf, k })
                .collect(),
            flags,
            listener: None,
        }
    }

    /// True when a rule uses `SCMP_ACT_NOTIFY`: [`install`] then returns the listener fd.
    pub fn uses_notify(&self) -> bool {
        self.listener.is_some()
    }

    /// The agent to send the notify fd to, when [`Compiled::uses_notify`].
    pub fn listener(&self) -> Option<&Listener> {
        self.listener.as_ref()
    }

    /// The BPF program, for `husk features`-style introspection and tests.
    pub fn program(&self) -> &[Insn] {
        &self.program
    }

    /// `SECCOMP_FILTER_FLAG_*` passed to `seccomp(2)`.
    pub fn flags(&self) -> u32 {
        self.flags
    }
}

/// Translate and compile `linux.seccomp`; errors name the JSON path.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Compiled, SeccompError> {
    let policy = translate::translate(seccomp)?;
    let program = bpf::generate(&policy);
    if program.len() > MAX_INSNS {
        return Err(SeccompError::TooLong(program.len()));
    }
    let listener = policy.uses_notify.then(|| Listener {
        path: seccomp.listener_path().clone().unwrap_or_default(),
        metadata: seccomp
            .listener_metadata()
            .clone()
            .filter(|m| !m.is_empty()),
    });
    Ok(Compiled {
        program,
        flags: policy.flags,
        listener,
    })
}

/// The engine default profile as podman would hand it to the runtime on x86_64.
pub fn engine_default_profile_path() -> &'static Path {
    Path::new("/usr/share/containers/seccomp.json")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;

    use oci_spec::runtime::LinuxSeccomp;
    use serde_json::{json, Value};

    use super::*;

    pub(crate) fn profile(json: Value) -> LinuxSeccomp {
        serde_json::from_value(json).expect("valid OCI seccomp profile")
    }

    /// podman's default capabilities (containers.conf `default_capabilities`).
    pub(crate) const PODMAN_CAPS: &[&str] = &[
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYS_CHROOT",
    ];

    /// The engine profile format (docker/containers-common: archMap, includes/excludes by caps
    /// and arch) → the OCI profile an engine on x86_64 passes to the runtime.
    pub(crate) fn engine_profile(engine: &Value, caps: &[&str]) -> LinuxSeccomp {
        let caps: HashSet<&str> = caps.iter().copied().collect();
        let arches = ["amd64", "x86_64"];
        let cond = |filter: &Value, key: &str| {
            filter
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let mut syscalls = Vec::new();
        for rule in engine["syscalls"].as_array().expect("syscalls") {
            let inc = &rule["includes"];
            let exc = &rule["excludes"];
            let inc_caps = cond(inc, "caps");
            let inc_arches = cond(inc, "arches");
            if !inc_caps
                .iter()
                .all(|c| caps.contains(c.as_str().unwrap_or_default()))
                || (!inc_arches.is_empty()
                    && !inc_arches
                        .iter()
                        .any(|a| arches.contains(&a.as_str().unwrap_or_default())))
                || cond(exc, "caps")
                    .iter()
                    .any(|c| caps.contains(c.as_str().unwrap_or_default()))
                || cond(exc, "arches")
                    .iter()
                    .any(|a| arches.contains(&a.as_str().unwrap_or_default()))
            {
                continue;
            }
            let mut r = json!({"names": rule["names"], "action": rule["action"]});
            if let Some(args) = rule
                .get("args")
                .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
            {
                r["args"] = args.clone();
            }
            if let Some(ret) = rule.get("errnoRet") {
                r["errnoRet"] = ret.clone();
            }
            syscalls.push(r);
        }
        profile(json!({
            "defaultAction": engine["defaultAction"],
            "defaultErrnoRet": engine["defaultErrnoRet"],
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": syscalls,
        }))
    }

    pub(crate) fn engine_default() -> Option<LinuxSeccomp> {
        let text = std::fs::read_to_string(engine_default_profile_path()).ok()?;
        let engine: Value = serde_json::from_str(&text).expect("engine profile is JSON");
        Some(engine_profile(&engine, PODMAN_CAPS))
    }

    #[test]
    fn engine_default_profile_compiles_fast_and_small() {
        let Some(profile) = engine_default() else {
            eprintln!(
                "skip: {:?} missing (apt-get install golang-github-containers-common)",
                engine_default_profile_path()
            );
            return;
        };
        let compiled = compile(&profile).expect("compile");
        let mut times: Vec<std::time::Duration> = (0..200)
            .map(|_| {
                let t = std::time::Instant::now();
                std::hint::black_box(compile(std::hint::black_box(&profile)).expect("compile"));
                t.elapsed()
            })
            .collect();
        times.sort();
        let median = times[times.len() / 2];
        eprintln!(
            "engine default profile: {} BPF instructions, compile median {median:?}",
            compiled.program().len()
        );
        assert!(compiled.program().len() < 1024);
        let limit = if cfg!(debug_assertions) {
            20_000
        } else {
            1_000
        };
        assert!(median.as_micros() <= limit, "median {median:?}");
    }

    #[test]
    fn engine_default_profile_semantics() {
        use translate::{
            AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, RET_ALLOW, RET_ERRNO, X32_SYSCALL_BIT,
        };
        let Some(profile) = engine_default() else {
            return;
        };
        let p = compile(&profile).expect("compile");
        let run = |arch, nr, args| bpf::run(p.program(), arch, nr, args);
        let x64 = AUDIT_ARCH_X86_64;
        assert_eq!(run(x64, 39, [0; 6]), RET_ALLOW, "getpid");
        assert_eq!(run(x64, 323, [0; 6]), RET_ERRNO | 1, "userfaultfd: EPERM");
        assert_eq!(
            run(x64, 248, [0; 6]),
            RET_ERRNO | 38,
            "add_key: default ENOSYS"
        );
        assert_eq!(
            run(x64, 135, [0xffff_ffff, 0, 0, 0, 0, 0]),
            RET_ALLOW,
            "personality(0xffffffff)"
        );
        assert_eq!(
            run(x64, 135, [0x1_0000_0000, 0, 0, 0, 0, 0]),
            RET_ERRNO | 38,
            "personality: high word checked"
        );
        assert_eq!(
            run(x64, 41, [16, 3, 9, 0, 0, 0]),
            RET_ERRNO | 22,
            "socket(AF_NETLINK, NETLINK_AUDIT)"
        );
        assert_eq!(
            run(x64, 41, [1, 1, 0, 0, 0, 0]),
            RET_ALLOW,
            "socket(AF_UNIX)"
        );
        assert_eq!(
            run(x64, 469, [0; 6]),
            RET_ERRNO | 38,
            "above the highest named syscall"
        );
        assert_eq!(
            run(x64, X32_SYSCALL_BIT | 39, [0; 6]),
            RET_ALLOW,
            "x32 getpid"
        );
        assert_eq!(run(AUDIT_ARCH_I386, 20, [0; 6]), RET_ALLOW, "i386 getpid");
        assert_eq!(
            run(AUDIT_ARCH_I386, 102, [1, 0, 0, 0, 0, 0]),
            RET_ALLOW,
            "i386 socketcall"
        );
        assert_eq!(
            run(AUDIT_ARCH_I386, 158, [0; 6]),
            RET_ALLOW,
            "i386 sched_yield"
        );
        assert_eq!(
            run(AUDIT_ARCH_I386, 374, [0; 6]),
            RET_ERRNO | 1,
            "i386 userfaultfd: EPERM"
        );
    }

    /// Hook for `difftest/diff.py` (differential check against libseccomp 2.5 as runc uses
    /// it): compiles the profiles in $HUSK_SECCOMP_IN, writes the programs to $HUSK_SECCOMP_OUT.
    #[test]
    fn dump_programs_for_difftest() {
        let (Ok(inp), Ok(out)) = (
            std::env::var("HUSK_SECCOMP_IN"),
            std::env::var("HUSK_SECCOMP_OUT"),
        ) else {
            return;
        };
        let text = std::fs::read_to_string(inp).expect("read profiles");
        let profiles: Vec<Value> = serde_json::from_str(&text).expect("profiles JSON");
        let res: Vec<Value> = profiles
            .into_iter()
            .map(|p| match compile(&profile(p)) {
                Ok(c) => json!(c
                    .program()
                    .iter()
                    .map(|i| [u32::from(i.code), u32::from(i.jt), u32::from(i.jf), i.k])
                    .collect::<Vec<_>>()),
                Err(e) => json!(e.to_string()),
            })
            .collect();
        std::fs::write(out, serde_json::to_string(&res).expect("encode")).expect("write programs");
    }
}
