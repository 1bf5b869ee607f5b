//! What one sandboxed run asks for: the command, its limits and its view of the host, parsed
//! from command-line values or a batch line. Parsing is strict: every error names the flag (or
//! batch key) and the value that didn't parse, so usage errors are caught before anything is
//! created.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A usage error: names the option and says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {message}")]
pub struct UsageError {
    pub option: String,
    pub message: String,
}

pub(crate) fn usage(option: impl Into<String>, message: impl Into<String>) -> UsageError {
    UsageError {
        option: option.into(),
        message: message.into(),
    }
}

/// How a `--dir` rule mounts its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirRule {
    /// The path inside the sandbox (absolute).
    pub inside: PathBuf,
    /// The host path bound there; `None` for a fresh tmpfs.
    pub outside: Option<PathBuf>,
    pub writable: bool,
    pub noexec: bool,
}

impl DirRule {
    /// `INSIDE[=OUTSIDE][:rw|:ro|:noexec|:tmpfs]...` (OUTSIDE defaults to INSIDE; binds are
    /// read-only unless `:rw`; a tmpfs is writable).
    pub fn parse(s: &str) -> Result<Self, UsageError> {
        let bad = |m: String| usage("--dir", m);
        let mut parts = s.split(':');
        let paths = parts.next().unwrap_or("");
        let (inside, outside) = match paths.split_once('=') {
            Some((i, o)) => (i, Some(o)),
            None => (paths, None),
        };
        if !inside.starts_with('/') {
            return Err(bad(format!(
                "{s:?}: INSIDE must be an absolute path (INSIDE[=OUTSIDE][:rw|:ro|:noexec|:tmpfs])"
            )));
        }
        let mut outside = PathBuf::from(outside.filter(|o| !o.is_empty()).unwrap_or(inside));
        if outside.is_relative() {
            // The caller's current directory's (it was the mount's, resolved where the mount
            // is made: a path of husk's that does not exist).
            let cwd = std::env::current_dir().map_err(|e| {
                bad(format!(
                    "{s:?}: a relative OUTSIDE, and the current directory: {e}"
                ))
            })?;
            outside = cwd.join(outside);
        }
        let mut rule = DirRule {
            inside: PathBuf::from(inside),
            outside: Some(outside),
            writable: false,
            noexec: false,
        };
        for opt in parts {
            match opt {
                "rw" => rule.writable = true,
                "ro" => rule.writable = false,
                "noexec" => rule.noexec = true,
                "tmpfs" => {
                    rule.outside = None;
                    rule.writable = true;
                }
                _ => {
                    return Err(bad(format!(
                        "{s:?}: unknown option {opt:?} (expected rw, ro, noexec or tmpfs)"
                    )))
                }
            }
        }
        if inside == "/" {
            return Err(bad(format!("{s:?}: can't replace the sandbox's root")));
        }
        Ok(rule)
    }

