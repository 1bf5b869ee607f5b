//! A paused task under containerd dies at once: `ctr task rm -f` (SIGKILL, then delete) of a
//! paused task through containerd-shim-husk-v2 completes in under two seconds and leaves
//! nothing behind.

mod common;
#[path = "common/engines.rs"]
mod engines;

use std::time::{Duration, Instant};

use common::bin_under_test;
use engines::{Driver, Engines, LOOP9};

#[test]
fn rm_force_of_a_paused_task_is_prompt() {
    let Some(e) = Engines::start("own-paused") else {
        return;
    };
    let d = Driver::HuskShim {
        binary: bin_under_test(),
    };
    let _g = e.guard("pz");
    e.ctr_run(&d, &["-d", "--null-io"], "pz", &["sh", "-c", LOOP9])
        .check();
    let pid = e.task_pid("pz").expect("task pid");
    e.ctr(&["task", "pause", "pz"]).check();
    e.wait_status("pz", "PAUSED", Duration::from_secs(10));
    let t = Instant::now();
    e.ctr(&["task", "rm", "-f", "pz"]).check();
    let took = t.elapsed();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the paused init {pid} survived ctr task rm -f"
    );
    assert!(took < Duration::from_secs(2), "ctr task rm -f of a paused task took {took:?}");
    e.ctr(&["containers", "rm", "pz"]).check();
    e.assert_clean(Duration::from_secs(10));
}
