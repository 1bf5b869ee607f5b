//! Bad input, one case per function: each must fail with exit status 1 (runc: non-zero), say why
//! on stderr and as the last `--log` JSON line (level "error" with a `msg`), and leave nothing
//! behind. With husk the message must also name the problem (the `fragment`: a file, JSON path,
//! flag or state), on one line, without a panic.
mod common;
use common::*;
use serde_json::json;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

/// Checks a refused command; `fragment` is what husk's message must contain.
fn assert_refused(c: &Case, out: &Out, fragment: &str) {
    println!("refused `{}`: {}", out.what, out.stderr.trim());
    assert!(
        !out.ok(),
        "`{}` succeeded on bad input\nstdout: {}",
        out.what,
        out.stdout
    );
    assert!(
        !out.stderr.trim().is_empty(),
        "`{}` failed silently",
        out.what
    );
    let last = c
        .last_log()
        .unwrap_or_else(|| panic!("`{}` wrote no JSON line to --log", out.what));
    assert_eq!(last["level"], "error", "last log line: {last}");
    let msg = last["msg"].as_str().unwrap_or_default();
    assert!(!msg.is_empty(), "last log line has no msg: {last}");
    if c.is_husk() {
        assert_eq!(out.code(), Some(1), "`{}`: {out:?}", out.what);
        assert!(
            !out.stderr.contains("panicked"),
            "husk panicked: {}",
            out.stderr
        );
        assert_eq!(
            out.stderr.trim().lines().count(),
            1,
            "want one line on stderr: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(fragment),
            "stderr does not name {fragment:?}: {}",
            out.stderr
        );
        assert!(
            msg.contains(fragment),
            "log msg does not name {fragment:?}: {msg}"
        );
    }
}

/// `create` of the case's bundle (after `edit`) is refused naming `fragment`; nothing remains.
fn create_refused(name: &str, fragment: &str, edit: impl FnOnce(&mut Case)) {
    let Some(mut c) = Case::new(name) else { return };
    edit(&mut c);
    let out = c.create();
    assert_refused(&c, &out, fragment);
    c.assert_clean();
}

/// A case whose container runs until killed.
fn running(name: &str) -> Option<Case> {
    let mut c = Case::new(name)?;
    c.sh(LOOP);
    c.write_config();
    c.create_and_start();
    Some(c)
}

#[test]
fn rejects_missing_config_json() {
    create_refused("bad-noconfig", "config.json", |c| {
        std::fs::remove_file(c.bundle.join("config.json")).expect("remove config.json");
    });
}

#[test]
fn rejects_malformed_json() {
    create_refused("bad-malformed", "config.json", |c| {
        std::fs::write(
            c.bundle.join("config.json"),
            "{\"ociVersion\": \"1.0.2\", \"process\": {",
        )
        .expect("write");
    });
}

#[test]
fn rejects_wrong_type_at_a_json_path() {
    create_refused("bad-argstype", "process.args", |c| {
        c.config["process"]["args"] = json!("sh -c true");
        c.write_config();
    });
}

#[test]
fn rejects_negative_uid() {
    create_refused("bad-uid", "process.user.uid", |c| {
        c.config["process"]["user"]["uid"] = json!(-1);
        c.write_config();
    });
}

#[test]
fn rejects_unknown_namespace_type() {
    create_refused("bad-nstype", "linux.namespaces[0].type", |c| {
        c.config["linux"]["namespaces"][0]["type"] = json!("foo");
        c.write_config();
    });
}

#[test]
fn rejects_missing_rootfs() {
    create_refused("bad-rootfs", "root.path", |c| {
        c.config["root"]["path"] = json!("no-such-rootfs");
        c.write_config();
    });
}

