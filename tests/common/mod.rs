//! Harness for the root integration tests: drives the binary under test (`HUSK_BIN`, else the
//! workspace's target/x86_64-unknown-linux-musl/release/husk, else the debug one) like an engine would, with a temp
//! `--root`, a JSON `--log`, a busybox bundle and a unique id per case, and checks that nothing
//! (state dir, process, cgroup, mount) is left behind. Every case is a `Case`; dropping it runs
//! `delete --force`, checks for leftovers, cleans them up and fails the test if there were any.
//!
//! The same tests must pass with runc as the binary (`HUSK_BIN=/usr/sbin/runc`): husk-only checks
//! (exact message wording, things runc 1.1 does not validate) are guarded by `Case::is_husk`.
#![allow(dead_code)] // each test file uses a different part of the harness

use serde_json::{json, Value};
use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long one runtime command may take before the harness kills it and fails the test: a hung
/// runtime must fail CI, not stall it.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment variable that marks every container process of a case (value: its id).
pub const MARK: &str = "HUSK_TEST_ID";

/// pid 1 ignores SIGTERM unless it installs a handler, so long-running containers trap it.
pub const LOOP: &str = "trap 'exit 0' TERM; while :; do sleep 0.1; done";

/// The binary under test.
pub fn bin_under_test() -> PathBuf {
    if let Some(p) = std::env::var_os("HUSK_BIN") {
        return PathBuf::from(p);
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"));
    // .cargo/config.toml builds for an explicit target (a static binary).
    let release = ws.join("target/x86_64-unknown-linux-musl/release/husk");
    if release.exists() {
        return release;
    }
    ws.join("target/x86_64-unknown-linux-musl/debug/husk")
}

/// The differential peer: runc, always.
pub fn runc_bin() -> PathBuf {
    for p in ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("runc")
}

/// Whether `bin` is runc (so husk-only checks are skipped), decided by its `--version`.
pub fn is_runc(bin: &Path) -> bool {
    static CACHE: OnceLock<Mutex<Vec<(PathBuf, bool)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, r)) = cache.iter().find(|(p, _)| p == bin) {
        return *r;
    }
    let r = Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).starts_with("runc"))
        .unwrap_or(false);
    cache.push((bin.to_path_buf(), r));
    r
}

/// True (after printing the reason) when the test cannot run here.
pub fn skip() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP: integration tests need root (containers, cgroups, mounts)");
        return true;
    }
    let bin = bin_under_test();
    if !bin.exists() && bin.components().count() > 1 {
        panic!(
            "binary under test {} does not exist: build it or set HUSK_BIN",
            bin.display()
        );
    }
    false
}

mod bundle;
mod cmd;
mod console;
mod host;
// Each test file is its own crate and uses a different part of the harness.
#[allow(unused_imports)]
pub use {bundle::*, cmd::*, console::*, host::*};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// One test case: a runtime binary, a temp dir holding `root/`, `bundle/` and `log.json`, a
/// unique container id, and the bundle's config as JSON to edit before `write_config`.
pub struct Case {
    pub bin: PathBuf,
    pub id: String,
    pub dir: PathBuf,
    pub root: PathBuf,
    pub bundle: PathBuf,
    pub log: PathBuf,
    pub config: Value,
    ids: RefCell<Vec<String>>,
    pids: RefCell<Vec<(i32, u64)>>,
}

impl Case {
    /// A case for the binary under test with a config from runc's `spec`; `None` when skipped.
    pub fn new(name: &str) -> Option<Case> {
        if skip() {
            return None;
        }
        Some(Case::with(name, &bin_under_test(), &runc_bin()))
    }

    /// A case running `bin` with the config printed by `<spec_from> spec`.
    pub fn with(name: &str, bin: &Path, spec_from: &Path) -> Case {
        Case::with_config(name, bin, spec(spec_from, &[]))
    }

