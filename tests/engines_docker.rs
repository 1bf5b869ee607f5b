//! docker `--runtime husk`: dockerd 20.10 (docker.io) on a private containerd, husk added with
//! `--add-runtime husk=BIN` and driven by containerd's runc shim: run, exec (with and without a
//! terminal), stop, remove, and nothing left behind.

mod common;
#[path = "common/engines.rs"]
mod engines;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bin_under_test, CMD_TIMEOUT};
use engines::{run_on_pty, Docker};
use serde_json::Value;

#[test]
fn docker_runs_husk() {
    let husk = bin_under_test();
    assert!(
        husk.exists(),
        "husk under test {} does not exist: build it or set HUSK_BIN",
        husk.display()
    );
    let Some(d) = Docker::start("docker", &husk) else {
        return;
    };
    let img = d.e.image.as_str();
    let flags = ["--runtime", "husk", "--network", "none"];
    let mut ids = Vec::new();

    // 1. Output and exit status; --cidfile names the container --rm removes.
    let cidfile = d.e.dir.join("r1.cid");
    let cid = cidfile.display().to_string();
    let mut a = vec!["run", "--rm", "--cidfile", &cid];
    a.extend(flags);
    a.extend([img, "sh", "-c", "echo hi; exit 3"]);
    let out = d.run(&a);
    assert_eq!(out.code(), Some(3), "{out:?}");
    assert_eq!(out.stdout.trim(), "hi", "{out:?}");
    ids.push(fs::read_to_string(&cidfile).expect("read --cidfile"));

    // 2. Detached, and really under husk: dockerd names the runtime, containerd's runc shim got
    // husk as its BinaryName, and husk's own state (under the shim's --root) has it running.
    let mut a = vec!["run", "-d", "--name", "d1"];
    a.extend(flags);
    a.extend([img, "sleep", "1000"]);
    let id = d.run(&a).check().stdout.trim().to_string();
    ids.push(id.clone());
    let out = d
        .run(&[
            "inspect",
            "--format",
            "{{.HostConfig.Runtime}} {{.State.Pid}}",
            "d1",
        ])
        .check();
    let (runtime, pid) = out.stdout.trim().split_once(' ').expect("runtime and pid");
    assert_eq!(runtime, "husk", "{out:?}");
    let pid: i64 = pid.parse().expect("State.Pid");
    let opts = fs::read_to_string(d.bundle(&id).join("options.json")).expect("shim options.json");
    let opts: Value = serde_json::from_str(&opts).expect("parse options.json");
    assert_eq!(
        opts["binary_name"].as_str(),
        Some(husk.to_str().expect("utf-8 husk path")),
        "{opts}"
    );
    let root = opts["root"].as_str().expect("options.json root");
    // The runc shim runs its runtime with --root <root>/<containerd namespace>.
    let state_root = format!("{root}/moby");
    let out = Command::new(&husk)
        .args(["--root", &state_root, "state", &id])
        .output()
        .expect("run husk state");
    assert!(out.status.success(), "husk state: {out:?}");
    let state: Value = serde_json::from_slice(&out.stdout).expect("parse husk state");
    assert_eq!(state["status"], "running", "{state}");
    assert_eq!(state["pid"].as_i64(), Some(pid), "{state}");

    // 3. exec, without and with a terminal.
    let out = d.run(&["exec", "d1", "sh", "-c", "echo in; exit 7"]);
    assert_eq!(out.code(), Some(7), "{out:?}");
    assert_eq!(out.stdout.trim(), "in", "{out:?}");
    let (code, text) = run_on_pty(
        d.cmd(&["exec", "-it", "d1", "sh"]),
        "# ",
        "echo $((6*7)); tty; exit 6\r",
        CMD_TIMEOUT,
    );
    assert_eq!(code, 6, "{text}");
    assert!(text.contains("42") && text.contains("/dev/pts/"), "{text}");

    // 4. stop: pid 1 ignores SIGTERM, so docker kills it after the 1 s grace.
    let t = Instant::now();
    d.run(&["stop", "-t", "1", "d1"]).check();
    let stop = t.elapsed();
    let out = d
        .run(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            "d1",
        ])
        .check();
    assert_eq!(out.stdout.trim(), "exited 137", "{out:?}");
    assert!(stop < Duration::from_secs(10), "docker stop took {stop:?}");

    // 5. rm, then no process, cgroup, mount, bundle or husk state of either container remains.
    d.run(&["rm", "d1"]).check();
    d.assert_clean(&ids, Duration::from_secs(10));
    println!("docker stop -t 1 took {stop:?}");
}