#[test]
fn rejects_namespace_path_that_is_no_namespace() {
    let Some(mut c) = Case::new("bad-nspath") else {
        return;
    };
    let nss = c.config["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .clone();
    let i = nss
        .iter()
        .position(|n| n["type"] == "network")
        .expect("spec has a network namespace");
    c.config["linux"]["namespaces"][i]["path"] = json!("/etc/passwd");
    c.write_config();
    let out = c.create();
    assert_refused(&c, &out, &format!("linux.namespaces[{i}].path"));
    c.assert_clean();
}

#[test]
fn rejects_unknown_rlimit_type() {
    create_refused("bad-rlimit", "process.rlimits[0].type", |c| {
        c.config["process"]["rlimits"] = json!([{"type": "RLIMIT_FOO", "soft": 1, "hard": 1}]);
        c.write_config();
    });
}

#[test]
fn rejects_missing_process_args() {
    create_refused("bad-noargs", "process.args", |c| {
        c.config["process"]
            .as_object_mut()
            .expect("process")
            .remove("args");
        c.write_config();
    });
}

#[test]
fn rejects_relative_cwd() {
    create_refused("bad-cwd", "process.cwd", |c| {
        c.config["process"]["cwd"] = json!("tmp");
        c.write_config();
    });
}

#[test]
fn rejects_hostname_without_uts_namespace() {
    create_refused("bad-hostname", "hostname", |c| {
        let nss = c.config["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces");
        nss.retain(|n| n["type"] != "uts");
        c.config["hostname"] = json!("box");
        c.write_config();
    });
}

/// runc 1.1 does not check the spec version at all; husk refuses majors it does not know.
#[test]
fn rejects_unknown_oci_version_major() {
    if is_runc(&bin_under_test()) {
        println!("SKIP: runc accepts any ociVersion");
        return;
    }
    create_refused("bad-ociver", "ociVersion", |c| {
        c.config["ociVersion"] = json!("2.0.0");
        c.write_config();
    });
}

#[test]
fn rejects_id_with_a_slash() {
    let Some(c) = Case::new("bad-idslash") else {
        return;
    };
    let bad = format!("../{}", c.id);
    c.track_id(&bad);
    let out = c.rt(&["create", "--bundle", &c.bundle_str(), &bad]);
    assert_refused(&c, &out, "invalid container id");
    assert!(!c.dir.join(&c.id).exists(), "state written outside --root");
    c.assert_clean();
}

#[test]
fn rejects_dot_dot_id() {
    let Some(c) = Case::new("bad-iddots") else {
        return;
    };
    c.track_id("..");
    let out = c.rt(&["create", "--bundle", &c.bundle_str(), ".."]);
    assert_refused(&c, &out, "invalid container id");
    c.assert_clean();
}

#[test]
fn rejects_duplicate_id() {
    let Some(mut c) = Case::new("bad-dup") else {
        return;
    };
    c.sh(LOOP);
    c.write_config();
    c.create().check();
    let pid = c.pid();
    let out = c.create();
    assert_refused(&c, &out, "already exists");
    assert_eq!(
        c.status(),
        "created",
        "the refused create harmed the first container"
    );
    assert_eq!(c.pid(), pid);
}

/// `verb` on an id that was never created is refused.
fn unknown_id_refused(name: &str, verb: &[&str]) {
    let Some(c) = Case::new(name) else { return };
    let mut args: Vec<&str> = verb.to_vec();
    args.insert(1, &c.id);
    let out = c.rt(&args);
    assert_refused(&c, &out, "does not exist");
    c.assert_clean();
}

#[test]
fn rejects_state_of_unknown_id() {
    unknown_id_refused("bad-state", &["state"]);
}

#[test]
fn rejects_start_of_unknown_id() {
    unknown_id_refused("bad-start", &["start"]);
}

#[test]
fn rejects_kill_of_unknown_id() {
    unknown_id_refused("bad-kill", &["kill", "KILL"]);
}

#[test]
fn rejects_delete_of_unknown_id() {
    unknown_id_refused("bad-delete", &["delete"]);
}

#[test]
fn rejects_start_twice() {
    let Some(c) = running("bad-start2") else {
        return;
    };
    let out = c.start();
    assert_refused(&c, &out, "not created");
    assert_eq!(c.status(), "running");
}

#[test]
fn rejects_delete_of_running_container_without_force() {
    let Some(c) = running("bad-delrun") else {
        return;
    };
    let out = c.delete();
    assert_refused(&c, &out, "running");
    assert_eq!(c.status(), "running");
}

#[test]
fn rejects_bad_signal_name() {
    let Some(c) = running("bad-signal") else {
        return;
    };
    let out = c.kill("SIGFOO");
    assert_refused(&c, &out, "invalid signal");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.status(), "running");
}

