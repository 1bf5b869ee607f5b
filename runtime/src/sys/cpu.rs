//! Where a helper child runs.

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Move child `pid` (not yet running, or running nothing that cares where) to one of the
/// caller's CPUs other than the one the caller is on, so that its work runs beside the
/// caller's instead of after it. A new child is queued where the scheduler's fork balancing
/// puts it; measured here (2 vCPUs, 100 runs with sched tracepoints) that was the caller's own
/// CPU a third of the time, and then the child ran only once the caller blocked waiting for
/// it. `allowed`: the caller's CPUs (`sched_getaffinity` of the caller, which a caller that
/// needs the set anyway has read already). Best effort: with one CPU allowed, or on any error,
/// the child stays where it is. Returns the CPU it was moved to.
pub fn run_beside_caller(pid: i32, allowed: &CpuSet) -> Option<usize> {
    // SAFETY: sched_getcpu takes no arguments and only reads the calling thread's CPU.
    let here = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
    let there = (0..CpuSet::count()).find(|&c| c != here && allowed.is_set(c).unwrap_or(false))?;
    let mut one = CpuSet::new();
    one.set(there).ok()?;
    sched_setaffinity(Pid::from_raw(pid), &one).ok()?;
    Some(there)
}

/// How many CPUs the calling process may run on (its affinity: one system call), at least 1.
pub fn cpu_count() -> usize {
    nix::sched::sched_getaffinity(Pid::from_raw(0))
        .map(|set| {
            (0..CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .count()
        })
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sched::sched_getaffinity;

    #[test]
    fn a_child_is_moved_off_the_callers_cpu_when_another_is_allowed() {
        let allowed = sched_getaffinity(Pid::from_raw(0)).unwrap();
        let n = (0..CpuSet::count())
            .filter(|&c| allowed.is_set(c).unwrap())
            .count();
        // SAFETY: the child only sleeps in pause until killed.
        let pid = match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => loop {
                // SAFETY: pause has no arguments.
                unsafe { libc::pause() };
            },
            nix::unistd::ForkResult::Parent { child } => child,
        };
        let moved = run_beside_caller(pid.as_raw(), &allowed);
        let theirs = sched_getaffinity(pid).unwrap();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        nix::sys::wait::waitpid(pid, None).unwrap();
        if n < 2 {
            assert_eq!(moved, None);
            return;
        }
        let there = moved.expect("another CPU is allowed");
        assert!(allowed.is_set(there).unwrap());
        assert!(theirs.is_set(there).unwrap());
        let count = (0..CpuSet::count())
            .filter(|&c| theirs.is_set(c).unwrap())
            .count();
        assert_eq!(count, 1);
    }
}
