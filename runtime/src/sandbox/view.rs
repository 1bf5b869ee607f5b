//! Writable binds the program owns: an idmapped mount of the caller's directory (the box, a
//! `:rw` rule) that shows the directory's owner as the program's uid/gid, so a program running
//! as 65534 may write a root-owned 0700 directory and what it writes lands on disk owned by
//! that owner.
//!
//! The idmap needs a user namespace mapping the owner to the program, which the sandbox's init
//! (root, no user namespace of its own) has none of. So, as root, husk makes each idmapped copy
//! here, before the init exists: a detached tree (`open_tree(OPEN_TREE_CLONE)`) with the idmap
//! set, which the init attaches in place of the bind ([`crate::spec::Prepared`]). Nothing is
//! attached in husk's own mount namespace, and a detached tree goes with the last fd to it.
//! Without root the user namespace already maps the caller to the program, and a plain bind
//! does the same.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::limits::{usage, UsageError};

/// A caller's directory the sandbox binds.
#[derive(Debug, Clone)]
pub struct Bound {
    /// How the caller named it (for errors).
    pub what: &'static str,
    pub dir: PathBuf,
    /// The program must be able to write it (the box, a `:rw` rule); a read-only one that
    /// can't be idmapped is bound as it is.
    pub writable: bool,
}

/// The caller's directories bound through an idmapped copy, and the copies for the next init.
#[derive(Debug, Default)]
pub struct View {
    /// Each idmapped directory with the user namespace of its idmap.
    idmapped: Vec<(PathBuf, Arc<OwnedFd>)>,
    /// Copies made and not yet handed to an init (those [`prepare`] made to check the idmap).
    ready: Vec<(PathBuf, OwnedFd)>,
}

impl View {
    /// Idmapped copies for one init, each directory's once per bind of it: a detached tree
    /// attaches only once, so every init (each pool zygote) takes a set of its own.
    pub fn trees(&mut self) -> Result<Vec<(PathBuf, OwnedFd)>, nix::Error> {
        if !self.ready.is_empty() {
            return Ok(std::mem::take(&mut self.ready));
        }
        self.idmapped
            .iter()
            .map(|(dir, ns)| Ok((dir.clone(), idmapped_tree(dir, ns)?)))
            .collect()
    }
}

/// Make each of `dirs` the program's (`uid`/`gid`) through an idmapped copy. A writable one
/// the program could not use otherwise, on a file system that can't be idmapped, is a usage
/// error naming the fix.
pub fn prepare(dirs: &[Bound], uid: u32, gid: u32) -> Result<View, UsageError> {
    let mut view = View::default();
    if let Some(b) = dirs.iter().find(|b| b.writable && b.dir == Path::new("/")) {
        return Err(usage(
            b.what,
            "is / (the whole host): cd to the directory with the program's files, or give \
             --dir rules (the box is then a fresh tmpfs)",
        ));
    }
    if dirs.is_empty() || !nix::unistd::geteuid().is_root() {
        return Ok(view);
    }
    let mut userns: HashMap<(u32, u32), Arc<OwnedFd>> = HashMap::new();
    for b in dirs {
        let (flag, dir) = (b.what, &b.dir);
        let meta = std::fs::metadata(dir).map_err(|e| usage(flag, format!("{dir:?}: {e}")))?;
        let owner = (meta.uid(), meta.gid());
        if owner == (uid, gid) {
            continue;
        }
        let ns = match userns.get(&owner) {
            Some(ns) => ns.clone(),
            None => {
                let ns = mapping_userns(owner, (uid, gid))
                    .map_err(|e| usage(flag, format!("a user namespace for the idmap: {e}")))?;
                userns.entry(owner).or_insert(Arc::new(ns)).clone()
            }
        };
        match idmapped_tree(dir, &ns) {
            Ok(tree) => {
                view.ready.push((dir.clone(), tree));
                view.idmapped.push((dir.clone(), ns));
            }
            Err(e) if !b.writable || writable_anyway(&meta, uid, gid) => {
                crate::logging::debug(&format!("idmap {dir:?}: {e}; bound as it is"));
            }
            Err(e) => {
                return Err(usage(
                    flag,
                    format!(
                        "{dir:?} (owner {}:{}, mode {:o}) is not writable by the program \
                         (uid {uid}) and its file system can't be idmapped ({e}): run from a \
                         directory on ext4, xfs or btrfs (tmpfs from Linux 6.3), make it \
                         writable by the program (chmod 1777), or give --dir rules (the box is \
                         then a fresh tmpfs)",
                        owner.0,
                        owner.1,
                        meta.mode() & 0o7777,
                    ),
                ));
            }
        }
    }
    Ok(view)
}

fn writable_anyway(meta: &std::fs::Metadata, uid: u32, gid: u32) -> bool {
    let m = meta.mode();
    (meta.uid() == uid && m & 0o300 == 0o300)
        || (meta.gid() == gid && m & 0o030 == 0o030)
        || m & 0o003 == 0o003
}

/// A user namespace whose uid `inside.0` is `outside.0` (and the same for gids): on an idmapped
/// mount, files owned by `inside` show as `outside`, and `outside`'s writes are stored as
/// `inside`'s. Made by a holder cloned straight into a new user namespace: its maps are written
/// and its namespace taken before it need ever run, then it is killed.
fn mapping_userns(inside: (u32, u32), outside: (u32, u32)) -> Result<OwnedFd, String> {
    let holder =
        super::holder::user_namespace().map_err(|e| format!("clone(CLONE_NEWUSER): {e}"))?;
    let pid = holder.pid();
    let write = |f: &str, v: String| {
        std::fs::write(format!("/proc/{pid}/{f}"), v).map_err(|e| format!("{f}: {e}"))
    };
    write("uid_map", format!("{} {} 1", inside.0, outside.0))?;
    write("gid_map", format!("{} {} 1", inside.1, outside.1))?;
    crate::sys::open(
        format!("/proc/{pid}/ns/user").as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open its ns: {e}"))
}

/// A detached idmapped copy of `dir` (recursive), for an init to attach.
fn idmapped_tree(dir: &Path, userns: &OwnedFd) -> Result<OwnedFd, nix::Error> {
    const OPEN_TREE_CLONE: u32 = 1;
    const AT_RECURSIVE: u32 = 0x8000;
    const AT_EMPTY_PATH: u32 = 0x1000;
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    let tree = crate::sys::open_tree(
        libc::AT_FDCWD,
        dir,
        OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as u32,
    )?;
    crate::sys::mount_setattr(
        tree.as_raw_fd(),
        Path::new(""),
        AT_EMPTY_PATH | AT_RECURSIVE,
        MOUNT_ATTR_IDMAP,
        0,
        0,
        Some(userns.as_raw_fd()),
    )?;
    Ok(tree)
}
