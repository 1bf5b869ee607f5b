//! Engine parity: the same case through runc and through husk, compared. Engines (podman,
//! containerd's runc shim, conmon) act on exit codes and on what the runtime prints, so where
//! runc succeeds husk must too, and the other way round: real-time signals, `delete --force` of a
//! missing container, `kill --all` of a stopped one, `--debug`, JSON errors on stderr, an
//! unopenable `--log`, `--version`/`-v`, and the shim's `-v`/`--help`.

mod common;
#[path = "common/engines.rs"]
mod engines;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bin_under_test, runc_bin, skip, Case, Out, LOOP};

/// runc and the binary under test, each with its name for messages.
fn both() -> Vec<(&'static str, PathBuf)> {
    vec![("runc", runc_bin()), ("husk", bin_under_test())]
}

fn have_runc() -> bool {
    if runc_bin().exists() {
        return true;
    }
    println!("SKIP: runc is not installed (scripts/setup installs it)");
    false
}

/// `<bin> ARGS...` with a deadline, without the harness's `--log`.
fn plain(bin: &Path, args: &[&str]) -> Out {
    let mut c = Command::new(bin);
    c.args(args);
    engines::run(
        c,
        &format!("{} {}", bin.display(), args.join(" ")),
        Duration::from_secs(30),
    )
}

/// A per-test temp dir for state roots and logs, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("husk-parity-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create scratch dir");
        Scratch(d)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads /dev/shm/count inside the container (what its signal trap wrote), via `exec`.
fn trap_count(c: &Case) -> String {
    let out = c.rt(&["exec", &c.id, "cat", "/dev/shm/count"]);
    out.stdout.trim().to_string()
}

fn wait_trap_count(c: &Case, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = trap_count(c);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: the trap of signal 37 ran {got:?} times, wanted {want}",
            c.bin.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `kill ID 37` (what podman and the shims send for SIGRTMIN+3) reaches the container's trap, with
/// runc and with husk; husk also takes the names `SIGRTMIN+3`/`RTMIN+3` (runc 1.1.5 knows no
/// real-time signal names and refuses them). An unknown name fails with both, named in the error.
#[test]
fn realtime_signals_by_name_and_number() {
    if skip() || !have_runc() {
        return;
    }
    for (name, bin) in both() {
        let mut c = Case::with("parity-rtsig", &bin, &runc_bin());
        c.sh("n=0; trap 'n=$((n+1)); echo $n > /dev/shm/count' 37; echo 0 > /dev/shm/count; while :; do sleep 0.05; done");
        c.write_config();
        c.create_and_start();
        wait_trap_count(&c, "0");
        let sigs: &[&str] = if name == "runc" {
            &["37"]
        } else {
            &["37", "SIGRTMIN+3", "RTMIN+3", "sigrtmin+3"]
        };
        for (i, sig) in sigs.iter().enumerate() {
            let out = c.kill(sig);
            assert!(out.ok(), "{name}: kill {sig} failed: {out:?}");
            wait_trap_count(&c, &(i + 1).to_string());
        }
        let out = c.kill("SIGFOO").check_fails();
        let said = format!(
            "{}{}",
            out.stderr,
            std::fs::read_to_string(&c.log).unwrap_or_default()
        );
        assert!(
            said.contains("SIGFOO"),
            "{name}: the error does not name the signal: {said}"
        );
        c.kill("KILL").check();
        c.wait_status("stopped", Duration::from_secs(10));
        c.delete().check();
    }
}

/// runc: `delete --force` of a container that does not exist succeeds (podman runs it after every
/// failed `run`), `kill --all` of a stopped container succeeds, a plain `kill` of it fails.
#[test]
fn delete_force_of_missing_and_kill_all_of_stopped() {
    if skip() || !have_runc() {
        return;
    }
    for (name, bin) in both() {
        let c = Case::with("parity-exits", &bin, &runc_bin());
        let out = c.rt(&["delete", "--force", "no-such-container"]);
        assert_eq!(
            out.code(),
            Some(0),
            "{name}: delete --force of a missing container: {out:?}"
        );
        let out = c.rt(&["delete", "no-such-container"]);
        assert_eq!(
            out.code(),
            Some(1),
            "{name}: delete of a missing container: {out:?}"
        );

        c.create_and_start();
        c.wait_status("stopped", Duration::from_secs(10));
        let out = c.rt(&["kill", "--all", &c.id, "KILL"]);
        assert_eq!(
            out.code(),
            Some(0),
            "{name}: kill --all of a stopped container: {out:?}"
        );
        let out = c.kill("KILL");
        assert_eq!(
            out.code(),
            Some(1),
            "{name}: kill of a stopped container: {out:?}"
        );
        c.delete().check();
    }
}

/// `--debug` adds debug lines to the log on the create path (and without it there are none).
#[test]
fn debug_lines_on_create() {
    if skip() || !have_runc() {
        return;
    }
    for (name, bin) in both() {
        for debug in [true, false] {
            let mut c = Case::with("parity-debug", &bin, &runc_bin());
            c.sh(LOOP);
            c.write_config();
            let log = c.path_str("debug.json");
            let root = c.root.display().to_string();
            let mut args = vec!["--root", &root, "--log", &log, "--log-format", "json"];
            if debug {
                args.push("--debug");
            }
            let bundle = c.bundle_str();
            args.extend(["create", "--bundle", &bundle, &c.id]);
            let out = plain(&bin, &args);
            assert!(out.ok(), "{name}: create: {out:?}");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| {
                    serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("{name}: log line is not JSON ({e}): {l}"))
                })
                .collect();
            let debug_lines = lines.iter().filter(|l| l["level"] == "debug").count();
            if debug {
                assert!(
                    debug_lines > 0,
                    "{name}: --debug wrote no debug line: {text}"
                );
            } else {
                assert_eq!(
                    debug_lines, 0,
                    "{name}: debug lines without --debug: {text}"
                );
            }
            c.rt(&["delete", "--force", &c.id]).check();
        }
    }
}

