//! Regressions found by the OCI runtime-tools validation suite: the one child path (nothing but
//! execve after the seccomp filter, every failure before or at execve reported), the start
//! barrier without a mount namespace, rootfs propagation with a rootfs that is its own mount
//! point (as under containerd), and poststart/poststop hooks that fail without stopping the
//! hooks after them.
mod common;
use common::*;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A profile that allows everything but the given calls (EPERM).
fn deny(calls: &[&str]) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": calls, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    })
}

fn run_with_profile(name: &str, nnp: bool, calls: &[&str]) -> Option<()> {
    let mut c = Case::new(name)?;
    c.args(&["/bin/echo", "hello from the container"]);
    c.config["process"]["noNewPrivileges"] = json!(nnp);
    c.config["linux"]["seccomp"] = deny(calls);
    c.write_config();
    let out = c.run();
    assert_eq!(
        out.code(),
        Some(0),
        "run with a profile denying {calls:?} (noNewPrivileges {nnp}): {}",
        out.stderr
    );
    assert_eq!(out.stdout.trim(), "hello from the container");
    c.delete();
    c.assert_clean();
    Some(())
}

#[test]
fn a_profile_without_husks_own_calls_still_runs_the_program() {
    // close_range (husk marks descriptors close-on-exec with it), getcwd (the CVE-2024-21626
    // check), capset/prctl/setresuid... all come before the filter: only execve comes after it.
    let calls = [
        "close_range",
        "getcwd",
        "setresuid",
        "setgroups",
        "chdir",
        "prctl",
    ];
    run_with_profile("seccomp-nnp", true, &calls);
    // Without no_new_privs the filter needs CAP_SYS_ADMIN; it still goes in last, and the one
    // capset that takes that capability away follows it (capset must stay allowed then).
    run_with_profile("seccomp-privs", false, &calls);
}

#[test]
fn a_profile_that_denies_execve_fails_start_naming_seccomp() {
    let Some(mut c) = Case::new("seccomp-execve") else {
        return;
    };
    c.config["linux"]["seccomp"] = deny(&["execve", "execveat"]);
    c.config["process"]["noNewPrivileges"] = json!(true);
    c.write_config();
    c.create().check();
    let out = c.start();
    assert!(!out.ok(), "start must fail when execve is denied");
    if c.is_husk() {
        assert!(
            out.stderr.contains("exec /bin/true") && out.stderr.contains("seccomp"),
            "the error names the exec and the filter: {}",
            out.stderr
        );
    }
    c.wait_status("stopped", Duration::from_secs(5));
    c.delete().check();
    c.assert_clean();
}

#[test]
fn exec_failures_after_start_are_reported() {
    let Some(mut c) = Case::new("exec-format") else {
        return;
    };
    // Executable bits, but not a program the kernel can run.
    let bad = c.rootfs().join("bad");
    fs::write(&bad, b"\x7fELF garbage that is no ELF at all").expect("write bad program");
    make_executable(&bad);
    c.args(&["/bad"]);
    c.write_config();
    c.create().check();
    let out = c.start();
    assert!(!out.ok(), "start of a program that can't exec must fail");
    assert!(
        out.stderr.contains("exec format error"),
        "names the exec failure: {}",
        out.stderr
    );
    c.wait_status("stopped", Duration::from_secs(5));
    c.delete().check();
    // `run` says it too, and exits non-zero.
    let out = c.run();
    assert_eq!(out.code(), Some(1), "run exits 1, as runc: {}", out.stderr);
    assert!(out.stderr.contains("exec format error"), "{}", out.stderr);
    c.delete();
    c.assert_clean();
}

#[test]
fn missing_and_unexecutable_programs_are_worded_as_runc_words_them() {
    let Some(mut c) = Case::new("lookup") else {
        return;
    };
    let cases: [(&[&str], &str); 3] = [
        (
            &["/nonexistent"],
            "stat /nonexistent: no such file or directory",
        ),
        (&["/etc/passwd"], "exec: \"/etc/passwd\": permission denied"),
        (&["nonexistent"], "executable file not found in $PATH"),
    ];
    for (args, want) in cases {
        c.args(args);
        c.write_config();
        let out = c.create();
        assert!(!out.ok(), "create {args:?} must fail");
        assert!(out.stderr.contains(want), "{args:?}: {}", out.stderr);
        c.delete();
    }
    c.assert_clean();
}

#[test]
fn without_a_mount_namespace_the_container_waits_for_start() {
    let Some(mut c) = Case::new("no-mountns") else {
        return;
    };
    let ns: Vec<Value> = c.config["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter(|n| n["type"] != "mount")
        .cloned()
        .collect();
    c.config["linux"]["namespaces"] = json!(ns);
    c.config["mounts"] = json!([]);
    c.config["linux"]["maskedPaths"] = json!([]);
    c.config["linux"]["readonlyPaths"] = json!([]);
    c.config["root"]["readonly"] = json!(false);
    c.sh("echo started > /started");
    c.write_config();
    c.create().check();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.status(), "created", "the init must wait at the barrier");
    c.start().check();
    c.wait_status("stopped", Duration::from_secs(5));
    assert_eq!(
        fs::read_to_string(c.rootfs().join("started")).unwrap_or_default(),
        "started\n"
    );
    c.delete().check();
    c.assert_clean();
}

