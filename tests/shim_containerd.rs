//! containerd-shim-husk-v2 under a private containerd: the ctr suite with the shim driving husk
//! and driving runc, faults (kill -9 of the shim), a 100-container loop, and bad runtime options.
//! Every test starts and stops its own containerd (scripts/engines) and checks for leftovers.

mod common;
#[path = "common/engines.rs"]
mod engines;

use std::fs;
use std::time::Duration;

use common::{bin_under_test, runc_bin};
use engines::{ctr_suite, shim_pids, Driver, Engines, LOOP9};

#[test]
fn husk_shim_drives_husk() {
    let Some(e) = Engines::start("hs-husk") else {
        return;
    };
    ctr_suite(
        &e,
        &Driver::HuskShim {
            binary: bin_under_test(),
        },
    );
    e.assert_clean(Duration::from_secs(10));
}

#[test]
fn husk_shim_drives_runc() {
    let Some(e) = Engines::start("hs-runc") else {
        return;
    };
    ctr_suite(&e, &Driver::HuskShim { binary: runc_bin() });
    e.assert_clean(Duration::from_secs(10));
}

#[test]
fn killed_shim_leaves_nothing_behind() {
    let Some(e) = Engines::start("hs-kill9") else {
        return;
    };
    let d = Driver::HuskShim {
        binary: bin_under_test(),
    };
    let _g = e.guard("k9");
    e.ctr_run(&d, &["-d", "--null-io"], "k9", &["sh", "-c", LOOP9])
        .check();
    let pid = e.task_pid("k9").expect("task pid");
    let shims = shim_pids(&e.ns);
    assert_eq!(shims.len(), 1, "one shim expected: {shims:?}");
    // SAFETY: kill has no memory preconditions; the pid is the shim this test started.
    assert_eq!(unsafe { libc::kill(shims[0], libc::SIGKILL) }, 0);
    // containerd sees the shim go and runs `containerd-shim-husk-v2 delete`.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "container init {pid} outlived its shim"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    e.ctr(&["containers", "rm", "k9"]).check();
    e.assert_clean(Duration::from_secs(10));
}

#[test]
fn hundred_containers_leave_nothing_behind() {
    let Some(e) = Engines::start("hs-loop") else {
        return;
    };
    let d = Driver::HuskShim {
        binary: bin_under_test(),
    };
    let start = std::time::Instant::now();
    for i in 0..100 {
        let id = format!("loop-{i}");
        let _g = e.guard(&id);
        let out = e.ctr_run(&d, &["--rm"], &id, &["/bin/true"]);
        assert_eq!(out.code(), Some(0), "{out:?}");
    }
    println!("100 × ctr run --rm (husk shim): {:?}", start.elapsed());
    e.assert_clean(Duration::from_secs(10));
}

#[test]
fn default_binary_is_husk_next_to_the_shim_or_on_path() {
    let Some(e) = Engines::start("hs-default") else {
        return;
    };
    // No runtime options at all: the shim finds `husk` next to itself, else on containerd's
    // PATH, where scripts/engines links HUSK_BIN ($ENGINES_DIR/bin).
    let bin = e.dir.join("bin/husk");
    let _ = fs::remove_file(&bin);
    std::os::unix::fs::symlink(bin_under_test(), &bin).expect("link husk");
    let _g = e.guard("def");
    let out = e.ctr(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.husk.v2",
        &e.image,
        "def",
        "sh",
        "-c",
        "echo ok",
    ]);
    assert_eq!(out.stdout.trim(), "ok", "{out:?}");
    e.assert_clean(Duration::from_secs(10));
}

#[test]
fn bad_runtime_options_are_clear_errors() {
    let Some(e) = Engines::start("hs-bad") else {
        return;
    };
    let run = |cfg: &str, id: &str| {
        let path = e.dir.join(format!("{id}.toml"));
        fs::write(&path, cfg).expect("write config");
        let p = path.display().to_string();
        let _g = e.guard(id);
        e.ctr(&[
            "run",
            "--rm",
            "--runtime",
            "io.containerd.husk.v2",
            "--runtime-config-path",
            &p,
            &e.image,
            id,
            "true",
        ])
    };
    let out = run("Frobnicate = true\n", "bad1");
    assert!(
        !out.ok()
            && out.stderr.contains("unknown runtime option")
            && out.stderr.contains("Frobnicate"),
        "{out:?}"
    );
    let out = run("BinaryName = \"/nonexistent/husk\"\n", "bad2");
    assert!(
        !out.ok() && out.stderr.contains("/nonexistent/husk"),
        "{out:?}"
    );
    // A failing create reports the runtime's own message (from its JSON log).
    let out = run("BinaryName = \"/bin/false\"\n", "bad3");
    assert!(
        !out.ok() && out.stderr.contains("false create failed"),
        "{out:?}"
    );
    e.assert_clean(Duration::from_secs(10));
}

#[test]
fn containers_of_a_pod_share_one_shim() {
    let Some(e) = Engines::start("hs-pod") else {
        return;
    };
    let d = Driver::HuskShim {
        binary: bin_under_test(),
    };
    let ids = ["pod-a", "pod-b", "pod-c"];
    e.track("pod1");
    let _g: Vec<_> = ids.iter().map(|id| e.guard(id)).collect();
    for id in ids {
        let ann = "io.kubernetes.cri.sandbox-id=pod1";
        e.ctr_run(
            &d,
            &["-d", "--null-io", "--annotation", ann],
            id,
            &["sh", "-c", LOOP9],
        )
        .check();
    }
    assert_eq!(shim_pids(&e.ns).len(), 1, "one shim for the pod");
    // Removing one container keeps the shim for the others.
    e.remove("pod-a");
    assert_eq!(shim_pids(&e.ns).len(), 1, "the pod's shim stays");
    let out = e.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "x",
        "pod-b",
        "sh",
        "-c",
        "exit 4",
    ]);
    assert_eq!(out.code(), Some(4), "{out:?}");
    e.remove("pod-b");
    e.remove("pod-c");
    e.assert_clean(Duration::from_secs(10));
}
