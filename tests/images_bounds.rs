//! `husk image unpack`'s bounds from the command line: `--max-size` with suffixes, `--max-files`,
//! `--no-limit`; a bound that stops the unpack is named with the flag that moves it, and nothing
//! is left behind.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::{Case, Out};

const TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn bounds_from_the_command_line() {
    let Some(case) = Case::new("images-bounds") else {
        return;
    };
    if common::is_runc(&case.bin) {
        println!("SKIP: `husk image` is husk's own; the binary under test is runc");
        return;
    }
    let d = |n: &str| case.dir.join(n);
    fs::create_dir_all(d("src/data")).unwrap();
    fs::write(d("src/data/big"), vec![7u8; 3 << 20]).unwrap();
    for i in 0..10 {
        fs::write(d("src/data").join(format!("small{i}")), "s").unwrap();
    }
    let mut c = Command::new(&case.bin);
    c.args(["image", "pack", "--cmd", "/bin/true"])
        .arg(d("src"))
        .arg(d("image"));
    case.spawn_cmd(c, "husk image pack").wait(TIMEOUT).check();
    let unpack = |bundle: &str, flags: &[&str]| -> Out {
        let mut c = Command::new(&case.bin);
        c.args(["image", "unpack"])
            .args(flags)
            .arg(d("image"))
            .arg(d(bundle));
        case.spawn_cmd(c, "husk image unpack").wait(TIMEOUT)
    };

    let out = unpack("b1", &["--max-size", "2M"]);
    assert!(!out.ok(), "--max-size 2M let 3 MiB through");
    for want in [
        "size bound of 2097152 bytes (2.0 MiB)",
        "--max-size SIZE",
        "--no-limit",
        "nothing was left behind",
    ] {
        assert!(
            out.stderr.contains(want),
            "{want:?} not in {:?}",
            out.stderr
        );
    }
    assert!(!d("b1").exists(), "the bundle was left behind");

    let out = unpack("b2", &["--max-files", "5"]);
    assert!(!out.ok(), "--max-files 5 let 13 entries through");
    assert!(
        out.stderr.contains("bound of 5 entries") && out.stderr.contains("--max-files N"),
        "{:?}",
        out.stderr
    );
    assert!(!d("b2").exists());

    let out = unpack("b3", &["--max-size", "1.5G"]);
    assert!(
        !out.ok() && out.stderr.contains("a whole number"),
        "{:?}",
        out.stderr
    );

    unpack("b4", &["--max-size", "4MiB", "--max-files", "13"]).check();
    unpack("b5", &["--no-limit"]).check();
    assert_eq!(
        fs::metadata(d("b5/rootfs/data/big")).unwrap().len(),
        3 << 20
    );
    let out = unpack("b6", &["--no-limit", "--max-size", "1G"]);
    assert!(!out.ok(), "--no-limit with --max-size was accepted");
}
