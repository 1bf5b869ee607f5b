//! `husk image unpack --rootless` as a non-root user (nobody) writes a bundle that user can
//! `husk run`; without --rootless the unpack warns that the bundle needs root.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::Case;

const TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn a_rootless_bundle_runs_as_nobody() {
    let Some(case) = Case::new("images-rootless") else {
        return;
    };
    if common::is_runc(&case.bin) {
        println!("SKIP: `husk image` is husk's own; the binary under test is runc");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP: needs root to switch to the user nobody");
        return;
    }
    let busybox = std::path::Path::new("/bin/busybox");
    if !busybox.exists()
        || !Command::new("su")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        println!("SKIP: needs /bin/busybox (busybox-static) and su");
        return;
    }
    let d = |n: &str| case.dir.join(n);
    fs::create_dir_all(d("src/bin")).unwrap();
    fs::copy(busybox, d("src/bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", d("src/bin/sh")).unwrap();
    let mut c = Command::new(&case.bin);
    c.args([
        "image",
        "pack",
        "--cmd",
        r#"["/bin/sh","-c","echo rootless-ok; id -u"]"#,
    ])
    .arg(d("src"))
    .arg(d("image"));
    case.spawn_cmd(c, "husk image pack").wait(TIMEOUT).check();
    // The user nobody reads the image and works in a directory of its own.
    for p in [case.dir.clone(), d("image")] {
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(d("image"))
        .status()
        .unwrap();
    fs::create_dir(d("work")).unwrap();
    Command::new("chown")
        .arg("nobody")
        .arg(d("work"))
        .status()
        .unwrap();
    let bin = case.bin.to_str().unwrap();
    let script = format!(
        "cd {work} && {bin} image unpack ../image plain; rm -rf plain; \
         {bin} image unpack --rootless ../image b && {bin} --root {work}/state run -b b rootless-1",
        work = d("work").display()
    );
    let mut c = Command::new("su");
    c.args(["nobody", "-s", "/bin/sh", "-c", &script]);
    let out = case
        .spawn_cmd(c, "su nobody: unpack and run")
        .wait(TIMEOUT)
        .check();
    assert!(
        out.stderr.contains("without --rootless") && out.stderr.contains("unpack with --rootless"),
        "no hint for the non-root unpack: {:?}",
        out.stderr
    );
    assert!(
        out.stdout.contains("rootless-ok\n0\n"),
        "stdout: {:?}",
        out.stdout
    );
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(d("work/b/config.json")).unwrap()).unwrap();
    assert_eq!(config["linux"]["uidMappings"][0]["hostID"], 65534);
    assert!(config["linux"]["resources"].is_null(), "{config}");
}
