//! Cgroup behaviour through the real binary, on whichever hierarchy the host has (v1 hybrid here,
//! pure v2 inside scripts/test-v2's VM): limits that bite (OOM, pids, cpu quota, devices), live
//! `update`, `pause`/`resume`, `events`, and a churn of create/start/kill/delete cycles with
//! SIGKILLs at random moments that must leave nothing behind.

mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// True on a pure cgroup v2 host (the unified hierarchy mounted at /sys/fs/cgroup itself).
fn is_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The directory of cgroup `cg` for `controller` (v1) or the unified dir (v2).
fn cg_dir(cg: &str, controller: &str) -> PathBuf {
    let rel = cg.trim_start_matches('/');
    if is_v2() {
        Path::new("/sys/fs/cgroup").join(rel)
    } else {
        Path::new("/sys/fs/cgroup").join(controller).join(rel)
    }
}

fn read_cg(cg: &str, controller: &str, file: &str) -> String {
    let p = cg_dir(cg, controller).join(file);
    fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// `key value` lines (cpu.stat, memory.events, pids.events) as a lookup.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

/// CPU time the cgroup used so far, in nanoseconds (cpuacct.usage on v1, cpu.stat on v2).
fn cpu_usage_ns(cg: &str) -> u64 {
    if is_v2() {
        let stat = read_cg(cg, "cpu", "cpu.stat");
        keyed(&stat, "usage_usec").expect("cpu.stat has usage_usec") * 1000
    } else {
        read_cg(cg, "cpuacct", "cpuacct.usage")
            .parse()
            .expect("cpuacct.usage is a number")
    }
}

fn stats(c: &Case) -> Value {
    let out = c.rt(&["events", "--stats", &c.id]).check();
    let v = out.json();
    assert_eq!(v["type"], "stats", "{v}");
    v["data"].clone()
}

/// Polls `f` until it is true, panicking with `what` after `timeout`.
fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A case whose rootfs is writable: the containers leave their results in its /tmp.
fn case(name: &str) -> Option<Case> {
    let mut c = Case::new(name)?;
    c.config["root"]["readonly"] = json!(false);
    Some(c)
}

fn add_caps(config: &mut Value, caps: &[&str]) {
    for set in ["bounding", "effective", "permitted"] {
        if let Some(list) = config["process"]["capabilities"][set].as_array_mut() {
            for cap in caps {
                list.push(json!(cap));
            }
        }
    }
}

#[test]
fn memory_limit_oom_kills_and_events_report_it() {
    let Some(mut c) = case("cg-oom") else {
        return;
    };
    let limit = 32 << 20;
    // No swap limit: neither this host nor the v2 VM has swap, and a memsw limit would make the
    // v1 charge fail on memory.memsw instead (memory.failcnt stays 0).
    c.config["linux"]["resources"]["memory"] = json!({"limit": limit});
    // Waits for the host's go, then asks for 64 MiB in one buffer that dd fills (touches).
    c.sh("while [ ! -e /tmp/go ]; do sleep 0.02; done; \
         dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo $? > /tmp/rc; \
         while :; do sleep 1; done");
    c.write_config();
    c.create_and_start();
    let events = c.spawn(&["events", "--interval", "100ms", &c.id]);
    // Only after its first stats record is `events` surely counting (the VM is slow to start it).
    let out_path = events.stdout.clone();
    wait_for("the first stats record", Duration::from_secs(20), || {
        fs::read_to_string(&out_path)
            .unwrap_or_default()
            .contains("\"stats\"")
    });
    fs::write(c.rootfs().join("tmp/go"), "").expect("write go file");
    let rc_file = c.rootfs().join("tmp/rc");
    // The shell's `>` creates the file before `echo` writes it: wait for the whole line (a
    // slow VM showed the empty file in between).
    let mut rc = String::new();
    wait_for("the allocation to end", Duration::from_secs(20), || {
        rc = fs::read_to_string(&rc_file).unwrap_or_default();
        rc.ends_with('\n')
    });
    assert_eq!(rc.trim(), "137", "dd should be SIGKILLed by the OOM killer");
    // The streamed events must carry an oom record.
    wait_for("an oom event", Duration::from_secs(10), || {
        fs::read_to_string(&out_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| v["type"] == "oom" && v["id"] == c.id.as_str())
    });
    let mut child = events.child;
    let _ = child.kill();
    let _ = child.wait();
    let s = stats(&c);
    let usage = &s["memory"]["usage"];
    assert_eq!(usage["limit"], json!(limit), "{s}");
    assert!(usage["usage"].as_u64().unwrap_or(0) > 0, "{s}");
    assert!(usage["max"].as_u64().unwrap_or(0) > 0 || is_v2(), "{s}");
    assert!(usage["failcnt"].as_u64().unwrap_or(0) > 0, "{s}");
    c.kill("KILL").check();
}

#[test]
fn pids_limit_makes_fork_fail_inside() {
    let Some(mut c) = case("cg-pids") else {
        return;
    };
    c.config["linux"]["resources"]["pids"] = json!({"limit": 10});
    // sh and its subshell are two of the 10: the subshell's 9th sleep can't fork, and busybox sh
    // gives up there (so the failure is in a subshell the outer shell outlives).
    c.sh(
        "exec 2>/tmp/err; (for i in $(seq 1 20); do sleep 60 & done); \
         echo done > /tmp/n; while :; do sleep 1; done",
    );
    c.write_config();
    c.create_and_start();
    let cg = c.cgroups_path();
    wait_for("the fork loop", Duration::from_secs(20), || {
        c.rootfs().join("tmp/n").exists()
    });
    assert_eq!(read_cg(&cg, "pids", "pids.max"), "10");
    let current: u64 = read_cg(&cg, "pids", "pids.current").parse().unwrap_or(0);
    assert!(current <= 10, "pids.current {current} exceeds the limit");
    let max_hits = keyed(&read_cg(&cg, "pids", "pids.events"), "max").unwrap_or(0);
    assert!(max_hits > 0, "pids.events shows no refused fork");
    let err = fs::read_to_string(c.rootfs().join("tmp/err")).unwrap_or_default();
    assert!(
        err.contains("fork") || err.contains("Resource temporarily unavailable"),
        "the shell saw no fork failure: {err:?}"
    );
    let s = stats(&c);
    assert_eq!(s["pids"]["limit"], json!(10), "{s}");
    assert!(s["pids"]["current"].as_u64().unwrap_or(0) <= 10, "{s}");
    c.kill("KILL").check();
}

#[test]
fn cpu_quota_half_a_cpu() {
    let Some(mut c) = case("cg-cpu") else {
        return;
    };
    c.config["linux"]["resources"]["cpu"] = json!({"quota": 50000, "period": 100000});
    // Two busy loops want two CPUs, so the quota (not a busy host) is what holds them back.
    c.sh("(while :; do :; done) & while :; do :; done");
    c.write_config();
    c.create_and_start();
    let cg = c.cgroups_path();
    std::thread::sleep(Duration::from_millis(300)); // past the start-up
    let (t0, u0) = (Instant::now(), cpu_usage_ns(&cg));
    std::thread::sleep(Duration::from_secs(2));
    let (t1, u1) = (Instant::now(), cpu_usage_ns(&cg));
    let cpus = (u1 - u0) as f64 / (t1 - t0).as_nanos() as f64;
    println!("cpu quota 0.5: the cgroup used {cpus:.3} CPUs over 2 s");
    assert!(
        (0.4..=0.6).contains(&cpus),
        "a 0.5 CPU quota gave {cpus:.3} CPUs"
    );
    c.kill("KILL").check();
}

#[test]
fn devices_denied_node_cant_be_opened_allowed_can() {
    let Some(mut c) = case("cg-dev") else {
        return;
    };
    if !Path::new("/dev/fuse").exists() {
        println!("SKIP: no /dev/fuse (10:229) on this host to test device rules with");
        return;
    }
    add_caps(&mut c.config, &["CAP_MKNOD"]);
    // runc's spec denies all first; allow reading 10:229 only: an open for writing must fail.
    let devices = c.config["linux"]["resources"]["devices"].clone();
    let mut devices = devices.as_array().cloned().unwrap_or_default();
    devices.push(json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "r"}));
    c.config["linux"]["resources"]["devices"] = json!(devices);
    c.sh("mknod /dev/t-fuse c 10 229 || exit 2; \
         if (exec 3</dev/t-fuse) 2>/dev/null; then echo read-ok; else echo read-denied; fi; \
         if (exec 3>/dev/t-fuse) 2>/tmp/werr; then echo write-ok; else echo write-denied; fi; \
         if (exec 3</dev/null) 2>/dev/null; then echo null-ok; else echo null-denied; fi; \
         cat /tmp/werr");
    c.write_config();
    let out = c.run();
    assert_eq!(out.code(), Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        &lines[..3],
        &["read-ok", "write-denied", "null-ok"],
        "{out:?}"
    );
    assert!(
        out.stdout.contains("Operation not permitted") || out.stdout.contains("EPERM"),
        "the denied open failed for another reason: {out:?}"
    );
}

