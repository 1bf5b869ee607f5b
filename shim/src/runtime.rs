//! Drives a runc-compatible binary (`husk` by default) the way containerd's runc shim drives
//! runc: `--root R [--log bundle/log.json --log-format json] <command> ...`.
//!
//! Executing the binary rather than calling the husk library keeps clone(2) out of the tokio
//! process (the library's create path assumes a single-threaded caller, and tokio's blocking
//! pool may hold threads), lets the same shim drive runc or crun, and costs the shim no memory
//! for what the runtime does once per container.
//!
//! Every child is waited for through the [`Reaper`], never with `Child::wait`.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::options::Options;
use crate::reaper::Reaper;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("run {binary:?}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{binary} {command} failed: {message}")]
    Failed {
        binary: String,
        command: &'static str,
        message: String,
    },
    #[error("read pid file {path:?}")]
    PidFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse {command} output of {binary}")]
    Output {
        binary: String,
        command: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// The container's stdio as the runtime should hand it on; `None` is /dev/null.
#[derive(Default)]
pub struct ChildStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

fn stdio(fd: Option<OwnedFd>) -> Stdio {
    fd.map(Stdio::from).unwrap_or_else(Stdio::null)
}

/// One container's runtime: binary, state root and the flags every create needs.
#[derive(Clone)]
pub struct Runtime {
    pub opts: Options,
    reaper: Arc<Reaper>,
}

pub struct CreateArgs<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: &'a Path,
    pub console_socket: Option<&'a Path>,
}

pub struct ExecArgs<'a> {
    pub id: &'a str,
    pub process: &'a Path,
    pub pid_file: &'a Path,
    pub console_socket: Option<&'a Path>,
    pub log: &'a Path,
}

impl Runtime {
    pub fn new(opts: Options, reaper: Arc<Reaper>) -> Runtime {
        Runtime { opts, reaper }
    }

    fn name(&self) -> String {
        self.opts
            .binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub(crate) fn command(&self, log: Option<&Path>) -> Command {
        let mut c = Command::new(&self.opts.binary);
        c.arg("--root").arg(&self.opts.root);
        if let Some(log) = log {
            c.arg("--log").arg(log).args(["--log-format", "json"]);
        }
        if self.opts.systemd_cgroup {
            c.arg("--systemd-cgroup");
        }
        c
    }

    /// `create`: the container's stdio goes to the runtime, which passes it to the init; errors
    /// come back through the JSON log, as containerd's runc shim reads them.
    pub async fn create(&self, a: CreateArgs<'_>, io: ChildStdio) -> Result<i32, RuntimeError> {
        let log = a.bundle.join("log.json");
        let mut c = self.command(Some(&log));
        c.arg("create").arg("--bundle").arg(a.bundle);
        c.arg("--pid-file").arg(a.pid_file);
        if let Some(s) = a.console_socket {
            c.arg("--console-socket").arg(s);
        }
        if self.opts.no_pivot_root {
            c.arg("--no-pivot");
        }
        if self.opts.no_new_keyring {
            c.arg("--no-new-keyring");
        }
        c.arg(a.id);
        self.run_with_stdio(c, io, "create", &log).await?;
        read_pid(a.pid_file).await
    }

    /// `exec --detach`: returns the pid of the new process (reparented to the shim).
    pub async fn exec(&self, a: ExecArgs<'_>, io: ChildStdio) -> Result<i32, RuntimeError> {
        let mut c = self.command(Some(a.log));
        c.arg("exec")
            .arg("--process")
            .arg(a.process)
            .arg("--detach");
        c.arg("--pid-file").arg(a.pid_file);
        if let Some(s) = a.console_socket {
            c.arg("--console-socket").arg(s);
        }
        c.arg(a.id);
        self.run_with_stdio(c, io, "exec", a.log).await?;
        read_pid(a.pid_file).await
    }

    pub async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.run("start", &[id]).await.map(drop)
    }

    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError> {
        let sig = signal.to_string();
        let args: &[&str] = if all {
            &["--all", id, &sig]
        } else {
            &[id, &sig]
        };
        self.run("kill", args).await.map(drop)
    }

