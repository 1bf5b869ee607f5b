//! Ownership: a container touches only what is its own. Its cgroup is refused when somebody
//! else's processes or cgroups are in it; `delete`, `delete --force` and `kill --all` signal
//! only its own processes, and a cgroup left busy by others stays (with a warning). Paused
//! containers die at once on SIGKILL. Every container here is the test's own, under a temp
//! `--root` and an absolute cgroupsPath of its own (or, for the `""` case, a `/husk` that a
//! cgroup namespace maps into the test's own cgroup).
mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// A running container (its own pid namespace, as runc's `spec` has it).
fn running(name: &str) -> Option<Case> {
    let mut c = Case::new(name)?;
    c.sh(LOOP);
    c.write_config();
    c.create_and_start();
    Some(c)
}

/// A second container whose cgroupsPath is `cg` (someone else's, on purpose).
fn beside(name: &str, cg: &str) -> Case {
    let mut c = Case::with(name, &bin_under_test(), &runc_bin());
    c.sh(LOOP);
    c.config["linux"]["cgroupsPath"] = json!(cg);
    let text = serde_json::to_string_pretty(&c.config).expect("serialize config");
    std::fs::write(c.bundle.join("config.json"), text).expect("write config.json");
    c
}

fn alive(c: &Case, pid: i32) -> bool {
    c.track_pid(pid);
    start_time(pid).is_some()
}

#[test]
fn delete_force_of_a_parent_leaves_a_nested_container_alone() {
    let Some(a) = running("own-nest-a") else {
        return;
    };
    let child = format!("{}/child", a.cgroups_path());
    let b = beside("own-nest-b", &child);
    b.create().check();
    b.start().check();
    let (pa, pb) = (a.pid(), b.pid());
    a.rt(&["delete", "--force", &a.id]).check();
    assert!(!alive(&a, pa), "the parent's init survived delete --force");
    assert!(
        alive(&b, pb),
        "delete --force of {} killed the container nested in its cgroup",
        a.id
    );
    if a.is_husk() {
        let warned = a.log_lines().iter().any(|l| {
            l["level"] == "warning" && l["msg"].as_str().unwrap_or("").contains("left in place")
        });
        assert!(
            warned,
            "no warning about the busy cgroup in {:?}",
            a.log_lines()
        );
    }
    b.rt(&["delete", "--force", &b.id]).check();
    assert!(!alive(&b, pb));
    // The parent's cgroup stayed while the child was in it: nothing else removes it now.
    for d in cgroup_dirs(&a.cgroups_path()) {
        rmdir_tree(&d);
    }
}

#[test]
fn kill_all_of_a_parent_leaves_a_nested_container_alone() {
    let Some(a) = running("own-kall-a") else {
        return;
    };
    let b = beside("own-kall-b", &format!("{}/child", a.cgroups_path()));
    b.create().check();
    b.start().check();
    let pb = b.pid();
    a.rt(&["kill", "--all", &a.id, "KILL"]).check();
    a.wait_status("stopped", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(100));
    // runc 1.1 signals every process of the cgroup's subtree, nested containers included.
    if a.is_husk() {
        assert!(
            alive(&b, pb),
            "kill --all of the parent killed the nested container"
        );
    }
    b.rt(&["delete", "--force", &b.id]).check();
    a.rt(&["delete", &a.id]).check();
}

#[test]
fn create_refuses_a_cgroup_with_child_cgroups() {
    let Some(a) = Case::new("own-parent") else {
        return;
    };
    let b = beside("own-parent-b", &format!("{}/child", a.cgroups_path()));
    b.create().check();
    b.start().check();
    let pb = b.pid();
    let mut a = a;
    a.sh(LOOP);
    a.write_config();
    let out = a.create();
    assert!(
        !out.ok(),
        "create into a cgroup with a child cgroup succeeded"
    );
    if a.is_husk() {
        assert!(out.stderr.contains("child cgroups"), "{}", out.stderr);
        assert!(out.stderr.contains("linux.cgroupsPath"), "{}", out.stderr);
    }
    assert!(
        alive(&b, pb),
        "the refused create killed the container below it"
    );
    b.rt(&["delete", "--force", &b.id]).check();
    // The parent directory b's create made on its way down is nobody's container's.
    for d in cgroup_dirs(&a.cgroups_path()) {
        rmdir_tree(&d);
    }
}

#[test]
fn two_containers_sharing_a_cgroups_path() {
    let Some(a) = running("own-share-a") else {
        return;
    };
    let pa = a.pid();
    let b = beside("own-share-b", &a.cgroups_path());
    let out = b.create();
    if a.is_husk() {
        assert!(
            !out.ok(),
            "create into a cgroup with another container's processes"
        );
        assert!(out.stderr.contains("process(es)"), "{}", out.stderr);
        assert!(out.stderr.contains("linux.cgroupsPath"), "{}", out.stderr);
    }
    b.rt(&["delete", "--force", &b.id]);
    assert!(
        alive(&a, pa),
        "the second container's create/delete killed the first"
    );
    a.rt(&["delete", "--force", &a.id]).check();
}

