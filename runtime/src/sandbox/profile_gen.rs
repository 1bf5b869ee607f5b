//! The judge profile from the engine profile: a pure function of two embedded inputs, run by
//! `build.rs` at build time (its output is what [`super::profile`] embeds) and by the unit
//! tests. Shared by path (`#[path]` in build.rs), so it uses nothing but serde_json; the
//! numbers libc names are written out, and a test checks them against libc.

use serde_json::{json, Value};

/// What a judge blocks beyond the engine profile, with EPERM: keyrings (shared with the host,
/// not namespaced), io_uring (a large attack surface that bypasses seccomp for its operations),
/// tracing and cross-process memory access, every mount and namespace call (the profile allows
/// them because a container without CAP_SYS_ADMIN can't use them, but an unprivileged user
/// namespace would give that capability back), clocks, modules, BPF and perf.
pub const BLOCKED: &[&str] = &[
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "unshare",
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "mount_setattr",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "clock_settime",
    "clock_adjtime",
    "settimeofday",
    "stime",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "syslog",
    "iopl",
    "ioperm",
    "open_by_handle_at",
];

/// Namespace flags of clone(2) (CLONE_NEWNS | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET |
/// NEWCGROUP | NEWTIME): a clone with any of them is refused (by the default action).
pub const CLONE_NS_FLAGS: u64 = 0x7e02_0080;

pub const AF_VSOCK: u64 = 40;
pub const EPERM: i64 = 1;
pub const ENOSYS: i64 = 38;
pub const EAFNOSUPPORT: i64 = 97;

fn list<'a>(filter: &'a Value, key: &str) -> &'a [Value] {
    filter
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn names_amd64(arches: &[Value]) -> bool {
    arches
        .iter()
        .any(|a| matches!(a.as_str(), Some("amd64" | "x86_64")))
}

/// Does an engine rule apply to a process with no capabilities on x86_64? `includes.caps`
/// needs capabilities it lacks; `excludes.caps` names capabilities it doesn't have, so it
/// never excludes.
fn applies(rule: &Value) -> bool {
    let inc = &rule["includes"];
    let exc = &rule["excludes"];
    let inc_arches = list(inc, "arches");
    list(inc, "caps").is_empty()
        && (inc_arches.is_empty() || names_amd64(inc_arches))
        && !names_amd64(list(exc, "arches"))
}

/// The judge profile, as an OCI `linux.seccomp` object, from the engine profile (containers-
/// common's `seccomp.json`) resolved for a process with no capabilities on x86_64 only.
pub fn judge_profile(engine: &Value) -> Value {
    let mut syscalls = vec![
        // First: among conditional rules for one syscall the first match wins.
        json!({"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": EAFNOSUPPORT,
               "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_EQ"}]}),
        json!({"names": BLOCKED, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}),
        // glibc falls back to clone(2) on ENOSYS, where the flags can be checked.
        json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}),
        json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": CLONE_NS_FLAGS, "valueTwo": 0,
                         "op": "SCMP_CMP_MASKED_EQ"}]}),
    ];
    let ours = |n: &str| BLOCKED.contains(&n) || n == "clone" || n == "clone3";
    for rule in engine["syscalls"].as_array().into_iter().flatten() {
        if !applies(rule) {
            continue;
        }
        let names: Vec<&str> = rule["names"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|n| !ours(n))
            .collect();
        if names.is_empty() {
            continue;
        }
        let mut r = json!({"names": names, "action": rule["action"]});
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
    json!({
        "defaultAction": engine.get("defaultAction").cloned().unwrap_or(json!("SCMP_ACT_ERRNO")),
        "defaultErrnoRet": engine.get("defaultErrnoRet").cloned().unwrap_or(json!(ENOSYS)),
        // Only the native ABI: i386 (int 0x80) and x32 calls kill the process, so a filter
        // written for x86_64 numbers can't be bypassed through another syscall table.
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": syscalls,
    })
}
