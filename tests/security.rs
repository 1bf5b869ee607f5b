//! Attacks on the runtime, one per item of DESIGN §3 (and the hardening list of issue 5). Each
//! test plays an attack that works against a naive runtime (where practical it first shows the
//! attack's precondition, e.g. that the planted symlink is really there) and checks that husk
//! defeats it: the container fails to start with a clear error, or it starts and the attack
//! has no effect. Not run against runc: runc 1.1.5 is vulnerable to some of them.
mod common;
#[path = "common/probe.rs"]
mod probe;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// A private copy of the binary under test, so an attack that overwrites "the runtime's
/// binary" damages only the copy; removed on drop (declare it before the case that uses it).
struct BinCopy {
    dir: PathBuf,
    path: PathBuf,
    orig: Vec<u8>,
}

impl BinCopy {
    fn new(name: &str) -> Option<BinCopy> {
        if skip() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("husk-sec-bin-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create bin dir");
        let path = dir.join("husk-victim");
        fs::copy(bin_under_test(), &path).expect("copy the runtime binary");
        let orig = fs::read(&path).expect("read the copy");
        Some(BinCopy { dir, path, orig })
    }

    /// A case run by the copy, with a writable rootfs and the probe.
    fn case(&self, name: &str) -> Case {
        let mut c = Case::with(name, &self.path, &runc_bin());
        c.config["root"]["readonly"] = json!(false);
        c.write_config();
        probe::install_probe(&c.rootfs());
        c
    }

    /// Whether the copy is intact; restores it either way (the case's cleanup runs it).
    fn intact(&self) -> bool {
        let now = fs::read(&self.path).unwrap_or_default();
        if now != self.orig {
            let _ = fs::write(&self.path, &self.orig);
            return false;
        }
        true
    }
}

impl Drop for BinCopy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `exec [flags] ID argv...`
fn exec(c: &Case, flags: &[&str], argv: &[&str]) -> Out {
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.push(&c.id);
    args.extend_from_slice(argv);
    c.rt(&args)
}

// ---------------------------------------------------------------------------------------------
// CVE-2019-5736: the host's runtime binary overwritten through /proc/<pid>/exe.
// ---------------------------------------------------------------------------------------------

/// The deterministic form: between `create` and `start` the container's pid 1 runs the
/// runtime's own code (waiting on exec.fifo). A process exec'd into the created container sees
/// it as /proc/1/exe, holds it open, and after `start` (when no runtime process runs any more,
/// so no ETXTBSY) reopens it for writing. runc defeats this with a sealed memfd copy; the
/// runtime must not expose a writable host binary (non-dumpable init, or a memfd copy).
#[test]
fn cve_2019_5736_created_init_exe_not_writable_from_exec() {
    let Some(bin) = BinCopy::new("5736-init") else {
        return;
    };
    let mut c = bin.case("5736-init");
    c.sh("echo started > /tmp/started; sleep 2");
    c.write_config();
    c.create().check();
    // Precondition: pid 1 is the runtime itself right now.
    let comm = exec(&c, &[], &["cat", "/proc/1/comm"]).check().stdout;
    let attacker = c.spawn(&[
        "exec",
        "-d",
        &c.id,
        "/bin/probe",
        "hold-exe",
        "/proc/1/exe",
        "/tmp/ready",
        "/tmp/go",
    ]);
    let report = attacker.stdout.clone();
    attacker.wait(CMD_TIMEOUT).check();
    let rootfs = c.rootfs();
    wait_for("the attacker to hold /proc/1/exe", WAIT, || {
        rootfs.join("tmp/ready").exists()
    });
    c.start().check();
    wait_for("the container to start", WAIT, || {
        rootfs.join("tmp/started").exists()
    });
    fs::write(rootfs.join("tmp/go"), "").expect("signal the attacker");
    wait_for("the attacker's verdict", Duration::from_secs(15), || {
        let r = fs::read_to_string(&report).unwrap_or_default();
        r.contains("overwrote") || r.contains("for writing") || r.contains(": E")
    });
    let said = fs::read_to_string(&report).unwrap_or_default();
    assert!(
        bin.intact(),
        "the container overwrote the runtime binary (pid 1 was {comm:?}); attacker said:\n{said}"
    );
    assert!(!said.contains("overwrote"), "attacker said:\n{said}");
}