#[test]
fn failed_create_beside_a_running_container() {
    let Some(a) = running("own-fail-a") else {
        return;
    };
    let pa = a.pid();
    // The same cgroup, and a mount that fails half-way through the init's set-up.
    let mut b = beside("own-fail-b", &a.cgroups_path());
    b.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({"destination": "/nowhere", "type": "bind", "source": "/does/not/exist", "options": ["bind"]}));
    let text = serde_json::to_string_pretty(&b.config).expect("serialize config");
    std::fs::write(b.bundle.join("config.json"), text).expect("write config.json");
    assert!(!b.create().ok(), "the broken create succeeded");
    assert!(
        alive(&a, pa),
        "the failed create killed the container beside it"
    );
    // Beside it in a sibling cgroup under a shared parent: the parent is nobody's to empty.
    let parent = format!("{}-p", a.cgroups_path());
    let c = beside("own-fail-c", &format!("{parent}/one"));
    c.create().check();
    let pc = c.pid();
    let mut d = beside("own-fail-d", &format!("{parent}/two"));
    d.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({"destination": "/nowhere", "type": "bind", "source": "/does/not/exist", "options": ["bind"]}));
    let text = serde_json::to_string_pretty(&d.config).expect("serialize config");
    std::fs::write(d.bundle.join("config.json"), text).expect("write config.json");
    assert!(!d.create().ok());
    assert!(alive(&c, pc), "the failed create killed its sibling");
    c.rt(&["delete", "--force", &c.id]).check();
    a.rt(&["delete", "--force", &a.id]).check();
    for d in cgroup_dirs(&parent) {
        rmdir_tree(&d);
    }
}

#[test]
fn paused_delete_force_is_prompt() {
    let Some(a) = running("own-pause-del") else {
        return;
    };
    let pa = a.pid();
    a.rt(&["pause", &a.id]).check();
    assert_eq!(a.status(), "paused");
    let t = Instant::now();
    a.rt(&["delete", "--force", &a.id]).check();
    let took = t.elapsed();
    println!("delete --force of a paused container: {took:?}");
    assert!(!alive(&a, pa), "the paused init survived delete --force");
    assert!(
        took < Duration::from_secs(1),
        "delete --force of a paused container took {took:?}"
    );
}

#[test]
fn paused_sigkill_kills() {
    let Some(a) = running("own-pause-kill") else {
        return;
    };
    let pa = a.pid();
    a.rt(&["pause", &a.id]).check();
    a.rt(&["kill", &a.id, "KILL"]).check();
    let deadline = Instant::now() + Duration::from_secs(1);
    while alive(&a, pa) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(&a, pa), "SIGKILL left the paused init frozen");
    a.rt(&["delete", &a.id]).check();
}

/// Every cgroup mount point on this host (v1 hierarchies and cgroup2).
fn cgroup_mounts() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| pre.split(' ').nth(4).map(String::from))?
        })
        .collect()
}

/// A private mount namespace whose cgroup hierarchies are this test's own cgroup `base`,
/// bind-mounted over each mount point: husk's `/husk` inside it is `<base>/husk` on the host,
/// so a config that reaches `/husk` can only ever touch the test's own containers.
struct MappedBase {
    holder: std::process::Child,
    dirs: Vec<std::path::PathBuf>,
}

impl MappedBase {
    fn new(base: &str) -> MappedBase {
        let mut dirs = Vec::new();
        let mut script = String::from("set -e\n");
        for m in cgroup_mounts() {
            let d = std::path::Path::new(&m).join(base.trim_start_matches('/'));
            std::fs::create_dir_all(&d).expect("make the test's base cgroup");
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = std::fs::read_to_string(std::path::Path::new(&m).join(f)) {
                    std::fs::write(d.join(f), v.trim()).expect("seed cpuset");
                }
            }
            script.push_str(&format!("mount --bind '{}' '{m}'\n", d.display()));
            dirs.push(d);
        }
        script.push_str("echo ready\nexec sleep 600\n");
        let mut holder = std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(holder.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line.trim(), "ready", "could not map the cgroup base");
        MappedBase { holder, dirs }
    }

    /// Run the case's binary with `args` inside the mapped namespace.
    fn rt(&self, c: &Case, args: &[&str]) -> Out {
        let mut cmd = std::process::Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.holder.id().to_string())
            .arg("-m")
            .arg(&c.bin)
            .arg("--root")
            .arg(&c.root)
            .arg("--log")
            .arg(&c.log)
            .args(["--log-format", "json"])
            .args(args);
        c.spawn_cmd(cmd, &args.join(" ")).wait(CMD_TIMEOUT)
    }
}

impl Drop for MappedBase {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        for d in &self.dirs {
            rmdir_tree(d);
        }
    }
}