/// `--log-format json` without `--log`: the error on stderr is a JSON line, as engines that parse
/// it expect; with `--log` the plain message goes to stderr and the JSON line to the log.
#[test]
fn json_errors_on_stderr() {
    if skip() || !have_runc() {
        return;
    }
    let s = Scratch::new("json");
    for (name, bin) in both() {
        let root = s.path(&format!("{name}-root"));
        let out = plain(
            &bin,
            &["--root", &root, "--log-format", "json", "delete", "nope"],
        );
        assert_eq!(out.code(), Some(1), "{name}: {out:?}");
        let last = out.stderr.lines().last().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| {
            panic!("{name}: stderr is not a JSON line ({e}): {:?}", out.stderr)
        });
        assert_eq!(v["level"], "error", "{name}: {v}");
        assert!(
            v["msg"]
                .as_str()
                .unwrap_or_default()
                .contains("does not exist"),
            "{name}: {v}"
        );
        assert!(v["time"].is_string(), "{name}: {v}");

        let log = s.path(&format!("{name}-log.json"));
        let out = plain(
            &bin,
            &[
                "--root",
                &root,
                "--log",
                &log,
                "--log-format",
                "json",
                "delete",
                "nope",
            ],
        );
        assert_eq!(out.code(), Some(1), "{name}: {out:?}");
        assert!(
            out.stderr.contains("does not exist") && !out.stderr.trim_start().starts_with('{'),
            "{name}: with --log, stderr has the plain message: {:?}",
            out.stderr
        );
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{name}: log is not JSON ({e}): {text:?}"));
        assert_eq!(v["level"], "error", "{name}: {v}");
    }
}

/// A `--log` that cannot be opened fails the command, naming the path, before it does anything.
#[test]
fn unopenable_log_is_an_error() {
    if skip() || !have_runc() {
        return;
    }
    let s = Scratch::new("badlog");
    let bad = "/nonexistent/husk-parity/x.log";
    for (name, bin) in both() {
        let root = s.path(&format!("{name}-root"));
        let out = plain(&bin, &["--root", &root, "--log", bad, "list"]);
        assert_eq!(out.code(), Some(1), "{name}: {out:?}");
        assert!(
            out.stderr.contains(bad) && out.stderr.contains("no such file or directory"),
            "{name}: the error does not name the log: {:?}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{name}: list ran anyway: {out:?}");
    }
}

/// `--version` and `-v` print the same lines: version, `commit:`, `spec:`, and what seccomp
/// support was built in.
#[test]
fn version_flags() {
    if skip() || !have_runc() {
        return;
    }
    for (name, bin) in both() {
        let long = plain(&bin, &["--version"]);
        let short = plain(&bin, &["-v"]);
        assert_eq!(long.code(), Some(0), "{name}: {long:?}");
        assert_eq!(short.code(), Some(0), "{name}: {short:?}");
        assert_eq!(long.stdout, short.stdout, "{name}: -v and --version differ");
        let lines: Vec<&str> = long.stdout.lines().collect();
        assert!(
            lines.first().is_some_and(|l| l.contains(" version ")),
            "{name}: {lines:?}"
        );
        for key in ["commit: ", "spec: "] {
            let v = lines.iter().find_map(|l| l.strip_prefix(key));
            assert!(
                v.is_some_and(|v| !v.trim().is_empty()),
                "{name}: no {key:?} line: {lines:?}"
            );
        }
        assert!(
            lines.iter().any(|l| l.contains("seccomp")),
            "{name}: no seccomp line: {lines:?}"
        );
    }
}

