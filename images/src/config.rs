//! `config.json` from the image config: the runtime's default spec (what `husk spec` writes,
//! passed in by the caller) with the image's entrypoint + cmd, env, working directory, user
//! (names resolved through the rootfs's own /etc/passwd and /etc/group) and labels.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::confine::{ConfineError, Root};
use crate::layout::Image;
use crate::unpack::UnpackOptions;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the default spec has no \"process\" object")]
    DefaultSpec,
    #[error("config.User {user:?}: no user {name:?} in the rootfs's /etc/passwd")]
    NoSuchUser { user: String, name: String },
    #[error("config.User {user:?}: no group {name:?} in the rootfs's /etc/group")]
    NoSuchGroup { user: String, name: String },
    #[error("read {path:?} in the rootfs")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("open {path:?} in the rootfs")]
    Open {
        path: PathBuf,
        #[source]
        source: ConfineError,
    },
    #[error("write {path:?}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The hostname when the image names none: neutral, unlike `husk spec`'s "runc".
pub const DEFAULT_HOSTNAME: &str = "container";

/// The runtime spec for `image`, whose layers are already in `root`; what it had to assume
/// goes into `warnings`.
pub fn runtime_spec(
    image: &Image,
    root: &Root,
    opts: &UnpackOptions,
    warnings: &mut Vec<String>,
) -> Result<Value, ConfigError> {
    let mut spec = opts.default_spec.clone();
    let empty = oci_spec::image::Config::default();
    let cfg = image.config.config().as_ref().unwrap_or(&empty);

    let mut args: Vec<String> = cfg.entrypoint().clone().unwrap_or_default();
    match &opts.args {
        Some(a) => args.extend(a.iter().cloned()),
        None => args.extend(cfg.cmd().clone().unwrap_or_default()),
    }
    let process = spec
        .get_mut("process")
        .and_then(Value::as_object_mut)
        .ok_or(ConfigError::DefaultSpec)?;
    if args.is_empty() {
        // As umoci: the default spec's process ("sh"), so `docker import` images unpack.
        let default: Vec<String> = process
            .get("args")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let default = if default.is_empty() {
            vec!["sh".to_string()]
        } else {
            default
        };
        warnings.push(format!(
            "the image has no Entrypoint or Cmd: config.json runs {default:?} (umoci's default); \
             give the command after -- to choose another"
        ));
        args = default;
    }
    let mut env: Vec<String> = process
        .get("env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                // TERM describes a terminal: only with one (the image may still set it).
                .filter(|e| opts.terminal || !e.starts_with("TERM="))
                .collect()
        })
        .unwrap_or_default();
    for e in cfg.env().clone().unwrap_or_default() {
        set_env(&mut env, e);
    }
    let cwd = match cfg.working_dir().as_deref() {
        None | Some("") => "/".to_string(),
        Some(w) if w.starts_with('/') => w.to_string(),
        Some(w) => format!("/{w}"),
    };
    let user = resolve_user(root, cfg.user().as_deref().unwrap_or(""))?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        // As umoci and runc: the user's home from /etc/passwd, else "/".
        env.push(format!("HOME={}", user.home.as_deref().unwrap_or("/")));
    }
    process.insert("terminal".into(), json!(opts.terminal));
    process.insert("args".into(), json!(args));
    process.insert("env".into(), json!(env));
    process.insert("cwd".into(), json!(cwd));
    let mut u = json!({ "uid": user.uid, "gid": user.gid });
    if !user.additional.is_empty() {
        u["additionalGids"] = json!(user.additional);
    }
    process.insert("user".into(), u);

    // An image's rootfs is written to by its programs (/tmp, /var/run), as under any engine.
    if let Some(obj) = spec.as_object_mut() {
        obj.insert(
            "root".into(),
            json!({ "path": "rootfs", "readonly": false }),
        );
        // Docker-format configs may carry a Hostname; OCI ones have none.
        let hostname = serde_json::from_slice::<Value>(&image.config_raw)
            .ok()
            .and_then(|c| c["config"]["Hostname"].as_str().map(str::to_string))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_HOSTNAME.to_string());
        obj.insert("hostname".into(), json!(hostname));
        let mut ann = Map::new();
        let mut labels: Vec<(&String, &String)> = cfg.labels().iter().flatten().collect();
        labels.sort();
        for (k, v) in labels {
            ann.insert(k.clone(), json!(v));
        }
        let c = &image.config;
        ann.insert(
            "org.opencontainers.image.os".into(),
            json!(c.os().to_string()),
        );
        ann.insert(
            "org.opencontainers.image.architecture".into(),
            json!(c.architecture().to_string()),
        );
        if let Some(v) = c.author() {
            ann.insert("org.opencontainers.image.author".into(), json!(v));
        }
        if let Some(v) = c.created() {
            ann.insert("org.opencontainers.image.created".into(), json!(v));
        }
        if let Some(v) = cfg.stop_signal() {
            ann.insert("org.opencontainers.image.stopSignal".into(), json!(v));
        }
        obj.insert("annotations".into(), Value::Object(ann));
    }
    Ok(spec)
}

