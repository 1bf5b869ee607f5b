//! A reaper as the pid namespace's init (`spawn::Options::status`): the program runs as its
//! child, so it gets signals like any process, and the reaper reports how it ended.

use std::os::fd::RawFd;

use super::{step, InitError};
use crate::sys;

/// What the reaper writes on the status descriptor: the wait status and the rusage of the
/// program (with the descendants it waited for), as native-endian i64s in this order.
pub const REPORT_FIELDS: usize = 8;

/// The report, decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub status: i32,
    pub utime_us: i64,
    pub stime_us: i64,
    pub maxrss_kb: i64,
    pub nvcsw: i64,
    pub nivcsw: i64,
}

impl Report {
    pub fn decode(bytes: &[u8]) -> Option<Report> {
        if bytes.len() != REPORT_FIELDS * 8 {
            return None;
        }
        let f = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            i64::from_ne_bytes(b)
        };
        Some(Report {
            status: f(0) as i32,
            utime_us: f(1),
            stime_us: f(2),
            maxrss_kb: f(3),
            nvcsw: f(4),
            nivcsw: f(5),
        })
    }

    fn encode(&self) -> [u8; REPORT_FIELDS * 8] {
        let mut out = [0u8; REPORT_FIELDS * 8];
        let v = [
            self.status as i64,
            self.utime_us,
            self.stime_us,
            self.maxrss_kb,
            self.nvcsw,
            self.nivcsw,
            0,
            0,
        ];
        for (i, x) in v.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&x.to_ne_bytes());
        }
        out
    }
}

/// Where a reaper reports (`spawn::Options::status`).
#[derive(Debug, Clone, Copy)]
pub struct Reporting {
    /// Gets a [`Handover`] right before the program starts, then its [`Report`].
    pub fd: RawFd,
    /// A file whose contents the handover carries (the cgroup's CPU usage), read then.
    pub sample: Option<RawFd>,
    /// A peak to reset right before the program starts (the cgroup's memory high-water mark,
    /// which the init's own set-up raised): written `0`, as the batch's job init does.
    pub peak_reset: Option<RawFd>,
    /// `sample` and `peak_reset` come after the clone instead, with `Msg::Stats` right after
    /// `CgroupDone`: the cgroup is made while the init sets up its mounts.
    pub late: bool,
}

/// Bytes of the sampled file a [`Handover`] carries (a v1 `cpuacct.usage` is one number; a
/// v2 `cpu.stat` starts with `usage_usec`).
pub const SAMPLE_BYTES: usize = 240;

/// What the reaper writes right before it starts the program: the monotonic clock and the
/// sampled file then. The runtime charges the program's CPU and wall time from this point, not
/// from whenever it next runs itself: on a busy machine the program may run a good while before
/// the runtime's own process is scheduled again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// `CLOCK_MONOTONIC`, in nanoseconds.
    pub at_ns: u64,
    pub sample: Vec<u8>,
}

/// The encoded size of a [`Handover`] (below `PIPE_BUF`: one write arrives whole).
pub const HANDOVER_BYTES: usize = 16 + SAMPLE_BYTES;

impl Handover {
    pub fn decode(bytes: &[u8]) -> Option<Handover> {
        if bytes.len() != HANDOVER_BYTES {
            return None;
        }
        let at_ns = u64::from_ne_bytes(bytes[..8].try_into().ok()?);
        let len = u64::from_ne_bytes(bytes[8..16].try_into().ok()?) as usize;
        let sample = bytes[16..].get(..len)?.to_vec();
        Some(Handover { at_ns, sample })
    }

    fn encode(&self) -> [u8; HANDOVER_BYTES] {
        let mut out = [0u8; HANDOVER_BYTES];
        let len = self.sample.len().min(SAMPLE_BYTES);
        out[..8].copy_from_slice(&self.at_ns.to_ne_bytes());
        out[8..16].copy_from_slice(&(len as u64).to_ne_bytes());
        out[16..16 + len].copy_from_slice(&self.sample[..len]);
        out
    }

    /// Take the clock and the sample now, and write them to `s.fd`.
    fn send(s: &Reporting) {
        if let Some(fd) = s.peak_reset {
            let _ = nix::unistd::write(fd_ref(fd), b"0");
        }
        let mut sample = [0u8; SAMPLE_BYTES];
        let len = s
            .sample
            .and_then(|fd| nix::sys::uio::pread(fd_ref(fd), &mut sample, 0).ok())
            .unwrap_or(0);
        let at_ns = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
            .unwrap_or(0);
        let h = Handover {
            at_ns,
            sample: sample[..len].to_vec(),
        };
        let _ = nix::unistd::write(fd_ref(s.fd), &h.encode());
    }
}