/// The racing form: the container's pid 1 spins on /proc/<next pid>/exe while `exec` starts
/// processes in it; every exec child runs the runtime's code in the container's pid namespace
/// until it execs the user's program. No exec child may ever be seen as anything but the
/// user's program.
#[test]
fn exec_process_cannot_reach_the_runtime_binary_via_proc_pid_exe() {
    let Some(bin) = BinCopy::new("5736-exec") else {
        return;
    };
    let mut c = bin.case("5736-exec");
    const EXECS: usize = 30;
    c.args(&[
        "/bin/probe",
        "grab-exe",
        "2",
        &(EXECS + 1).to_string(),
        "30000",
        "/tmp/go",
    ]);
    c.write_config();
    let create = c.spawn(&["create", "--bundle", &c.bundle_str(), &c.id]);
    let report = create.stdout.clone();
    create.wait(CMD_TIMEOUT).check();
    c.start().check();
    // Each exec'd program lives long enough for the attacker to see it (it must see the
    // programs, and never the runtime's stage before them).
    for _ in 0..EXECS {
        exec(&c, &[], &["/bin/sleep", "0.05"]).check();
    }
    fs::write(c.rootfs().join("tmp/go"), "").expect("signal the attacker");
    wait_for("the attacker's verdict", Duration::from_secs(15), || {
        fs::read_to_string(&report)
            .unwrap_or_default()
            .contains("overwrote")
    });
    let said = fs::read_to_string(&report).unwrap_or_default();
    let intact = bin.intact();
    // Precondition: the attacker did see the exec'd processes.
    assert!(
        !said.contains("exe opened for 0 processes"),
        "the attacker never saw an exec'd process:\n{said}"
    );
    assert!(intact, "the runtime binary was overwritten:\n{said}");
    assert!(
        said.contains(", 0 were not the exec'd program"),
        "an exec child exposed the runtime's binary:\n{said}"
    );
}

// ---------------------------------------------------------------------------------------------
// CVE-2024-21626: leaked descriptors, cwd outside the root.
// ---------------------------------------------------------------------------------------------

