//! uid/gid maps of a new user namespace, written by the parent (which has the privileges the
//! child doesn't have yet).

use oci_spec::runtime::LinuxIdMapping;

use super::ProcessError;
use crate::spec::Plan;

fn lines(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

pub fn write(pid: i32, plan: &Plan) -> Result<(), ProcessError> {
    let linux = plan.spec.linux().as_ref();
    let uids = linux
        .and_then(|l| l.uid_mappings().as_deref())
        .unwrap_or_default();
    let gids = linux
        .and_then(|l| l.gid_mappings().as_deref())
        .unwrap_or_default();
    let io = |what: &'static str| move |source| ProcessError::Io { what, source };
    // An unprivileged writer may only map its own gid after denying setgroups (user_namespaces(7)).
    if !nix::unistd::geteuid().is_root() {
        std::fs::write(format!("/proc/{pid}/setgroups"), "deny").map_err(io("write setgroups"))?;
    }
    std::fs::write(format!("/proc/{pid}/uid_map"), lines(uids)).map_err(io("write uid_map"))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), lines(gids)).map_err(io("write gid_map"))?;
    Ok(())
}
