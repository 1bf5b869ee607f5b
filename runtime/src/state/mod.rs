//! The state directory `<root>/<id>/`: `state.json` (written atomically), a lock (flock on the
//! directory), and the `exec.fifo` start barrier.
//!
//! Status is derived, never trusted: the recorded pid must be alive, not a zombie, and have the
//! start time recorded at create, or the container is stopped (a reused pid is someone else).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::container::Status;

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("invalid container id {0:?}: use letters, digits, '_', '+', '-' and '.', not starting with '.'")]
    InvalidId(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("{op} {path:?}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path:?} is not a valid state file: {error}")]
    Corrupt {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("{path:?}: {message}")]
    Input { path: PathBuf, message: String },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What husk records about a container. The OCI state fields come first; the rest is what later
/// commands need (the spec for exec and hooks, the cgroup, the init's start time).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub oci_version: String,
    pub id: String,
    /// 0 until the init exists.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` at create.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339, UTC.
    pub created: String,
    pub owner: String,
    pub cgroup: PathBuf,
    pub config: Spec,
}

/// An open, locked state directory.
#[derive(Debug)]
pub struct StateDir {
    pub dir: PathBuf,
    pub id: String,
    _lock: Option<Flock<File>>,
}

/// runc's rule for ids, which also keeps them safe as path components.
pub fn check_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId(id.to_string()))
    }
}

impl StateDir {
    /// Create `<root>/<id>/` and lock it; an existing directory means the id is taken.
    pub fn create(root: &Path, id: &str) -> Result<Self, StateError> {
        check_id(id)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
            .map_err(io("create state root", root))?;
        let dir = root.join(id);
        match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists(id.to_string()))
            }
            Err(e) => return Err(io("create state directory", &dir)(e)),
        }
        let lock = lock(&dir)?;
        Ok(Self {
            dir,
            id: id.to_string(),
            _lock: Some(lock),
        })
    }

    /// Open an existing container's directory without the lock, for readers (`state`, `list`):
    /// `state.json` is replaced atomically, so they never see half a file, and must not wait
    /// behind a `start` that blocks on the fifo.
    pub fn open_unlocked(root: &Path, id: &str) -> Result<Self, StateError> {
        check_id(id)?;
        let dir = root.join(id);
        if !dir.is_dir() {
            return Err(StateError::NotFound(id.to_string()));
        }
        Ok(Self {
            dir,
            id: id.to_string(),
            _lock: None,
        })
    }

    /// Open and lock an existing container's directory.
    pub fn open(root: &Path, id: &str) -> Result<Self, StateError> {
        check_id(id)?;
        let dir = root.join(id);
        if !dir.is_dir() {
            return Err(StateError::NotFound(id.to_string()));
        }
        let lock = lock(&dir).map_err(|e| match e {
            StateError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                StateError::NotFound(id.to_string())
            }
            e => e,
        })?;
        Ok(Self {
            dir,
            id: id.to_string(),
            _lock: Some(lock),
        })
    }

    /// The descriptor holding the lock, which a child of the locker must not keep (a killed
    /// `create` would otherwise leave the lock held by its half-made init).
    pub fn lock_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self._lock.as_ref().map(|l| l.as_raw_fd())
    }

    /// True while another process holds the directory's lock (a `create` still at work); false
    /// when this value holds it or nobody does.
    pub fn locked_elsewhere(&self) -> bool {
        if self._lock.is_some() {
            return false;
        }
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&self.dir)
        else {
            return false;
        };
        matches!(
            Flock::lock(f, FlockArg::LockExclusiveNonblock),
            Err((_, nix::errno::Errno::EWOULDBLOCK))
        )
    }

    pub fn fifo_path(&self) -> PathBuf {
        self.dir.join(EXEC_FIFO)
    }

    /// Read `state.json`; `Ok(None)` when the create never got as far as writing it.
    pub fn load(&self) -> Result<Option<State>, StateError> {
        let path = self.dir.join(STATE_FILE);
        match crate::spec::read_bounded(&path, STATE_LIMIT) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|error| StateError::Corrupt { path, error }),
            Err(crate::spec::ReadError::Io { error, .. })
                if error.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(StateError::Input {
                path,
                message: e.reason(),
            }),
        }
    }

    /// Like [`load`](Self::load), but a missing file is "does not exist".
    pub fn load_existing(&self) -> Result<State, StateError> {
        self.load()?
            .ok_or_else(|| StateError::NotFound(self.id.clone()))
    }

    /// Write `state.json` atomically: a reader sees the old or the new file, never half of one.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let tmp = self.dir.join(".state.json.tmp");
        let path = self.dir.join(STATE_FILE);
        let bytes = serde_json::to_vec(state).map_err(|error| StateError::Corrupt {
            path: path.clone(),
            error,
        })?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(&bytes).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename", &path))
    }

    /// Remove the directory and everything in it.
    pub fn remove(self) -> Result<(), StateError> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &self.dir)(e)),
        }
    }
}