#[test]
fn rejects_absurd_signal_number() {
    let Some(c) = running("bad-signum") else {
        return;
    };
    let out = c.kill("1234");
    assert_refused(&c, &out, "invalid signal");
    assert_eq!(c.status(), "running");
}

/// Runs `args` of the case's binary with a 1 GiB address-space cap (so that a runtime reading
/// without a bound fails instead of taking the host down) and returns what it printed and its
/// peak RSS in KiB.
fn run_measured(c: &Case, args: &[&str]) -> (Out, i64) {
    use std::os::unix::process::CommandExt;
    let mut cmd = c.command(args);
    // SAFETY: setrlimit is async-signal-safe and touches only this (forked) process.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            Ok(())
        });
    }
    let s = c.spawn_cmd(cmd, &args.join(" "));
    let pid = s.child.id() as i32;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own child; status and ru are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break;
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("`{args:?}` hung on a bottomless input");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    use std::os::unix::process::ExitStatusExt;
    let out = Out {
        status: std::process::ExitStatus::from_raw(status),
        stdout: std::fs::read_to_string(&s.stdout).unwrap_or_default(),
        stderr: std::fs::read_to_string(&s.stderr).unwrap_or_default(),
        what: s.what.clone(),
    };
    std::mem::forget(s.child);
    (out, ru.ru_maxrss)
}

/// `args` is refused naming `file` and its kind, in under 100 MB of memory.
fn refused_bottomless(c: &Case, args: &[&str], file: &str, kind: &str) {
    let (out, rss_kb) = run_measured(c, args);
    println!("refused {args:?}: {} ({rss_kb} KiB)", out.stderr.trim());
    assert!(!out.ok(), "{args:?} succeeded");
    assert!(rss_kb < 100 << 10, "{args:?} grew to {rss_kb} KiB");
    if c.is_husk() {
        assert!(out.stderr.contains(file), "{}", out.stderr);
        assert!(out.stderr.contains(kind), "{}", out.stderr);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    }
}

#[test]
fn config_json_from_dev_zero_is_refused() {
    let Some(c) = Case::new("bad-cfg-zero") else {
        return;
    };
    let cfg = c.bundle.join("config.json");
    std::fs::remove_file(&cfg).expect("remove config.json");
    std::os::unix::fs::symlink("/dev/zero", &cfg).expect("symlink");
    let args = ["create", "--bundle", &c.bundle_str(), &c.id];
    refused_bottomless(&c, &args, "config.json", "character device");
    c.assert_clean();
}

#[test]
fn config_json_fifo_with_endless_writer_is_refused() {
    let Some(c) = Case::new("bad-cfg-fifo") else {
        return;
    };
    let cfg = c.bundle.join("config.json");
    std::fs::remove_file(&cfg).expect("remove config.json");
    nix_mkfifo(&cfg);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (cfg, stop) = (cfg.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            // Blocks until a reader opens it; a runtime that never does leaves us here, so the
            // test opens it itself at the end to let the thread go.
            let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&cfg) else {
                return;
            };
            let chunk = vec![b' '; 1 << 16];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if f.write_all(&chunk).is_err() {
                    return;
                }
            }
        })
    };
    let args = ["create", "--bundle", &c.bundle_str(), &c.id];
    refused_bottomless(&c, &args, "config.json", "FIFO");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // Release a writer still waiting for a reader.
    let _ = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&cfg);
    let _ = writer.join();
    c.assert_clean();
}

