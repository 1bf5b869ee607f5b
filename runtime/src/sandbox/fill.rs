//! A full /tmp or box: the sandbox's tmpfs file systems are bounded (`--tmp-size`,
//! `--box-size`), and a program that fails because one filled up gets a verdict that says so
//! (OLE, naming the file system) rather than its own exit status alone.
//!
//! Seen from outside through `/proc/<pid>/root` once the sandbox's mounts exist: a descriptor
//! of the mount keeps its file system for [`Fill::full`] to ask after the program ended.

use std::os::fd::{AsRawFd, OwnedFd};

use super::limits::{Options, BOX};
use super::verdict::{Status, Verdict};

/// The bounded file systems of one run.
pub struct Fill {
    watched: Vec<(&'static str, OwnedFd)>,
}

impl Fill {
    /// Open the run's /tmp (and a tmpfs box) through process `pid`'s root. What can't be
    /// opened (a user's run: the init is not dumpable) is not watched.
    pub fn open(pid: i32, o: &Options) -> Fill {
        let mut watched = Vec::new();
        let mut what = vec![("/tmp", "/tmp (--tmp-size)")];
        if !o.dirs.is_empty() && !o.host_root {
            what.push((BOX, "the box (--box-size)"));
        }
        for (path, name) in what {
            let p = format!("/proc/{pid}/root{path}");
            if let Ok(fd) = crate::sys::open(
                p.as_str(),
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            ) {
                watched.push((name, fd));
            }
        }
        Fill { watched }
    }

    /// The first watched file system with no block or inode left.
    pub fn full(&self) -> Option<&'static str> {
        self.watched.iter().find_map(|(name, fd)| {
            // SAFETY: fstatfs writes into a zeroed statfs that lives through the call.
            let mut st: libc::statfs = unsafe { std::mem::zeroed() };
            // SAFETY: as above, on a descriptor this struct owns.
            let r = unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) };
            (r == 0 && (st.f_bavail == 0 || st.f_ffree == 0)).then_some(*name)
        })
    }

    /// A program that failed (RE, SG) with a full file system: OLE, naming it.
    pub fn judge(&self, v: &mut Verdict) {
        if !matches!(v.status, Status::RE | Status::SG) {
            return;
        }
        if let Some(name) = self.full() {
            v.status = Status::OLE;
            v.message = format!("output limit exceeded: {name} is full");
        }
    }
}
