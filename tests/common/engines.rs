//! Harness for the engine tests: a private containerd and podman store per test, started with
//! scripts/engines in a temp dir and stopped (containers, daemons, mounts, cgroups, state) when
//! the `Engines` is dropped, also when the test fails.
//!
//! Included with `#[path = "common/engines.rs"] mod engines;` next to `mod common;`.
#![allow(dead_code)] // each test file uses a different part of the harness

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{Out, Spawned, CMD_TIMEOUT};

/// Which shim runs the containers and which runtime binary it drives.
#[derive(Debug, Clone)]
pub enum Driver {
    /// containerd-shim-husk-v2 (io.containerd.husk.v2) driving `binary` (BinaryName).
    HuskShim { binary: PathBuf },
    /// containerd's io.containerd.runc.v2 shim driving `binary` (`ctr run --runc-binary`).
    RuncShim { binary: PathBuf },
}

impl Driver {
    pub fn binary(&self) -> &Path {
        match self {
            Driver::HuskShim { binary } | Driver::RuncShim { binary } => binary,
        }
    }
}

pub struct Engines {
    pub dir: PathBuf,
    pub ns: String,
    script: PathBuf,
    pub image: String,
    pub shim: PathBuf,
    stopped: bool,
    /// Container (and pod) ids used, whose shim sockets must be gone at the end.
    ids: std::cell::RefCell<Vec<String>>,
}

fn ws() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shim under test: HUSK_SHIM, else the workspace build (release, then debug).
pub fn shim_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HUSK_SHIM") {
        return PathBuf::from(p);
    }
    let t = ws().join("target/x86_64-unknown-linux-musl");
    let release = t.join("release/containerd-shim-husk-v2");
    if release.exists() {
        return release;
    }
    t.join("debug/containerd-shim-husk-v2")
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether this machine can run engine tests at all (root, the engines installed); prints why not.
fn machine_ready() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP: engine tests need root");
        return false;
    }
    for tool in ["containerd", "ctr", "umoci", "podman", "conmon"] {
        if !have(tool) {
            println!("SKIP: {tool} is not installed (scripts/setup installs it)");
            return false;
        }
    }
    true
}

impl Engines {
    /// Starts a private containerd (and podman store) for test `name`; `None` after printing
    /// the reason when this machine cannot run engine tests.
    pub fn start(name: &str) -> Option<Engines> {
        if !machine_ready() {
            return None;
        }
        let shim = shim_bin();
        assert!(
            shim.exists(),
            "shim under test {} does not exist: build it (cargo build -p husk-shim) or set HUSK_SHIM",
            shim.display()
        );
        Some(Engines::launch(name, shim))
    }

    /// Runs `scripts/engines start` in a directory of its own for test `name`.
    fn launch(name: &str, shim: PathBuf) -> Engines {
        let id = format!("{name}-{}", std::process::id());
        let e = Engines {
            dir: std::env::temp_dir().join(format!("husk-engines-{id}")),
            ns: format!("ht-{id}"),
            script: ws().join("scripts/engines"),
            image: "localhost/busybox:latest".to_string(),
            shim,
            stopped: false,
            ids: std::cell::RefCell::new(Vec::new()),
        };
        let out = e.script_cmd("start");
        assert!(out.ok(), "scripts/engines start failed:\n{}", out.stderr);
        e
    }

    fn script_cmd(&self, action: &str) -> Out {
        let mut c = Command::new("bash");
        c.arg(&self.script).arg(action);
        c.env("ENGINES_DIR", &self.dir)
            .env("ENGINES_NS", &self.ns)
            .env("HUSK_SHIM", &self.shim);
        run(
            c,
            &format!("scripts/engines {action}"),
            Duration::from_secs(120),
        )
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.join("containerd/containerd.sock")
    }

