//! `husk spec`: the default `config.json`, as `runc spec` makes it (with `--rootless` too).
//!
//! The output is runc 1.1.5's, key for key and in the same order, with one deliberate difference:
//! `ociVersion` is the runtime-spec release husk implements ([`OCI_VERSION`]) instead of runc's
//! "1.0.2-dev". The inheritable capability set is absent, as in runc since 1.1.2: a non-empty
//! inheritable set lets file capabilities of a binary in the image raise the process's permitted
//! set across execve (CVE-2022-29162).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

/// The runtime-spec release husk implements and writes into new configs.
pub const OCI_VERSION: &str = "1.3.0";

/// The file `husk spec` writes in the bundle.
pub const CONFIG_FILE: &str = "config.json";

#[derive(Debug, thiserror::Error)]
pub enum SpecDefaultError {
    /// runc's wording, so scripts that match on it keep working.
    #[error("File {name} exists. Remove it first")]
    Exists { name: &'static str },
    #[error("write {path:?}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The default spec as JSON. With `rootless`, the changes of runc's `ToRootless`: a user namespace
/// mapping the caller's effective uid and gid to root, no network namespace, `/sys` bound from the
/// host instead of a new sysfs, no `uid=`/`gid=` mount options and no cgroup resources.
pub fn generate(rootless: bool) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let devpts_options: Vec<&str> = [
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
    ]
    .into_iter()
    // An unprivileged user can only map its own gid, so gid=5 (tty) would not exist.
    .chain((!rootless).then_some("gid=5"))
    .collect();
    let sys_mount = if rootless {
        // A new sysfs needs CAP_SYS_ADMIN over the network namespace, which a rootless
        // container sharing the host's does not have.
        json!({
            "destination": "/sys",
            "type": "none",
            "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]
        })
    } else {
        json!({
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"]
        })
    };

    let mut namespaces = vec![json!({"type": "pid"})];
    if !rootless {
        namespaces.push(json!({"type": "network"}));
    }
    namespaces.extend([
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ]);
    if rootless {
        namespaces.push(json!({"type": "user"}));
    }

    let mut linux = serde_json::Map::new();
    if rootless {
        let (uid, gid) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        linux.insert(
            "uidMappings".into(),
            json!([{"containerID": 0, "hostID": uid, "size": 1}]),
        );
        linux.insert(
            "gidMappings".into(),
            json!([{"containerID": 0, "hostID": gid, "size": 1}]),
        );
    } else {
        linux.insert(
            "resources".into(),
            json!({"devices": [{"allow": false, "access": "rwm"}]}),
        );
    }
    linux.insert("namespaces".into(), Value::Array(namespaces));
    linux.insert(
        "maskedPaths".into(),
        json!([
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi"
        ]),
    );
    linux.insert(
        "readonlyPaths".into(),
        json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ]),
    );

    json!({
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": devpts_options
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"]
            },
            sys_mount,
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
            }
        ],
        "linux": linux
    })
}

/// `value` as runc prints it: tab-indented, no trailing newline.
pub fn to_runc_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serializing a Value into a Vec cannot fail: keys are strings and the writer is memory.
    if value.serialize(&mut ser).is_err() {
        out.clear();
    }
    out
}