    pub async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let args: &[&str] = if force { &["--force", id] } else { &[id] };
        self.run("delete", args).await.map(drop)
    }

    pub async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.run("pause", &[id]).await.map(drop)
    }

    pub async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.run("resume", &[id]).await.map(drop)
    }

    pub async fn update(&self, id: &str, resources: &Path) -> Result<(), RuntimeError> {
        let r = resources.to_string_lossy();
        self.run("update", &["--resources", &r, id]).await.map(drop)
    }

    /// `events --stats`: one JSON object `{"type":"stats","data":{...}}`.
    pub async fn stats(&self, id: &str) -> Result<serde_json::Value, RuntimeError> {
        let out = self.run("events", &["--stats", id]).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&out).map_err(|source| RuntimeError::Output {
                binary: self.name(),
                command: "events --stats",
                source,
            })?;
        Ok(v.get("data").cloned().unwrap_or(v))
    }

    /// Runs a short command with piped output; its stdout on success, its stderr as the error.
    pub(crate) async fn run(
        &self,
        command: &'static str,
        args: &[&str],
    ) -> Result<Vec<u8>, RuntimeError> {
        let mut c = self.command(None);
        c.arg(command).args(args);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|source| RuntimeError::Spawn {
            binary: self.opts.binary.clone(),
            source,
        })?;
        // Registered before the next await: the reaper cannot have run in between.
        let exit = self.reaper.watch(child.id() as i32);
        let out = child.stdout.take().map(OwnedFd::from);
        let err = child.stderr.take().map(OwnedFd::from);
        let (stdout, stderr) = tokio::join!(read_all(out), read_all(err));
        let status = exit.await.unwrap_or(-1);
        if status == 0 {
            return Ok(stdout);
        }
        let text = String::from_utf8_lossy(&stderr);
        let message = last_message(&text).unwrap_or_else(|| format!("exit status {status}"));
        Err(RuntimeError::Failed {
            binary: self.name(),
            command,
            message,
        })
    }

    pub(crate) async fn run_with_stdio(
        &self,
        mut c: Command,
        io: ChildStdio,
        command: &'static str,
        log: &Path,
    ) -> Result<(), RuntimeError> {
        c.stdin(stdio(io.stdin))
            .stdout(stdio(io.stdout))
            .stderr(stdio(io.stderr));
        let child = c.spawn().map_err(|source| RuntimeError::Spawn {
            binary: self.opts.binary.clone(),
            source,
        })?;
        let exit = self.reaper.watch(child.id() as i32);
        drop(c); // closes the shim's copies of the container's stdio
        let status = exit.await.unwrap_or(-1);
        if status == 0 {
            return Ok(());
        }
        let message = tokio::fs::read_to_string(log)
            .await
            .ok()
            .and_then(|t| last_error(&t))
            .unwrap_or_else(|| format!("exit status {status} (no error in {})", log.display()));
        Err(RuntimeError::Failed {
            binary: self.name(),
            command,
            message,
        })
    }
}

async fn read_all(fd: Option<OwnedFd>) -> Vec<u8> {
    let mut buf = Vec::new();
    let Some(fd) = fd else { return buf };
    if let Ok(mut rx) = pipe::Receiver::from_owned_fd(fd) {
        let _ = rx.read_to_end(&mut buf).await;
    }
    buf
}

pub(crate) async fn read_pid(path: &Path) -> Result<i32, RuntimeError> {
    let err = |source| RuntimeError::PidFile {
        path: path.to_path_buf(),
        source,
    };
    let text = tokio::fs::read_to_string(path).await.map_err(err)?;
    text.trim()
        .parse()
        .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// The `msg` of the last error line of a runtime's JSON log (runc's and husk's format).
pub fn last_error(log: &str) -> Option<String> {
    log.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let level = v.get("level")?.as_str()?;
        if level != "error" && level != "fatal" {
            return None;
        }
        v.get("msg")?.as_str().map(str::to_string)
    })
}

/// The error in a runtime's stderr: the last `error:` line (clap's usage errors end in a hint
/// line), else the last non-empty line (runtimes print the whole error chain there).
fn last_message(stderr: &str) -> Option<String> {
    let lines = || {
        stderr
            .lines()
            .rev()
            .map(str::trim)
            .filter(|l| !l.is_empty())
    };
    lines()
        .find(|l| l.starts_with("error:"))
        .or_else(|| lines().next())
        .map(|l| last_error(l).unwrap_or_else(|| l.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_takes_the_last_error_line() {
        let log = concat!(
            "{\"level\":\"error\",\"msg\":\"first\",\"time\":\"t\"}\n",
            "{\"level\":\"info\",\"msg\":\"noise\",\"time\":\"t\"}\n",
            "{\"level\":\"error\",\"msg\":\"open config.json: No such file\",\"time\":\"t\"}\n",
            "not json\n"
        );
        assert_eq!(
            last_error(log).as_deref(),
            Some("open config.json: No such file")
        );
    }

    #[test]
    fn last_message_skips_blank_lines() {
        assert_eq!(
            last_message("a\ncontainer \"x\" does not exist\n\n").as_deref(),
            Some("container \"x\" does not exist")
        );
        let clap = "error: unrecognized subcommand 'pause'\n\nUsage: husk [OPTIONS] <COMMAND>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            last_message(clap).as_deref(),
            Some("error: unrecognized subcommand 'pause'")
        );
    }
}