    /// `ctr` against this containerd and namespace.
    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.sock())
            .arg("--namespace")
            .arg(&self.ns)
            .args(args);
        c
    }

    pub fn ctr(&self, args: &[&str]) -> Out {
        run(
            self.ctr_cmd(args),
            &format!("ctr {}", args.join(" ")),
            CMD_TIMEOUT,
        )
    }

    /// `ctr run` arguments that select `driver`.
    pub fn run_flags(&self, driver: &Driver) -> Vec<String> {
        match driver {
            Driver::HuskShim { binary } => {
                let cfg = self.dir.join("husk-runtime.toml");
                fs::write(&cfg, format!("BinaryName = \"{}\"\n", binary.display()))
                    .expect("write runtime config");
                vec![
                    "--runtime".into(),
                    "io.containerd.husk.v2".into(),
                    "--runtime-config-path".into(),
                    cfg.display().to_string(),
                ]
            }
            Driver::RuncShim { binary } => {
                vec!["--runc-binary".into(), binary.display().to_string()]
            }
        }
    }

    /// `ctr run [driver flags] EXTRA... IMAGE ID CMD...`
    pub fn run_args(&self, driver: &Driver, extra: &[&str], id: &str, cmd: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = vec!["run".into()];
        a.extend(self.run_flags(driver));
        a.extend(extra.iter().map(|s| s.to_string()));
        a.push(self.image.clone());
        a.push(id.to_string());
        a.extend(cmd.iter().map(|s| s.to_string()));
        a
    }

    pub fn ctr_run(&self, driver: &Driver, extra: &[&str], id: &str, cmd: &[&str]) -> Out {
        let a = self.run_args(driver, extra, id, cmd);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        self.ctr(&a)
    }

    /// Kills and removes a task and its container, ignoring what is already gone.
    pub fn remove(&self, id: &str) {
        let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = self.ctr(&["task", "delete", id]);
            if out.ok() || out.stderr.contains("not found") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.ctr(&["containers", "rm", id]);
    }

    /// `ctr events` in the background until `stop_events` (output in a file).
    pub fn events(&self) -> Spawned {
        let out = self.dir.join(format!("events-{}.txt", std::process::id()));
        let err = self.dir.join("events.err");
        let mut c = self.ctr_cmd(&["events"]);
        c.stdin(Stdio::null())
            .stdout(fs::File::create(&out).expect("events file"))
            .stderr(fs::File::create(&err).expect("events err file"));
        let child = c.spawn().expect("spawn ctr events");
        Spawned {
            child,
            stdout: out,
            stderr: err,
            what: "ctr events".into(),
        }
    }

    pub fn podman_cmd(&self, args: &[&str]) -> Command {
        let p = self.dir.join("podman");
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(p.join("root"))
            .arg("--runroot")
            .arg(p.join("runroot"))
            .arg("--tmpdir")
            .arg(p.join("tmp"))
            .args([
                "--storage-driver",
                "overlay",
                "--cgroup-manager",
                "cgroupfs",
            ])
            .args(["--events-backend", "file", "--network-backend", "netavark"])
            .arg("--network-config-dir")
            .arg(p.join("networks"))
            .args(args);
        c
    }

    pub fn podman(&self, args: &[&str]) -> Out {
        run(
            self.podman_cmd(args),
            &format!("podman {}", args.join(" ")),
            Duration::from_secs(60),
        )
    }

    /// What containers of this namespace left on the host: shims, processes in its cgroups,
    /// rootfs mounts, runtime state.
    pub fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        for pid in shim_pids(&self.ns) {
            found.push(format!("shim process {pid}"));
        }
        for m in ["pids", "memory", "freezer", "cpu,cpuacct", "unified"] {
            let root = Path::new("/sys/fs/cgroup").join(m).join(&self.ns);
            for d in fs::read_dir(&root).into_iter().flatten().flatten() {
                if d.path().is_dir() {
                    let procs =
                        fs::read_to_string(d.path().join("cgroup.procs")).unwrap_or_default();
                    found.push(format!(
                        "cgroup {} (procs: {})",
                        d.path().display(),
                        procs.trim()
                    ));
                }
            }
        }
        let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let state = self.dir.join("containerd/state");
        for line in mi.lines() {
            if let Some(mp) = line.split_whitespace().nth(4) {
                if Path::new(mp).starts_with(&state) {
                    found.push(format!("mount {mp}"));
                }
            }
        }
        for id in self.ids.borrow().iter() {
            let s = self.shim_socket(id);
            if s.exists() {
                found.push(format!("shim socket {} (id {id})", s.display()));
            }
        }
        for root in ["/run/containerd/husk", "/run/containerd/runc"] {
            let d = Path::new(root).join(&self.ns);
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                found.push(format!("runtime state {}", e.path().display()));
            }
        }
        found
    }

    /// Remembers an id whose shim socket (/run/containerd/s/<sha256 of sock/ns/id>) must go.
    pub fn track(&self, id: &str) {
        self.ids.borrow_mut().push(id.to_string());
    }

    fn shim_socket(&self, id: &str) -> PathBuf {
        let key = format!("{}/{}/{}", self.sock().display(), self.ns, id);
        let mut c = Command::new("sha256sum");
        c.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = c.spawn().expect("run sha256sum");
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(key.as_bytes());
        }
        let out = child.wait_with_output().expect("sha256sum output");
        let hex = String::from_utf8_lossy(&out.stdout);
        Path::new("/run/containerd/s").join(hex.split_whitespace().next().unwrap_or_default())
    }

    /// Waits up to `limit` for the leftovers to go (exits and deletes are asynchronous).
    pub fn assert_clean(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let l = self.leftovers();
            if l.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!("left behind: {l:#?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            let out = self.script_cmd("stop");
            if !out.ok() {
                eprintln!("scripts/engines stop failed: {}", out.stderr);
            }
        }
    }
}