/// A container whose config has `cgroupsPath` set to `cg` (`None`: no cgroupsPath at all).
fn with_path(name: &str, cg: Option<&str>) -> Case {
    let mut c = Case::with(name, &bin_under_test(), &runc_bin());
    c.sh(LOOP);
    // The container's own cgroupfs view follows the bind mounts' roots, which this test
    // does not need.
    if let Some(m) = c.config["mounts"].as_array_mut() {
        m.retain(|m| m["destination"] != "/sys/fs/cgroup");
    }
    match cg {
        Some(p) => c.config["linux"]["cgroupsPath"] = json!(p),
        None => {
            c.config["linux"]
                .as_object_mut()
                .expect("linux")
                .remove("cgroupsPath");
        }
    }
    let text = serde_json::to_string_pretty(&c.config).expect("serialize config");
    std::fs::write(c.bundle.join("config.json"), text).expect("write config.json");
    c
}

#[test]
fn empty_cgroups_path_is_absent_and_husk_base_is_refused() {
    if skip() || is_runc(&bin_under_test()) {
        // runc puts these under the caller's cgroup: nothing of husk's base to check.
        println!("SKIP: husk's /husk base only");
        return;
    }
    let a = with_path("own-base-a", None);
    let mapped = MappedBase::new(&format!("/husk-test-{}-base", a.id));
    let start = |c: &Case| {
        mapped
            .rt(c, &["create", "--bundle", &c.bundle_str(), &c.id])
            .check();
        mapped.rt(c, &["start", &c.id]).check();
        let st = mapped.rt(c, &["state", &c.id]).check().json();
        st["pid"].as_i64().expect("pid") as i32
    };
    let pa = start(&a);
    // The mapping holds: a's default cgroup is under the test's base on the host (and so
    // nothing below can reach the host's real /husk).
    let host = format!("/husk-test-{}-base/husk/{}", a.id, a.id);
    assert!(
        !cgroup_dirs(&host).is_empty() && pids_in_cgroup(&host).contains(&pa),
        "the container did not land in the mapped base {host}"
    );
    let b = with_path("own-base-b", Some(""));
    let pb = start(&b);
    assert_ne!(pa, pb);
    mapped.rt(&b, &["delete", "--force", &b.id]).check();
    assert!(!alive(&b, pb));
    assert!(
        alive(&a, pa),
        "delete --force of a container with cgroupsPath \"\" killed another"
    );
    for p in [".", "x/..", "/husk", "/husk/.", "/x/../husk"] {
        let c = with_path("own-base-c", Some(p));
        let out = mapped.rt(&c, &["create", "--bundle", &c.bundle_str(), &c.id]);
        assert!(!out.ok(), "cgroupsPath {p:?} (husk's base) was accepted");
        assert!(out.stderr.contains("linux.cgroupsPath"), "{}", out.stderr);
        mapped.rt(&c, &["delete", "--force", &c.id]);
        assert!(alive(&a, pa), "cgroupsPath {p:?} killed another container");
    }
    mapped.rt(&a, &["delete", "--force", &a.id]).check();
    assert!(!alive(&a, pa));
}

#[test]
fn device_entries_outside_dev_never_replace_rootfs_files() {
    let Some(mut c) = Case::new("own-devices") else {
        return;
    };
    let passwd = c.rootfs().join("etc/passwd");
    if !passwd.exists() {
        std::fs::create_dir_all(passwd.parent().expect("etc")).expect("mkdir etc");
        std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\n").expect("write passwd");
    }
    let before = std::fs::read(&passwd).expect("read passwd");
    c.config["linux"]["devices"] = json!([
        {"path": "/etc/passwd", "type": "c", "major": 1, "minor": 3, "fileMode": 438},
    ]);
    c.args(&["/bin/true"]);
    c.write_config();
    let out = c.create();
    if c.is_husk() {
        assert!(!out.ok(), "a device over /etc/passwd was accepted");
        assert!(out.stderr.contains("/etc/passwd"), "{}", out.stderr);
        assert!(out.stderr.contains("linux.devices"), "{}", out.stderr);
    }
    c.rt(&["delete", "--force", &c.id]);
    let meta = std::fs::symlink_metadata(&passwd).expect("passwd is gone");
    assert!(
        meta.is_file(),
        "/etc/passwd in the rootfs is no longer a regular file"
    );
    assert_eq!(std::fs::read(&passwd).expect("read passwd"), before);

    // A device at a free path outside /dev is made, and one already there (the same device)
    // is taken as it is.
    let mut d = Case::new("own-devices-free").expect("case");
    d.config["linux"]["devices"] = json!([
        {"path": "/mydev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 438},
    ]);
    d.sh("test -c /mydev/null && echo ok");
    d.write_config();
    let out = d.run();
    assert!(out.ok(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "ok");
    d.rt(&["delete", "--force", &d.id]);
    // The node stays in the rootfs (like runc, husk does not remove what it made on disk);
    // the second run finds the same device there.
    let out = d.run();
    assert!(out.ok(), "{}", out.stderr);
    d.rt(&["delete", "--force", &d.id]);
}
