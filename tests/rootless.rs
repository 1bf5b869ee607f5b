//! Rootless, end to end: every runtime command as an unprivileged user (uid 65534 through
//! setpriv) on a `spec --rootless` bundle, beside runc as the same user on the same bundle; and
//! rootless podman running husk (a user the test creates, with subordinate ids), beside runc.
mod common;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NOBODY: &str = "65534";

/// A temp dir everybody can enter, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("husk-rootless-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("create test dir");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod");
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn chown_r(path: &Path, owner: &str) {
    let st = Command::new("chown")
        .args(["-R", &format!("{owner}:{owner}")])
        .arg(path)
        .status()
        .expect("run chown");
    assert!(st.success(), "chown {path:?}");
}

struct Res {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `bin ARGS...` as uid/gid 65534 with XDG_RUNTIME_DIR=`xdg`, bounded in time. Output goes to
/// files, not pipes: a detached container keeps the stdio it was given open.
fn as_nobody(bin: &Path, xdg: &Path, cwd: &Path, args: &[&str]) -> Res {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let out_path = cwd.join(format!("out-{n}"));
    let err_path = cwd.join(format!("err-{n}"));
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
        .arg(bin)
        .args(args)
        .current_dir(cwd)
        .env("XDG_RUNTIME_DIR", xdg)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("stdout file"))
        .stderr(fs::File::create(&err_path).expect("stderr file"));
    let mut child = cmd.spawn().expect("run setpriv");
    let deadline = Instant::now() + CMD_TIMEOUT;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    let r = Res {
        code: status.and_then(|s| s.code()),
        stdout: read(&out_path),
        stderr: read(&err_path),
    };
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&err_path);
    r
}

/// A rootless bundle made by `husk spec --rootless` as the user, running `sleep 1000`.
fn rootless_bundle(husk: &Path, dir: &Path) -> PathBuf {
    let bundle = dir.join("bundle");
    make_rootfs(&bundle.join("rootfs"));
    chown_r(dir, NOBODY);
    let r = as_nobody(
        husk,
        &dir.join("xdg"),
        dir,
        &["spec", "--rootless", "--bundle", "bundle"],
    );
    assert_eq!(r.code, Some(0), "spec --rootless: {}", r.stderr);
    let path = bundle.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).expect("read config")).expect("json");
    c["process"]["terminal"] = serde_json::json!(false);
    c["process"]["args"] = serde_json::json!(["sleep", "1000"]);
    fs::write(&path, serde_json::to_string_pretty(&c).expect("json")).expect("write config");
    chown_r(&bundle, NOBODY);
    bundle
}

/// The commands a rootless user runs, with what each did.
fn lifecycle(bin: &Path, dir: &Path, id: &str) -> Vec<(&'static str, Res)> {
    let xdg = dir.join("xdg");
    let run = |args: &[&str]| as_nobody(bin, &xdg, dir, args);
    let mut out = vec![("run -d", run(&["run", "-d", "--bundle", "bundle", id]))];
    out.push(("state", run(&["state", id])));
    out.push(("list", run(&["list"])));
    out.push((
        "exec",
        run(&["exec", id, "sh", "-c", "echo in-exec; id -u"]),
    ));
    out.push(("exec -t", run(&["exec", "-t", id, "true"])));
    out.push(("exec -d", run(&["exec", "-d", id, "sleep", "1"])));
    out.push(("ps", run(&["ps", "--format", "json", id])));
    out.push(("pause", run(&["pause", id])));
    out.push(("update", run(&["update", "--pids-limit", "10", id])));
    out.push(("kill", run(&["kill", id, "KILL"])));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let s = run(&["state", id]);
        if s.stdout.contains("\"stopped\"") || s.code != Some(0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    out.push(("delete", run(&["delete", id])));
    out
}

/// Root's skip, and setpriv (which runs the commands as the user) must be there.
fn skip_without_setpriv() -> bool {
    if skip() {
        return true;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        println!("SKIP: setpriv (util-linux) is not installed");
        return true;
    }
    false
}

fn get<'a>(r: &'a [(&str, Res)], what: &str) -> &'a Res {
    &r.iter().find(|(w, _)| *w == what).expect("command ran").1
}