    /// A case running `bin` with `config` (its cgroupsPath is replaced by the case's own).
    pub fn with_config(name: &str, bin: &Path, mut config: Value) -> Case {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("{name}-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("husk-tests-{id}"));
        let _ = fs::remove_dir_all(&dir);
        let root = dir.join("root");
        let bundle = dir.join("bundle");
        fs::create_dir_all(dir.join("io")).expect("create test dir");
        make_rootfs(&bundle.join("rootfs"));
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(["/bin/true"]);
        // Marks every process of the container, so the leftover check finds them by environ.
        if !config["process"]["env"].is_array() {
            config["process"]["env"] = json!([]);
        }
        if let Some(env) = config["process"]["env"].as_array_mut() {
            env.push(json!(format!("{MARK}={id}")));
        }
        // Absolute, so no runtime ever creates a cgroup under the caller's own cgroup.
        config["linux"]["cgroupsPath"] = json!(format!("/husk-test-{id}"));
        let case = Case {
            bin: bin.to_path_buf(),
            ids: RefCell::new(vec![id.clone()]),
            pids: RefCell::new(Vec::new()),
            log: dir.join("log.json"),
            id,
            dir,
            root,
            bundle,
            config,
        };
        case.write_config();
        case
    }

    /// False when the binary under test is runc: guards checks of husk's own wording.
    pub fn is_husk(&self) -> bool {
        !is_runc(&self.bin)
    }

    pub fn cgroups_path(&self) -> String {
        format!("/husk-test-{}", self.id)
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    /// A path in the case's temp dir (removed with the case).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn path_str(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    pub fn bundle_str(&self) -> String {
        self.bundle.to_string_lossy().into_owned()
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self
    }

    /// Makes the container run `sh -c script`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    /// Writes `config` to the bundle, refusing any cgroupsPath that is not the case's own.
    pub fn write_config(&self) {
        let cg = self.config["linux"]["cgroupsPath"].as_str();
        assert_eq!(
            cg,
            Some(self.cgroups_path().as_str()),
            "every test config needs its absolute cgroupsPath"
        );
        let text = serde_json::to_string_pretty(&self.config).expect("serialize config");
        fs::write(self.bundle.join("config.json"), text).expect("write config.json");
    }

    /// Another container id this case may create, deleted and checked on drop.
    pub fn track_id(&self, id: &str) {
        self.ids.borrow_mut().push(id.to_string());
    }

    /// Remembers a container process so the leftover check can prove it is gone.
    pub fn track_pid(&self, pid: i32) {
        if let Some(start) = start_time(pid) {
            self.pids.borrow_mut().push((pid, start));
        }
    }

    /// `<bin> --root R --log L --log-format json ARGS...`
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root).arg("--log").arg(&self.log);
        c.args(["--log-format", "json"]).args(args);
        c.current_dir(&self.dir);
        c
    }

    /// Starts a runtime command with stdin from /dev/null and stdout/stderr into files.
    pub fn spawn(&self, args: &[&str]) -> Spawned {
        self.spawn_cmd(self.command(args), &args.join(" "))
    }

    pub fn spawn_cmd(&self, mut cmd: Command, what: &str) -> Spawned {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let stdout = self.dir.join(format!("io/{n}.out"));
        let stderr = self.dir.join(format!("io/{n}.err"));
        let (o, e) = (fs::File::create(&stdout), fs::File::create(&stderr));
        let (o, e) = (
            o.expect("create stdout file"),
            e.expect("create stderr file"),
        );
        cmd.stdin(Stdio::null()).stdout(o).stderr(e);
        let child = cmd
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {}: {err}", self.bin.display()));
        Spawned {
            child,
            stdout,
            stderr,
            what: format!("{} {what}", self.bin.display()),
        }
    }

    /// Runs a runtime command to the end (at most `CMD_TIMEOUT`).
    pub fn rt(&self, args: &[&str]) -> Out {
        self.spawn(args).wait(CMD_TIMEOUT)
    }

    pub fn create(&self) -> Out {
        self.rt(&["create", "--bundle", &self.bundle_str(), &self.id])
    }

    pub fn start(&self) -> Out {
        self.rt(&["start", &self.id])
    }

    /// `run` in the foreground: returns when the container exits; stdout is the container's.
    pub fn run(&self) -> Out {
        self.rt(&["run", "--bundle", &self.bundle_str(), &self.id])
    }

    pub fn kill(&self, signal: &str) -> Out {
        self.rt(&["kill", &self.id, signal])
    }

    pub fn delete(&self) -> Out {
        self.rt(&["delete", &self.id])
    }

    /// `state` as JSON, or None when the runtime says it failed.
    pub fn state(&self) -> Option<Value> {
        let out = self.rt(&["state", &self.id]);
        if !out.ok() {
            return None;
        }
        let v = out.json();
        if let Some(pid) = v["pid"].as_i64().filter(|p| *p > 0) {
            self.track_pid(pid as i32);
        }
        Some(v)
    }

    pub fn status(&self) -> String {
        let state = self
            .state()
            .unwrap_or_else(|| panic!("state {} failed", self.id));
        state["status"].as_str().unwrap_or_default().to_string()
    }

    pub fn pid(&self) -> i32 {
        let state = self
            .state()
            .unwrap_or_else(|| panic!("state {} failed", self.id));
        state["pid"].as_i64().expect("state has a pid") as i32
    }

    /// Polls `state` until the status is `want`, panicking after `timeout`.
    pub fn wait_status(&self, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            // A container that `run` has not created yet has no state: keep waiting.
            let st = self
                .state()
                .map(|s| s["status"].as_str().unwrap_or_default().to_string());
            let st = st.unwrap_or_else(|| "absent".to_string());
            if st == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} stayed {st}, wanted {want}",
                self.id
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// create + start, checking both worked; returns the container's pid.
    pub fn create_and_start(&self) -> i32 {
        self.create().check();
        self.start().check();
        self.pid()
    }

    /// All JSON lines of `--log`.
    pub fn log_lines(&self) -> Vec<Value> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn last_log(&self) -> Option<Value> {
        self.log_lines().pop()
    }

    /// What this case left on the machine: state dirs, live container processes, processes in
    /// its cgroup, its cgroup dirs, mounts under its temp dir.
    pub fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        for id in self.ids.borrow().iter() {
            if id.contains('/') || id == ".." || id == "." {
                continue; // never a path of its own under root
            }
            if self.root.join(id).exists() {
                found.push(format!("state dir {}", self.root.join(id).display()));
            }
        }
        for (pid, start) in self.pids.borrow().iter() {
            if start_time(*pid) == Some(*start) {
                found.push(format!("container process {pid} still alive"));
            }
        }
        for pid in pids_in_cgroup(&self.cgroups_path()) {
            found.push(format!("process {pid} in cgroup {}", self.cgroups_path()));
        }
        for pid in marked_pids(&self.id) {
            found.push(format!(
                "process {pid} with {MARK}={} in its environment",
                self.id
            ));
        }
        for d in cgroup_dirs(&self.cgroups_path()) {
            found.push(format!("cgroup dir {}", d.display()));
        }
        for m in mounts_under(&self.dir) {
            found.push(format!("mount {m}"));
        }
        found
    }

    pub fn assert_clean(&self) {
        let left = self.leftovers();
        assert!(left.is_empty(), "left behind: {left:#?}");
    }

    /// Best effort removal of whatever a broken runtime left, touching only this case's things.
    fn scrub(&self) {
        for pid in pids_in_cgroup(&self.cgroups_path()) {
            // SAFETY: plain syscall; the pid is a process in this case's own cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for pid in marked_pids(&self.id) {
            // SAFETY: plain syscall; the pid carries this case's mark in its environment.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for (pid, start) in self.pids.borrow().iter() {
            if start_time(*pid) == Some(*start) {
                // SAFETY: plain syscall; start time matched, so it is still this case's process.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        for d in cgroup_dirs(&self.cgroups_path()) {
            rmdir_tree(&d);
        }
        for m in mounts_under(&self.dir).iter().rev() {
            if let Ok(c) = std::ffi::CString::new(m.as_str()) {
                // SAFETY: c is a valid NUL-terminated path; detaching a mount under our temp dir.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let ids: Vec<String> = self.ids.borrow().clone();
        for id in &ids {
            let s = self.spawn(&["delete", "--force", id]);
            let mut child = s.child;
            let deadline = Instant::now() + CMD_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let left = self.leftovers();
        self.scrub();
        if !left.is_empty() && !std::thread::panicking() {
            panic!("`delete --force` left behind: {left:#?}");
        }
    }
}

/// Mounts the test made on the host, undone (lazily, recursively) also when it fails.
#[derive(Default)]
pub struct HostMounts(Vec<PathBuf>);

impl HostMounts {
    /// Undo `target` too at the end: a mount made on the host by someone else (a container's
    /// mount that propagated).
    pub fn undo(&mut self, target: PathBuf) {
        self.0.push(target);
    }

    pub fn run(&mut self, args: &[&str], target: &Path) {
        let st = Command::new("mount")
            .args(args)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount {args:?}");
        if !self.0.iter().any(|p| p == target) {
            self.0.push(target.to_path_buf());
        }
    }
}

impl Drop for HostMounts {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = Command::new("umount").arg("-R").arg("-l").arg(p).status();
        }
    }
}
