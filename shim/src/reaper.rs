//! The shim is the child subreaper of everything it starts: `husk create` forks the container init
//! and exits, `husk exec --detach` forks the exec'd process and exits, and the kernel then
//! reparents those processes (or their zombies, if they died first) to the nearest subreaper,
//! this shim. One task owns `waitpid(-1)`: nothing else in the shim may wait for a child, or
//! the two would steal each other's exit statuses.
//!
//! Callers register interest in a pid with [`Reaper::watch`] and get the exit status through a
//! oneshot channel. The shim runs on a current-thread runtime, so a caller that spawns a child
//! and calls `watch` before its next `.await` can never lose the exit: the reaper task only runs
//! at an await point. A pid the shim learns later (the container init's, read from the pid
//! file after `husk create` exits) may have exited already; such exits wait in a small
//! unclaimed list until someone asks.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// Exits nobody watched yet. Only direct children end up here (containers' own orphans are
/// reparented to their init, not to the shim), so this stays small; the cap bounds it anyway.
const UNCLAIMED_MAX: usize = 256;

#[derive(Default)]
struct Inner {
    waiters: HashMap<i32, oneshot::Sender<i32>>,
    unclaimed: VecDeque<(i32, i32)>,
}

/// The single owner of `waitpid(-1)`.
#[derive(Default)]
pub struct Reaper {
    inner: Mutex<Inner>,
}

impl Reaper {
    /// Starts reaping on SIGCHLD. Call once, on the shim's runtime, before spawning children.
    pub fn start() -> std::io::Result<Arc<Reaper>> {
        let reaper = Arc::new(Reaper::default());
        let mut sigchld = signal(SignalKind::child())?;
        let owner = reaper.clone();
        tokio::spawn(async move {
            loop {
                owner.reap();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    /// The exit status of `pid` (128 + signal for a killed process), delivered once.
    pub fn watch(&self, pid: i32) -> oneshot::Receiver<i32> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pos) = inner.unclaimed.iter().position(|(p, _)| *p == pid) {
            if let Some((_, status)) = inner.unclaimed.remove(pos) {
                let _ = tx.send(status);
                return rx;
            }
        }
        inner.waiters.insert(pid, tx);
        rx
    }

    /// Collects every exited child without blocking (one SIGCHLD may stand for many exits).
    fn reap(&self) {
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid.as_raw(), 128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("waitpid: {e}");
                    return;
                }
            };
            self.deliver(pid, status);
        }
    }

    fn deliver(&self, pid: i32, status: i32) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match inner.waiters.remove(&pid) {
            Some(tx) => {
                let _ = tx.send(status);
            }
            None => {
                if inner.unclaimed.len() == UNCLAIMED_MAX {
                    inner.unclaimed.pop_front();
                }
                inner.unclaimed.push_back((pid, status));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_before_watch_waits_in_unclaimed() {
        let r = Reaper::default();
        r.deliver(42, 3);
        let mut rx = r.watch(42);
        assert_eq!(rx.try_recv().ok(), Some(3));
        assert!(r.inner.lock().unwrap().unclaimed.is_empty());
    }

    #[test]
    fn a_watched_exit_goes_to_its_waiter() {
        let r = Reaper::default();
        let mut rx = r.watch(7);
        r.deliver(7, 137);
        assert_eq!(rx.try_recv().ok(), Some(137));
    }

    #[test]
    fn unclaimed_is_bounded() {
        let r = Reaper::default();
        for pid in 0..(UNCLAIMED_MAX as i32 + 10) {
            r.deliver(pid, 0);
        }
        assert_eq!(r.inner.lock().unwrap().unclaimed.len(), UNCLAIMED_MAX);
    }
}