#[test]
fn every_command_as_an_unprivileged_user_behaves_as_runcs() {
    if skip_without_setpriv() {
        return;
    }
    let husk = bin_under_test();
    let runc = runc_bin();
    let d = Dir::new("cmds");
    rootless_bundle(&husk, &d.0);
    fs::create_dir_all(d.0.join("xdg")).expect("xdg");
    chown_r(&d.0.join("xdg"), NOBODY);
    let id = format!("rl-{}", std::process::id());
    let theirs = lifecycle(&runc, &d.0, &id);
    let ours = lifecycle(&husk, &d.0, &id);
    for (what, r) in &theirs {
        println!("runc {what}: {:?} {}", r.code, r.stderr.trim());
    }
    for (what, r) in &ours {
        println!("husk {what}: {:?} {}", r.code, r.stderr.trim());
    }
    // What works for runc works for husk.
    for what in [
        "run -d", "state", "list", "exec", "exec -d", "kill", "delete",
    ] {
        assert_eq!(get(&theirs, what).code, Some(0), "runc {what} as a user");
        let r = get(&ours, what);
        assert_eq!(r.code, Some(0), "husk {what} as a user: {}", r.stderr);
    }
    // With a tty (runc needs one on its own stdin, which this test has not: husk relays a pty
    // without one).
    let r = get(&ours, "exec -t");
    assert_eq!(r.code, Some(0), "husk exec -t as a user: {}", r.stderr);
    let exec = get(&ours, "exec");
    assert_eq!(
        exec.stdout, "in-exec\n0\n",
        "exec runs as the container's root"
    );
    // Its state lives under $XDG_RUNTIME_DIR/husk, as runc's under $XDG_RUNTIME_DIR/runc.
    assert!(get(&ours, "list").stdout.contains(&id));
    // ps lists the container's processes (runc can't without a cgroup: it fails).
    let ps: Vec<i64> = serde_json::from_str(get(&ours, "ps").stdout.trim()).unwrap_or_default();
    assert!(
        !ps.is_empty(),
        "husk ps as a user: {}",
        get(&ours, "ps").stderr
    );
    // Without a writable cgroup, pause and update fail (as runc's), naming why and the fix.
    for what in ["pause", "update"] {
        assert_ne!(get(&theirs, what).code, Some(0), "runc {what} as a user");
        let r = get(&ours, what);
        assert_ne!(r.code, Some(0), "husk {what} as a user");
        assert!(
            r.stderr.contains("has none") && r.stderr.contains("delegated cgroup"),
            "husk {what} says why: {}",
            r.stderr
        );
        assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
    }
    // No repeated fragments in any error.
    for (what, r) in &ours {
        let parts: Vec<&str> = r.stderr.trim().split(": ").collect();
        for w in parts.windows(2) {
            assert_ne!(w[0], w[1], "husk {what} repeats itself: {}", r.stderr);
        }
    }
    assert!(
        !d.0.join("xdg/husk").join(&id).exists(),
        "state removed by delete"
    );
}

/// A user of the test's own for rootless podman, removed with everything it ran.
struct User {
    name: String,
    home: PathBuf,
    xdg: PathBuf,
}