/// Set `NAME=value` in `env`, replacing an earlier value of NAME.
fn set_env(env: &mut Vec<String>, entry: String) {
    let name = entry.split('=').next().unwrap_or("").to_string();
    match env
        .iter_mut()
        .find(|e| e.split('=').next() == Some(name.as_str()))
    {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

/// Write `config.json` in the bundle (never over an existing file).
pub fn write(bundle: &Path, spec: &Value) -> Result<(), ConfigError> {
    let path = bundle.join("config.json");
    let err = |source| ConfigError::Write {
        path: path.clone(),
        source,
    };
    let mut data = serde_json::to_vec_pretty(spec).map_err(|e| err(e.into()))?;
    data.push(b'\n');
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
        .map_err(err)?;
    f.write_all(&data).map_err(err)
}

#[derive(Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional: Vec<u32>,
    /// The home directory of the user's /etc/passwd entry, if it has one.
    pub home: Option<String>,
}

/// Read one of the rootfs's account files; a missing one is empty.
fn read_db(root: &Root, rel: &str) -> Result<String, ConfigError> {
    let path = PathBuf::from(rel);
    let mut f = match root.read_file(&path) {
        Ok(f) => f,
        Err(ConfineError::Resolve {
            source: nix::errno::Errno::ENOENT,
            ..
        }) => return Ok(String::new()),
        Err(source) => return Err(ConfigError::Open { path, source }),
    };
    let mut s = String::new();
    // A hostile image can make this file huge (or a FIFO): read a bounded amount.
    (&mut f)
        .take(8 << 20)
        .read_to_string(&mut s)
        .map_err(|source| ConfigError::Read { path, source })?;
    Ok(s)
}

/// Resolve `user`, `uid`, `user:group`, `uid:gid` (any mix) as runc and umoci do: a numeric
/// uid not in /etc/passwd is used as is, with gid 0; without an explicit group, the groups in
/// /etc/group that list the user become additional gids.
pub fn resolve_user(root: &Root, spec: &str) -> Result<User, ConfigError> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    // Read even for the default user (root): its entry gives HOME.
    let passwd = read_db(root, "etc/passwd")?;
    let groups = if g.is_some_and(|g| !g.chars().all(|c| c.is_ascii_digit())) || g.is_none() {
        read_db(root, "etc/group")?
    } else {
        String::new()
    };
    resolve_in(spec, u, g, &passwd, &groups)
}

fn resolve_in(
    spec: &str,
    u: &str,
    g: Option<&str>,
    passwd: &str,
    groups: &str,
) -> Result<User, ConfigError> {
    // name:x:uid:gid:gecos:home:shell
    let pw: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let numeric = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (uid, entry) = if u.is_empty() {
        (0, pw.iter().find(|f| f[2] == "0"))
    } else if let Some(n) = numeric(u) {
        (n, pw.iter().find(|f| f[2].parse() == Ok(n)))
    } else {
        let e = pw
            .iter()
            .find(|f| f[0] == u)
            .ok_or_else(|| ConfigError::NoSuchUser {
                user: spec.into(),
                name: u.into(),
            })?;
        (e[2].parse().unwrap_or(0), Some(e))
    };
    // name:x:gid:member,member
    let gr: Vec<Vec<&str>> = groups
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    let gid = match g {
        Some(g) => match numeric(g) {
            Some(n) => n,
            None => gr
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| ConfigError::NoSuchGroup {
                    user: spec.into(),
                    name: g.into(),
                })?,
        },
        None => entry.and_then(|e| e[3].parse().ok()).unwrap_or(0),
    };
    let mut additional = Vec::new();
    if let (None, Some(e), false) = (g, entry, u.is_empty()) {
        for f in &gr {
            let members = f.get(3).copied().unwrap_or("");
            if members.split(',').any(|m| m == e[0]) {
                if let Ok(id) = f[2].parse::<u32>() {
                    if id != gid && !additional.contains(&id) {
                        additional.push(id);
                    }
                }
            }
        }
    }
    let home = entry
        .and_then(|e| e.get(5))
        .filter(|h| !h.is_empty())
        .map(|h| h.to_string());
    Ok(User {
        uid,
        gid,
        additional,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nweb:x:33:33::/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nadm:x:4:web,other\nlog:x:7:web\n";

    fn r(spec: &str) -> Result<User, ConfigError> {
        let (u, g) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        resolve_in(spec, u, g, PASSWD, GROUP)
    }

    #[test]
    fn resolves_users_like_runc() {
        let u = |uid, gid, additional: Vec<u32>| User {
            uid,
            gid,
            additional,
            home: None,
        };
        let h = |mut u: User, home: &str| {
            u.home = Some(home.into());
            u
        };
        assert_eq!(r("").unwrap(), h(u(0, 0, vec![]), "/root"));
        assert_eq!(r("web").unwrap(), h(u(33, 33, vec![4, 7]), "/var/www"));
        assert_eq!(r("33").unwrap(), h(u(33, 33, vec![4, 7]), "/var/www"));
        assert_eq!(r("1000").unwrap(), u(1000, 0, vec![]));
        assert_eq!(r("web:adm").unwrap(), h(u(33, 4, vec![]), "/var/www"));
        assert_eq!(r("1000:1000").unwrap(), u(1000, 1000, vec![]));
        assert!(matches!(r("nobody"), Err(ConfigError::NoSuchUser { .. })));
        assert!(matches!(
            r("web:nogroup"),
            Err(ConfigError::NoSuchGroup { .. })
        ));
    }

    #[test]
    fn env_overrides_by_name() {
        let mut env = vec!["PATH=/bin".to_string(), "TERM=xterm".to_string()];
        set_env(&mut env, "PATH=/usr/bin".into());
        set_env(&mut env, "A=1".into());
        assert_eq!(env, ["PATH=/usr/bin", "TERM=xterm", "A=1"]);
    }
}