/// pids of containerd shims serving namespace `ns` (by their `-namespace` argument).
pub fn shim_pids(ns: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_shim = args
            .first()
            .map(|a| String::from_utf8_lossy(a).contains("containerd-shim"))
            .unwrap_or(false);
        let in_ns = args
            .windows(2)
            .any(|w| w[0] == b"-namespace" && w[1] == ns.as_bytes());
        if is_shim && in_ns {
            pids.push(pid);
        }
    }
    pids
}

/// Runs `c` to completion with stdin from /dev/null and a deadline.
pub fn run(mut c: Command, what: &str, limit: Duration) -> Out {
    let tmp = std::env::temp_dir().join(format!(
        "husk-engines-out-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let (o, e) = (tmp.with_extension("out"), tmp.with_extension("err"));
    c.stdin(Stdio::null())
        .stdout(fs::File::create(&o).expect("stdout file"))
        .stderr(fs::File::create(&e).expect("stderr file"));
    let child = c
        .spawn()
        .unwrap_or_else(|err| panic!("spawn {what}: {err}"));
    let out = Spawned {
        child,
        stdout: o,
        stderr: e,
        what: what.to_string(),
    }
    .wait(limit);
    let _ = fs::remove_file(tmp.with_extension("out"));
    let _ = fs::remove_file(tmp.with_extension("err"));
    out
}

/// Runs `c` on a new pseudo-terminal (its controlling tty, as an interactive `ctr run -t`
/// needs), types `input` once `prompt` appears, and returns (exit code, everything printed).
pub fn run_on_pty(mut c: Command, prompt: &str, input: &str, limit: Duration) -> (i32, String) {
    let (mut master, slave) = openpty();
    let dup = |f: &OwnedFd| Stdio::from(f.try_clone().expect("dup pty slave"));
    c.stdin(dup(&slave)).stdout(dup(&slave)).stderr(dup(&slave));
    // SAFETY: between fork and exec the closure only makes async-signal-safe calls (setsid,
    // ioctl) on descriptors the child owns.
    unsafe {
        c.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = c.spawn().expect("spawn on pty");
    drop(slave);
    let deadline = Instant::now() + limit;
    let mut text = Vec::new();
    let mut sent = false;
    let mut buf = [0u8; 4096];
    loop {
        let mut pfd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 100) };
        if n > 0 {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => text.extend_from_slice(&buf[..k]),
            }
        }
        if !sent && String::from_utf8_lossy(&text).contains(prompt) {
            let _ = master.write_all(input.as_bytes());
            sent = true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            // Drain what is left, then stop.
            loop {
                let mut pfd = libc::pollfd {
                    fd: master.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, for the duration of the call.
                if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
                    break;
                }
                match master.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => text.extend_from_slice(&buf[..k]),
                }
            }
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "pty command did not finish in {limit:?}; printed: {}",
                String::from_utf8_lossy(&text)
            );
        }
    }
    let status = child.wait().expect("wait pty command");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&text).into_owned(),
    )
}