    /// The outside path must exist (and be a directory) now, not when the sandbox mounts it.
    pub fn check(&self) -> Result<(), UsageError> {
        if let Some(o) = &self.outside {
            match std::fs::metadata(o) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(usage(
                        "--dir",
                        format!("{}: {o:?} is not a directory", self.inside.display()),
                    ))
                }
                Err(e) => {
                    return Err(usage(
                        "--dir",
                        format!("{}: outside path {o:?}: {e}", self.inside.display()),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// Everything one run needs. Limits are `None` when not set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Options {
    pub args: Vec<String>,
    /// CPU time limit, seconds.
    pub time: Option<f64>,
    /// Grace after `time` before the kill, seconds (the verdict is TLE either way).
    pub extra_time: f64,
    pub wall_time: Option<f64>,
    /// Memory limit, bytes (swap off).
    pub memory: Option<u64>,
    pub pids: Option<i64>,
    /// File size limit, bytes: exceeding it is OLE.
    pub output: Option<u64>,
    pub stack: Option<u64>,
    pub open_files: Option<u64>,
    pub cpus: Option<String>,
    /// `--dir` rules; none means "the current directory is the box".
    pub dirs: Vec<DirRule>,
    /// Size of the box when it is a fresh tmpfs (with `--dir` rules), bytes.
    pub box_size: u64,
    /// Size of /tmp, bytes.
    pub tmp_size: u64,
    /// The whole host root read-only (the weaker view of husk before the minimal one).
    pub host_root: bool,
    pub uid: u32,
    pub gid: u32,
    /// `NAME=VALUE`, or `NAME` to pass the caller's value on.
    pub env: Vec<String>,
    pub full_env: bool,
    pub stdin: Option<PathBuf>,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
    pub chdir: Option<PathBuf>,
    pub share_net: bool,
}

/// The unprivileged identity jobs run as by default (`nobody`/`nogroup` on Debian).
pub const DEFAULT_ID: u32 = 65534;
/// Processes and threads per run unless `--pids` says otherwise: enough for compilers and test
/// runners, few enough that a fork bomb stays small.
pub const DEFAULT_PIDS: i64 = 256;
/// Open files per process unless `--open-files` says otherwise (isolate's default).
pub const DEFAULT_OPEN_FILES: u64 = 64;
/// The size of a fresh box and of /tmp unless `--box-size`/`--tmp-size` say otherwise.
pub const DEFAULT_BOX_SIZE: u64 = 64 << 20;
pub const DEFAULT_TMP_SIZE: u64 = 64 << 20;
/// The box's path inside the sandbox (isolate's).
pub const BOX: &str = "/box";

impl Default for Options {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            time: None,
            extra_time: 0.0,
            wall_time: None,
            memory: None,
            pids: Some(DEFAULT_PIDS),
            output: None,
            stack: None,
            open_files: Some(DEFAULT_OPEN_FILES),
            cpus: None,
            dirs: Vec::new(),
            box_size: DEFAULT_BOX_SIZE,
            tmp_size: DEFAULT_TMP_SIZE,
            host_root: false,
            uid: DEFAULT_ID,
            gid: DEFAULT_ID,
            env: Vec::new(),
            full_env: false,
            stdin: None,
            stdout: None,
            stderr: None,
            chdir: None,
            share_net: false,
        }
    }
}

impl Options {
    /// Checks that need the file system, done before anything is created.
    pub fn check(&self) -> Result<(), UsageError> {
        if self.args.is_empty() || self.args[0].is_empty() {
            return Err(usage(
                "COMMAND",
                "missing: give the program to run after --",
            ));
        }
        self.check_common()
    }

    /// [`Options::check`] without the command (the pool-wide options of a batch).
    pub fn check_common(&self) -> Result<(), UsageError> {
        if let Some(p) = &self.stdin {
            std::fs::File::open(p).map_err(|e| usage("--stdin", format!("{p:?}: {e}")))?;
        }
        for (flag, p) in [("--stdout", &self.stdout), ("--stderr", &self.stderr)] {
            if let Some(p) = p {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(p)
                    .map_err(|e| usage(flag, format!("{p:?}: {e}")))?;
            }
        }
        for d in &self.dirs {
            d.check()?;
        }
        if let Some(c) = &self.chdir {
            if !c.is_absolute() {
                return Err(usage("--chdir", format!("{c:?} is not an absolute path")));
            }
        }
        if let Some(c) = &self.cpus {
            crate::process::cpuset::parse(c).map_err(|e| usage("--cpus", e))?;
        }
        Ok(())
    }

    /// Set one option by its name (flag name without `--`, `-` or `_` alike) from a string.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), UsageError> {
        let key = name.replace('_', "-");
        let flag = format!("--{key}");
        let f = flag.as_str();
        match key.as_str() {
            "time" => self.time = Some(seconds(f, value)?),
            "extra-time" => self.extra_time = seconds_or_zero(f, value)?,
            "wall-time" => self.wall_time = Some(seconds(f, value)?),
            "memory" => self.memory = Some(size(f, value)?),
            "pids" => self.pids = Some(count(f, value)? as i64),
            "output" | "fsize" => self.output = Some(size(f, value)?),
            "stack" => self.stack = Some(size(f, value)?),
            "open-files" => self.open_files = Some(count(f, value)?),
            "cpus" => self.cpus = Some(value.to_string()),
            "dir" => self.dirs.push(DirRule::parse(value)?),
            "box-size" => self.box_size = size(f, value)?,
            "tmp-size" => self.tmp_size = size(f, value)?,
            "uid" => self.uid = id(f, value)?,
            "gid" => self.gid = id(f, value)?,
            "env" => self.env.push(env_entry(value)?),
            "stdin" => self.stdin = Some(PathBuf::from(value)),
            "stdout" => self.stdout = Some(PathBuf::from(value)),
            "stderr" => self.stderr = Some(PathBuf::from(value)),
            "chdir" => self.chdir = Some(PathBuf::from(value)),
            _ => return Err(usage(f, "unknown option")),
        }
        Ok(())
    }

    /// A batch line: `{"args": [...], "time": 1, "memory": "64M", ...}` over `base`.
    pub fn from_json(base: &Options, line: &str) -> Result<Options, UsageError> {
        let v: Value = serde_json::from_str(line).map_err(|e| usage("JSON", e.to_string()))?;
        let Value::Object(map) = v else {
            return Err(usage("JSON", "expected an object like {\"args\": [...]}"));
        };
        let mut o = base.clone();
        o.args.clear();
        for (k, v) in &map {
            let key = k.replace('_', "-");
            match (key.as_str(), v) {
                ("args", Value::Array(a)) => {
                    o.args = a
                        .iter()
                        .map(|x| {
                            x.as_str()
                                .map(String::from)
                                .ok_or_else(|| usage("args", "expected an array of strings"))
                        })
                        .collect::<Result<_, _>>()?;
                }
                ("args", _) => return Err(usage("args", "expected an array of strings")),
                ("full-env", Value::Bool(b)) => o.full_env = *b,
                ("share-net", Value::Bool(b)) => o.share_net = *b,
                ("host-root", Value::Bool(b)) => o.host_root = *b,
                ("env" | "dir", Value::Array(a)) => {
                    for x in a {
                        let s = x
                            .as_str()
                            .ok_or_else(|| usage(key.as_str(), "expected an array of strings"))?;
                        o.set(&key, s)?;
                    }
                }
                (_, Value::String(s)) => o.set(&key, s)?,
                (_, Value::Number(n)) => o.set(&key, &n.to_string())?,
                _ => return Err(usage(key.as_str(), format!("unexpected value {v}"))),
            }
        }
        Ok(o)
    }

    /// Whether the job needs a sandbox made for it (its mounts or network differ from the
    /// pool's), rather than a pre-made one.
    pub fn same_layout(&self, other: &Options) -> bool {
        self.dirs == other.dirs
            && self.share_net == other.share_net
            && self.host_root == other.host_root
            && self.box_size == other.box_size
            && self.uid == other.uid
            && self.gid == other.gid
    }
}

/// Seconds as a positive, finite decimal (`1`, `0.5`, `2.25`).
pub fn seconds(flag: &str, s: &str) -> Result<f64, UsageError> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1e9 => Ok(v),
        _ => Err(usage(
            flag,
            format!("{s:?} is not a positive number of seconds (like 1 or 0.5)"),
        )),
    }
}