/// The shims answer `-v` (version on stdout) and `-h`/`--help` (usage on stderr) and exit 0.
#[test]
fn shim_version_and_help() {
    let runc_shim = Path::new("/usr/bin/containerd-shim-runc-v2");
    if !runc_shim.exists() {
        println!(
            "SKIP: containerd-shim-runc-v2 is not installed (scripts/setup installs containerd)"
        );
        return;
    }
    let husk_shim = engines::shim_bin();
    assert!(husk_shim.exists(), "{} is not built", husk_shim.display());
    for (name, shim) in [
        ("runc shim", runc_shim.to_path_buf()),
        ("husk shim", husk_shim),
    ] {
        let out = plain(&shim, &["-v"]);
        assert_eq!(out.code(), Some(0), "{name}: {out:?}");
        // Both name themselves as they were called (Go's os.Args[0]).
        let file = shim.display().to_string();
        assert!(
            out.stdout.starts_with(&format!("{file}:\n  Version:  ")),
            "{name}: {:?}",
            out.stdout
        );
        assert!(
            out.stdout.contains("\n  Revision: "),
            "{name}: {:?}",
            out.stdout
        );
        for help in ["--help", "-h"] {
            let out = plain(&shim, &[help]);
            assert_eq!(out.code(), Some(0), "{name} {help}: {out:?}");
            assert!(
                out.stderr.starts_with(&format!("Usage of {file}:"))
                    && out.stderr.contains("-namespace string"),
                "{name} {help}: {:?}",
                out.stderr
            );
        }
    }
}

/// Puts `/noexec` (a file without execute permission) and `/badfmt` (executable, not a
/// program) into a case's rootfs.
fn exec_failure_files(c: &Case) {
    use std::os::unix::fs::PermissionsExt;
    let r = c.rootfs();
    std::fs::write(r.join("noexec"), "#!/bin/sh\necho never\n").expect("write noexec");
    std::fs::set_permissions(r.join("noexec"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod noexec");
    std::fs::write(r.join("badfmt"), b"\x00\x01\x02 not a program\n").expect("write badfmt");
    std::fs::set_permissions(r.join("badfmt"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod badfmt");
}

/// What a command said, on stderr and in its log.
fn said(c: &Case, out: &Out) -> String {
    format!(
        "{}\n{}",
        out.stderr,
        std::fs::read_to_string(&c.log).unwrap_or_default()
    )
}

/// Exec failures as runc reports them, which is what engines map: podman and docker turn
/// "executable file not found" into 127 and "permission denied" into 126, and `exec` into a
/// running container that cannot start its program exits 255 (runc), 1 for an exec format error.
#[test]
fn exec_failures_match_runc() {
    if skip() || !have_runc() {
        return;
    }
    // (program, exit code of `exec`, what the error must say)
    let cases = [
        (
            "nosuch",
            255,
            r#"exec: "nosuch": executable file not found in $PATH"#,
        ),
        ("/noexec", 255, r#"exec: "/noexec": permission denied"#),
        ("/badfmt", 1, "exec format error"),
    ];
    for (name, bin) in both() {
        let mut c = Case::with("parity-execfail", &bin, &runc_bin());
        c.sh(LOOP);
        c.write_config();
        exec_failure_files(&c);
        c.create_and_start();
        for (prog, code, msg) in cases {
            let out = c.rt(&["exec", &c.id, prog]);
            assert_eq!(out.code(), Some(code), "{name}: exec {prog}: {out:?}");
            let s = said(&c, &out);
            assert!(
                s.contains(msg),
                "{name}: exec {prog} does not say {msg:?}: {s}"
            );
        }
        c.kill("KILL").check();
        c.wait_status("stopped", Duration::from_secs(10));
        c.delete().check();

        for (prog, _, msg) in cases {
            let mut c = Case::with("parity-runfail", &bin, &runc_bin());
            c.args(&[prog]);
            c.write_config();
            exec_failure_files(&c);
            let out = c.run();
            assert_eq!(out.code(), Some(1), "{name}: run {prog}: {out:?}");
            let s = said(&c, &out);
            assert!(
                s.contains(msg),
                "{name}: run {prog} does not say {msg:?}: {s}"
            );
            let _ = c.rt(&["delete", "--force", &c.id]);
        }
    }
}
