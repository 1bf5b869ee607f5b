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
        assert!(warned, "no warning about the busy cgroup in {:?}", a.log_lines());
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
    assert!(alive(&b, pb), "kill --all of the parent killed the nested container");
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
    assert!(!out.ok(), "create into a cgroup with a child cgroup succeeded");
    if a.is_husk() {
        assert!(out.stderr.contains("child cgroups"), "{}", out.stderr);
        assert!(out.stderr.contains("linux.cgroupsPath"), "{}", out.stderr);
    }
    assert!(alive(&b, pb), "the refused create killed the container below it");
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
        assert!(!out.ok(), "create into a cgroup with another container's processes");
        assert!(out.stderr.contains("process(es)"), "{}", out.stderr);
        assert!(out.stderr.contains("linux.cgroupsPath"), "{}", out.stderr);
    }
    b.rt(&["delete", "--force", &b.id]);
    assert!(alive(&a, pa), "the second container's create/delete killed the first");
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
    assert!(alive(&a, pa), "the failed create killed the container beside it");
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
    assert!(!alive(&a, pa), "the paused init survived delete --force");
    assert!(took < Duration::from_secs(1), "delete --force of a paused container took {took:?}");
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