fn lock(dir: &Path) -> Result<Flock<File>, StateError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(io("open", dir))?;
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io("lock", dir)(e.into()))
}

/// The ids under `root`, sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>, StateError> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", root)(e)),
    };
    let mut ids: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| check_id(id).is_ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Write `--pid-file` atomically (a reader never sees it empty), as runc does, but only where
/// a regular file or nothing is: `/dev/full` or a FIFO given by mistake is refused by name,
/// never replaced by a regular file.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<(), StateError> {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // What a symlink there points to counts (the rename replaces the link, not its target).
    match std::fs::metadata(&abs) {
        Ok(m) if !m.is_file() => {
            let kind = crate::spec::ReadError::kind_of(m.file_type());
            return Err(StateError::Input {
                path: abs,
                message: format!(
                    "--pid-file: is {kind}, not a regular file; husk writes a pid file only \
                     where a regular file or nothing is"
                ),
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspect pid file", &abs)(e)),
    }
    let tmp = abs.with_file_name(format!(
        ".{}.tmp",
        abs.file_name().and_then(|n| n.to_str()).unwrap_or("pid")
    ));
    std::fs::write(&tmp, pid.to_string()).map_err(io("write pid file", &tmp))?;
    std::fs::rename(&tmp, &abs).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("rename pid file", &abs)(e)
    })
}

/// Start time (clock ticks since boot) of `pid`, and whether it is a zombie; `None` if gone.
pub fn proc_start_time(pid: i32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parens: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let zombie = fields.first().is_some_and(|s| *s == "Z" || *s == "X");
    // Field 22 overall is index 19 after the state field (field 3).
    let start = fields.get(19)?.parse().ok()?;
    Some((start, zombie))
}

/// What can still be read of a damaged `state.json`: the leading fields husk writes before
/// the (long) config, each taken only when it parses whole.
#[derive(Debug, Default)]
pub struct Salvaged {
    pub id: Option<String>,
    pub pid: Option<i32>,
    pub start_time: Option<u64>,
    pub cgroup: Option<PathBuf>,
}

/// Read back the fields `delete --force` needs from a state file that won't parse.
pub fn salvage(path: &Path) -> Option<Salvaged> {
    let bytes = crate::spec::read_bounded(path, STATE_LIMIT).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let field = |key: &str| -> Option<serde_json::Value> {
        let at = text.find(&format!("\"{key}\":"))? + key.len() + 3;
        serde_json::Deserializer::from_str(&text[at..])
            .into_iter::<serde_json::Value>()
            .next()?
            .ok()
    };
    Some(Salvaged {
        id: field("id").and_then(|v| v.as_str().map(String::from)),
        pid: field("pid")
            .and_then(|v| v.as_i64())
            .and_then(|p| i32::try_from(p).ok()),
        start_time: field("startTime").and_then(|v| v.as_u64()),
        cgroup: field("cgroup").and_then(|v| v.as_str().map(PathBuf::from)),
    })
}