fn seconds_or_zero(flag: &str, s: &str) -> Result<f64, UsageError> {
    if s.trim().parse::<f64>() == Ok(0.0) {
        return Ok(0.0);
    }
    seconds(flag, s)
}

/// Bytes from `1024`, `64K`, `64M`, `1.5G`, `2T` (binary units; `KB`, `KiB`, `k` alike).
pub fn size(flag: &str, s: &str) -> Result<u64, UsageError> {
    let bad = || {
        usage(
            flag,
            format!("{s:?} is not a size (like 65536, 64K, 64M or 1.5G)"),
        )
    };
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let num_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_end);
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    let bytes = v * mult as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > 1u64.wrapping_shl(62) as f64 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

fn count(flag: &str, s: &str) -> Result<u64, UsageError> {
    match s.trim().parse::<u64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(usage(flag, format!("{s:?} is not a positive whole number"))),
    }
}

fn id(flag: &str, s: &str) -> Result<u32, UsageError> {
    match s.trim().parse::<u32>() {
        Ok(v) if v != u32::MAX => Ok(v),
        _ => Err(usage(flag, format!("{s:?} is not a numeric id"))),
    }
}

fn env_entry(s: &str) -> Result<String, UsageError> {
    let name = s.split('=').next().unwrap_or("");
    if name.is_empty() || name.contains('\0') || s.contains('\0') {
        return Err(usage(
            "--env",
            format!("{s:?}: expected NAME or NAME=VALUE"),
        ));
    }
    Ok(s.to_string())
}

/// The environment a job starts with: a clean one that still works (a standard PATH, HOME,
/// LANG), or the caller's with `--full-env`; then `--env` entries (`NAME` copies the caller's).
pub fn environment(o: &Options, caller: &[(String, String)]) -> Vec<String> {
    let mut env: Vec<(String, String)> = if o.full_env {
        caller.to_vec()
    } else {
        vec![
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
            ("HOME".into(), "/tmp".into()),
            ("LANG".into(), "C.UTF-8".into()),
        ]
    };
    for e in &o.env {
        let (name, value) = match e.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (
                e.clone(),
                caller.iter().find(|(n, _)| n == e).map(|(_, v)| v.clone()),
            ),
        };
        env.retain(|(n, _)| *n != name);
        if let Some(v) = value {
            env.push((name, v));
        }
    }
    env.into_iter().map(|(n, v)| format!("{n}={v}")).collect()
}