fn openpty() -> (fs::File, OwnedFd) {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two fds into the given ints; the name/termios/winsize are null.
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just returned by openpty and are owned by nothing else.
    unsafe { (fs::File::from_raw_fd(m), OwnedFd::from_raw_fd(s)) }
}

/// Whether the runtime binary has a subcommand (husk gains pause/events over time).
pub fn has_command(bin: &Path, cmd: &str) -> bool {
    Command::new(bin)
        .args([cmd, "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Removes a container (task and all) when dropped, so a failing case leaves nothing running.
pub struct Guard<'a> {
    pub e: &'a Engines,
    pub id: String,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.e.remove(&self.id);
    }
}

impl Engines {
    pub fn guard(&self, id: &str) -> Guard<'_> {
        self.track(id);
        Guard {
            e: self,
            id: id.to_string(),
        }
    }

    /// The init pid of a task, from `ctr task ls`.
    pub fn task_pid(&self, id: &str) -> Option<i32> {
        self.task_field(id, 1).and_then(|p| p.parse().ok())
    }

    pub fn task_status(&self, id: &str) -> Option<String> {
        self.task_field(id, 2)
    }

    fn task_field(&self, id: &str, n: usize) -> Option<String> {
        let out = self.ctr(&["task", "ls"]);
        out.stdout.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.get(n).map(|s| s.to_string()))?
        })
    }

    pub fn wait_status(&self, id: &str, want: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let s = self.task_status(id);
            if s.as_deref() == Some(want) {
                return;
            }
            assert!(Instant::now() < deadline, "task {id} is {s:?}, want {want}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A long-running container process that exits 9 on SIGTERM (pid 1 ignores an untrapped TERM).
pub const LOOP9: &str = "trap 'exit 9' TERM; while :; do sleep 0.1; done";

/// The ctr suite every driver must pass: run and exit status, terminal, exec with and without
/// a terminal, ps, kill, events, pause/resume and metrics (where the runtime has them), OOM.
pub fn ctr_suite(e: &Engines, d: &Driver) {
    let tag = match d {
        Driver::HuskShim { .. } => "hs",
        Driver::RuncShim { .. } => "rs",
    };
    let events = e.events();

    // 1. Output and exit status.
    let id = format!("{tag}-exit");
    let _g = e.guard(&id);
    let out = e.ctr_run(d, &["--rm"], &id, &["sh", "-c", "echo hi; exit 3"]);
    assert_eq!(out.code(), Some(3), "{out:?}");
    assert_eq!(out.stdout.trim(), "hi", "{out:?}");

    // 2. A terminal.
    let id = format!("{tag}-tty");
    let _g = e.guard(&id);
    let a = e.run_args(d, &["-t", "--rm"], &id, &["sh"]);
    let mut c = e.ctr_cmd(&[]);
    c.args(&a);
    let (code, text) = run_on_pty(c, "# ", "echo $((6*7)); tty; exit 4\r", CMD_TIMEOUT);
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("42") && text.contains("/dev/pts/0"), "{text}");

    // 3. Detached: exec, ps, kill, events.
    let id = format!("{tag}-long");
    let _g = e.guard(&id);
    e.ctr_run(d, &["-d", "--null-io"], &id, &["sh", "-c", LOOP9])
        .check();
    let pid = e.task_pid(&id).expect("task pid");
    if matches!(d, Driver::HuskShim { .. }) {
        // The husk shim drops its code mappings once quiet after a start (shim/src/memory.rs):
        // what follows then runs on pages faulted back in.
        std::thread::sleep(Duration::from_millis(1500));
    }
    let out = e.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo from-exec; exit 5",
    ]);
    assert_eq!(out.code(), Some(5), "{out:?}");
    assert_eq!(out.stdout.trim(), "from-exec", "{out:?}");
    let mut c = e.ctr_cmd(&["task", "exec", "-t", "--exec-id", "e2", &id, "sh"]);
    c.stdin(Stdio::null());
    let (code, text) = run_on_pty(c, "# ", "tty; exit 6\r", CMD_TIMEOUT);
    assert_eq!(code, 6, "{text}");
    assert!(text.contains("/dev/pts/"), "{text}");
    // The husk shim reads the cgroup; containerd's runc shim asks the runtime (`ps`).
    if matches!(d, Driver::HuskShim { .. }) || has_command(d.binary(), "ps") {
        let ps = e.ctr(&["task", "ps", &id]).check();
        assert!(ps.stdout.contains(&pid.to_string()), "{ps:?}");
    } else {
        println!(
            "WAITING ON RUNTIME: {} has no `ps`; ps test skipped",
            d.binary().display()
        );
    }
    let out = e.ctr(&["task", "kill", "--exec-id", "nope", &id]);
    assert!(!out.ok() && out.stderr.contains("not found"), "{out:?}");

    // 4. Pause, resume, metrics: need the runtime's pause/resume/events commands.
    let bin = d.binary();
    if has_command(bin, "pause") && has_command(bin, "resume") {
        e.ctr(&["task", "pause", &id]).check();
        e.wait_status(&id, "PAUSED", Duration::from_secs(5));
        e.ctr(&["task", "resume", &id]).check();
        e.wait_status(&id, "RUNNING", Duration::from_secs(5));
    } else {
        println!(
            "WAITING ON RUNTIME: {} has no pause/resume; pause test skipped",
            bin.display()
        );
    }
    if has_command(bin, "events") {
        let m = e.ctr(&["task", "metrics", &id]).check();
        assert!(m.stdout.contains("pids.current"), "{m:?}");
    } else {
        println!(
            "WAITING ON RUNTIME: {} has no `events --stats`; metrics test skipped",
            bin.display()
        );
    }
    e.ctr(&["task", "kill", &id]).check();
    e.wait_status(&id, "STOPPED", Duration::from_secs(10));
    e.ctr(&["task", "delete", &id]).check();
    e.ctr(&["containers", "rm", &id]).check();

    // 5. OOM: a shell variable past the memory limit.
    let id = format!("{tag}-oom");
    let _g = e.guard(&id);
    let out = e.ctr_run(
        d,
        &["--rm", "--memory-limit", "16777216"],
        &id,
        &["sh", "-c", "a=$(yes | head -c 60000000); echo survived"],
    );
    assert_eq!(out.code(), Some(137), "{out:?}");

    // The events of all of the above, as containerd received them from the shim.
    std::thread::sleep(Duration::from_millis(300));
    let mut ev = events;
    let _ = ev.child.kill();
    let _ = ev.child.wait();
    let text = fs::read_to_string(&ev.stdout).unwrap_or_default();
    let has = |topic: &str, id: &str, extra: &str| {
        text.lines().any(|l| {
            l.contains(topic)
                && l.contains(&format!("\"container_id\":\"{id}\""))
                && l.contains(extra)
        })
    };
    let long = format!("{tag}-long");
    for topic in ["/tasks/create", "/tasks/start", "/tasks/delete"] {
        assert!(has(topic, &long, ""), "no {topic} for {long}:\n{text}");
    }
    assert!(
        has("/tasks/exec-added", &long, "\"exec_id\":\"e1\""),
        "{text}"
    );
    assert!(
        has("/tasks/exec-started", &long, "\"exec_id\":\"e1\""),
        "{text}"
    );
    assert!(has("/tasks/exit", &long, "\"id\":\"e1\""), "{text}");
    assert!(has("/tasks/exit", &long, "\"exit_status\":5"), "{text}");
    assert!(
        has(
            "/tasks/exit",
            &long,
            &format!("\"id\":\"{long}\",\"pid\":{pid},\"exit_status\":9")
        ),
        "no TaskExit with status 9 for {long}:\n{text}"
    );
    if has_command(bin, "pause") {
        assert!(has("/tasks/paused", &long, ""), "{text}");
        assert!(has("/tasks/resumed", &long, ""), "{text}");
    }
    let oom = format!("{tag}-oom");
    assert!(has("/tasks/oom", &oom, ""), "no TaskOOM for {oom}:\n{text}");
    assert!(has("/tasks/exit", &oom, "\"exit_status\":137"), "{text}");
}

