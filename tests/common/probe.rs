//! The syscall probe (tests/probe/probe.c): built static with gcc once per source version and
//! copied into a case's rootfs as /bin/probe.

use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The built probe binary (panics with the compiler's message when it cannot be built).
pub fn probe_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probe/probe.c");
        let text = fs::read(&src).expect("read tests/probe/probe.c");
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        let dir = std::env::temp_dir().join(format!("husk-probe-{:016x}", h.finish()));
        let bin = dir.join("probe");
        if bin.exists() {
            return bin;
        }
        fs::create_dir_all(&dir).expect("create probe dir");
        // Build under a unique name, then rename: test binaries build it concurrently.
        let tmp = dir.join(format!("probe.{}", std::process::id()));
        let out = Command::new("gcc")
            .args([
                "-static",
                "-pthread",
                "-O1",
                "-Wall",
                "-Wl,--no-warn-execstack",
                "-o",
            ])
            .arg(&tmp)
            .arg(&src)
            .output()
            .expect("run gcc (apt-get install gcc libc6-dev)");
        assert!(
            out.status.success(),
            "build the probe: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::rename(&tmp, &bin).expect("install probe");
        bin
    })
    .clone()
}

/// Copies the probe into `rootfs` as /bin/probe.
pub fn install_probe(rootfs: &Path) {
    fs::copy(probe_bin(), rootfs.join("bin/probe")).expect("copy probe into rootfs");
}
