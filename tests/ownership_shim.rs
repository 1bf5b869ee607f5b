//! A paused task under containerd dies at once: `ctr task rm -f` (SIGKILL, then delete) of a
//! paused task through containerd-shim-husk-v2 completes in under two seconds and leaves
//! nothing behind.

mod common;
#[path = "common/engines.rs"]
mod engines;

use std::time::{Duration, Instant};

use common::bin_under_test;
use engines::{shim_pids, Driver, Engines, LOOP9};

/// Thaws the task's cgroup when dropped (before the engine's own clean-up), so that a failing
/// runtime cannot leave a frozen process that blocks the rest of the clean-up.
struct Thaw(Vec<std::path::PathBuf>);

impl Thaw {
    fn new(e: &Engines, id: &str) -> Thaw {
        let rel = format!("{}/{id}", e.ns);
        Thaw(vec![
            std::path::Path::new("/sys/fs/cgroup/freezer").join(&rel),
            std::path::Path::new("/sys/fs/cgroup").join(&rel),
            std::path::Path::new("/sys/fs/cgroup/unified").join(&rel),
        ])
    }
}

impl Drop for Thaw {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::write(d.join("freezer.state"), "THAWED");
            let _ = std::fs::write(d.join("cgroup.freeze"), "0");
        }
    }
}

#[test]
fn rm_force_of_a_paused_task_is_prompt() {
    let Some(e) = Engines::start("own-pz") else {
        return;
    };
    let d = Driver::HuskShim {
        binary: bin_under_test(),
    };
    let _g = e.guard("pz");
    let _thaw = Thaw::new(&e, "pz");
    e.ctr_run(&d, &["-d", "--null-io"], "pz", &["sh", "-c", LOOP9])
        .check();
    let pid = e.task_pid("pz").expect("task pid");
    e.ctr(&["task", "pause", "pz"]).check();
    e.wait_status("pz", "PAUSED", Duration::from_secs(10));
    let t = Instant::now();
    e.ctr(&["task", "rm", "-f", "pz"]).check();
    let took = t.elapsed();
    println!("ctr task rm -f of a paused task: {took:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the paused init {pid} survived ctr task rm -f"
    );
    assert!(
        took < Duration::from_secs(2),
        "ctr task rm -f of a paused task took {took:?}"
    );
    e.ctr(&["containers", "rm", "pz"]).check();
    e.assert_clean(Duration::from_secs(10));
}

#[test]
fn killed_shim_of_a_paused_task_leaves_nothing_behind() {
    let Some(e) = Engines::start("own-pk9") else {
        return;
    };
    let d = Driver::HuskShim {
        binary: bin_under_test(),
    };
    let _g = e.guard("pk");
    let _thaw = Thaw::new(&e, "pk");
    e.ctr_run(&d, &["-d", "--null-io"], "pk", &["sh", "-c", LOOP9])
        .check();
    let pid = e.task_pid("pk").expect("task pid");
    e.ctr(&["task", "pause", "pk"]).check();
    e.wait_status("pk", "PAUSED", Duration::from_secs(10));
    let shims = shim_pids(&e.ns);
    assert_eq!(shims.len(), 1, "one shim expected: {shims:?}");
    // SAFETY: kill has no memory preconditions; the pid is the shim this test started.
    assert_eq!(unsafe { libc::kill(shims[0], libc::SIGKILL) }, 0);
    // containerd sees the shim go and runs `containerd-shim-husk-v2 delete`.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "paused init {pid} outlived its shim"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    e.ctr(&["containers", "rm", "pk"]).check();
    e.assert_clean(Duration::from_secs(10));
}