/// dockerd (Debian 12's docker.io 20.10) on the harness's containerd, with the runtime under test
/// added as `--add-runtime husk=BIN`. dockerd 20.10 takes no shim runtimes: every runtime goes
/// through containerd's io.containerd.runc.v2 shim (BinaryName), in containerd namespace `moby`.
pub struct Docker {
    pub e: Engines,
    /// `unix://…/docker.sock`, for `docker -H`.
    pub host: String,
}

impl Docker {
    /// Starts containerd and dockerd for test `name` with `husk` as runtime "husk". `None` (after
    /// printing why) only where no engine test can run; a missing or failing dockerd panics.
    pub fn start(name: &str, husk: &Path) -> Option<Docker> {
        if !machine_ready() {
            return None;
        }
        assert!(
            have("dockerd") && have("docker"),
            "dockerd/docker are not installed: scripts/setup installs them (apt-get install -y docker.io)"
        );
        // No shim of ours is involved: an empty HUSK_SHIM links none into the engines' PATH.
        let e = Engines::launch(name, PathBuf::new());
        let mut c = Command::new("bash");
        c.arg(&e.script).arg("docker");
        c.env("ENGINES_DIR", &e.dir)
            .env("ENGINES_NS", &e.ns)
            .env("HUSK_SHIM", "")
            .env("HUSK_BIN", husk);
        let out = run(c, "scripts/engines docker", Duration::from_secs(120));
        assert!(
            out.ok(),
            "scripts/engines docker could not start dockerd (log: {}):\n{}",
            e.dir.join("docker/dockerd.log").display(),
            out.stderr
        );
        let host = format!("unix://{}", e.dir.join("docker/docker.sock").display());
        Some(Docker { e, host })
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H").arg(&self.host).args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Out {
        run(
            self.cmd(args),
            &format!("docker {}", args.join(" ")),
            Duration::from_secs(60),
        )
    }

