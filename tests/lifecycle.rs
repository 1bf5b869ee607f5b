mod common;
use common::*;

#[test]
fn smoke() {
    let Some(mut c) = Case::new("smoke") else { return };
    c.sh("echo hi");
    c.write_config();
    let out = c.run().check();
    assert_eq!(out.stdout, "hi\n");
}
