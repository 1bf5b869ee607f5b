//! Runtime options: which runc-compatible binary the shim drives and where its state lives.
//!
//! containerd hands them to `Create` as a protobuf `Any`, in one of two shapes:
//! - `containerd.runc.v1.Options` (what CRI's `[...runtimes.X.options]` and docker send):
//!   `BinaryName`, `Root`, `SystemdCgroup`, `NoPivotRoot`, `NoNewKeyring`, `ShimCgroup`;
//! - `runtimeoptions.v1.Options` (what `ctr run --runtime-config-path F` sends): a path to a
//!   TOML file (or its body) with the same keys, e.g. `BinaryName = "/usr/sbin/runc"`.
//!
//! Without a binary name the shim drives `husk` next to its own executable, else `husk` on
//! PATH. The resolved options are saved in the bundle so that `shim delete`, which runs after
//! the shim died, drives the same binary with the same root.

use std::path::{Path, PathBuf};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{CodedInputStream, Message};
use containerd_shim_protos::shim::oci::Options as RuncOptions;
use serde::{Deserialize, Serialize};

/// Where the state of containers lives when the options name no root (containerd's runc shim
/// uses /run/containerd/runc); the containerd namespace is appended, as runc's shim does.
pub const DEFAULT_ROOT: &str = "/run/containerd/husk";
/// The file in the bundle that keeps the resolved options for `shim delete`.
pub const SAVED: &str = "husk-shim.json";

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("unknown runtime options type {0:?} (want containerd.runc.v1.Options or runtimeoptions.v1.Options)")]
    UnknownType(String),
    #[error("decode runtime options {kind}")]
    Decode {
        kind: &'static str,
        #[source]
        source: containerd_shim_protos::protobuf::Error,
    },
    #[error("read runtime config {path:?}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("runtime config {origin} line {line}: {message}")]
    Config {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("runtime option {0} is not supported by containerd-shim-husk-v2")]
    Unsupported(&'static str),
    #[error("find runtime binary {name:?}: {where_}")]
    BinaryNotFound { name: String, where_: String },
    #[error("save runtime options to {path:?}")]
    Save {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("load runtime options from {path:?}")]
    Load {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse runtime options in {path:?}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The options as given, before the binary is resolved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Requested {
    pub binary_name: String,
    pub root: String,
    pub systemd_cgroup: bool,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
}

/// Resolved options: what every runtime command of one container uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    pub binary: PathBuf,
    pub root: PathBuf,
    #[serde(default)]
    pub systemd_cgroup: bool,
    #[serde(default)]
    pub no_pivot_root: bool,
    #[serde(default)]
    pub no_new_keyring: bool,
}

impl Options {
    /// Decodes and resolves the `Create` request's options for containerd namespace `ns`.
    pub fn from_any(any: Option<&Any>, ns: &str) -> Result<Options, OptionsError> {
        let requested = match any {
            None => Requested::default(),
            Some(any) => decode(any)?,
        };
        resolve(requested, ns)
    }

    pub fn save(&self, bundle: &Path) -> Result<(), OptionsError> {
        let path = bundle.join(SAVED);
        let body = serde_json::to_vec(self).map_err(|e| OptionsError::Parse {
            path: path.clone(),
            source: e,
        })?;
        std::fs::write(&path, body).map_err(|source| OptionsError::Save { path, source })
    }

    pub fn load(bundle: &Path) -> Result<Options, OptionsError> {
        let path = bundle.join(SAVED);
        let body = std::fs::read(&path).map_err(|source| OptionsError::Load {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&body).map_err(|source| OptionsError::Parse { path, source })
    }
}

/// containerd writes bare type names, protobuf's `Any::pack` prefixes a host: compare the tail.
fn type_name(any: &Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or_default()
}

pub fn decode(any: &Any) -> Result<Requested, OptionsError> {
    match type_name(any) {
        "" if any.value.is_empty() => Ok(Requested::default()),
        "containerd.runc.v1.Options" => {
            let o = RuncOptions::parse_from_bytes(&any.value).map_err(|source| {
                OptionsError::Decode {
                    kind: "containerd.runc.v1.Options",
                    source,
                }
            })?;
            if !o.criu_image_path.is_empty() || !o.criu_work_path.is_empty() {
                return Err(OptionsError::Unsupported("CriuImagePath/CriuWorkPath"));
            }
            if o.io_uid != 0 || o.io_gid != 0 {
                return Err(OptionsError::Unsupported("IoUid/IoGid"));
            }
            Ok(Requested {
                binary_name: o.binary_name,
                root: o.root,
                systemd_cgroup: o.systemd_cgroup,
                no_pivot_root: o.no_pivot_root,
                no_new_keyring: o.no_new_keyring,
            })
        }
        "runtimeoptions.v1.Options" => {
            let (path, body) = decode_runtimeoptions(&any.value)?;
            if !body.is_empty() {
                return parse_config(&body, "config body");
            }
            if path.is_empty() {
                return Ok(Requested::default());
            }
            let text =
                std::fs::read_to_string(&path).map_err(|source| OptionsError::ReadConfig {
                    path: PathBuf::from(&path),
                    source,
                })?;
            parse_config(&text, &path)
        }
        other => Err(OptionsError::UnknownType(other.to_string())),
    }
}

/// `message Options { string type_url = 1; string config_path = 2; string config_body = 3; }`
/// (containerd's pkg/runtimeoptions/v1): not among the shim crate's generated types, and three
/// string fields are simpler to read than to vendor a .proto for.
fn decode_runtimeoptions(bytes: &[u8]) -> Result<(String, String), OptionsError> {
    let err = |source| OptionsError::Decode {
        kind: "runtimeoptions.v1.Options",
        source,
    };
    let mut input = CodedInputStream::from_bytes(bytes);
    let (mut path, mut body) = (String::new(), String::new());
    while let Some(tag) = input.read_raw_tag_or_eof().map_err(err)? {
        match tag {
            10 => {
                input.read_string().map_err(err)?;
            }
            18 => path = input.read_string().map_err(err)?,
            26 => body = input.read_string().map_err(err)?,
            // Any other length-delimited field is skipped; other wire types are not in this message.
            t if t & 7 == 2 => {
                input.read_bytes().map_err(err)?;
            }
            t => {
                return Err(err(std::io::Error::other(format!(
                    "unexpected field tag {t}"
                ))
                .into()))
            }
        }
    }
    Ok((path, body))
}

/// The runc options' TOML keys, one `Key = value` per line, `#` comments, an optional
/// `[...options]` table header. Anything else is an error naming the line.
fn parse_config(text: &str, origin: &str) -> Result<Requested, OptionsError> {
    let mut r = Requested::default();
    for (i, raw) in text.lines().enumerate() {
        let err = |message: String| OptionsError::Config {
            origin: origin.to_string(),
            line: i + 1,
            message,
        };
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() || (line.starts_with('[') && line.ends_with(']')) {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(err(format!("expected `Key = value`, got {line:?}")));
        };
        let (key, value) = (key.trim(), value.trim());
        let string = || -> Result<String, OptionsError> {
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_string)
                .ok_or_else(|| err(format!("{key}: expected a quoted string, got {value}")))
        };
        let boolean = || -> Result<bool, OptionsError> {
            match value {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(err(format!("{key}: expected true or false, got {value}"))),
            }
        };
        match key {
            "BinaryName" => r.binary_name = string()?,
            "Root" => r.root = string()?,
            "SystemdCgroup" => r.systemd_cgroup = boolean()?,
            "NoPivotRoot" => r.no_pivot_root = boolean()?,
            "NoNewKeyring" => r.no_new_keyring = boolean()?,
            // Used by the `start` action (the crate moves the shim there), harmless here.
            "ShimCgroup" => {
                string()?;
            }
            _ => return Err(err(format!("unknown runtime option {key:?}"))),
        }
    }
    Ok(r)
}

fn resolve(r: Requested, ns: &str) -> Result<Options, OptionsError> {
    let binary = find_binary(&r.binary_name)?;
    let root = if r.root.is_empty() {
        Path::new(DEFAULT_ROOT).join(ns)
    } else {
        Path::new(&r.root).join(ns)
    };
    Ok(Options {
        binary,
        root,
        systemd_cgroup: r.systemd_cgroup,
        no_pivot_root: r.no_pivot_root,
        no_new_keyring: r.no_new_keyring,
    })
}

/// A name with a slash is a path; a bare name is looked up next to the shim, then on PATH.
fn find_binary(name: &str) -> Result<PathBuf, OptionsError> {
    let name = if name.is_empty() { "husk" } else { name };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(OptionsError::BinaryNotFound {
                name: name.to_string(),
                where_: "no such file".to_string(),
            })
        };
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)));
    if let Some(p) = beside.as_ref().filter(|p| p.is_file()) {
        return Ok(p.clone());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(OptionsError::BinaryNotFound {
        name: name.to_string(),
        where_: format!(
            "not next to the shim ({}) nor on PATH",
            beside.map(|p| p.display().to_string()).unwrap_or_default()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        Any {
            type_url: type_url.to_string(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn reads_runc_options() {
        let o = RuncOptions {
            binary_name: "/usr/sbin/runc".into(),
            root: "/run/x".into(),
            systemd_cgroup: true,
            ..Default::default()
        };
        let r = decode(&any(
            "containerd.runc.v1.Options",
            o.write_to_bytes().unwrap(),
        ))
        .unwrap();
        assert_eq!(r.binary_name, "/usr/sbin/runc");
        assert_eq!(r.root, "/run/x");
        assert!(r.systemd_cgroup);
    }

    #[test]
    fn reads_runtimeoptions_config_body() {
        // field 1 type_url "t", field 3 config_body
        let body = "# husk\nBinaryName = \"/usr/sbin/runc\"\nNoPivotRoot = true\n";
        let mut v = vec![10, 1, b't', 26, body.len() as u8];
        v.extend_from_slice(body.as_bytes());
        let r = decode(&any("runtimeoptions.v1.Options", v)).unwrap();
        assert_eq!(r.binary_name, "/usr/sbin/runc");
        assert!(r.no_pivot_root);
    }

    #[test]
    fn rejects_unknown_option_key() {
        let e = parse_config("Frobnicate = true\n", "f.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "runtime config f.toml line 1: unknown runtime option \"Frobnicate\""
        );
    }

    #[test]
    fn rejects_unknown_options_type() {
        let e = decode(&any("example.com/Nope", vec![1])).unwrap_err();
        assert!(e.to_string().contains("\"Nope\""), "{e}");
    }

    #[test]
    fn rejects_missing_binary() {
        let e = find_binary("/nonexistent/husk").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/husk"), "{e}");
    }

    #[test]
    fn root_gets_the_namespace() {
        let r = Requested {
            binary_name: "/bin/sh".into(),
            ..Default::default()
        };
        let o = resolve(r, "k8s.io").unwrap();
        assert_eq!(o.root, Path::new("/run/containerd/husk/k8s.io"));
    }
}
