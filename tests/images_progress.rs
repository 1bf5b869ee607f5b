//! `husk image unpack` on a terminal shows progress per layer and a one-line summary; through
//! a pipe, or with --quiet on a terminal, it prints none of that. The terminal is script(1)'s.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::Case;

const TIMEOUT: Duration = Duration::from_secs(120);

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn progress_on_a_terminal_only() {
    let Some(case) = Case::new("images-progress") else {
        return;
    };
    if common::is_runc(&case.bin) {
        println!("SKIP: `husk image` is husk's own; the binary under test is runc");
        return;
    }
    if !Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        println!("SKIP: script(1) is not installed (util-linux; scripts/setup installs it)");
        return;
    }
    let d = |n: &str| case.dir.join(n);
    let src = d("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    for i in 0..50 {
        fs::write(src.join(format!("etc/f{i}")), vec![b'x'; 10_000]).unwrap();
    }
    let bin = case.bin.to_str().unwrap().to_string();
    let image = d("image");
    let mut c = Command::new(&case.bin);
    c.args(["image", "pack", "--cmd", "/bin/true"])
        .arg(&src)
        .arg(&image);
    case.spawn_cmd(c, "husk image pack").wait(TIMEOUT).check();
    let image = image.to_str().unwrap().to_string();

    // On a terminal (script runs the command on a pty and copies what it writes).
    let on_tty = |bundle: &str, extra: &str| {
        let cmd = format!(
            "{} image unpack {extra} {} {}",
            quote(&bin),
            quote(&image),
            quote(d(bundle).to_str().unwrap())
        );
        let mut c = Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"]);
        let out = case
            .spawn_cmd(c, "script -qc husk image unpack")
            .wait(TIMEOUT)
            .check();
        out.stdout + &out.stderr
    };
    let shown = on_tty("tty", "");
    println!("on a terminal:\n{shown}");
    assert!(shown.contains("layer 1/1 "), "no layer progress: {shown:?}");
    assert!(shown.contains("100% "), "no progress bar: {shown:?}");
    assert!(shown.contains("51 entries"), "no entry count: {shown:?}");
    assert!(
        shown.contains("unpacked 1 layer, 51 entries, 488.3 KiB in "),
        "no summary: {shown:?}"
    );
    let quiet = on_tty("tty-quiet", "--quiet");
    assert!(
        !quiet.contains("layer 1/1") && !quiet.contains("unpacked"),
        "--quiet printed: {quiet:?}"
    );

    // Through a pipe: nothing.
    let mut c = Command::new(&case.bin);
    c.args(["image", "unpack", &image]).arg(d("pipe"));
    let out = case
        .spawn_cmd(c, "husk image unpack | ...")
        .wait(TIMEOUT)
        .check();
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    assert!(out.stderr.is_empty(), "stderr: {:?}", out.stderr);
    assert!(d("pipe/rootfs/etc/f49").exists());
}