#[test]
fn update_changes_limits_live() {
    let Some(mut c) = case("cg-update") else {
        return;
    };
    c.config["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
    c.config["linux"]["resources"]["pids"] = json!({"limit": 50});
    c.config["linux"]["resources"]["cpu"] = json!({"quota": 50000, "period": 100000});
    c.sh(LOOP);
    c.write_config();
    c.create_and_start();
    let cg = c.cgroups_path();
    let s = stats(&c);
    assert_eq!(s["memory"]["usage"]["limit"], json!(64 << 20), "{s}");
    assert_eq!(s["pids"]["limit"], json!(50), "{s}");
    c.rt(&[
        "update",
        "--memory",
        "96m",
        "--pids-limit",
        "20",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "100000",
        &c.id,
    ])
    .check();
    let s = stats(&c);
    assert_eq!(s["memory"]["usage"]["limit"], json!(96 << 20), "{s}");
    assert_eq!(s["pids"]["limit"], json!(20), "{s}");
    if is_v2() {
        assert_eq!(read_cg(&cg, "memory", "memory.max"), (96 << 20).to_string());
        assert_eq!(read_cg(&cg, "cpu", "cpu.max"), "20000 100000");
    } else {
        assert_eq!(read_cg(&cg, "cpu", "cpu.cfs_quota_us"), "20000");
        assert_eq!(read_cg(&cg, "cpu", "cpu.cfs_period_us"), "100000");
    }
    assert_eq!(read_cg(&cg, "pids", "pids.max"), "20");
    // -r FILE takes linux.resources JSON.
    let r = c.path("resources.json");
    fs::write(
        &r,
        r#"{"memory": {"limit": 134217728}, "pids": {"limit": 30}}"#,
    )
    .expect("write");
    c.rt(&["update", "-r", &c.path_str("resources.json"), &c.id])
        .check();
    let s = stats(&c);
    assert_eq!(s["memory"]["usage"]["limit"], json!(128 << 20), "{s}");
    assert_eq!(s["pids"]["limit"], json!(30), "{s}");
    c.kill("KILL").check();
}

#[test]
fn pause_freezes_resume_thaws() {
    let Some(mut c) = case("cg-pause") else {
        return;
    };
    c.sh(
        "i=0; while :; do i=$((i+1)); echo $i > /tmp/c.new; mv /tmp/c.new /tmp/c; sleep 0.02; done",
    );
    c.write_config();
    c.create_and_start();
    let counter = c.rootfs().join("tmp/c");
    let read = || -> u64 {
        fs::read_to_string(&counter)
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0)
    };
    wait_for("the counter", Duration::from_secs(10), || read() > 2);
    c.rt(&["pause", &c.id]).check();
    assert_eq!(c.status(), "paused");
    let a = read();
    std::thread::sleep(Duration::from_millis(500));
    let b = read();
    assert_eq!(a, b, "the counter advanced while paused");
    c.rt(&["resume", &c.id]).check();
    assert_eq!(c.status(), "running");
    wait_for("the counter to advance", Duration::from_secs(10), || {
        read() > b
    });
    c.kill("KILL").check();
}