/// The largest `state.json` husk reads (its own are a few KiB, the config included).
pub const STATE_LIMIT: u64 = 64 << 20;

impl State {
    /// The derived status: see the module doc.
    pub fn status(&self, fifo_exists: bool, frozen: impl FnOnce() -> bool) -> Status {
        if self.pid <= 0 {
            return Status::Creating;
        }
        match proc_start_time(self.pid) {
            Some((start, false)) if start == self.start_time => {
                if frozen() {
                    Status::Paused
                } else if fifo_exists {
                    Status::Created
                } else {
                    Status::Running
                }
            }
            _ => Status::Stopped,
        }
    }

    /// The OCI state document (what `husk state` prints and hooks read on stdin).
    pub fn oci(&self, status: Status) -> oci_spec::runtime::State {
        let mut s = oci_spec::runtime::State::default();
        s.set_version(self.oci_version.clone());
        s.set_id(self.id.clone());
        s.set_status(status.oci());
        s.set_pid(if status == Status::Stopped || self.pid <= 0 {
            None
        } else {
            Some(self.pid)
        });
        s.set_bundle(self.bundle.clone());
        s.set_annotations(self.config.annotations().clone());
        s
    }
}

/// Now as RFC 3339 UTC with nanoseconds, the way runc prints `created`.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil-from-days (Howard Hinnant's algorithm): no time crate needed for one timestamp.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Seconds since the epoch of an RFC 3339 UTC time as [`now_rfc3339`] writes it.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let frac = s
        .get(19..)
        .and_then(|f| f.strip_suffix('Z'))
        .and_then(|f| f.strip_prefix('.'))
        .and_then(|f| format!("0.{f}").parse::<f64>().ok())
        .unwrap_or(0.0);
    // Days from civil (Howard Hinnant), the inverse of `now_rfc3339`.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + se) as f64 + frac)
}

/// When `pid` started, in seconds since the epoch (to about a clock tick), from its start time
/// and the time since boot; `None` once it is gone.
pub fn proc_started_at(pid: i32) -> Option<f64> {
    let (ticks, _) = proc_start_time(pid)?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no memory preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some(now - (uptime - ticks as f64 / hz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_and_start_times() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let t = parse_rfc3339(&now_rfc3339()).unwrap();
        assert!((t - now).abs() < 1.0, "{t} vs {now}");
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1.5));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        let me = proc_started_at(std::process::id() as i32).unwrap();
        assert!(me <= now + 0.1 && me > now - 3600.0, "{me} vs {now}");
    }

    #[test]
    fn ids_follow_runc_rules() {
        for ok in ["a", "abc-1_2+3.4", "A"] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../x", ".hidden", "a b", "a\0"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn own_start_time_is_readable() {
        let me = std::process::id() as i32;
        let (t, zombie) = proc_start_time(me).expect("own stat");
        assert!(t > 0);
        assert!(!zombie);
    }

    #[test]
    fn pid_files_replace_only_regular_files() {
        let e = write_pid_file(Path::new("/dev/full"), 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/dev/full") && e.contains("character device"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("husk-pidfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pid");
        write_pid_file(&p, 42).unwrap();
        write_pid_file(&p, 43).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "43");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rfc3339_shape() {
        let s = now_rfc3339();
        assert_eq!(s.len(), "2026-11-26T04:30:51.123456789Z".len(), "{s}");
        assert!(s.starts_with("20"));
    }

    #[test]
    fn create_refuses_existing_id() {
        let root = std::env::temp_dir().join(format!("husk-state-test-{}", std::process::id()));
        let d = StateDir::create(&root, "x").expect("create");
        assert!(matches!(
            StateDir::create(&root, "x"),
            Err(StateError::Exists(_))
        ));
        d.remove().expect("remove");
        assert!(matches!(
            StateDir::open(&root, "x"),
            Err(StateError::NotFound(_))
        ));
        let _ = std::fs::remove_dir(&root);
    }
}
