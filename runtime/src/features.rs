//! `husk features`: what this runtime supports, in the JSON shape of the runtime-spec
//! features document (as `runc features` prints it).
//!
//! Static parts are what husk's code implements; the capabilities, seccomp filter flags and
//! idmapped-mount support are read from the running kernel, since a feature the kernel lacks
//! cannot be offered whatever the code says.

use serde_json::{json, Value};

/// The oldest runtime-spec release whose configs husk accepts.
pub const OCI_VERSION_MIN: &str = "1.0.0";

/// The six hook kinds, by their config.json names.
pub const HOOKS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Every `mounts[].options` entry that husk's mount code gives a meaning (besides filesystem data
/// such as `mode=755`, which is passed to the filesystem): runc's list, sorted. runc 1.1 also
/// listed `acl`/`noacl`, which it mapped to MS_POSIXACL although the kernel ignores that flag
/// from userspace; runc dropped them and so does husk. `idmap`/`ridmap` are runtime-spec 1.2's
/// idmapped-mount options.
pub const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "idmap",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "ridmap",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

/// All eight namespace types, as config.json names them, sorted as runc prints them.
pub const NAMESPACES: [&str; 8] = [
    "cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts",
];

/// Seccomp actions husk's filter compiler implements.
pub const SECCOMP_ACTIONS: [&str; 9] = [
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

/// Seccomp argument comparison operators.
pub const SECCOMP_OPERATORS: [&str; 7] = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// The architectures a filter can cover on this build: the native one and the compat ABIs the
/// kernel runs on it (a filter is compiled per audit arch; others cannot reach this kernel).
#[cfg(target_arch = "x86_64")]
pub const SECCOMP_ARCHS: &[&str] = &["SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"];
#[cfg(target_arch = "aarch64")]
pub const SECCOMP_ARCHS: &[&str] = &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"];
#[cfg(target_arch = "riscv64")]
pub const SECCOMP_ARCHS: &[&str] = &["SCMP_ARCH_RISCV64"];
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
pub const SECCOMP_ARCHS: &[&str] = &[];

/// Seccomp filter flags husk knows, with the kernel flag value each stands for.
pub const SECCOMP_FLAGS: [(&str, libc::c_ulong); 4] = [
    ("SECCOMP_FILTER_FLAG_TSYNC", 1),
    ("SECCOMP_FILTER_FLAG_LOG", 2),
    ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", 4),
    ("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", 32),
];

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_ulong = 8;

/// The features document.
pub fn features() -> Value {
    let supported_flags: Vec<&str> = SECCOMP_FLAGS
        .iter()
        .filter(|(_, flag)| seccomp_flag_supported(*flag))
        .map(|(name, _)| *name)
        .collect();
    let mut doc = json!({
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": crate::spec::default::OCI_VERSION,
        "hooks": HOOKS,
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": NAMESPACES,
            "capabilities": kernel_capabilities(),
            "cgroup": {
                "v1": true,
                "v2": true,
                // Through systemd's D-Bus API where systemd runs (--systemd-cgroup); the user
                // instance (rootless delegation) is not implemented.
                "systemd": true,
                "systemdUser": false,
                "rdma": true
            },
            "seccomp": {
                "enabled": true,
                "actions": SECCOMP_ACTIONS,
                "operators": SECCOMP_OPERATORS,
                "archs": SECCOMP_ARCHS,
                "knownFlags": SECCOMP_FLAGS.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
                "supportedFlags": supported_flags
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": idmap_supported()}},
            // As runc 1.3: whether the code is there, not whether the host has such devices.
            "netDevices": {"enabled": true}
        },
        "annotations": {
            "io.husk.version": env!("CARGO_PKG_VERSION")
        }
    });
    // Checkpoint/restore, as runc's "org.opencontainers.runc.checkpoint.enabled": what this
    // host's CRIU (found as `husk checkpoint` finds it, without --criu) can do here.
    let ck = crate::checkpoint::feature_summary(None);
    let flag = |b: bool| if b { "true" } else { "false" };
    let a = &mut doc["annotations"];
    let enabled = ck["enabled"].as_bool().unwrap_or(false);
    a["io.husk.checkpoint.enabled"] = json!(flag(enabled));
    if enabled {
        a["io.husk.checkpoint.criu"] = json!(format!(
            "{} {}",
            ck["criu"].as_str().unwrap_or(""),
            ck["criuVersion"].as_str().unwrap_or("")
        ));
        a["io.husk.checkpoint.preDump"] = json!(flag(ck["preDump"].as_bool().unwrap_or(false)));
    } else {
        a["io.husk.checkpoint.reason"] = ck["reason"].clone();
    }
    doc
}

/// The capabilities this kernel has and husk can name, in kernel order.
pub fn kernel_capabilities() -> Vec<String> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok());
    let mut all: Vec<caps::Capability> = caps::all()
        .into_iter()
        .filter(|c| last.is_none_or(|last| c.index() <= last))
        .collect();
    all.sort_by_key(|c| c.index());
    all.iter().map(|c| c.to_string()).collect()
}

