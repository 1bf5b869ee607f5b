//! `linux.namespaces` as clone flags (new namespaces) and paths (namespaces to join).

use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::LinuxNamespaceType;

/// The namespaces of a container: which to create, which to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    /// Namespaces to create (`CLONE_NEW*`).
    pub new: CloneFlags,
    /// Namespaces to join, user first, then in the order setns needs (see `join_order`).
    pub join: Vec<(CloneFlags, PathBuf)>,
}

impl Default for Namespaces {
    fn default() -> Self {
        Self {
            new: CloneFlags::empty(),
            join: Vec::new(),
        }
    }
}

impl Namespaces {
    /// True when the container gets this namespace, new or joined.
    pub fn has(&self, flag: CloneFlags) -> bool {
        self.new.contains(flag) || self.join.iter().any(|(f, _)| *f == flag)
    }

    pub fn joins(&self, flag: CloneFlags) -> Option<&PathBuf> {
        self.join.iter().find(|(f, _)| *f == flag).map(|(_, p)| p)
    }
}

pub fn flag(typ: LinuxNamespaceType) -> CloneFlags {
    match typ {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The `/proc/<pid>/ns/<name>` entry of a namespace flag.
pub fn proc_name(flag: CloneFlags) -> &'static str {
    match flag {
        f if f == CloneFlags::CLONE_NEWNS => "mnt",
        f if f == CloneFlags::CLONE_NEWCGROUP => "cgroup",
        f if f == CloneFlags::CLONE_NEWUTS => "uts",
        f if f == CloneFlags::CLONE_NEWIPC => "ipc",
        f if f == CloneFlags::CLONE_NEWUSER => "user",
        f if f == CloneFlags::CLONE_NEWPID => "pid",
        f if f == CloneFlags::CLONE_NEWNET => "net",
        _ => "time",
    }
}

/// The order namespaces are joined in: user first (it grants the capabilities for the rest),
/// mount last (after it, paths resolve in the container).
pub fn join_order(flag: CloneFlags) -> u8 {
    match flag {
        f if f == CloneFlags::CLONE_NEWUSER => 0,
        f if f == CloneFlags::CLONE_NEWNS => 9,
        _ => 5,
    }
}

/// `NSFS_MAGIC`: what `fstatfs` says of a `/proc/<pid>/ns/*` file or a bind mount of one.
pub const NSFS_MAGIC: i64 = 0x6e73_6673;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_joins_first_and_mount_last() {
        let mut v = [
            CloneFlags::CLONE_NEWNS,
            CloneFlags::CLONE_NEWNET,
            CloneFlags::CLONE_NEWUSER,
        ];
        v.sort_by_key(|f| join_order(*f));
        assert_eq!(v[0], CloneFlags::CLONE_NEWUSER);
        assert_eq!(v[2], CloneFlags::CLONE_NEWNS);
    }

    #[test]
    fn proc_names_match_kernel() {
        assert_eq!(proc_name(flag(LinuxNamespaceType::Mount)), "mnt");
        assert_eq!(proc_name(flag(LinuxNamespaceType::Time)), "time");
        assert_eq!(proc_name(flag(LinuxNamespaceType::Network)), "net");
    }
}
