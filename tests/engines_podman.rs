//! podman `--runtime husk` (over conmon) with a private store: run, exec, stop, remove.

mod common;
#[path = "common/engines.rs"]
mod engines;

use std::fs;

use common::bin_under_test;
use engines::Engines;

#[test]
fn podman_runs_husk() {
    let Some(e) = Engines::start("podman") else {
        return;
    };
    let husk = bin_under_test();
    let rt = husk.display().to_string();
    // podman's defaults as they are (its default spec sets the sysctl
    // net.ipv4.ping_group_range, which husk must write before /proc/sys goes read-only).
    let conf = e.dir.join("podman/containers.conf");
    fs::write(&conf, "[containers]\n").expect("write containers.conf");
    let hard = {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the struct we own.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
        r.rlim_max
    };
    let ulimit = format!("nofile={hard}:{hard}");
    let podman = |args: &[&str]| {
        let mut c = e.podman_cmd(args);
        c.env("CONTAINERS_CONF", &conf);
        engines::run(
            c,
            &format!("podman {}", args.join(" ")),
            std::time::Duration::from_secs(60),
        )
    };
    let run_flags = [
        "--network",
        "none",
        "--ulimit",
        &ulimit,
        "--ulimit",
        "nproc=32768:32768",
        "--runtime",
        &rt,
    ];

    let mut a = vec!["run", "--rm"];
    a.extend(run_flags);
    a.extend([e.image.as_str(), "sh", "-c", "echo hi-podman; exit 2"]);
    let out = podman(&a);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert_eq!(out.stdout.trim(), "hi-podman", "{out:?}");

    let mut a = vec!["run", "-d", "--name", "p1"];
    a.extend(run_flags);
    a.extend([e.image.as_str(), "sleep", "1000"]);
    podman(&a).check();
    let out = podman(&["exec", "p1", "sh", "-c", "echo in-exec; exit 7"]);
    assert_eq!(out.code(), Some(7), "{out:?}");
    assert_eq!(out.stdout.trim(), "in-exec", "{out:?}");
    podman(&["stop", "-t", "1", "p1"]).check();
    podman(&["rm", "p1"]).check();
    let left = podman(&["ps", "-aq"]).check();
    assert_eq!(left.stdout.trim(), "", "containers left: {left:?}");
}

/// `podman stop` of a container whose stop signal is SIGRTMIN+3 (systemd's convention): podman
/// sends `kill ID 37` to the runtime; with runc and with husk the container's trap runs and it
/// stops at once (exit 0), rather than failing the kill and waiting out the timeout for SIGKILL.
#[test]
fn podman_stop_with_sigrtmin3() {
    let Some(e) = Engines::start("pd-rt") else {
        return;
    };
    let conf = e.dir.join("podman/containers.conf");
    fs::write(&conf, "[containers]\n").expect("write containers.conf");
    let hard = {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the struct we own.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
        r.rlim_max
    };
    let ulimit = format!("nofile={hard}:{hard}");
    let podman = |args: &[&str]| {
        let mut c = e.podman_cmd(args);
        c.env("CONTAINERS_CONF", &conf);
        engines::run(
            c,
            &format!("podman {}", args.join(" ")),
            std::time::Duration::from_secs(60),
        )
    };
    for (name, rt) in [("runc", common::runc_bin()), ("husk", bin_under_test())] {
        let rt = rt.display().to_string();
        let ctr = format!("rtstop-{name}");
        let a = [
            "run",
            "-d",
            "--name",
            &ctr,
            "--stop-signal",
            "SIGRTMIN+3",
            "--network",
            "none",
            "--ulimit",
            &ulimit,
            "--ulimit",
            "nproc=32768:32768",
            "--runtime",
            &rt,
            e.image.as_str(),
            "sh",
            "-c",
            "trap 'exit 0' 37; echo trapped; while :; do sleep 0.05; done",
        ];
        podman(&a).check();
        // Stop once the trap is set: a stop signal sent before meets the shell's default
        // action, and the test would measure that race, not the delivery.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !podman(&["logs", &ctr])
            .stdout
            .lines()
            .any(|l| l == "trapped")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: the container never said its trap was set"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let start = std::time::Instant::now();
        let out = podman(&["stop", "-t", "10", &ctr]);
        let took = start.elapsed();
        let code = podman(&["inspect", "--format", "{{.State.ExitCode}}", &ctr]);
        podman(&["rm", "-f", &ctr]).check();
        assert!(out.ok(), "{name}: podman stop: {out:?}");
        println!("{name}: podman stop with SIGRTMIN+3 took {took:?}");
        assert_eq!(
            code.stdout.trim(),
            "0",
            "{name}: the container did not stop by its trap for SIGRTMIN+3 (exit {:?}, stop took {took:?})",
            code.stdout.trim()
        );
        assert!(
            took < std::time::Duration::from_secs(5),
            "{name}: podman stop took {took:?}: the stop signal did not stop it"
        );
    }
    let left = podman(&["ps", "-aq"]).check();
    assert_eq!(left.stdout.trim(), "", "containers left: {left:?}");
}

/// podman maps the runtime's exec failures to exit codes by their wording: a program that is
/// not there is 127, one that is not executable 126 (`podman run`; `podman exec` alike). husk
/// must give podman what runc gives it.
#[test]
fn podman_exit_codes_for_exec_failures_match_runc() {
    let Some(e) = Engines::start("pd-ef") else {
        return;
    };
    let conf = e.dir.join("podman/containers.conf");
    fs::write(&conf, "[containers]\n").expect("write containers.conf");
    let hard = {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the struct we own.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
        r.rlim_max
    };
    let ulimit = format!("nofile={hard}:{hard}");
    let podman = |args: &[&str]| {
        let mut c = e.podman_cmd(args);
        c.env("CONTAINERS_CONF", &conf);
        engines::run(
            c,
            &format!("podman {}", args.join(" ")),
            std::time::Duration::from_secs(60),
        )
    };
    // /etc/passwd is in the image and not executable.
    let cases = [("nosuch", 127), ("/etc/passwd", 126)];
    for (name, rt) in [("runc", common::runc_bin()), ("husk", bin_under_test())] {
        let rt = rt.display().to_string();
        let flags = [
            "--network",
            "none",
            "--ulimit",
            &ulimit,
            "--ulimit",
            "nproc=32768:32768",
            "--runtime",
            &rt,
        ];
        for (prog, code) in cases {
            let mut a = vec!["run", "--rm"];
            a.extend(flags);
            a.extend([e.image.as_str(), prog]);
            let out = podman(&a);
            assert_eq!(out.code(), Some(code), "{name}: podman run {prog}: {out:?}");
        }
        let ctr = format!("execfail-{name}");
        let mut a = vec!["run", "-d", "--name", &ctr];
        a.extend(flags);
        a.extend([e.image.as_str(), "sleep", "1000"]);
        podman(&a).check();
        for (prog, code) in cases {
            let out = podman(&["exec", &ctr, prog]);
            assert_eq!(
                out.code(),
                Some(code),
                "{name}: podman exec {prog}: {out:?}"
            );
        }
        podman(&["rm", "-f", "-t", "0", &ctr]).check();
    }
    let left = podman(&["ps", "-aq"]).check();
    assert_eq!(left.stdout.trim(), "", "containers left: {left:?}");
}
