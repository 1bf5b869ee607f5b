//! Checkpoint and restore with CRIU, side by side with runc using the same CRIU (`--criu PATH`):
//! a busybox counter container is checkpointed and restored and goes on counting from where it
//! stopped — plainly, with `--leave-running`, twice in a row, with a tmpfs and a bind mount, with
//! a seccomp profile, and with a TCP listener in its own network namespace — then the bad inputs
//! (husk only: they check husk's messages), each leaving nothing behind.
//!
//! The container's stdio are pipes, as an engine gives them: CRIU can't dump a descriptor of a
//! file outside the container's mounts (a host /dev/null as stdin fails the dump with "Can't
//! lookup mount"), for runc as for husk. The restore gets new pipes in their place.
//!
//! CRIU must be 4.1 or newer (older ones can't dump on this kernel): `$HUSK_CRIU`, else
//! /opt/criu/sbin/criu (scripts/setup builds it there), else `criu` on PATH. Without one the tests
//! print SKIP and the reason.
mod common;
#[path = "common/engines.rs"]
mod engines;
use common::*;
use engines::{Driver, Engines};
use serde_json::json;
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const COUNTER: &str = "i=0; while :; do echo $i $(extra); i=$((i+1)); sleep 0.1; done";

/// The CRIU to use, or `None` after printing why the tests skip.
fn criu() -> Option<String> {
    static FOUND: OnceLock<Result<String, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let mut tried = Vec::new();
        let env = std::env::var("HUSK_CRIU").ok().filter(|s| !s.is_empty());
        let path_criu = std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("criu"))
                .find(|p| p.is_file())
        });
        let candidates: Vec<PathBuf> = env
            .map(PathBuf::from)
            .into_iter()
            .chain(std::iter::once(PathBuf::from("/opt/criu/sbin/criu")))
            .chain(path_criu)
            .collect();
        for c in candidates {
            let out = Command::new(&c).arg("--version").output();
            let text = out
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let v = text
                .lines()
                .find_map(|l| l.strip_prefix("Version: "))
                .unwrap_or("")
                .trim()
                .to_string();
            let mut parts = v.split('.').map(|n| n.parse::<u32>().unwrap_or(0));
            let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
            if (major, minor) >= (4, 1) {
                return Ok(c.to_string_lossy().into_owned());
            }
            tried.push(format!(
                "{} ({})",
                c.display(),
                if v.is_empty() { "absent" } else { &v }
            ));
        }
        Err(format!(
            "no CRIU >= 4.1 (tried {}): run scripts/setup, which builds one from ../shared/criu",
            tried.join(", ")
        ))
    });
    match found {
        Ok(p) => Some(p.clone()),
        Err(why) => {
            println!("SKIP: {why}");
            None
        }
    }
}

/// The two runtimes, each with a config from runc's `spec`: (label, case).
fn both(name: &str) -> Option<(String, Vec<Case>)> {
    if skip() {
        return None;
    }
    let criu = criu()?;
    let runc = runc_bin();
    Some((
        criu,
        vec![
            Case::with(name, &bin_under_test(), &runc),
            Case::with(&format!("{name}-runc"), &runc, &runc),
        ],
    ))
}

/// The read end of a container's stdout, non-blocking, with what has been read so far.
struct Output {
    file: File,
    text: String,
    _stdin: Option<std::process::ChildStdin>,
}

