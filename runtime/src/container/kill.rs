//! `kill`: a signal to the init, or with `--all` to every process of the container's cgroup.

use std::path::Path;

use super::{load, ContainerError};
use crate::signal::{self, Sig};

/// A signal by name (`KILL`, `SIGKILL`, `SIGRTMIN+3`, case-insensitive) or number (1-64).
pub fn parse_signal(s: &str) -> Result<Sig, ContainerError> {
    signal::parse(s).map_err(|e| ContainerError::Invalid(e.to_string()))
}

pub fn kill(root: &Path, id: &str, sig: Sig, all: bool) -> Result<(), ContainerError> {
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
            let _ = sig.send(p);
        }
        // The init may be outside a cgroup we could read (e.g. no cgroup support).
        let _ = sig.send(c.state.pid);
        return Ok(());
    }
    sig.send(c.state.pid).map_err(|source| ContainerError::Sys {
        step: format!("send {sig} to container {id}"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_and_numbers() {
        assert_eq!(parse_signal("KILL").unwrap(), Sig::KILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Sig::TERM);
        assert_eq!(parse_signal("9").unwrap(), Sig::KILL);
        assert_eq!(parse_signal("SIGRTMIN+3").unwrap().number(), 37);
        assert!(parse_signal("FOO").is_err());
        assert!(parse_signal("999").is_err());
    }
}