/// Write the default spec to `<bundle>/config.json`, refusing to replace an existing one (also a
/// dangling symlink: the file is created with O_EXCL, so there is no window between check and write).
pub fn write(bundle: &Path, rootless: bool) -> Result<(), SpecDefaultError> {
    let path = bundle.join(CONFIG_FILE);
    let data = to_runc_json(&generate(rootless));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .open(&path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                SpecDefaultError::Exists { name: CONFIG_FILE }
            } else {
                SpecDefaultError::Write {
                    path: path.clone(),
                    source,
                }
            }
        })?;
    file.write_all(&data)
        .map_err(|source| SpecDefaultError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    use crate::testutil::TempDir;

    fn runc_spec(rootless: bool) -> Option<Value> {
        let dir = TempDir::new("runc");
        let mut cmd = Command::new("runc");
        cmd.arg("spec").current_dir(&dir.0);
        if rootless {
            cmd.arg("--rootless");
        }
        match cmd.output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                eprintln!(
                    "skip: runc spec failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                return None;
            }
            Err(e) => {
                eprintln!("skip: runc not runnable: {e}");
                return None;
            }
        }
        let text = std::fs::read(dir.0.join("config.json")).unwrap();
        Some(serde_json::from_slice(&text).unwrap())
    }

    #[test]
    fn deserializes_as_oci_spec() {
        for rootless in [false, true] {
            let spec: oci_spec::runtime::Spec = serde_json::from_value(generate(rootless)).unwrap();
            assert_eq!(spec.version(), OCI_VERSION);
            let caps = spec
                .process()
                .as_ref()
                .unwrap()
                .capabilities()
                .as_ref()
                .unwrap();
            assert!(caps.inheritable().as_ref().is_none_or(|s| s.is_empty()));
            assert!(spec.process().as_ref().unwrap().terminal().unwrap_or(false));
        }
    }

    #[test]
    fn matches_runc_spec() {
        for rootless in [false, true] {
            let Some(mut runc) = runc_spec(rootless) else {
                return;
            };
            // The one documented difference.
            assert_eq!(runc["ociVersion"], "1.0.2-dev");
            runc["ociVersion"] = Value::from(OCI_VERSION);
            let ours = generate(rootless);
            assert_eq!(ours, runc, "rootless={rootless}");
            // Same key order too (serde_json's preserve_order), so the files read the same.
            let ours_keys: Vec<_> = ours.as_object().unwrap().keys().collect();
            let runc_keys: Vec<_> = runc.as_object().unwrap().keys().collect();
            assert_eq!(ours_keys, runc_keys);
        }
    }

    #[test]
    fn written_file_is_byte_identical_to_runc_apart_from_version() {
        let Some(_) = runc_spec(false) else { return };
        let ours = TempDir::new("ours");
        write(&ours.0, false).unwrap();
        let runc = TempDir::new("runc-bytes");
        let status = Command::new("runc")
            .arg("spec")
            .current_dir(&runc.0)
            .status()
            .unwrap();
        assert!(status.success());
        let theirs = std::fs::read_to_string(runc.0.join("config.json")).unwrap();
        let theirs = theirs.replace("\"1.0.2-dev\"", &format!("\"{OCI_VERSION}\""));
        let ours = std::fs::read_to_string(ours.0.join("config.json")).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = TempDir::new("exists");
        std::fs::write(dir.0.join("config.json"), "{}").unwrap();
        let err = write(&dir.0, false).unwrap_err();
        assert_eq!(err.to_string(), "File config.json exists. Remove it first");
        assert_eq!(
            std::fs::read_to_string(dir.0.join("config.json")).unwrap(),
            "{}"
        );

        // A dangling symlink must not be followed to create a file elsewhere.
        let dir2 = TempDir::new("symlink");
        std::os::unix::fs::symlink(dir2.0.join("elsewhere"), dir2.0.join("config.json")).unwrap();
        assert!(matches!(
            write(&dir2.0, false),
            Err(SpecDefaultError::Exists { .. })
        ));
        assert!(!dir2.0.join("elsewhere").exists());
    }

    #[test]
    fn rootless_maps_the_caller() {
        let spec = generate(true);
        let uid = nix::unistd::geteuid().as_raw();
        assert_eq!(spec["linux"]["uidMappings"][0]["hostID"], uid);
        assert!(spec["linux"].get("resources").is_none());
        let ns: Vec<_> = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "user"]);
    }

    #[test]
    fn missing_bundle_is_a_write_error() {
        let err = write(Path::new("/nonexistent/husk-bundle"), false).unwrap_err();
        assert!(matches!(err, SpecDefaultError::Write { .. }));
    }
}
