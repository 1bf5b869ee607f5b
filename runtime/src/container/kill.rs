//! `kill`: a signal to the init, or with `--all` to every process of the container's cgroup.

use std::path::Path;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use super::{load, ContainerError};

/// A signal by name (`KILL`, `SIGKILL`, case-insensitive) or number.
pub fn parse_signal(s: &str) -> Result<Signal, ContainerError> {
    let bad = || ContainerError::Invalid(format!("invalid signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

pub fn kill(root: &Path, id: &str, sig: Signal, all: bool) -> Result<(), ContainerError> {
    let c = load(root, id, false)?;
    if !c.status.can_kill() {
        return Err(ContainerError::WrongStatus {
            action: "kill",
            id: id.to_string(),
            status: c.status,
            hint: ": container not running",
        });
    }
    if all {
        let cg = c.cgroup();
        let pids = if cg.is_none() { Vec::new() } else { cg.pids()? };
        for p in pids {
            let _ = signal::kill(Pid::from_raw(p), sig);
        }
        // The init may be outside a cgroup we could read (e.g. no cgroup support).
        let _ = signal::kill(Pid::from_raw(c.state.pid), sig);
        return Ok(());
    }
    signal::kill(Pid::from_raw(c.state.pid), sig).map_err(|source| ContainerError::Sys {
        step: format!("send {sig} to container {id}"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_and_numbers() {
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("FOO").is_err());
        assert!(parse_signal("999").is_err());
    }
}
