//! Signals by name or number, as runc's `kill` takes them: `KILL`, `SIGKILL`, `sigkill`, `9`, and
//! the real-time signals `SIGRTMIN+3`, `RTMAX-1` or `37` (systemd's stop signal is SIGRTMIN+3).
//! `nix::sys::signal::Signal` has no real-time signals, so a signal here is its number.

use std::fmt;

use nix::errno::Errno;

/// The kernel's first real-time signal. glibc reserves 32 and 33 for its threads and reports
/// SIGRTMIN as 34; Go (runc) and the shell name 34 `SIGRTMIN` as well, so names count from 34.
pub const SIGRTMIN: i32 = 34;
/// The last signal number on Linux (_NSIG - 1).
pub const SIGRTMAX: i32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sig(i32);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignalError {
    #[error("invalid signal {0:?}: expected a name such as TERM, SIGKILL or SIGRTMIN+3, or a number 1-64")]
    Unknown(String),
}

impl Sig {
    pub const KILL: Sig = Sig(libc::SIGKILL);
    pub const TERM: Sig = Sig(libc::SIGTERM);

    /// A signal number 1..=64.
    pub fn from_number(n: i32) -> Option<Sig> {
        (1..=SIGRTMAX).contains(&n).then_some(Sig(n))
    }

    pub fn number(self) -> i32 {
        self.0
    }

    /// `kill(2)` to `pid`.
    pub fn send(self, pid: i32) -> Result<(), Errno> {
        // SAFETY: kill(2) takes two integers and touches no memory of ours.
        Errno::result(unsafe { libc::kill(pid, self.0) }).map(drop)
    }
}

/// The standard (non-real-time) signals by name, without the SIG prefix.
const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// `RTMIN`, `RTMIN+N`, `RTMAX`, `RTMAX-N` (already upper case, without SIG).
fn realtime(name: &str) -> Option<i32> {
    let offset = |rest: &str, sign: char| -> Option<i32> {
        if rest.is_empty() {
            return Some(0);
        }
        let n = rest.strip_prefix(sign)?;
        // Digits only: "+-3" or "+ 3" are not offsets.
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n.parse::<i32>().ok()
    };
    let n = if let Some(rest) = name.strip_prefix("RTMIN") {
        SIGRTMIN.checked_add(offset(rest, '+')?)?
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        SIGRTMAX.checked_sub(offset(rest, '-')?)?
    } else {
        return None;
    };
    (SIGRTMIN..=SIGRTMAX).contains(&n).then_some(n)
}

/// A signal by name (case-insensitive, with or without `SIG`) or number.
pub fn parse(s: &str) -> Result<Sig, SignalError> {
    let unknown = || SignalError::Unknown(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return Sig::from_number(n).ok_or_else(unknown);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(&(_, n)) = NAMES.iter().find(|(k, _)| *k == name) {
        return Ok(Sig(n));
    }
    realtime(name).map(Sig).ok_or_else(unknown)
}

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if let Some((name, _)) = NAMES.iter().find(|(_, v)| *v == n) {
            return write!(f, "SIG{name}");
        }
        match n {
            SIGRTMIN => write!(f, "SIGRTMIN"),
            SIGRTMAX => write!(f, "SIGRTMAX"),
            n if n > SIGRTMIN && n < SIGRTMAX => write!(f, "SIGRTMIN+{}", n - SIGRTMIN),
            n => write!(f, "signal {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("KILL").unwrap().number(), 9);
        assert_eq!(parse("sigterm").unwrap().number(), 15);
        assert_eq!(parse("SIGKILL").unwrap(), Sig::KILL);
        assert_eq!(parse("9").unwrap().number(), 9);
        assert_eq!(parse("37").unwrap().number(), 37);
        assert_eq!(parse("64").unwrap().number(), 64);
    }

    #[test]
    fn realtime_names() {
        assert_eq!(parse("SIGRTMIN+3").unwrap().number(), 37);
        assert_eq!(parse("rtmin").unwrap().number(), 34);
        assert_eq!(parse("RTMIN+30").unwrap().number(), 64);
        assert_eq!(parse("SIGRTMAX").unwrap().number(), 64);
        assert_eq!(parse("SIGRTMAX-1").unwrap().number(), 63);
        assert_eq!(parse("SIGRTMIN+3").unwrap().to_string(), "SIGRTMIN+3");
        assert_eq!(Sig::KILL.to_string(), "SIGKILL");
    }

    #[test]
    fn unknown_signals_are_named() {
        for bad in [
            "FOO", "0", "65", "999", "-1", "RTMIN+31", "RTMAX-31", "RTMIN-1", "RTMIN+", "RTMIN++3",
            "",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e, SignalError::Unknown(bad.to_string()), "{bad}");
        }
        assert!(parse("FOO").unwrap_err().to_string().contains("\"FOO\""));
    }
}
