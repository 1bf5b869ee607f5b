//! The init's side of namespace set-up (sync 1-3 of the protocol).

use nix::sched::CloneFlags;

use super::{step, Barrier, Init, InitError};
use crate::child::ns::setns_path;
use crate::child::sync::Msg;

pub(super) fn enter(init: &mut Init, barrier: &mut Barrier) -> Result<(), InitError> {
    let ns = &init.plan.namespaces;
    let time = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
    // Joined namespaces (pid and time were entered by the parent before the clone), user first.
    for (flag, path) in &ns.join {
        if *flag != CloneFlags::CLONE_NEWPID && *flag != time {
            setns_path(path, *flag)?;
        }
    }
    let new_user = ns.new.contains(CloneFlags::CLONE_NEWUSER);
    if init.child_setup && new_user {
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER).map_err(step("unshare user namespace"))?;
    }
    if new_user {
        // sync 1 comes first on the wire (the parent sends it unasked right after the clone).
        // An unprivileged parent may only write the maps of a dumpable child (as runc's
        // nsexec does, dumpable just for this exchange).
        nix::sys::prctl::set_dumpable(true).map_err(step("make the init dumpable for id maps"))?;
        init.chan.send(&Msg::IdMapsPlease)?;
        barrier.cgroup(&init.chan)?;
        init.chan.expect(Msg::IdMapsDone)?;
        nix::sys::prctl::set_dumpable(false).map_err(step("make the init non-dumpable"))?;
    }
    if ns.has(CloneFlags::CLONE_NEWUSER) {
        // Become root of the namespace, so what the set-up creates is owned by the container's
        // root; a namespace that doesn't map 0 keeps the current ids.
        let root_gid = nix::unistd::Gid::from_raw(0);
        let root_uid = nix::unistd::Uid::from_raw(0);
        let _ = nix::unistd::setresgid(root_gid, root_gid, root_gid);
        let _ = nix::unistd::setresuid(root_uid, root_uid, root_uid);
    }
    if init.child_setup {
        let rest = ns.new - CloneFlags::CLONE_NEWUSER - CloneFlags::CLONE_NEWCGROUP - time;
        if !rest.is_empty() {
            nix::sched::unshare(rest).map_err(step("unshare namespaces"))?;
        }
        if rest.contains(CloneFlags::CLONE_NEWPID) {
            // unshare(CLONE_NEWPID) only moves our children: fork the init into it. The child
            // must be in the cgroup first, so it inherits it.
            barrier.cgroup(&init.chan)?;
            crate::child::sync::fork_reporting_pid(&init.chan)
                .map_err(step("fork into the new pid namespace"))?;
        }
    }
    Ok(())
}