impl Output {
    fn from_child(child: &mut Child) -> Output {
        let fd: OwnedFd = child.stdout.take().expect("piped stdout").into();
        let file = File::from(fd);
        // SAFETY: plain fcntl on a descriptor we own.
        unsafe {
            let fl = libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_GETFL);
            libc::fcntl(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                libc::F_SETFL,
                fl | libc::O_NONBLOCK,
            );
        }
        Output {
            file,
            text: String::new(),
            _stdin: child.stdin.take(),
        }
    }

    fn from_fd(fd: OwnedFd) -> Output {
        let file = File::from(fd);
        // SAFETY: plain fcntl on a descriptor we own.
        unsafe {
            let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
            libc::fcntl(
                raw,
                libc::F_SETFL,
                libc::fcntl(raw, libc::F_GETFL) | libc::O_NONBLOCK,
            );
        }
        Output {
            file,
            text: String::new(),
            _stdin: None,
        }
    }

    fn pump(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.file.read(&mut buf) {
            if n == 0 {
                break;
            }
            self.text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    /// Complete lines read so far.
    fn lines(&mut self) -> Vec<String> {
        self.pump();
        let complete = match self.text.rfind('\n') {
            Some(i) => &self.text[..i],
            None => "",
        };
        complete.lines().map(str::to_string).collect()
    }

    /// Waits for at least `n` lines; panics after 10 s with what came.
    fn wait_lines(&mut self, n: usize, what: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let l = self.lines();
            if l.len() >= n {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: wanted {n} lines of output, got {l:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn number(line: &str) -> u64 {
    line.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a counter line: {line:?}"))
}

/// `<rt> --criu C ARGS` with all three stdio piped; waits for the runtime to exit (the
/// container keeps the pipes) and returns its status, its stderr so far, and the stdout reader.
fn piped(c: &Case, criu: &str, args: &[&str]) -> (bool, String, Output) {
    let mut full = vec!["--criu", criu];
    full.extend_from_slice(args);
    let mut cmd = c.command(&full);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the runtime");
    let deadline = Instant::now() + CMD_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`{}` did not finish", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let err_fd: OwnedFd = child.stderr.take().expect("piped stderr").into();
    let mut err = Output {
        file: File::from(err_fd),
        text: String::new(),
        _stdin: None,
    };
    // SAFETY: plain fcntl on a descriptor we own.
    unsafe {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&err.file);
        libc::fcntl(
            fd,
            libc::F_SETFL,
            libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
        );
    }
    err.pump();
    let out = Output::from_child(&mut child);
    (status.success(), err.text, out)
}

/// `<rt> --criu C ARGS` with stdio in files (checkpoint, and failing restores).
fn rt(c: &Case, criu: &str, args: &[&str]) -> Out {
    let mut full = vec!["--criu", criu];
    full.extend_from_slice(args);
    c.rt(&full)
}

fn counter(c: &mut Case, extra: &str) {
    let script = format!("extra() {{ {extra}; }}; {COUNTER}");
    c.sh(&script);
    c.write_config();
}

fn start(c: &Case, criu: &str) -> Output {
    let (ok, err, mut out) = piped(c, criu, &["run", "-d", "--bundle", &c.bundle_str(), &c.id]);
    assert!(ok, "{}: run -d failed: {err}", c.bin.display());
    c.state();
    out.wait_lines(3, "the counter before the checkpoint");
    out
}

fn checkpoint(c: &Case, criu: &str, image: &str, extra: &[&str]) -> Out {
    let mut args = vec!["checkpoint", "--image-path", image];
    args.extend_from_slice(extra);
    args.push(&c.id);
    rt(c, criu, &args)
}

fn restore(c: &Case, criu: &str, image: &str) -> Output {
    restore_with(c, criu, image, &[])
}

fn restore_with(c: &Case, criu: &str, image: &str, flags: &[&str]) -> Output {
    let bundle = c.bundle_str();
    let mut args = vec!["restore", "-d", "--image-path", image, "--bundle", &bundle];
    args.extend_from_slice(flags);
    args.push(&c.id);
    let (ok, err, out) = piped(c, criu, &args);
    assert!(
        ok,
        "{}: restore failed: {err}\nCRIU's log:\n{}",
        c.bin.display(),
        std::fs::read_to_string(Path::new(image).join("restore.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Error"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    out
}

/// Checkpoint `c` (counting on `before`), restore it, and check it counts on from where the
/// dump caught it; returns the restored container's output.
fn roundtrip(c: &Case, criu: &str, before: &mut Output, image: &str) -> Output {
    roundtrip_with(c, criu, before, image, &[])
}

fn roundtrip_with(
    c: &Case,
    criu: &str,
    before: &mut Output,
    image: &str,
    flags: &[&str],
) -> Output {
    let seen = before.lines();
    let last = number(seen.last().expect("output before"));
    checkpoint(c, criu, image, flags).check();
    // Without --leave-running the container is gone after a checkpoint (runc: destroyed).
    assert!(
        c.state().is_none(),
        "{}: still there after checkpoint",
        c.bin.display()
    );
    let tail = before.lines();
    let dumped_at = number(tail.last().expect("output"));
    let restore_flags: Vec<&str> = flags
        .iter()
        .copied()
        .filter(|f| *f == "--tcp-established")
        .collect();
    let mut after = restore_with(c, criu, image, &restore_flags);
    let st = c.state().expect("state after restore");
    assert_eq!(st["status"], "running", "{}: {st}", c.bin.display());
    let pid = st["pid"].as_i64().unwrap_or(0) as i32;
    assert!(
        pid > 0 && start_time(pid).is_some(),
        "{}: restored pid {pid} is not alive",
        c.bin.display()
    );
    let lines = after.wait_lines(3, "the counter after the restore");
    let first = number(&lines[0]);
    assert!(
        first > last && first <= dumped_at + 2,
        "{}: counted {last}..{dumped_at} before the checkpoint, restored at {first}",
        c.bin.display()
    );
    for w in lines.windows(2) {
        assert_eq!(
            number(&w[1]),
            number(&w[0]) + 1,
            "{}: {lines:?}",
            c.bin.display()
        );
    }
    after
}

#[test]
fn counter_continues_after_restore() {
    let Some((criu, cases)) = both("ckpt-counter") else {
        return;
    };
    for mut c in cases {
        counter(&mut c, "true");
        let mut out = start(&c, &criu);
        let img = c.path_str("image");
        roundtrip(&c, &criu, &mut out, &img);
    }
}

#[test]
fn twice_in_a_row_with_new_pipes_each_time() {
    let Some((criu, cases)) = both("ckpt-twice") else {
        return;
    };
    for mut c in cases {
        counter(&mut c, "true");
        let mut out = start(&c, &criu);
        let mut out = roundtrip(&c, &criu, &mut out, &c.path_str("image1"));
        roundtrip(&c, &criu, &mut out, &c.path_str("image2"));
    }
}

#[test]
fn leave_running_keeps_counting_and_the_image_restores() {
    let Some((criu, cases)) = both("ckpt-leave") else {
        return;
    };
    for mut c in cases {
        counter(&mut c, "true");
        let mut out = start(&c, &criu);
        let img = c.path_str("image");
        let pid = c.pid();
        checkpoint(&c, &criu, &img, &["--leave-running"]).check();
        let at = number(out.lines().last().expect("output"));
        assert_eq!(c.status(), "running", "{}", c.bin.display());
        assert_eq!(c.pid(), pid);
        let n = out.lines().len();
        let more = out.wait_lines(n + 3, "the counter after --leave-running");
        assert!(number(more.last().unwrap()) > at + 2);
        // The original goes; the image brings the container back as it was at the dump.
        c.rt(&["delete", "--force", &c.id]).check();
        let mut after = restore(&c, &criu, &img);
        let first = number(&after.wait_lines(2, "restored counter")[0]);
        assert!(
            first <= at + 2,
            "{}: restored at {first}, dumped at {at}",
            c.bin.display()
        );
        assert_eq!(c.status(), "running");
    }
}

#[test]
fn a_paused_container_checkpoints_and_stays_paused() {
    let Some((criu, cases)) = both("ckpt-paused") else {
        return;
    };
    for mut c in cases {
        counter(&mut c, "true");
        let mut out = start(&c, &criu);
        c.rt(&["pause", &c.id]).check();
        checkpoint(&c, &criu, &c.path_str("image"), &["--leave-running"]).check();
        assert_eq!(c.status(), "paused", "{}", c.bin.display());
        c.rt(&["resume", &c.id]).check();
        let n = out.lines().len();
        out.wait_lines(n + 3, "counting after resume");
    }
}

#[test]
fn tmpfs_and_bind_mount_come_back() {
    let Some((criu, cases)) = both("ckpt-mounts") else {
        return;
    };
    for mut c in cases {
        let host = c.path("hostdir");
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("f"), "from-host").unwrap();
        let mounts = c.config["mounts"].as_array_mut().unwrap();
        mounts.push(
            json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "size=1m"]}),
        );
        mounts.push(
            json!({"destination": "/data", "type": "bind", "source": host,
                           "options": ["rbind", "rw"]}),
        );
        // The tmpfs content is written once, before the checkpoint: CRIU must carry it.
        c.sh(&format!(
            "echo in-tmpfs > /scratch/f; extra() {{ cat /scratch/f /data/f | tr '\\n' ' '; }}; {COUNTER}"
        ));
        c.write_config();
        let mut out = start(&c, &criu);
        let mut after = roundtrip(&c, &criu, &mut out, &c.path_str("image"));
        let l = after.wait_lines(2, "restored counter");
        assert!(
            l[1].contains("in-tmpfs") && l[1].contains("from-host"),
            "{}: {l:?}",
            c.bin.display()
        );
        // The bind is live: a change on the host shows inside.
        std::fs::write(host.join("f"), "changed").unwrap();
        let n = l.len();
        let l = after.wait_lines(n + 3, "after the host change");
        assert!(
            l.last().unwrap().contains("changed"),
            "{}: {l:?}",
            c.bin.display()
        );
    }
}

#[test]
fn devices_come_back_usable() {
    let Some((criu, cases)) = both("ckpt-dev") else {
        return;
    };
    for mut c in cases {
        c.config["linux"]["devices"] = json!([{"path": "/dev/myzero", "type": "c", "major": 1,
                                               "minor": 5, "fileMode": 438, "uid": 0, "gid": 0}]);
        c.config["linux"]["resources"]["devices"]
            .as_array_mut()
            .expect("runc spec has device rules")
            .push(json!({"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}));
        counter(&mut c, "head -c 3 /dev/myzero | wc -c");
        let mut out = start(&c, &criu);
        assert!(
            out.lines()[0].ends_with(" 3"),
            "{}: {:?}",
            c.bin.display(),
            out.lines()
        );
        let mut after = roundtrip(&c, &criu, &mut out, &c.path_str("image"));
        for l in after.wait_lines(3, "restored counter") {
            assert!(
                l.ends_with(" 3"),
                "{}: device unusable after restore: {l}",
                c.bin.display()
            );
        }
    }
}

#[test]
fn seccomp_profile_survives() {
    let Some((criu, cases)) = both("ckpt-seccomp") else {
        return;
    };
    for mut c in cases {
        c.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
        counter(
            &mut c,
            "mkdir /tmp/x$i 2>/dev/null && echo made || echo denied; grep ^Seccomp: /proc/self/status | tr -d '\\t'",
        );
        let mut out = start(&c, &criu);
        assert!(
            out.lines()[0].contains("denied Seccomp:2"),
            "{:?}",
            out.lines()
        );
        let mut after = roundtrip(&c, &criu, &mut out, &c.path_str("image"));
        for l in after.wait_lines(3, "restored counter") {
            assert!(l.contains("denied Seccomp:2"), "{}: {l}", c.bin.display());
        }
    }
}

#[test]
fn tcp_listener_in_its_own_network_namespace() {
    let Some((criu, cases)) = both("ckpt-tcp") else {
        return;
    };
    for mut c in cases {
        // Loopback up needs CAP_NET_ADMIN inside; runc's spec has its own network namespace.
        for set in ["bounding", "effective", "permitted"] {
            if let Some(a) = c.config["process"]["capabilities"][set].as_array_mut() {
                a.push(json!("CAP_NET_ADMIN"));
            }
        }
        c.sh(&format!(
            "ip link set lo up; nc -ll -p 7007 -e echo pong & extra() {{ true; }}; {COUNTER}"
        ));
        c.write_config();
        let mut out = start(&c, &criu);
        let ask = |c: &Case| {
            c.rt(&[
                "exec",
                &c.id,
                "sh",
                "-c",
                "echo ping | nc -w 2 127.0.0.1 7007",
            ])
        };
        let o = ask(&c);
        assert!(
            o.stdout.contains("pong"),
            "{}: before: {o:?}",
            c.bin.display()
        );
        let _after = roundtrip(&c, &criu, &mut out, &c.path_str("image"));
        // runc (and so husk) restores the network namespace "empty" (CRIU's --empty-ns net:
        // runc manages no network devices), so lo comes back down and the listening socket,
        // restored, is reachable only once lo is up again.
        let o = ask(&c);
        let reached_down = o.stdout.contains("pong");
        println!(
            "{}: listener reachable before lo is up again: {reached_down}",
            c.bin.display()
        );
        c.rt(&["exec", &c.id, "ip", "link", "set", "lo", "up"]);
        let o2 = ask(&c);
        assert!(
            o2.stdout.contains("pong"),
            "{}: listener gone after restore (lo down: {reached_down}): {o2:?}",
            c.bin.display()
        );
    }
}

#[test]
fn restore_as_a_new_container_in_its_own_cgroup() {
    let Some((criu, cases)) = both("ckpt-newcg") else {
        return;
    };
    for mut c in cases {
        counter(&mut c, "true");
        let mut out = start(&c, &criu);
        let img = c.path_str("image");
        let last = number(out.lines().last().expect("output"));
        checkpoint(&c, &criu, &img, &[]).check();
        // Another id, bundle, state root and cgroupsPath: the restored tree must land in the
        // new container's cgroup.
        let mut d = Case::with(&format!("{}-new", c.id), &c.bin, &runc_bin());
        counter(&mut d, "true");
        let mut after = restore(&d, &criu, &img);
        let first = number(&after.wait_lines(2, "restored counter")[0]);
        assert!(
            first > last,
            "{}: restored at {first} after {last}",
            c.bin.display()
        );
        let pid = d.pid();
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        assert!(
            cg.contains(&d.cgroups_path())
                && !cg.contains(&format!("{}:", c.cgroups_path()))
                && !cg.contains(&format!("{}\n", c.cgroups_path())),
            "{}: restored into the wrong cgroup:\n{cg}",
            c.bin.display()
        );
    }
}

#[test]
fn terminal_comes_back_through_the_console_socket() {
    let Some((criu, cases)) = both("ckpt-tty") else {
        return;
    };
    for mut c in cases {
        c.config["process"]["terminal"] = json!(true);
        counter(&mut c, "true");
        let sock = ConsoleSocket::bind(c.path("console.sock"));
        let bundle = c.bundle_str();
        let s = sock.path_str();
        rt(
            &c,
            &criu,
            &[
                "run",
                "-d",
                "--console-socket",
                &s,
                "--bundle",
                &bundle,
                &c.id,
            ],
        )
        .check();
        let master = sock
            .recv_master(Duration::from_secs(10))
            .expect("the pty master");
        let mut out = Output::from_fd(master);
        let last = number(out.wait_lines(3, "counter on the terminal").last().unwrap());
        let img = c.path_str("image");
        checkpoint(&c, &criu, &img, &[]).check();
        let sock2 = ConsoleSocket::bind(c.path("console2.sock"));
        let s2 = sock2.path_str();
        let o = rt(
            &c,
            &criu,
            &[
                "restore",
                "-d",
                "--console-socket",
                &s2,
                "--image-path",
                &img,
                "--bundle",
                &bundle,
                &c.id,
            ],
        );
        assert!(
            o.ok(),
            "{}: restore with a terminal: {o:?}",
            c.bin.display()
        );
        let master = sock2
            .recv_master(Duration::from_secs(10))
            .expect("the new pty master");
        let mut after = Output::from_fd(master);
        let l = after.wait_lines(3, "counter on the restored terminal");
        assert!(
            number(&l[0]) > last,
            "{}: {l:?} after {last}",
            c.bin.display()
        );
        assert_eq!(c.status(), "running");
    }
}

#[test]
fn restore_in_the_foreground_exits_with_the_container() {
    let Some((criu, cases)) = both("ckpt-fg") else {
        return;
    };
    for mut c in cases {
        c.sh("i=0; while [ $i -lt 25 ]; do echo $i; i=$((i+1)); sleep 0.1; done; exit 7");
        c.write_config();
        let mut out = start(&c, &criu);
        let last = number(out.lines().last().expect("output"));
        let img = c.path_str("image");
        checkpoint(&c, &criu, &img, &[]).check();
        // Without --detach the runtime waits for the restored container and exits with its
        // status, then the container is gone.
        let mut cmd = c.command(&[
            "--criu",
            &criu,
            "restore",
            "--image-path",
            &img,
            "--bundle",
            &c.bundle_str(),
            &c.id,
        ]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn restore");
        let o = child.wait_with_output().expect("wait for restore");
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(7), "{}: {o:?}", c.bin.display());
        let nums: Vec<u64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        assert!(
            nums.first().is_some_and(|n| *n > last) && nums.last() == Some(&24),
            "{}: {nums:?} after {last}",
            c.bin.display()
        );
        assert!(
            c.state().is_none(),
            "{}: state left after the foreground restore",
            c.bin.display()
        );
    }
}

#[test]
fn hooks_run_at_restore_with_the_restored_pid() {
    let Some((criu, cases)) = both("ckpt-hooks") else {
        return;
    };
    for mut c in cases {
        let out_file = c.path("hook.json");
        // runc runs prestart and createRuntime hooks when CRIU has set up the namespaces.
        c.config["hooks"] = json!({"createRuntime": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("cat > {}", out_file.display())]
        }]});
        counter(&mut c, "true");
        let mut out = start(&c, &criu);
        std::fs::remove_file(&out_file).expect("the hook ran at create");
        roundtrip(&c, &criu, &mut out, &c.path_str("image"));
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{}: no hook state at restore: {e}", c.bin.display()));
        assert_eq!(
            state["pid"].as_i64(),
            Some(i64::from(c.pid())),
            "{}: {state}",
            c.bin.display()
        );
    }
}

/// A network namespace of the test's own (`ip netns add`), removed on drop.
struct NetNs(String);

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn a_joined_network_namespace_is_external_and_rejoined() {
    let Some((criu, cases)) = both("ckpt-netns") else {
        return;
    };
    for mut c in cases {
        let ns = NetNs(format!("ckpt-{}", c.id));
        let ok = Command::new("ip").args(["netns", "add", &ns.0]).status();
        assert!(ok.is_ok_and(|s| s.success()), "ip netns add {}", ns.0);
        let path = format!("/run/netns/{}", ns.0);
        for n in c.config["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "network" {
                n["path"] = json!(path);
            }
        }
        counter(&mut c, "true");
        let mut out = start(&c, &criu);
        let want = std::fs::metadata(&path)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap();
        roundtrip(&c, &criu, &mut out, &c.path_str("image"));
        let link = std::fs::read_link(format!("/proc/{}/ns/net", c.pid())).unwrap();
        assert_eq!(
            link.to_string_lossy(),
            format!("net:[{want}]"),
            "{}: not back in {path}",
            c.bin.display()
        );
        c.rt(&["delete", "--force", &c.id]).check();
    }
}

#[test]
fn checkpoints_are_interchangeable_with_runc() {
    let Some((criu, cases)) = both("ckpt-cross") else {
        return;
    };
    let (husk, runc) = (&cases[0].bin, &cases[1].bin);
    for (from, to) in [(husk, runc), (runc, husk)] {
        let mut a = Case::with("ckpt-cross-a", from, runc);
        counter(&mut a, "true");
        let mut out = start(&a, &criu);
        let last = number(out.lines().last().expect("output"));
        let img = a.path_str("image");
        checkpoint(&a, &criu, &img, &[]).check();
        let mut b = Case::with("ckpt-cross-b", to, runc);
        counter(&mut b, "true");
        let mut after = restore(&b, &criu, &img);
        let first = number(&after.wait_lines(2, "restored by the other runtime")[0]);
        assert!(
            first > last,
            "{} → {}: {first} after {last}",
            from.display(),
            to.display()
        );
        assert_eq!(b.status(), "running");
    }
}

// --- bad input (husk's messages) ---

fn husk_case(name: &str) -> Option<(String, Case)> {
    if skip() {
        return None;
    }
    let criu = criu()?;
    Some((criu, Case::with(name, &bin_under_test(), &runc_bin())))
}

#[test]
fn checkpoint_refuses_a_container_that_is_not_running() {
    let Some((criu, mut c)) = husk_case("ckpt-created") else {
        return;
    };
    counter(&mut c, "true");
    c.create().check();
    let img = c.path_str("image");
    let o = checkpoint(&c, &criu, &img, &[]).check_fails();
    assert!(
        o.stderr.contains("created") && o.stderr.contains("checkpoint"),
        "{o:?}"
    );
    assert_eq!(c.status(), "created");
    let o = rt(
        &c,
        &criu,
        &["checkpoint", "--image-path", &img, "no-such-id"],
    )
    .check_fails();
    assert!(o.stderr.contains("does not exist"), "{o:?}");
}

#[test]
fn checkpoint_refuses_a_non_empty_image_path() {
    let Some((criu, mut c)) = husk_case("ckpt-nonempty") else {
        return;
    };
    counter(&mut c, "true");
    let mut out = start(&c, &criu);
    let img = c.path("image");
    std::fs::create_dir_all(&img).unwrap();
    std::fs::write(img.join("old"), "x").unwrap();
    let o = checkpoint(&c, &criu, &img.to_string_lossy(), &[]).check_fails();
    assert!(
        o.stderr.contains("--image-path") && o.stderr.contains("not empty"),
        "{o:?}"
    );
    // Untouched: still running and counting.
    assert_eq!(c.status(), "running");
    let n = out.lines().len();
    out.wait_lines(n + 2, "still counting");
}

#[test]
fn restore_refuses_an_existing_id_and_a_directory_that_is_no_checkpoint() {
    let Some((criu, mut c)) = husk_case("ckpt-exists") else {
        return;
    };
    counter(&mut c, "true");
    let mut out = start(&c, &criu);
    let img = c.path_str("image");
    checkpoint(&c, &criu, &img, &["--leave-running"]).check();
    let o = rt(
        &c,
        &criu,
        &[
            "restore",
            "-d",
            "--image-path",
            &img,
            "--bundle",
            &c.bundle_str(),
            &c.id,
        ],
    )
    .check_fails();
    assert!(o.stderr.contains("already exists"), "{o:?}");
    assert_eq!(c.status(), "running");
    let n = out.lines().len();
    out.wait_lines(n + 2, "the original still counts");
    // A directory without inventory.img.
    let empty = c.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let other = format!("{}-b", c.id);
    c.track_id(&other);
    let o = rt(
        &c,
        &criu,
        &[
            "restore",
            "-d",
            "--image-path",
            &empty.to_string_lossy(),
            "--bundle",
            &c.bundle_str(),
            &other,
        ],
    )
    .check_fails();
    assert!(
        o.stderr.contains("not a checkpoint") && o.stderr.contains("inventory.img"),
        "{o:?}"
    );
}

#[test]
fn a_corrupt_image_fails_half_way_and_leaves_nothing() {
    let Some((criu, mut c)) = husk_case("ckpt-corrupt") else {
        return;
    };
    counter(&mut c, "true");
    let _out = start(&c, &criu);
    let img = c.path("image");
    checkpoint(&c, &criu, &img.to_string_lossy(), &[]).check();
    // Garble the init's memory map after its magic: CRIU fails once it has begun restoring
    // the tree. (A truncated pages-*.img is no good test: CRIU 4.2 then loops forever.)
    let mm = img.join("mm-1.img");
    let mut bytes = std::fs::read(&mm).expect("mm-1.img in the checkpoint");
    for b in bytes.iter_mut().skip(8) {
        *b = 0xff;
    }
    std::fs::write(&mm, bytes).unwrap();
    let (ok, err, _o) = piped(
        &c,
        &criu,
        &[
            "restore",
            "-d",
            "--image-path",
            &img.to_string_lossy(),
            "--bundle",
            &c.bundle_str(),
            &c.id,
        ],
    );
    assert!(!ok, "restore of a corrupt image succeeded");
    assert!(
        err.contains("CRIU restore") && err.contains("restore.log"),
        "{err}"
    );
    assert!(img.join("restore.log").is_file());
    assert!(
        c.state().is_none(),
        "a state is left after a failed restore"
    );
    c.assert_clean();
}

#[test]
fn a_dump_that_fails_half_way_leaves_the_container_running() {
    let Some((criu, mut c)) = husk_case("ckpt-dumpfail") else {
        return;
    };
    for set in ["bounding", "effective", "permitted"] {
        if let Some(a) = c.config["process"]["capabilities"][set].as_array_mut() {
            a.push(json!("CAP_NET_ADMIN"));
        }
    }
    // An established TCP connection: CRIU freezes the tree, finds it and gives up unless
    // --tcp-established.
    c.sh(&format!(
        "ip link set lo up; nc -ll -p 7008 -e sleep 1000 & sleep 0.3; sleep 1000 | nc 127.0.0.1 7008 & \
         extra() {{ true; }}; {COUNTER}"
    ));
    c.write_config();
    let mut out = start(&c, &criu);
    let pid = c.pid();
    let img = c.path("image");
    let o = checkpoint(&c, &criu, &img.to_string_lossy(), &[]).check_fails();
    assert!(
        o.stderr.contains("CRIU dump") && o.stderr.contains("dump.log"),
        "{o:?}"
    );
    assert!(
        o.stderr.contains("tcp-established"),
        "CRIU's reason is quoted: {o:?}"
    );
    assert_eq!(c.status(), "running");
    assert_eq!(c.pid(), pid);
    // Thawed: it goes on counting.
    let n = out.lines().len();
    out.wait_lines(n + 3, "counting after the failed dump");
    // With the flag the dump goes through. (Restoring it would fail as with runc: the network
    // namespace comes back "empty", lo down, and CRIU can't reconnect the socket.)
    std::fs::remove_dir_all(&img).unwrap();
    checkpoint(
        &c,
        &criu,
        &img.to_string_lossy(),
        &["--tcp-established", "--leave-running"],
    )
    .check();
    assert_eq!(c.status(), "running");
}

#[test]
fn missing_criu_is_a_clear_error() {
    if skip() {
        return;
    }
    let c = Case::with("ckpt-nocriu", &bin_under_test(), &runc_bin());
    let o = c
        .rt(&["--criu", "/nonexistent/criu", "checkpoint", "x"])
        .check_fails();
    assert!(o.stderr.contains("/nonexistent/criu"), "{o:?}");
}

#[test]
fn pre_dump_is_refused_where_the_kernel_lacks_soft_dirty() {
    let Some((criu, mut c)) = husk_case("ckpt-predump") else {
        return;
    };
    let soft_dirty = Command::new(&criu)
        .args(["check", "--feature", "mem_dirty_track"])
        .output()
        .is_ok_and(|o| o.status.success());
    counter(&mut c, "true");
    let _out = start(&c, &criu);
    let o = checkpoint(&c, &criu, &c.path_str("image"), &["--pre-dump"]);
    if soft_dirty {
        println!("this kernel tracks soft-dirty pages: --pre-dump works");
        o.check();
    } else {
        let o = o.check_fails();
        assert!(
            o.stderr.contains("--pre-dump") && o.stderr.contains("soft-dirty"),
            "{o:?}"
        );
    }
    assert_eq!(c.status(), "running");
}

// --- engines ---

/// PATH with the chosen CRIU's directory first (podman asks `criu` on PATH for its version).
fn path_with(criu: &str) -> String {
    let dir = Path::new(criu).parent().unwrap_or(Path::new("/"));
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// "<token> <n>" from the counter's file: the token is computed once when the container starts
/// (a start time in clock ticks), so a restored process has its original's and a fresh start a
/// new one.
fn read_count(pid: i32) -> Option<(String, u64)> {
    let t = std::fs::read_to_string(format!("/proc/{pid}/root/count")).ok()?;
    let mut f = t.split_whitespace();
    Some((f.next()?.to_string(), f.next()?.parse().ok()?))
}

fn wait_count(e: &Engines, id: &str, at_least: u64) -> (i32, String, u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(pid) = e.task_pid(id).filter(|p| *p > 0) {
            if let Some((tok, n)) = read_count(pid) {
                if n >= at_least {
                    return (pid, tok, n);
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "task {id} did not count to {at_least}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const FILE_COUNTER: &str =
    "t=$(cat /proc/self/stat | cut -d' ' -f22); i=0; while :; do echo $t $i > /count; i=$((i+1)); sleep 0.1; done";

#[test]
fn containerd_checkpoints_a_task_and_restores_it_as_a_new_container() {
    if skip() {
        return;
    }
    let Some(_criu) = criu() else { return };
    let Some(e) = Engines::start("ckpt-ctr") else {
        return;
    };
    for (tag, d) in [
        (
            "hs",
            Driver::HuskShim {
                binary: bin_under_test(),
            },
        ),
        (
            "rs",
            Driver::RuncShim {
                binary: bin_under_test(),
            },
        ),
    ] {
        let (id, restored, image) = (
            format!("ck-{tag}"),
            format!("ck-{tag}-r"),
            format!("localhost/ck-{tag}:checkpoint"),
        );
        let _g = e.guard(&id);
        let _g2 = e.guard(&restored);
        e.ctr_run(&d, &["-d"], &id, &["sh", "-c", FILE_COUNTER])
            .check();
        let (_, token, seen) = wait_count(&e, &id, 3);
        // ctr's checkpoint leaves the task running and stores the image in containerd.
        e.ctr(&["containers", "checkpoint", "--task", &id, &image])
            .check();
        let (_, _, at) = wait_count(&e, &id, 0);
        assert_eq!(e.task_status(&id).as_deref(), Some("RUNNING"), "{tag}");
        e.remove(&id);
        e.ctr(&["containers", "restore", "--live", &restored, &image])
            .check();
        let (_, tok2, n) = wait_count(&e, &restored, 0);
        assert_eq!(
            tok2, token,
            "{tag}: the restored task is a fresh start, not the checkpoint"
        );
        assert!(
            n >= seen,
            "{tag}: restored at {n}, but it had counted to {seen} (near {at} at the checkpoint)"
        );
        let (_, _, later) = wait_count(&e, &restored, n + 3);
        assert!(later > n, "{tag}: the restored counter does not count");
        e.remove(&restored);
        let _ = e.ctr(&["images", "rm", &image]);
    }
    drop(e);
}

#[test]
fn podman_checkpoint_and_restore_with_husk_as_runtime() {
    if skip() {
        return;
    }
    let Some(criu) = criu() else { return };
    let Some(e) = Engines::start("ckpt-podman") else {
        return;
    };
    let husk = bin_under_test();
    let husk = husk.to_string_lossy().into_owned();
    let podman = |args: &[&str]| {
        let mut c = e.podman_cmd(args);
        c.env("PATH", path_with(&criu));
        engines::run(
            c,
            &format!("podman {}", args.join(" ")),
            Duration::from_secs(120),
        )
    };
    let name = format!("ckpt-p-{}", std::process::id());
    let nofile = "--ulimit=nofile=1024:1024";
    podman(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        nofile,
        "--ulimit",
        "nproc=32768:32768",
        "--runtime",
        &husk,
        &e.image,
        "sh",
        "-c",
        "i=0; while :; do echo $i; i=$((i+1)); sleep 0.1; done",
    ])
    .check();
    let numbers = |what: &str| -> Vec<u64> {
        let o = podman(&["logs", &name]);
        assert!(o.ok(), "{what}: {o:?}");
        o.stdout
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while numbers("before").len() < 3 {
        assert!(Instant::now() < deadline, "the container does not count");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ck = podman(&["--runtime", &husk, "container", "checkpoint", &name]);
    let cleanup = || {
        let _ = podman(&["rm", "-f", &name]);
    };
    if !ck.ok() {
        cleanup();
        panic!("podman container checkpoint: {ck:?}");
    }
    let before = numbers("after the checkpoint");
    let rs = podman(&["--runtime", &husk, "container", "restore", &name]);
    if !rs.ok() {
        cleanup();
        panic!("podman container restore: {rs:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let n = numbers("after the restore");
        if n.len() >= before.len() + 3 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    cleanup();
    // One log, one count: no restart from 0, no gap beyond what the dump caught.
    assert!(
        after.len() >= before.len() + 3,
        "not counting after restore: {after:?}"
    );
    for w in after.windows(2) {
        assert_eq!(
            w[1],
            w[0] + 1,
            "the counter restarted or skipped: {after:?}"
        );
    }
    drop(e);
}