/// A process exec'd into a created container looks through every descriptor, the cwd and the
/// root of pid 1 (the runtime's init, waiting for `start`) for a way out to the host: a
/// directory there gives the whole host filesystem (runc's leaked /sys/fs/cgroup fd).
#[test]
fn cve_2024_21626_created_init_fds_lead_nowhere() {
    let Some(mut c) = Case::new("21626-initfd") else {
        return;
    };
    c.sh(LOOP);
    c.write_config();
    c.create().check();
    // A secret next to the state dir and next to the bundle, on the host.
    fs::write(c.root.join("secret"), "HOST-SECRET-21626\n").expect("write secret");
    fs::write(c.dir.join("secret"), "HOST-SECRET-21626\n").expect("write secret");
    let script = r#"
ls -l /proc/1/fd/ 2>&1
for f in /proc/1/fd/* /proc/1/cwd /proc/1/root; do
  for p in "$f/secret" "$f/../secret" "$f/../../secret" "$f/../root/secret"; do
    cat "$p" 2>/dev/null
  done
  [ -d "$f" ] && ls "$f/" 2>/dev/null | head -3 | sed "s|^|$f: |"
done
true"#;
    let out = exec(&c, &[], &["sh", "-c", script]).check();
    assert!(
        !out.stdout.contains("HOST-SECRET-21626"),
        "a host file was reachable through pid 1 of the created container:\n{}",
        out.stdout
    );
    let state_listed = out.stdout.contains("state.json") || out.stdout.contains("exec.fifo");
    assert!(
        !state_listed,
        "the container listed the runtime's state dir:\n{}",
        out.stdout
    );
}

/// Also the start barrier: a process exec'd into the created container must not be able to
/// open pid 1's exec.fifo and start the container without `husk start`.
#[test]
fn created_container_cannot_be_started_by_its_own_exec_process() {
    let Some(mut c) = Case::new("fifo-bypass") else {
        return;
    };
    c.sh("echo started > /tmp/started; sleep 5");
    c.config["root"]["readonly"] = json!(false);
    c.write_config();
    c.create().check();
    let script = "for f in /proc/1/fd/*; do [ -p \"$f\" ] && timeout 1 cat \"$f\" >/dev/null 2>&1; done; true";
    exec(&c, &[], &["sh", "-c", script]).check();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !c.rootfs().join("tmp/started").exists(),
        "the container's own process started it through /proc/1/fd (exec.fifo)"
    );
    assert_eq!(c.status(), "created");
}

/// pivot_root leaves the old root stacked on the new one until it is unmounted, which husk
/// finishes in the background (`rootfs::detach`): the program must start only once the old
/// tree has left the namespace (`/..` crosses into it until then), and the helper that
/// unmounts it must be reaped before the exec (else pid 1 of the container inherits a child).
#[test]
fn the_old_root_is_gone_and_its_helper_reaped_before_the_program_starts() {
    let Some(mut c) = Case::new("old-root") else {
        return;
    };
    // `read` is a builtin: no child of the shell exists while it reads.
    c.sh("read -r kids < /proc/1/task/1/children; echo \"kids=[$kids]\"; stat -c %d:%i / /..");
    c.write_config();
    for _ in 0..10 {
        let out = c.run();
        assert_eq!(out.code(), Some(0), "run: {}", out.stderr);
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{}", out.stdout);
        assert_eq!(lines[0], "kids=[]", "pid 1 has children at its start");
        assert_eq!(
            lines[1], lines[2],
            "/ and /.. differ: the old root is still there"
        );
        c.delete();
    }
    c.assert_clean();
}

/// cwd set to /proc/self/fd/N for every low N, for `run` and for `exec --cwd`: the process
/// must fail to start or end up inside the container's root, never in a host directory.
#[test]
fn cve_2024_21626_cwd_through_leaked_fd_stays_inside() {
    let Some(mut c) = Case::new("21626-cwd") else {
        return;
    };
    // An escaped process climbs to the host's / and finds the case dir there.
    let marker = c.path("escape-marker");
    fs::write(&marker, "ESCAPED-21626\n").expect("write marker");
    let rel = marker.to_string_lossy().trim_start_matches('/').to_string();
    let script = format!(
        "cd ../../../../../../../../../.. 2>/dev/null; cat {rel} 2>/dev/null; echo cwd=$(pwd)"
    );
    for n in 3..=12 {
        c.config["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        c.sh(&script);
        c.write_config();
        let out = c.run();
        assert!(
            !out.stdout.contains("ESCAPED-21626"),
            "cwd /proc/self/fd/{n} escaped the root: {}",
            out.stdout
        );
        if !out.ok() {
            assert!(!out.stderr.trim().is_empty(), "failed without a reason");
        }
        let _ = c.rt(&["delete", "--force", &c.id]);
    }
    c.config["process"]["cwd"] = json!("/");
    c.sh(LOOP);
    c.write_config();
    c.create_and_start();
    for n in 3..=12 {
        let cwd = format!("/proc/self/fd/{n}");
        let out = exec(&c, &["--cwd", &cwd], &["sh", "-c", &script]);
        assert!(
            !out.stdout.contains("ESCAPED-21626"),
            "exec --cwd {cwd} escaped the root: {}",
            out.stdout
        );
    }
}

/// No descriptor reaches the container but stdio and the `--preserve-fds` range: fds the
/// caller leaked without CLOEXEC above the range stay behind (run and exec).
#[test]
fn no_fd_leaks_into_the_container_beyond_stdio_and_preserve_fds() {
    use std::os::unix::process::CommandExt;
    let Some(mut c) = Case::new("fdleak") else {
        return;
    };
    probe::install_probe(&c.rootfs());
    c.args(&["/bin/probe", "fds"]);
    c.write_config();
    let files: Vec<fs::File> = (0..4)
        .map(|i| fs::File::create(c.path(&format!("fd{i}"))).expect("create fd file"))
        .collect();
    let raw: Vec<i32> = files.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    // fds 3..=6 of the runtime: 3 and 4 preserved on purpose, 5 and 6 leaked by the caller.
    let with_fds = |mut cmd: std::process::Command| {
        let raw = raw.clone();
        // SAFETY: the closure only calls dup2, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                // Out of the way first (the files may already sit on 3..=6), then dup2, which
                // leaves the new descriptors without CLOEXEC.
                let mut high = [0i32; 4];
                for (i, fd) in raw.iter().enumerate() {
                    high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 100);
                    if high[i] < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (i, fd) in high.iter().enumerate() {
                    if libc::dup2(*fd, 3 + i as i32) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd
    };
    let listed = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.starts_with("fd "))
            .map(|l| l.to_string())
            .collect()
    };
    let cmd = with_fds(c.command(&[
        "run",
        "--preserve-fds",
        "2",
        "--bundle",
        &c.bundle_str(),
        &c.id,
    ]));
    let out = c
        .spawn_cmd(cmd, "run --preserve-fds 2")
        .wait(CMD_TIMEOUT)
        .check();
    let fds = listed(&out.stdout);
    assert_eq!(fds.len(), 5, "run --preserve-fds 2: {fds:#?}");
    assert!(
        fds[3].ends_with("/fd0") && fds[4].ends_with("/fd1"),
        "{fds:#?}"
    );
    let cmd = with_fds(c.command(&["run", "--bundle", &c.bundle_str(), &c.id]));
    let out = c.spawn_cmd(cmd, "run").wait(CMD_TIMEOUT).check();
    assert_eq!(listed(&out.stdout).len(), 3, "run: {}", out.stdout);

    // exec, and pid 1 of a started container.
    c.sh(LOOP);
    c.write_config();
    let pid = c.create_and_start();
    let cmd = with_fds(c.command(&["exec", "--preserve-fds", "1", &c.id, "/bin/probe", "fds"]));
    let out = c
        .spawn_cmd(cmd, "exec --preserve-fds 1")
        .wait(CMD_TIMEOUT)
        .check();
    let fds = listed(&out.stdout);
    assert_eq!(fds.len(), 4, "exec --preserve-fds 1: {fds:#?}");
    let cmd = with_fds(c.command(&["exec", &c.id, "/bin/probe", "fds"]));
    let out = c.spawn_cmd(cmd, "exec").wait(CMD_TIMEOUT).check();
    assert_eq!(listed(&out.stdout).len(), 3, "exec: {}", out.stdout);
    let init_fds: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read init fds")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(init_fds.len(), 3, "container init fds: {init_fds:?}");
}

/// The runtime's own environment never reaches the container (run, exec, pid 1).
#[test]
fn environment_of_husk_not_leaked_into_the_container() {
    let Some(mut c) = Case::new("envleak") else {
        return;
    };
    c.args(&["cat", "/proc/self/environ"]);
    c.write_config();
    let mut cmd = c.command(&["run", "--bundle", &c.bundle_str(), &c.id]);
    cmd.env("HUSK_LEAK_CANARY", "leaked-5");
    let out = c.spawn_cmd(cmd, "run").wait(CMD_TIMEOUT).check();
    let mut want: Vec<String> = c.config["process"]["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    want.push("HOME=/root".into());
    let mut got: Vec<String> = out
        .stdout
        .split('\0')
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "container env is exactly the config's (+HOME)");

    c.sh(LOOP);
    c.write_config();
    let mut cmd = c.command(&["create", "--bundle", &c.bundle_str(), &c.id]);
    cmd.env("HUSK_LEAK_CANARY", "leaked-5");
    c.spawn_cmd(cmd, "create").wait(CMD_TIMEOUT).check();
    c.start().check();
    let mut cmd = c.command(&[
        "exec",
        &c.id,
        "sh",
        "-c",
        "cat /proc/self/environ /proc/1/environ",
    ]);
    cmd.env("HUSK_LEAK_CANARY", "leaked-5");
    let out = c.spawn_cmd(cmd, "exec").wait(CMD_TIMEOUT).check();
    assert!(!out.stdout.contains("leaked-5"), "{}", out.stdout);
}

// ---------------------------------------------------------------------------------------------
// CVE-2021-30465 / CVE-2023-27561: symlinks on mount targets.
// ---------------------------------------------------------------------------------------------

/// The image plants mount targets that are symlinks out of the rootfs (absolute, and with
/// enough `..` to climb out). A naive runtime follows them on the host; husk must resolve them
/// inside the root: the tmpfs appears where the container would resolve the link, never at the
/// host path.
#[test]
fn cve_2021_30465_mount_target_symlinks_stay_inside_the_root() {
    let Some(mut c) = Case::new("30465") else {
        return;
    };
    let rootfs = c.rootfs();
    let host_rootfs = rootfs.to_string_lossy().into_owned();
    // Host-resolved, these land on <rootfs>/naive-abs and <rootfs>/naive-rel: visible to the
    // container as /naive-abs and /naive-rel. In-root, somewhere else.
    fs::create_dir_all(rootfs.join("naive-abs")).expect("mkdir");
    fs::create_dir_all(rootfs.join("naive-rel")).expect("mkdir");
    std::os::unix::fs::symlink(format!("{host_rootfs}/naive-abs"), rootfs.join("data-abs"))
        .expect("plant symlink");
    let ups = "../".repeat(host_rootfs.matches('/').count() + 5);
    std::os::unix::fs::symlink(
        format!("{ups}{}/naive-rel", host_rootfs.trim_start_matches('/')),
        rootfs.join("data-rel"),
    )
    .expect("plant symlink");
    // Precondition: the links are there and point at the naive targets on the host.
    for l in ["data-abs", "data-rel"] {
        assert!(fs::symlink_metadata(rootfs.join(l))
            .expect("lstat")
            .is_symlink());
        assert!(
            fs::metadata(rootfs.join(l)).expect("stat").is_dir(),
            "{l} resolves on host"
        );
    }
    let mounts = c.config["mounts"].as_array_mut().expect("mounts");
    for d in ["/data-abs", "/data-rel"] {
        mounts.push(
            json!({"destination": d, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}),
        );
    }
    c.sh("awk '$9 == \"tmpfs\" {print $5}' /proc/self/mountinfo");
    c.write_config();
    let out = c.run();
    if !out.ok() {
        assert!(!out.stderr.trim().is_empty(), "failed without a reason");
        return;
    }
    for l in ["/naive-abs", "/naive-rel"] {
        assert!(
            !out.stdout.lines().any(|m| m == l),
            "mount followed the symlink as the host resolves it, onto {l}:\n{}",
            out.stdout
        );
    }
}

/// The image makes /proc a symlink (CVE-2019-19921 / CVE-2023-27561). runc refuses; a runtime
/// that mounts procfs elsewhere must at least leave no reachable procfs unmasked: every procfs
/// mount the container can see has kcore masked and sys/sysrq-trigger read-only.
#[test]
fn cve_2023_27561_proc_symlink_gives_no_unmasked_procfs() {
    let Some(mut c) = Case::new("27561") else {
        return;
    };
    let rootfs = c.rootfs();
    fs::remove_dir(rootfs.join("proc")).expect("rmdir proc");
    fs::create_dir_all(rootfs.join("evil")).expect("mkdir evil");
    std::os::unix::fs::symlink("evil", rootfs.join("proc")).expect("plant /proc symlink");
    assert!(fs::symlink_metadata(rootfs.join("proc"))
        .expect("lstat")
        .is_symlink());
    c.sh(
        r#"grep -q ' - proc ' /proc/self/mountinfo 2>/dev/null || cat /evil/self/mountinfo >/dev/null
for m in $(awk '$9 == "proc" {print $5}' /evil/self/mountinfo /proc/self/mountinfo 2>/dev/null | sort -u); do
  echo "procfs at $m"
  [ -e "$m/kcore" ] && echo "$m/kcore $(stat -c '%t:%T' "$m/kcore")"
  (echo 1 > "$m/sys/kernel/sysrq") 2>/dev/null && echo "$m/sys WRITABLE"
done
true"#,
    );
    c.write_config();
    let out = c.run();
    if !out.ok() {
        assert!(!out.stderr.trim().is_empty(), "failed without a reason");
        return;
    }
    assert!(
        !out.stdout.contains("WRITABLE"),
        "a procfs in the container is not read-only:\n{}",
        out.stdout
    );
    for l in out.stdout.lines().filter(|l| l.contains("/kcore ")) {
        assert!(l.ends_with(" 1:3"), "kcore not masked: {l}\n{}", out.stdout);
    }
    assert!(
        !out.stdout.contains("procfs at /evil"),
        "procfs was mounted on the symlink's target /evil (runc refuses a /proc symlink):\n{}",
        out.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// CVE-2025-31133 / CVE-2025-52565 / CVE-2025-52881: what is mounted over or written to.
// ---------------------------------------------------------------------------------------------

/// Config mounts without a /dev of the runtime's own, so the image's /dev is used; its
/// /dev/null is a symlink to a procfs file. Masking must bind only the real /dev/null (or
/// refuse): a naive runtime binds /proc/sys/kernel/core_pattern, writable, over the masked
/// paths.
#[test]
fn cve_2025_31133_masked_paths_never_bind_a_fake_dev_null() {
    let Some(mut c) = Case::new("31133") else {
        return;
    };
    let rootfs = c.rootfs();
    for (name, plant) in [
        ("symlink", "link"),
        ("regular file", "file"),
        ("dir", "dir"),
    ] {
        let null = rootfs.join("dev/null");
        let _ = fs::remove_file(&null);
        let _ = fs::remove_dir_all(&null);
        match plant {
            "link" => std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", &null)
                .expect("plant /dev/null"),
            "file" => fs::write(&null, "not null\n").expect("plant /dev/null"),
            _ => fs::create_dir_all(&null).expect("plant /dev/null"),
        }
        assert!(
            fs::symlink_metadata(&null).is_ok(),
            "precondition: {name} planted"
        );
        c.config["mounts"]
            .as_array_mut()
            .expect("mounts")
            .retain(|m| !m["destination"].as_str().unwrap_or("").starts_with("/dev"));
        c.sh(
            "for p in /proc/kcore /proc/timer_list /proc/sched_debug; do [ -e $p ] && echo \"$p $(stat -c '%F %t:%T' $p)\"; done; \
             stat -c '%i' /proc/sys/kernel/core_pattern; for p in /proc/kcore /proc/timer_list; do stat -c '%i' $p; done; true",
        );
        c.write_config();
        let out = c.run();
        if !out.ok() {
            assert!(
                !out.stderr.trim().is_empty(),
                "{name}: failed without a reason"
            );
            let _ = c.rt(&["delete", "--force", &c.id]);
            continue;
        }
        for l in out.stdout.lines().filter(|l| l.starts_with("/proc/")) {
            assert!(
                l.ends_with("character special file 1:3"),
                "/dev/null planted as {name}: masked path is not the null device: {l}\n{}",
                out.stdout
            );
        }
        let inos: Vec<&str> = out.stdout.lines().filter(|l| !l.starts_with('/')).collect();
        assert!(
            inos.len() < 2 || !inos[1..].contains(&inos[0]),
            "core_pattern bound over a masked path:\n{}",
            out.stdout
        );
    }
}

/// With a terminal, the pty is bound on /dev/console. The image's /dev (no /dev of the
/// runtime's own) has /dev/console as a symlink to a procfs file: the bind must go onto
/// /dev/console itself (a file the runtime made) or be refused, never through the link.
#[test]
fn cve_2025_52565_console_bind_not_redirected() {
    let Some(mut c) = Case::new("52565") else {
        return;
    };
    let rootfs = c.rootfs();
    std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", rootfs.join("dev/console"))
        .expect("plant /dev/console");
    fs::create_dir_all(rootfs.join("dev/pts")).expect("mkdir /dev/pts");
    // The real devices the process needs, from the host (bind), but not /dev itself.
    c.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .retain(|m| {
            let d = m["destination"].as_str().unwrap_or("");
            d == "/dev/pts" || !d.starts_with("/dev")
        });
    for d in ["null", "zero", "ptmx"] {
        let p = rootfs.join("dev").join(d);
        let _ = fs::remove_file(&p);
        if d == "ptmx" {
            std::os::unix::fs::symlink("pts/ptmx", &p).expect("ptmx link");
        } else {
            fs::write(&p, "").expect("bind target");
            c.config["mounts"]
                .as_array_mut()
                .expect("mounts")
                .push(json!({
                    "destination": format!("/dev/{d}"), "type": "bind",
                    "source": format!("/dev/{d}"), "options": ["bind"]
                }));
        }
    }
    c.config["process"]["terminal"] = json!(true);
    c.sh("awk '$5 ~ /console|core_pattern/ {print $5, $9}' /proc/self/mountinfo");
    c.write_config();
    let sock = ConsoleSocket::bind(c.path("console.sock"));
    let create = c.spawn(&[
        "create",
        "--bundle",
        &c.bundle_str(),
        "--console-socket",
        &sock.path_str(),
        &c.id,
    ]);
    let master = sock.recv_master(WAIT);
    let out = create.wait(CMD_TIMEOUT);
    if !out.ok() {
        assert!(!out.stderr.trim().is_empty(), "failed without a reason");
        return;
    }
    let master = master.expect("pty master");
    c.start().check();
    let printed = read_pty(&master, WAIT);
    c.wait_status("stopped", WAIT);
    assert!(
        !printed.contains("core_pattern"),
        "the pty was bound over /proc/sys/kernel/core_pattern through the /dev/console symlink:\n{printed}"
    );
}

/// A config mount binds /proc/sys/kernel/domainname over /proc/sys/kernel/shmmax, then a
/// sysctl writes kernel.shmmax. The write must reach the real shmmax (or be refused), never
/// the file mounted over it (runc's fix writes through a private procfs).
#[test]
fn cve_2025_52881_sysctl_write_not_redirected_by_a_mount() {
    let Some(mut c) = Case::new("52881") else {
        return;
    };
    c.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({
            "destination": "/proc/sys/kernel/shmmax", "type": "bind",
            "source": "/proc/sys/kernel/domainname", "options": ["bind"]
        }));
    c.config["linux"]["sysctl"] = json!({"kernel.shmmax": "424242"});
    c.sh("echo domainname=$(cat /proc/sys/kernel/domainname); echo hostname=$(hostname)");
    c.write_config();
    let out = c.run();
    if !out.ok() {
        assert!(!out.stderr.trim().is_empty(), "failed without a reason");
        return;
    }
    assert!(
        !out.stdout.contains("domainname=424242"),
        "the sysctl write went to the file mounted over /proc/sys/kernel/shmmax:\n{}",
        out.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// CVE-2022-29162: inheritable capabilities.
// ---------------------------------------------------------------------------------------------

fn cap_line(status: &str, key: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {status}"));
    u64::from_str_radix(line[key.len()..].trim(), 16).expect("hex caps")
}

/// `husk spec` has no inheritable capabilities; a non-root process then gets nothing from a
/// binary with file-inheritable caps, and `exec --cap` adds none to the inheritable set.
#[test]
fn cve_2022_29162_no_inheritable_capabilities() {
    if skip() {
        return;
    }
    let bin = bin_under_test();
    let config = spec(&bin, &[]);
    let inh = &config["process"]["capabilities"]["inheritable"];
    assert!(
        inh.is_null() || inh.as_array().is_some_and(|a| a.is_empty()),
        "husk spec has inheritable capabilities: {inh}"
    );
    let mut c = Case::with_config("29162", &bin, config);
    // The attack: a binary with CAP_NET_BIND_SERVICE in its inheritable (and effective) file
    // set, run by uid 1000 without no_new_privs.
    // busybox picks the applet by argv[0]: the copy is a "grep" in a dir of its own.
    fs::create_dir_all(c.rootfs().join("capdir")).expect("mkdir capdir");
    let capbb = c.rootfs().join("capdir/grep");
    fs::copy("/bin/busybox", &capbb).expect("copy busybox");
    let set = std::process::Command::new("setcap")
        .args(["cap_net_bind_service+ei"])
        .arg(&capbb)
        .status();
    if !set.is_ok_and(|s| s.success()) {
        println!("SKIP file-caps part: setcap failed");
        return;
    }
    let get = std::process::Command::new("getcap").arg(&capbb).output();
    let get = get.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    assert!(
        get.as_deref()
            .unwrap_or("")
            .contains("cap_net_bind_service"),
        "precondition: file caps planted ({get:?})"
    );
    c.config["process"]["noNewPrivileges"] = json!(false);
    c.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    c.args(&["/capdir/grep", "^Cap", "/proc/self/status"]);
    c.write_config();
    let out = c.run().check();
    assert_eq!(cap_line(&out.stdout, "CapInh:"), 0, "{}", out.stdout);
    assert_eq!(cap_line(&out.stdout, "CapPrm:"), 0, "{}", out.stdout);
    assert_eq!(cap_line(&out.stdout, "CapEff:"), 0, "{}", out.stdout);

    c.config["process"]["user"] = json!({"uid": 0, "gid": 0});
    c.sh(LOOP);
    c.write_config();
    c.create_and_start();
    let out = exec(
        &c,
        &["--cap", "CAP_NET_RAW"],
        &["grep", "^Cap", "/proc/self/status"],
    )
    .check();
    assert_eq!(
        cap_line(&out.stdout, "CapInh:"),
        0,
        "exec --cap: {}",
        out.stdout
    );
}

/// Bounding, effective, permitted, inheritable and ambient exactly as configured, all five
/// different, for a non-root process (after execve it keeps the ambient set in permitted and
/// effective) and through `exec --process`.
#[test]
fn exactly_the_configured_five_capability_sets() {
    let Some(mut c) = Case::new("caps5") else {
        return;
    };
    // bits: CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, KILL 5, NET_BIND_SERVICE 10, NET_RAW 13
    let caps = json!({
        "bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        "permitted": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_CHOWN", "CAP_KILL"],
        "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        "ambient": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
    });
    let bit = |b: u32| 1u64 << b;
    let bnd = bit(0) | bit(1) | bit(3) | bit(5) | bit(10) | bit(13);
    let inh = bit(5) | bit(10) | bit(13);
    let amb = bit(5) | bit(10);
    c.config["process"]["capabilities"] = caps.clone();
    c.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    c.config["process"]["noNewPrivileges"] = json!(false);
    c.args(&["grep", "^Cap", "/proc/self/status"]);
    c.write_config();
    let out = c.run().check();
    let s = &out.stdout;
    assert_eq!(cap_line(s, "CapBnd:"), bnd, "{s}");
    assert_eq!(cap_line(s, "CapInh:"), inh, "{s}");
    assert_eq!(cap_line(s, "CapAmb:"), amb, "{s}");
    assert_eq!(cap_line(s, "CapPrm:"), amb, "{s}");
    assert_eq!(cap_line(s, "CapEff:"), amb, "{s}");

    // The same through exec --process, into a container whose own sets are the default.
    let mut p = c.config["process"].clone();
    p["args"] = json!(["grep", "^Cap", "/proc/self/status"]);
    c.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_ADMIN"],
        "permitted": ["CAP_KILL"], "effective": ["CAP_KILL"],
    });
    c.config["process"]["user"] = json!({"uid": 0, "gid": 0});
    c.sh(LOOP);
    c.write_config();
    c.create_and_start();
    let pfile = c.path("process.json");
    fs::write(&pfile, serde_json::to_string(&p).expect("encode")).expect("write process");
    let out = exec(&c, &["--process", &pfile.to_string_lossy()], &[]).check();
    let s = &out.stdout;
    assert_eq!(cap_line(s, "CapBnd:"), bnd, "exec: {s}");
    assert_eq!(cap_line(s, "CapInh:"), inh, "exec: {s}");
    assert_eq!(cap_line(s, "CapAmb:"), amb, "exec: {s}");
    assert_eq!(cap_line(s, "CapPrm:"), amb, "exec: {s}");
}

// ---------------------------------------------------------------------------------------------
// setgroups in user namespaces.
// ---------------------------------------------------------------------------------------------

/// Rootless (husk run by an unprivileged user, mapping only its own ids): setgroups must be
/// denied in the container's user namespace, or a user could drop a supplementary group
/// that denies access through negative permissions (CVE-2014-8989).
#[test]
fn setgroups_denied_in_a_rootless_user_namespace() {
    if skip() {
        return;
    }
    let bin = bin_under_test();
    let dir = std::env::temp_dir().join(format!("husk-sec-rootless-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let bundle = dir.join("bundle");
    make_rootfs(&bundle.join("rootfs"));
    let mut config: Value = spec(&bin, &["--rootless"]);
    let uid = 1000;
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["sh", "-c", "cat /proc/self/setgroups; id"]);
    config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
    config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
    config["linux"]
        .as_object_mut()
        .expect("linux")
        .remove("cgroupsPath");
    fs::write(
        bundle.join("config.json"),
        serde_json::to_string(&config).expect("encode"),
    )
    .expect("write config");
    let chown = std::process::Command::new("chown")
        .args(["-R", &format!("{uid}:{uid}")])
        .arg(&dir)
        .status();
    assert!(chown.is_ok_and(|s| s.success()), "chown the bundle");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    let root = dir.join("state");
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            &uid.to_string(),
            "--regid",
            &uid.to_string(),
            "--clear-groups",
            "--",
        ])
        .arg(&bin)
        .arg("--root")
        .arg(&root)
        .args(["--rootless", "true", "run", "--bundle"])
        .arg(&bundle)
        .arg(format!("rootless-{}", std::process::id()))
        .env("XDG_RUNTIME_DIR", &dir)
        .output()
        .expect("run setpriv");
    let _ = fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rootless run failed: {stderr}\n{stdout}"
    );
    assert!(
        stdout.lines().next() == Some("deny"),
        "setgroups not denied in the rootless user namespace:\n{stdout}"
    );
}
