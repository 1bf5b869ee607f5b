//! OOM notification: v1 registers an eventfd on `memory.oom_control` through
//! `cgroup.event_control`; v2 has no such hook, so an inotify watch on `memory.events` (which the
//! kernel modifies on every OOM event) stands in. Either way the caller polls one fd.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::layout::{self, Layout, Mode};
use super::CgroupError;

fn memory_dir(layout: &Layout, path: &Path) -> Result<std::path::PathBuf, CgroupError> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    match &layout.mode {
        Mode::V1 { .. } => layout
            .v1_mount("memory")
            .map(|m| m.join(rel))
            .ok_or_else(|| CgroupError::Unsupported("the memory controller is not mounted".into())),
        Mode::V2 { root, .. } => Ok(root.join(rel)),
    }
}

/// v1 `memory.oom_control` and v2 `memory.events` both carry an `oom_kill N` line.
pub(crate) fn kill_count(layout: &Layout, path: &Path) -> Result<u64, CgroupError> {
    let dir = memory_dir(layout, path)?;
    let file = if layout.is_v2() {
        "memory.events"
    } else {
        "memory.oom_control"
    };
    let text = layout::read(&dir.join(file))?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// Readable when an OOM event may have happened; call [`OomNotifier::clear`] after each wake-up.
#[derive(Debug)]
pub struct OomNotifier {
    fd: OwnedFd,
    /// v1: the registration lives as long as the control file stays open.
    _control: Option<File>,
    v2: bool,
}

impl OomNotifier {
    pub(crate) fn new(layout: &Layout, path: &Path) -> Result<Self, CgroupError> {
        let dir = memory_dir(layout, path)?;
        let io = |op: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| CgroupError::Io {
                op,
                path: p,
                source,
            }
        };
        if layout.is_v2() {
            // SAFETY: inotify_init1 takes only flags and returns a new fd or -1.
            let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
            if raw < 0 {
                return Err(io("inotify_init1", &dir)(std::io::Error::last_os_error()));
            }
            // SAFETY: raw is a fresh fd we own exclusively from here on.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let events = dir.join("memory.events");
            let c = std::ffi::CString::new(events.as_os_str().as_encoded_bytes())
                .map_err(|e| io("watch", &events)(std::io::Error::other(e)))?;
            // SAFETY: fd is a valid inotify fd and c a NUL-terminated path that outlives the call.
            let wd =
                unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) };
            if wd < 0 {
                return Err(io("watch", &events)(std::io::Error::last_os_error()));
            }
            return Ok(Self {
                fd,
                _control: None,
                v2: true,
            });
        }
        let control_path = dir.join("memory.oom_control");
        let control = File::open(&control_path).map_err(io("open", &control_path))?;
        // SAFETY: eventfd takes an initial value and flags and returns a new fd or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io("eventfd", &dir)(std::io::Error::last_os_error()));
        }
        // SAFETY: raw is a fresh fd we own exclusively from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let line = format!("{} {}", fd.as_raw_fd(), control.as_raw_fd());
        layout::write(layout, &dir, "cgroup.event_control", &line)?;
        Ok(Self {
            fd,
            _control: Some(control),
            v2: false,
        })
    }

    /// Consume the pending notification so the next poll waits for a new one.
    pub fn clear(&self) {
        let mut buf = [0u8; 4096];
        let len = if self.v2 { buf.len() } else { 8 };
        // SAFETY: buf is writable for len bytes; the fd is non-blocking, so this returns at once.
        unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), len) };
    }
}

impl AsFd for OomNotifier {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