    /// containerd's task bundle of container `id` (config.json, options.json, init.pid).
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.e
            .dir
            .join("containerd/state/io.containerd.runtime.v2.task/moby")
            .join(id)
    }

    /// What the containers `ids` (full ids) left behind: their shim or any process naming them,
    /// cgroups, rootfs mounts, task bundles, runtime state under dockerd's exec root.
    pub fn leftovers(&self, ids: &[String]) -> Vec<String> {
        let mut found = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if ids.iter().any(|id| cmdline.contains(id.as_str())) {
                found.push(format!("process {pid}: {}", cmdline.trim()));
            }
        }
        for m in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            for id in ids {
                let cg = m.path().join("docker").join(id);
                if cg.is_dir() {
                    found.push(format!("cgroup {}", cg.display()));
                }
            }
        }
        let rootfs = self.e.dir.join("docker/root/overlay2");
        let state = self.e.dir.join("containerd/state");
        let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for mp in mi.lines().filter_map(|l| l.split_whitespace().nth(4)) {
            if Path::new(mp).starts_with(&rootfs) || Path::new(mp).starts_with(&state) {
                found.push(format!("mount {mp}"));
            }
        }
        let exec = self.e.dir.join("docker/exec");
        for id in ids {
            if self.bundle(id).exists() {
                found.push(format!("task bundle {}", self.bundle(id).display()));
            }
            for rt in fs::read_dir(&exec).into_iter().flatten().flatten() {
                let s = rt.path().join("moby").join(id);
                if rt.file_name().to_string_lossy().starts_with("runtime-") && s.exists() {
                    found.push(format!("runtime state {}", s.display()));
                }
            }
        }
        let ps = self.run(&["ps", "-aq"]);
        if !ps.stdout.trim().is_empty() {
            found.push(format!("containers {}", ps.stdout.trim()));
        }
        found
    }

    /// Waits up to `limit` for the leftovers of `ids` to go (the shim exits asynchronously).
    pub fn assert_clean(&self, ids: &[String], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let l = self.leftovers(ids);
            if l.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!("left behind: {l:#?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
