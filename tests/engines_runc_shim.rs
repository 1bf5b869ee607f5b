//! husk as the runc binary of containerd's own runc shim (`ctr run --runc-binary`): the same ctr
//! suite the husk shim passes.

mod common;
#[path = "common/engines.rs"]
mod engines;

use std::time::Duration;

use common::bin_under_test;
use engines::{ctr_suite, Driver, Engines};

#[test]
fn runc_shim_drives_husk() {
    let Some(e) = Engines::start("rs-husk") else {
        return;
    };
    ctr_suite(
        &e,
        &Driver::RuncShim {
            binary: bin_under_test(),
        },
    );
    e.assert_clean(Duration::from_secs(10));
}
