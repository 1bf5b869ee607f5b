//! User namespaces: with uid/gid mappings, root inside is the mapped unprivileged uid outside;
//! `spec --rootless` prints a user-namespaced config that runs.
mod common;
use common::*;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const HOST_ID: u32 = 100_000;
const SIZE: u32 = 65_536;

/// Gives the whole tree at `dir` (symlinks themselves, not their targets) to `uid:gid`.
fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).expect("chown rootfs");
    for e in std::fs::read_dir(dir).expect("read rootfs dir").flatten() {
        let ty = e.file_type().expect("file type");
        if ty.is_dir() {
            chown_tree(&e.path(), uid, gid);
        } else {
            std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid)).expect("chown rootfs entry");
        }
    }
}

/// A case with a user namespace mapping container 0..SIZE to host HOST_ID.., rootfs owned by it.
fn mapped_case(name: &str) -> Option<Case> {
    let mut c = Case::new(name)?;
    c.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": HOST_ID, "size": SIZE}]);
    c.config["linux"]["uidMappings"] = map.clone();
    c.config["linux"]["gidMappings"] = map;
    chown_tree(&c.rootfs(), HOST_ID, HOST_ID);
    Some(c)
}

/// The `Uid:` or `Gid:` fields of /proc/<pid>/status.
fn ids_outside(pid: i32, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key}"));
    line[key.len()..]
        .split_whitespace()
        .map(|v| v.parse().expect("numeric id"))
        .collect()
}

#[test]
fn root_inside_is_the_mapped_uid_outside() {
    let Some(mut c) = mapped_case("userns-map") else {
        return;
    };
    c.sh(&format!(
        "id -u; id -g; cat /proc/self/uid_map; echo ready; {LOOP}"
    ));
    c.write_config();
    let create = c.spawn(&["create", "--bundle", &c.bundle_str(), &c.id]);
    let stdout = create.stdout.clone();
    create.wait(CMD_TIMEOUT).check();
    c.start().check();
    let pid = c.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    let printed = loop {
        let text = std::fs::read_to_string(&stdout).unwrap_or_default();
        if text.contains("ready") {
            break text;
        }
        assert!(Instant::now() < deadline, "container printed {text:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines: Vec<Vec<&str>> = printed
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0"], "uid inside: {printed}");
    assert_eq!(lines[1], ["0"], "gid inside: {printed}");
    assert_eq!(
        lines[2],
        ["0", &HOST_ID.to_string(), &SIZE.to_string()],
        "uid_map: {printed}"
    );
    assert_eq!(
        ids_outside(pid, "Uid:"),
        [HOST_ID; 4],
        "uid seen from the host"
    );
    assert_eq!(
        ids_outside(pid, "Gid:"),
        [HOST_ID; 4],
        "gid seen from the host"
    );
    let host_user = std::fs::read_link("/proc/self/ns/user").expect("host user ns");
    let user = std::fs::read_link(format!("/proc/{pid}/ns/user")).expect("container user ns");
    assert_ne!(user, host_user, "no user namespace");
}

#[test]
fn mapped_root_cannot_touch_host_owned_files() {
    let Some(mut c) = mapped_case("userns-unpriv") else {
        return;
    };
    // A host root-owned file bound in: container root is uid 100000 outside, so no write.
    let secret = c.path("host-file");
    std::fs::write(&secret, "host\n").expect("write host file");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    std::fs::write(c.rootfs().join("host-file"), "").expect("create mount point");
    std::os::unix::fs::lchown(c.rootfs().join("host-file"), Some(HOST_ID), Some(HOST_ID))
        .expect("chown");
    let mount = json!({"destination": "/host-file", "type": "bind", "source": secret.display().to_string(), "options": ["bind", "rw"]});
    c.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(mount);
    c.sh("stat -c '%u' /host-file; (echo pwned > /host-file) 2>&1 | sed 's/^.*: //'");
    c.write_config();
    let out = c.run().check();
    // Unmapped host root shows as the overflow uid inside.
    assert_eq!(out.stdout, "65534\nPermission denied\n");
    assert_eq!(
        std::fs::read_to_string(&secret).expect("read host file"),
        "host\n"
    );
}

#[test]
fn spec_rootless_has_a_user_namespace_and_mappings() {
    if skip() {
        return;
    }
    let config = spec(&bin_under_test(), &["--rootless"]);
    let nss = config["linux"]["namespaces"]
        .as_array()
        .expect("namespaces");
    assert!(
        nss.iter().any(|n| n["type"] == "user"),
        "no user namespace: {config}"
    );
    assert!(
        !nss.iter().any(|n| n["type"] == "network"),
        "rootless cannot make a network namespace: {config}"
    );
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    for (key, host) in [("uidMappings", uid), ("gidMappings", gid)] {
        let maps = config["linux"][key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key}: {config}"));
        assert!(!maps.is_empty(), "empty {key}");
        assert_eq!(maps[0]["containerID"], 0, "{key}: {config}");
        assert_eq!(
            maps[0]["hostID"], host,
            "{key} maps to the caller: {config}"
        );
    }
}

#[test]
fn spec_rootless_config_runs() {
    if skip() {
        return;
    }
    let config = spec(&bin_under_test(), &["--rootless"]);
    let mut c = Case::with_config("userns-rootless", &bin_under_test(), config);
    c.sh("id -u; readlink /proc/self/ns/user");
    c.write_config();
    let out = c.run().check();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("0"), "uid inside: {}", out.stdout);
    let host_user = std::fs::read_link("/proc/self/ns/user").expect("host user ns");
    assert_ne!(
        lines.next().map(Path::new),
        Some(host_user.as_path()),
        "no user namespace"
    );
}
