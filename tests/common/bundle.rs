//! Bundles: busybox rootfs and configs from a runtime's `spec`.

use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};

use super::SEQ;

/// `<bin> spec [extra]` printed in a scratch dir, as JSON (cached per binary and flags).
pub fn spec(bin: &Path, extra: &[&str]) -> Value {
    static CACHE: OnceLock<Mutex<Vec<(String, Value)>>> = OnceLock::new();
    let key = format!("{} {}", bin.display(), extra.join(" "));
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    if let Some((_, v)) = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(k, _)| *k == key)
    {
        return v.clone();
    }
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("husk-tests-spec-{}-{n}", std::process::id()));
    fs::create_dir_all(&dir).expect("create spec dir");
    let out = Command::new(bin)
        .arg("spec")
        .args(extra)
        .current_dir(&dir)
        .output();
    let out = out.unwrap_or_else(|e| panic!("run {} spec: {e}", bin.display()));
    let text = fs::read_to_string(dir.join("config.json"));
    let _ = fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{key} spec failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value =
        serde_json::from_str(&text.expect("spec wrote config.json")).expect("spec output is JSON");
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((key, v.clone()));
    v
}

/// A busybox rootfs at `dir` like scripts/mkbundle makes: /bin/busybox and its applets as links.
pub fn make_rootfs(dir: &Path) {
    static APPLETS: OnceLock<Vec<String>> = OnceLock::new();
    let applets = APPLETS.get_or_init(|| {
        let out = Command::new("/bin/busybox")
            .arg("--list-full")
            .output()
            .expect("run busybox --list-full");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    });
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc", "sys", "dev", "run",
        "var",
    ] {
        fs::create_dir_all(dir.join(d)).expect("create rootfs dir");
    }
    fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("copy busybox (apt-get install busybox-static)");
    for a in applets {
        let link = dir.join(a);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink("/bin/busybox", &link).expect("link applet");
        }
    }
    let passwd =
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    fs::write(dir.join("etc/passwd"), passwd).expect("write passwd");
    fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("write group");
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
}

/// Writes an executable script.
pub fn write_script(path: &Path, body: &str) {
    fs::write(path, body).expect("write script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod script");
}