fn fd_ref<'a>(fd: RawFd) -> std::os::fd::BorrowedFd<'a> {
    // SAFETY: the reaper's descriptors stay open for as long as it runs.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// Start the program (`program`, which execs it and returns only on failure, in a child that
/// shares this process's memory until then: `CLONE_VM | CLONE_VFORK`, as posix_spawn does, so
/// neither a copy of the runtime's address space nor its copy-on-write faults are paid; this
/// process waits, suspended, until the exec). Right before, it sends the [`Handover`]. Then
/// this process stays pid 1, reaps until the program ends, writes its [`Report`] to
/// `status.fd` and exits (which ends the namespace). `program_only` is a descriptor only the
/// program may hold (the start barrier's, which `start` watches for the exec): the reaper
/// closes it.
pub fn fork_program(
    status: Reporting,
    program_only: Option<RawFd>,
    program: &mut dyn FnMut() -> isize,
) -> Result<std::convert::Infallible, InitError> {
    let mut stack = sys::Stack::new(PROGRAM_STACK).map_err(step("map the program's stack"))?;
    Handover::send(&status);
    let child = start_program(program_only, &mut stack, program)?;
    // Not unmapped: the program ran on it, perhaps on another CPU, so an unmap would be a TLB
    // shootdown there (an inter-processor interrupt, which a VM pays for in exits); this
    // process only reaps from here and exits when the program ends, which unmaps it anyway.
    std::mem::forget(stack);
    report_when_done(child, status.fd)
}

/// The stack the program's process runs on until its exec: the child path before execve needs
/// a few KiB; a failure's message formatting a little more.
pub const PROGRAM_STACK: usize = 256 << 10;

/// The first half of [`fork_program`]: the program started (exec'd, or failed and exited) on
/// `stack` (its own: it must not run on this one, which it shares), its pid. Everything this
/// allocated is freed when it returns.
pub fn start_program(
    program_only: Option<RawFd>,
    stack: &mut sys::Stack,
    program: &mut dyn FnMut() -> isize,
) -> Result<i32, InitError> {
    // Not dumpable: the program runs as the same user and must not reach the reaper's
    // descriptors through /proc/1/fd. The program's exec makes it dumpable again.
    nix::sys::prctl::set_dumpable(false).map_err(step("make the reaper non-dumpable"))?;
    use nix::sched::CloneFlags as F;
    // SAFETY: the child runs `program` on its own stack while this process is suspended
    // (CLONE_VFORK) until it execs or exits, so nothing else touches the shared memory
    // meanwhile; the runtime is single-threaded (no lock is held across the clone). It ends in
    // execve or _exit and never returns into this frame.
    let child = unsafe {
        nix::sched::clone(
            Box::new(program),
            stack.slice(),
            F::CLONE_VM | F::CLONE_VFORK,
            Some(libc::SIGCHLD),
        )
    }
    .map_err(step("start the program"))?
    .as_raw();
    if let Some(fd) = program_only {
        let _ = nix::unistd::close(fd);
    }
    Ok(child)
}

/// The second half of [`fork_program`]: reap until `child` ends, write its [`Report`] to
/// `status_fd`, exit. Only raw system calls on this stack: no allocation and no errno, so a
/// reaper that shares its parent's memory (the batch zygote's job init) leaves it alone.
pub fn report_when_done(child: i32, status_fd: RawFd) -> ! {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain integers; all-zero is valid and is overwritten by wait4.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: both out-pointers are valid for writes for the duration of the call.
        let pid = unsafe {
            sys::raw_syscall4(
                libc::SYS_wait4,
                -1isize as usize,
                &mut status as *mut libc::c_int as usize,
                0,
                &mut ru as *mut libc::rusage as usize,
            )
        };
        if pid == child as isize {
            let us = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
            let report = Report {
                status,
                utime_us: us(ru.ru_utime),
                stime_us: us(ru.ru_stime),
                maxrss_kb: ru.ru_maxrss,
                nvcsw: ru.ru_nvcsw,
                nivcsw: ru.ru_nivcsw,
            };
            let bytes = report.encode();
            // SAFETY: writes from a live buffer to a descriptor this process holds.
            let _ = unsafe {
                sys::raw_syscall4(
                    libc::SYS_write,
                    status_fd as usize,
                    bytes.as_ptr() as usize,
                    bytes.len(),
                    0,
                )
            };
            sys::exit_now(0);
        }
        if pid < 0 && pid != -(libc::EINTR as isize) {
            sys::exit_now(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trip() {
        let r = Report {
            status: 11,
            utime_us: 1_500_000,
            stime_us: 20,
            maxrss_kb: 102_400,
            nvcsw: 3,
            nivcsw: 4,
        };
        assert_eq!(Report::decode(&r.encode()), Some(r));
        assert_eq!(Report::decode(&[0; 3]), None);
    }

    #[test]
    fn handover_round_trip() {
        let h = Handover {
            at_ns: 123_456_789_012,
            sample: b"usage_usec 1500\nuser_usec 1000\n".to_vec(),
        };
        assert_eq!(Handover::decode(&h.encode()), Some(h));
        assert_eq!(Handover::decode(&[0; 16]), None);
        // A length past the buffer is refused, not trusted.
        let mut bad = [0u8; HANDOVER_BYTES];
        bad[8..16].copy_from_slice(&(SAMPLE_BYTES as u64 + 1).to_ne_bytes());
        assert_eq!(Handover::decode(&bad), None);
    }

    #[test]
    fn the_handover_resets_the_peak_and_carries_the_sample() {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        // Unlinked at once: open files with no name, removed with the test whatever happens.
        let scratch = |tag: &str| {
            let p = std::env::temp_dir().join(format!("husk-{tag}-{}", std::process::id()));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&p)
                .unwrap();
            std::fs::remove_file(&p).unwrap();
            f
        };
        let mut peak = scratch("peak");
        peak.write_all(b"4096").unwrap();
        let mut sample = scratch("sample");
        sample.write_all(b"1500\n").unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        Handover::send(&Reporting {
            fd: w.as_raw_fd(),
            sample: Some(sample.as_raw_fd()),
            peak_reset: Some(peak.as_raw_fd()),
            late: false,
        });
        let mut buf = [0u8; HANDOVER_BYTES];
        assert_eq!(
            nix::unistd::read(r.as_raw_fd(), &mut buf).unwrap(),
            HANDOVER_BYTES
        );
        assert_eq!(Handover::decode(&buf).unwrap().sample, b"1500\n");
        // The reset went through the same open file: "0" written where its offset was.
        let mut text = String::new();
        peak.rewind().unwrap();
        peak.read_to_string(&mut text).unwrap();
        assert_eq!(text, "40960");
    }
}
