//! Running runtime commands with a deadline, their stdio in files.

use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// What a finished command did.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub what: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.status.success()
    }
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    /// Panics with the whole story unless the command succeeded.
    pub fn check(self) -> Self {
        assert!(
            self.ok(),
            "`{}` failed: {}\nstdout: {}\nstderr: {}",
            self.what,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
    /// Panics unless the command failed.
    pub fn check_fails(self) -> Self {
        assert!(
            !self.ok(),
            "`{}` should have failed\nstdout: {}\nstderr: {}",
            self.what,
            self.stdout,
            self.stderr
        );
        self
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}): {:?}", self.what, self.stdout))
    }
}

/// A command started in the background whose stdio go to files, so a container that inherits
/// them cannot keep a pipe open and block the reader.
pub struct Spawned {
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub what: String,
}

impl Spawned {
    pub fn wait(mut self, timeout: Duration) -> Out {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) | Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("`{}` did not finish within {:?}", self.what, timeout);
                }
            }
        };
        Out {
            status,
            stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: fs::read_to_string(&self.stderr).unwrap_or_default(),
            what: self.what,
        }
    }
}