fn nix_mkfifo(p: &std::path::Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn exec_process_and_update_from_dev_zero_are_refused() {
    let Some(c) = running("bad-zero-exec") else {
        return;
    };
    refused_bottomless(
        &c,
        &["exec", "--process", "/dev/zero", &c.id],
        "/dev/zero",
        "character device",
    );
    refused_bottomless(
        &c,
        &["update", "-r", "/dev/zero", &c.id],
        "/dev/zero",
        "character device",
    );
}

/// True when some fragment of 12+ characters after a ": " appears twice in `msg`.
fn repeats_itself(msg: &str) -> bool {
    let parts: Vec<&str> = msg.split(": ").filter(|p| p.len() >= 12).collect();
    parts
        .iter()
        .enumerate()
        .any(|(i, p)| parts[i + 1..].contains(p))
}

#[test]
fn corrupt_state_is_listed_and_removable() {
    let Some(c) = running("bad-state-trunc") else {
        return;
    };
    if !c.is_husk() {
        // runc omits a container it can't load from `list` and can't delete it.
        println!("SKIP: husk's handling of its own state files");
        return;
    }
    let pid = c.pid();
    let path = c.root.join(&c.id).join("state.json");
    let text = std::fs::read(&path).expect("read state.json");
    let cut = text
        .windows(9)
        .position(|w| w == b"\"config\":")
        .expect("config in state.json")
        + 20;
    std::fs::write(&path, &text[..cut]).expect("truncate state.json");
    let out = c.rt(&["list"]).check();
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&c.id))
        .unwrap_or_else(|| panic!("list omits the corrupt container: {}", out.stdout));
    if c.is_husk() {
        assert!(row.contains("unknown"), "{row}");
        assert!(
            out.stderr.contains(&c.id),
            "no reason on stderr: {}",
            out.stderr
        );
        assert!(!repeats_itself(&out.stderr), "{}", out.stderr);
        let json = c.rt(&["list", "--format", "json"]).check().json();
        let entry = json
            .as_array()
            .and_then(|a| a.iter().find(|e| e["id"] == c.id.as_str()))
            .expect("json entry");
        assert_eq!(entry["status"], "unknown");
        let st = c.rt(&["state", &c.id]);
        assert!(!st.ok());
        assert!(st.stderr.contains("state.json"), "{}", st.stderr);
        assert!(!repeats_itself(&st.stderr), "{}", st.stderr);
    }
    c.rt(&["delete", "--force", &c.id]).check();
    assert!(
        start_time(pid).is_none(),
        "delete --force left the init {pid} running"
    );
    assert!(!c.root.join(&c.id).exists());
    c.assert_clean();
}

#[test]
fn garbage_state_is_removable() {
    let Some(c) = running("bad-state-junk") else {
        return;
    };
    if !c.is_husk() {
        // runc omits a container it can't load from `list` and can't delete it.
        println!("SKIP: husk's handling of its own state files");
        return;
    }
    let pid = c.pid();
    let path = c.root.join(&c.id).join("state.json");
    std::fs::write(&path, b"\x00garbage").expect("write state.json");
    let out = c.rt(&["delete", "--force", &c.id]);
    if c.is_husk() {
        out.check();
        assert!(!c.root.join(&c.id).exists());
        // Nothing in the file names the init or its cgroup: the warning says what to remove.
        let warned = c.log_lines().iter().any(|l| {
            l["level"] == "warning" && l["msg"].as_str().unwrap_or("").contains("by hand")
        });
        assert!(warned, "{:?}", c.log_lines());
    }
    // The init is this test's to clean up now (its state named nothing husk could trust).
    // SAFETY: plain syscall on the case's own init, checked by start time below.
    if start_time(pid).is_some() {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while start_time(pid).is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));
    for d in cgroup_dirs(&c.cgroups_path()) {
        rmdir_tree(&d);
    }
}

#[test]
fn forged_pids_are_not_creating() {
    let Some(c) = Case::new("bad-state-pid") else {
        return;
    };
    c.create().check();
    let path = c.root.join(&c.id).join("state.json");
    let good: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("parse");
    let real = good["pid"].as_i64().expect("pid");
    for forged in [0, -1] {
        let mut v = good.clone();
        v["pid"] = json!(forged);
        std::fs::write(&path, v.to_string()).expect("write state.json");
        let st = c.rt(&["state", &c.id]).check().json();
        if c.is_husk() {
            assert_eq!(st["status"], "stopped", "pid {forged}: {st}");
        }
        let out = c.rt(&["kill", &c.id, "KILL"]);
        assert!(
            !out.ok() || !c.is_husk(),
            "kill with a forged pid {forged} succeeded"
        );
    }
    let mut v = good.clone();
    v["pid"] = json!(real);
    std::fs::write(&path, v.to_string()).expect("write state.json");
}