impl User {
    fn create(name: &str) -> Option<User> {
        let _ = Command::new("userdel").args(["-r", "-f", name]).output();
        let ok = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
        let has_range = |f: &str| {
            fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with(&format!("{name}:")))
        };
        if !has_range("/etc/subuid") || !has_range("/etc/subgid") {
            let _ = Command::new("usermod")
                .args([
                    "--add-subuids",
                    "300000-365535",
                    "--add-subgids",
                    "300000-365535",
                    name,
                ])
                .status();
        }
        let home = PathBuf::from(format!("/home/{name}"));
        let xdg = std::env::temp_dir().join(format!("husk-rootless-xdg-{name}"));
        let _ = fs::remove_dir_all(&xdg);
        fs::create_dir_all(&xdg).expect("create XDG_RUNTIME_DIR");
        chown_r(&xdg, name);
        fs::set_permissions(&xdg, fs::Permissions::from_mode(0o700)).expect("chmod");
        Some(User {
            name: name.to_string(),
            home,
            xdg,
        })
    }

    fn podman(&self, args: &[&str]) -> Res {
        let mut argv = vec![
            "podman".to_string(),
            "--root".into(),
            format!("{}/store", self.home.display()),
            "--runroot".into(),
            format!("{}/runroot", self.xdg.display()),
            "--storage-driver".into(),
            "vfs".into(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        let out = Command::new("setpriv")
            .args([
                "--reuid",
                &self.name,
                "--regid",
                &self.name,
                "--init-groups",
                "--",
            ])
            .args(&argv)
            .current_dir(&self.home)
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("XDG_RUNTIME_DIR", &self.xdg)
            .env_remove("CONTAINERS_CONF")
            .stdin(Stdio::null())
            .output()
            .expect("run podman");
        Res {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
        // podman's pause process keeps its user namespace alive; end it and whatever else the
        // user still runs (only this user's processes: the test made the user).
        let uid = Command::new("id")
            .args(["-u", &self.name])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        if !uid.is_empty() {
            if let Ok(o) = Command::new("ps").args(["-o", "pid=", "-u", &uid]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(p) = pid.parse::<i32>() {
                        // SAFETY: kill(2) with a pid of a process of the test's own user.
                        unsafe { libc::kill(p, libc::SIGKILL) };
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = Command::new("userdel")
            .args(["-r", "-f", &self.name])
            .output();
        let _ = fs::remove_dir_all(&self.xdg);
    }
}

#[test]
fn rootless_podman_runs_husk_as_it_runs_runc() {
    if skip() {
        return;
    }
    for tool in ["podman", "newuidmap", "setpriv", "useradd"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false)
            || Path::new("/usr/sbin").join(tool).exists();
        if !found {
            println!("SKIP: {tool} is not installed (scripts/setup installs podman and uidmap)");
            return;
        }
    }
    let Some(user) = User::create("husk-rl-test") else {
        println!("SKIP: could not create a test user");
        return;
    };
    // The runtimes must be reachable by the user: copies in a directory it can read.
    let d = Dir::new("podman");
    let husk = d.0.join("husk");
    fs::copy(bin_under_test(), &husk).expect("copy husk");
    let rootfs = d.0.join("rootfs");
    make_rootfs(&rootfs);
    let tar = d.0.join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    fs::set_permissions(&tar, fs::Permissions::from_mode(0o644)).expect("chmod");
    let img = "localhost/husk-rl:1";
    let r = user.podman(&["import", &tar.display().to_string(), img]);
    assert_eq!(r.code, Some(0), "podman import: {}", r.stderr);

    let mut seen = Vec::new();
    for rt in [runc_bin(), husk.clone()] {
        let rt_s = rt.display().to_string();
        let r = user.podman(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--runtime",
            &rt_s,
            img,
            "sh",
            "-c",
            "echo hi-rootless; exit 3",
        ]);
        assert_eq!(r.code, Some(3), "{rt_s}: podman run --rm: {}", r.stderr);
        assert_eq!(r.stdout.trim(), "hi-rootless");
        let name = "rl-p1";
        let r = user.podman(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--runtime",
            &rt_s,
            img,
            "sleep",
            "1000",
        ]);
        assert_eq!(r.code, Some(0), "{rt_s}: podman run -d: {}", r.stderr);
        let r = user.podman(&["exec", name, "sh", "-c", "echo in-exec; exit 5"]);
        assert_eq!(r.code, Some(5), "{rt_s}: podman exec: {}", r.stderr);
        assert_eq!(r.stdout.trim(), "in-exec");
        let top = user.podman(&["top", name]);
        assert_eq!(top.code, Some(0), "{rt_s}: podman top: {}", top.stderr);
        assert!(
            top.stdout.contains("sleep 1000"),
            "{rt_s}: top: {}",
            top.stdout
        );
        let r = user.podman(&["stop", "-t", "1", name]);
        assert_eq!(r.code, Some(0), "{rt_s}: podman stop: {}", r.stderr);
        let r = user.podman(&["rm", name]);
        assert_eq!(r.code, Some(0), "{rt_s}: podman rm: {}", r.stderr);
        seen.push(rt_s);
    }
    let left = user.podman(&["ps", "-aq"]);
    assert_eq!(left.stdout.trim(), "", "containers left: {}", left.stdout);
    assert_eq!(seen.len(), 2);
}

/// `exec` as a user forks into the container's pid namespace: the intermediate process
/// reports the new process's pid and the new process reports Ready. The Ready once overtook
/// the pid (a CI run: "expected the exec from the other side, got Pid"); the new process now
/// waits until the pid is sent. A race, so this runs many execs, two at a time, each of which
/// must succeed.
#[test]
fn execs_as_a_user_report_their_pid_before_ready() {
    if skip_without_setpriv() {
        return;
    }
    let husk = bin_under_test();
    let d = Dir::new("execs");
    rootless_bundle(&husk, &d.0);
    fs::create_dir_all(d.0.join("xdg")).expect("xdg");
    chown_r(&d.0.join("xdg"), NOBODY);
    let xdg = d.0.join("xdg");
    let id = format!("rx-{}", std::process::id());
    let run = |args: &[&str]| as_nobody(&husk, &xdg, &d.0, args);
    let r = run(&["run", "-d", "--bundle", "bundle", &id]);
    assert_eq!(r.code, Some(0), "run -d: {}", r.stderr);
    let failures: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    (0..20)
                        .map(|_| run(&["exec", &id, "true"]))
                        .filter(|r| r.code != Some(0))
                        .map(|r| r.stderr)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let _ = run(&["kill", &id, "KILL"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && run(&["state", &id]).stdout.contains("\"running\"") {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = run(&["delete", "--force", &id]);
    assert!(
        failures.is_empty(),
        "{} of 40 execs failed: {failures:?}",
        failures.len()
    );
}