fn is_mount_point(p: &Path) -> bool {
    Command::new("mountpoint")
        .arg("-q")
        .arg(p)
        .status()
        .is_ok_and(|s| s.success())
}

/// A rootfs that is its own shared mount point (containerd's overlay) and a shared volume.
fn propagation_case(name: &str, prop: &str) -> Option<(Case, common::HostMounts, PathBuf)> {
    let mut c = Case::new(name)?;
    let mut host = common::HostMounts::default();
    let rootfs = c.rootfs();
    let rootfs_s = rootfs.to_string_lossy().into_owned();
    host.run(&["--bind", &rootfs_s, &rootfs_s], &rootfs);
    host.run(&["--make-shared", &rootfs_s], &rootfs);
    let vol = c.path("vol");
    fs::create_dir_all(vol.join("sub")).expect("create volume");
    let vol_s = vol.to_string_lossy().into_owned();
    host.run(&["--bind", &vol_s, &vol_s], &vol);
    host.run(&["--make-shared", &vol_s], &vol);
    fs::create_dir_all(rootfs.join("vol")).expect("create /vol");
    c.config["linux"]["rootfsPropagation"] = json!(prop);
    c.config["root"]["readonly"] = json!(false);
    let opt = if prop == "rshared" {
        "rshared"
    } else {
        "rslave"
    };
    c.config["mounts"].as_array_mut().expect("mounts").push(
        json!({"destination": "/vol", "type": "bind", "source": vol_s, "options": ["rbind", opt]}),
    );
    for set in ["bounding", "effective", "permitted"] {
        c.config["process"]["capabilities"][set]
            .as_array_mut()
            .expect("capability set")
            .push(json!("CAP_SYS_ADMIN"));
    }
    Some((c, host, vol))
}

#[test]
fn rshared_root_on_its_own_mount_point_propagates_volume_mounts_to_the_host() {
    let Some((mut c, mut host, vol)) = propagation_case("rshared", "rshared") else {
        return;
    };
    host.undo(vol.join("sub"));
    c.sh("mount -t tmpfs inner /vol/sub && echo mounted");
    c.write_config();
    let out = c.run();
    assert_eq!(out.code(), Some(0), "run: {}", out.stderr);
    assert_eq!(out.stdout.trim(), "mounted");
    assert!(
        is_mount_point(&vol.join("sub")),
        "a mount made inside the shared volume reaches the host"
    );
    c.delete();
    drop(host);
    c.assert_clean();
}

#[test]
fn rslave_root_on_its_own_mount_point_keeps_container_mounts_inside() {
    let Some((mut c, mut host, vol)) = propagation_case("rslave", "rslave") else {
        return;
    };
    host.undo(vol.join("sub"));
    c.sh("mount -t tmpfs inner /vol/sub && echo mounted");
    c.write_config();
    let out = c.run();
    assert_eq!(out.code(), Some(0), "run: {}", out.stderr);
    assert_eq!(out.stdout.trim(), "mounted");
    assert!(!is_mount_point(&vol.join("sub")), "nothing propagates back");
    c.delete();
    drop(host);
    c.assert_clean();
}

#[test]
fn unbindable_root_refuses_a_bind_of_itself() {
    let Some((mut c, host, _vol)) = propagation_case("unbindable", "unbindable") else {
        return;
    };
    c.sh("mkdir -p /t && if mount --bind / /t; then echo bound; else echo refused; fi");
    c.write_config();
    let out = c.run();
    assert_eq!(out.code(), Some(0), "run: {}", out.stderr);
    assert_eq!(out.stdout.trim(), "refused");
    c.delete();
    drop(host);
    c.assert_clean();
}

#[test]
fn failing_poststart_and_poststop_hooks_do_not_stop_the_next_ones() {
    let Some(mut c) = Case::new("hooks-warn") else {
        return;
    };
    let dir = c.dir.clone();
    let marker = |kind: &str| dir.join(format!("{kind}-second-ran"));
    let mut hooks = serde_json::Map::new();
    for kind in ["poststart", "poststop"] {
        let second = json!({"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}", marker(kind).display())]});
        hooks.insert(
            kind.into(),
            json!([{"path": "/bin/false", "args": ["false"]}, second]),
        );
    }
    c.config["hooks"] = Value::Object(hooks);
    c.sh(LOOP);
    c.write_config();
    c.create().check();
    let out = c.start();
    assert!(
        out.ok(),
        "a failing poststart hook is a warning: {}",
        out.stderr
    );
    assert!(
        marker("poststart").exists(),
        "the second poststart hook ran"
    );
    c.kill("KILL").check();
    c.wait_status("stopped", Duration::from_secs(5));
    let out = c.delete();
    assert!(
        out.ok(),
        "a failing poststop hook is a warning: {}",
        out.stderr
    );
    assert!(marker("poststop").exists(), "the second poststop hook ran");
    c.assert_clean();
}

fn make_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).expect("chmod");
}