/// How long the churn lets `delete --force` run before calling it hung (well above its normal
/// few milliseconds, well below the harness's 30 s, so a run with several hangs still ends).
const DELETE_HANG: Duration = Duration::from_secs(10);

/// xorshift64*: enough randomness for choosing steps, reproducible from the printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A container of the churn with its own cgroup; the leftover check covers every one.
fn churn_leftovers(c: &Case, ids: &[String]) -> Vec<String> {
    let mut found = c.leftovers();
    for id in ids {
        let cg = format!("/husk-test-{id}");
        for pid in pids_in_cgroup(&cg) {
            found.push(format!("process {pid} in cgroup {cg}"));
        }
        for d in cgroup_dirs(&cg) {
            found.push(format!("cgroup dir {}", d.display()));
        }
        for pid in marked_pids(id) {
            found.push(format!("process {pid} with {MARK}={id}"));
        }
    }
    found
}

fn churn_scrub(ids: &[String]) {
    for id in ids {
        let cg = format!("/husk-test-{id}");
        for pid in pids_in_cgroup(&cg).into_iter().chain(marked_pids(id)) {
            // SAFETY: plain syscall; the pid is in this test's own cgroup or carries its mark.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
        for d in cgroup_dirs(&cg) {
            rmdir_tree(&d);
        }
    }
}

/// Scrubs every churn container's cgroup when the test panics midway (the Case only knows its own).
struct ChurnGuard(std::rc::Rc<std::cell::RefCell<Vec<String>>>);
impl Drop for ChurnGuard {
    fn drop(&mut self) {
        churn_scrub(&self.0.borrow());
    }
}

#[test]
fn churn_leaves_nothing_behind() {
    let Some(c) = Case::new("cg-churn") else {
        return;
    };
    let cycles: usize = std::env::var("HUSK_CHURN_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let seed = std::env::var("HUSK_CHURN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    println!("churn: {cycles} cycles, HUSK_CHURN_SEED={seed}");
    let mut rng = Rng(seed);
    let all = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let _guard = ChurnGuard(all.clone());
    let mut ids: Vec<String> = Vec::new();
    let mut config = c.config.clone();
    config["process"]["args"] = json!(["/bin/sleep", "1000"]);
    let start = Instant::now();
    let (mut killed_ctr, mut killed_husk, mut hung, mut notes) = (0, 0, 0, Vec::new());
    for n in 0..cycles {
        let cycle_start = Instant::now();
        let id = format!("{}-{n}", c.id);
        c.track_id(&id);
        ids.push(id.clone());
        all.borrow_mut().push(id.clone());
        let bundle = c.path(&format!("b{n}"));
        fs::create_dir_all(&bundle).expect("create churn bundle");
        std::os::unix::fs::symlink(c.rootfs(), bundle.join("rootfs")).expect("link rootfs");
        config["linux"]["cgroupsPath"] = json!(format!("/husk-test-{id}"));
        let env = json!([format!("{MARK}={id}"), "PATH=/bin"]);
        config["process"]["env"] = env;
        let text = serde_json::to_string(&config).expect("serialize");
        fs::write(bundle.join("config.json"), text).expect("write churn config");
        let b = bundle.to_string_lossy().into_owned();
        let violent = n % 4 == 3;
        let mut what = String::new();
        if violent && rng.below(2) == 0 {
            // SIGKILL husk itself at a random moment of `create`.
            let mut s = c.spawn(&["create", "--bundle", &b, &id]);
            let delay = rng.below(30_000);
            std::thread::sleep(Duration::from_micros(delay));
            what = format!("husk create SIGKILLed after {delay} us");
            // SAFETY: plain syscall on the husk process this test spawned and has not reaped.
            unsafe { libc::kill(s.child.id() as i32, libc::SIGKILL) };
            let _ = s.child.wait();
            killed_husk += 1;
        } else {
            c.rt(&["create", "--bundle", &b, &id]).check();
            let st = c.rt(&["state", &id]).check().json();
            let pid = st["pid"].as_i64().unwrap_or(0) as i32;
            c.track_pid(pid);
            if violent && rng.below(2) == 0 {
                c.rt(&["start", &id]).check();
            }
            if violent {
                // SIGKILL the container's init behind husk's back.
                // SAFETY: plain syscall; pid is the container init `state` just reported.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                killed_ctr += 1;
                what = format!("container init {pid} SIGKILLed ({})", st["status"]);
            } else {
                c.rt(&["start", &id]).check();
                c.rt(&["kill", &id, "KILL"]).check();
                let done = || {
                    c.rt(&["state", &id]).json()["status"]
                        .as_str()
                        .is_some_and(|s| s == "stopped")
                };
                wait_for("the container to stop", Duration::from_secs(10), done);
                c.rt(&["delete", &id]).check();
            }
        }
        if violent {
            let mut s = c.spawn(&["delete", "--force", &id]);
            let deadline = Instant::now() + DELETE_HANG;
            while matches!(s.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if matches!(s.child.try_wait(), Ok(None)) {
                let _ = s.child.kill();
                let _ = s.child.wait();
                let state = fs::read_dir(c.root.join(&id))
                    .map(|rd| rd.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                    .unwrap_or_default();
                // Note it and unblock: kill what sits in the container's cgroup (it may hold the
                // lock delete waits for), then let the churn go on to find other leaks.
                notes.push(format!(
                    "cycle {n} ({what}): `delete --force` hung for {DELETE_HANG:?}; state dir \
                     {state:?}; leftovers {:?}",
                    churn_leftovers(&c, std::slice::from_ref(&id)),
                ));
                hung += 1;
                for pid in pids_in_cgroup(&format!("/husk-test-{id}")) {
                    // SAFETY: plain syscall; the pid is in this test's own container cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(50));
                let _ = c.rt(&["delete", "--force", &id]);
            }
            let err = fs::read_to_string(&s.stderr).unwrap_or_default();
            if !err.trim().is_empty() {
                notes.push(format!(
                    "cycle {n} ({what}): delete --force: {}",
                    err.trim()
                ));
            }
        }
        let left = churn_leftovers(&c, std::slice::from_ref(&id));
        if !left.is_empty() {
            notes.push(format!("cycle {n} ({what}) left {left:?}"));
        }
        // Live, for a run that a time limit around the test may cut short (the VM's).
        let took = cycle_start.elapsed();
        if took > Duration::from_secs(5) {
            println!("churn: cycle {n} ({what}) took {:.1} s", took.as_secs_f64());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "churn: {cycles} cycles in {secs:.1} s ({:.0} ms each); {killed_ctr} container and \
         {killed_husk} husk SIGKILLs",
        secs * 1000.0 / cycles as f64
    );
    let left = churn_leftovers(&c, &ids);
    churn_scrub(&ids);
    for n in &notes {
        println!("churn: {n}");
    }
    assert!(left.is_empty(), "churn left behind: {left:#?}\n{notes:#?}");
    assert_eq!(hung, 0, "`delete --force` hung: {notes:#?}");
}

/// `--cgroup-manager=disabled` (crun's flag, used by `scripts/bench` to price the cgroup work):
/// no cgroup of the container's own, limits refused up front, cgroup operations clear errors.
#[test]
fn cgroup_manager_disabled_makes_no_cgroup() {
    let Some(mut c) = case("cg-disabled") else {
        return;
    };
    let cg = c.cgroups_path();
    c.config["linux"]["resources"] = json!({"pids": {"limit": 10}});
    c.sh("sleep 60");
    c.write_config();
    let out = c
        .rt(&[
            "--cgroup-manager=disabled",
            "create",
            "--bundle",
            &c.bundle_str(),
            &c.id,
        ])
        .check_fails();
    assert!(
        out.stderr.contains("config.json") && out.stderr.contains("--cgroup-manager=disabled"),
        "{}",
        out.stderr
    );
    assert!(c.state().is_none(), "a refused create left its state");

    c.config["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    c.write_config();
    c.rt(&[
        "--cgroup-manager=disabled",
        "create",
        "--bundle",
        &c.bundle_str(),
        &c.id,
    ])
    .check();
    c.start().check();
    let pid = c.pid();
    // The init stays where its creator is, in every hierarchy.
    let mine = fs::read_to_string("/proc/self/cgroup").unwrap();
    let its = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(its, mine);
    assert!(!cg_dir(&cg, "pids").exists(), "a cgroup was made");
    let out = c.rt(&["pause", &c.id]).check_fails();
    assert!(out.stderr.contains("has none"), "{}", out.stderr);
    let out = c.rt(&["events", "--stats", &c.id]).check_fails();
    assert!(out.stderr.contains("has none"), "{}", out.stderr);
    c.rt(&["kill", "--all", &c.id, "KILL"]).check();
    c.wait_status("stopped", Duration::from_secs(10));
    c.delete().check();
    assert!(c.state().is_none());
}