/// Whether the kernel accepts seccomp filter flag `flag`: with a NULL program it fails with
/// EFAULT after validating the flags, or EINVAL for a flag it doesn't know; nothing is installed.
fn seccomp_flag_supported(flag: libc::c_ulong) -> bool {
    // The kernel only accepts WAIT_KILLABLE_RECV together with NEW_LISTENER.
    let flags = if flag == 32 {
        flag | SECCOMP_FILTER_FLAG_NEW_LISTENER
    } else {
        flag
    };
    // SAFETY: a NULL filter pointer is never dereferenced by userspace; the kernel's copy from
    // it fails with EFAULT, so no filter is installed whatever the flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::null::<libc::c_void>(),
        )
    };
    ret == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

/// Whether `mount_setattr(2)` (and with it MOUNT_ATTR_IDMAP, both Linux 5.12) exists.
fn idmap_supported() -> bool {
    // SAFETY: an invalid fd and a NULL attr with size 0 make the call fail before it touches
    // anything; only ENOSYS tells us the syscall is missing.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            std::ptr::null::<libc::c_char>(),
            0,
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    !(ret == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Features;

    #[test]
    fn deserializes_as_oci_features() {
        let f: Features = serde_json::from_value(features()).unwrap();
        assert_eq!(f.oci_version_min(), "1.0.0");
        assert_eq!(f.oci_version_max(), "1.3.0");
        assert_eq!(f.hooks().as_ref().unwrap().len(), 6);
        let linux = f.linux().as_ref().unwrap();
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 8);
        let seccomp = linux.seccomp().as_ref().unwrap();
        assert_eq!(seccomp.actions().as_ref().unwrap().len(), 9);
        assert_eq!(seccomp.operators().as_ref().unwrap().len(), 7);
        assert!(!seccomp.archs().as_ref().unwrap().is_empty());
        assert_eq!(linux.apparmor().as_ref().unwrap().enabled(), &Some(false));
        assert_eq!(
            linux
                .mount_extensions()
                .as_ref()
                .unwrap()
                .idmap()
                .as_ref()
                .unwrap()
                .enabled(),
            &Some(true)
        );
        assert_eq!(linux.net_devices().as_ref().unwrap().enabled(), &Some(true));
    }

    #[test]
    fn capabilities_are_the_kernels_and_valid_names() {
        let caps = kernel_capabilities();
        let last: usize = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // caps 0.5 names capabilities up to CAP_CHECKPOINT_RESTORE (40).
        assert_eq!(caps.len(), last.min(40) + 1);
        assert_eq!(caps[0], "CAP_CHOWN");
        for c in &caps {
            let _: oci_spec::runtime::Capability =
                serde_json::from_value(Value::from(c.as_str())).unwrap();
        }
    }

    #[test]
    fn mount_options_sorted_unique_and_cover_runcs() {
        let doc = features();
        let opts: Vec<&str> = doc["mountOptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut sorted = opts.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(opts, sorted);
        // What runc 1.1.5 prints, minus acl/noacl (see MOUNT_OPTIONS).
        let Ok(out) = std::process::Command::new("runc").arg("features").output() else {
            eprintln!("skip runc comparison: runc not runnable");
            return;
        };
        let runc: Value = serde_json::from_slice(&out.stdout).unwrap();
        for o in runc["mountOptions"].as_array().unwrap() {
            let o = o.as_str().unwrap();
            assert!(
                o == "acl" || o == "noacl" || opts.contains(&o),
                "missing {o}"
            );
        }
    }

    #[test]
    fn seccomp_flags_probe_this_kernel() {
        let doc = features();
        let supported = doc["linux"]["seccomp"]["supportedFlags"]
            .as_array()
            .unwrap();
        // Every kernel husk runs on (>= 4.17) has these.
        for f in [
            "SECCOMP_FILTER_FLAG_TSYNC",
            "SECCOMP_FILTER_FLAG_LOG",
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        ] {
            assert!(supported.iter().any(|s| s == f), "{f}");
        }
        // An unknown flag is not reported supported.
        assert!(!seccomp_flag_supported(1 << 20));
    }
}