/// The working directory inside: `--chdir`, else the box. With `--host-root`: the current
/// directory when it is bound (no `--dir` rules), else `/`.
pub fn workdir(o: &Options, cwd: &Path) -> PathBuf {
    match &o.chdir {
        Some(c) => c.clone(),
        None if !o.host_root => PathBuf::from(BOX),
        None if o.dirs.is_empty() => cwd.to_path_buf(),
        None => PathBuf::from("/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size("--memory", "64M"), Ok(64 << 20));
        assert_eq!(size("--memory", "1.5G"), Ok(3 << 29));
        assert_eq!(size("--memory", "100k"), Ok(102_400));
        assert_eq!(size("--memory", "4096"), Ok(4096));
        assert_eq!(size("--memory", "2MiB"), Ok(2 << 20));
        let e = size("--memory", "lots").unwrap_err();
        assert_eq!(e.option, "--memory");
        assert!(e.to_string().contains("\"lots\""), "{e}");
        assert!(size("--memory", "0").is_err());
        assert!(size("--memory", "-1M").is_err());
        assert!(size("--memory", "1.2.3M").is_err());
    }

    #[test]
    fn seconds_parse() {
        assert_eq!(seconds("--time", "0.5"), Ok(0.5));
        assert_eq!(seconds("--time", "2"), Ok(2.0));
        assert!(seconds("--time", "0").is_err());
        assert!(seconds("--time", "inf").is_err());
        assert!(seconds("--time", "NaN").is_err());
        assert_eq!(seconds_or_zero("--extra-time", "0"), Ok(0.0));
    }

    #[test]
    fn dir_rules() {
        let r = DirRule::parse("/box=/srv/box:rw").unwrap();
        assert_eq!(r.inside, Path::new("/box"));
        assert_eq!(r.outside.as_deref(), Some(Path::new("/srv/box")));
        assert!(r.writable && !r.noexec);
        let r = DirRule::parse("/data:noexec").unwrap();
        assert_eq!(r.outside.as_deref(), Some(Path::new("/data")));
        assert!(!r.writable && r.noexec);
        let r = DirRule::parse("/scratch:tmpfs").unwrap();
        assert!(r.outside.is_none() && r.writable);
        let r = DirRule::parse("/x=rel/dir").unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(r.outside, Some(cwd.join("rel/dir")));
        assert!(DirRule::parse("box=/x").is_err());
        assert!(DirRule::parse("/x:bogus").is_err());
        assert!(DirRule::parse("/").is_err());
    }

    #[test]
    fn batch_line() {
        let base = Options::default();
        let o = Options::from_json(
            &base,
            r#"{"args": ["/bin/true"], "time": 1.5, "memory": "64M", "pids": 8, "env": ["A=1"]}"#,
        )
        .unwrap();
        assert_eq!(o.args, vec!["/bin/true"]);
        assert_eq!(o.time, Some(1.5));
        assert_eq!(o.memory, Some(64 << 20));
        assert_eq!(o.pids, Some(8));
        assert_eq!(o.env, vec!["A=1"]);
        assert!(o.same_layout(&base));
        assert_eq!(
            Options::from_json(&base, r#"{"args": "x"}"#)
                .unwrap_err()
                .option,
            "args"
        );
        assert!(Options::from_json(&base, r#"{"memory": "lots"}"#).is_err());
        assert!(Options::from_json(&base, r#"{"bogus": 1}"#).is_err());
        assert!(Options::from_json(&base, "[1]").is_err());
        assert!(Options::from_json(&base, "{").is_err());
    }

    #[test]
    fn clean_environment() {
        let caller = vec![
            ("PATH".to_string(), "/opt/bin".to_string()),
            ("SECRET".to_string(), "x".to_string()),
            ("TERM".to_string(), "xterm".to_string()),
        ];
        let mut o = Options {
            env: vec!["TERM".into(), "A=b=c".into(), "MISSING".into()],
            ..Options::default()
        };
        let env = environment(&o, &caller);
        assert!(env.iter().any(|e| e.starts_with("PATH=/usr/local/sbin:")));
        assert!(env.contains(&"LANG=C.UTF-8".to_string()));
        assert!(env.contains(&"TERM=xterm".to_string()));
        assert!(env.contains(&"A=b=c".to_string()));
        assert!(!env
            .iter()
            .any(|e| e.starts_with("SECRET") || e.starts_with("MISSING")));
        o.full_env = true;
        assert!(environment(&o, &caller).contains(&"SECRET=x".to_string()));
    }
}
