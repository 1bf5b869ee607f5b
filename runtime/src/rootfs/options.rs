//! Mount options of `config.json` as mount(2) flags, propagation, recursive attributes
//! (mount_setattr) and filesystem data, with runc's table of names.

use nix::mount::MsFlags;

/// `MOUNT_ATTR_*` of mount_setattr(2).
pub mod attr {
    pub const RDONLY: u64 = 0x1;
    pub const NOSUID: u64 = 0x2;
    pub const NODEV: u64 = 0x4;
    pub const NOEXEC: u64 = 0x8;
    pub const ATIME_MASK: u64 = 0x70;
    pub const RELATIME: u64 = 0x0;
    pub const NOATIME: u64 = 0x10;
    pub const STRICTATIME: u64 = 0x20;
    pub const NODIRATIME: u64 = 0x80;
    pub const IDMAP: u64 = 0x0010_0000;
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// Parsed options of one mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Flags to set.
    pub flags: MsFlags,
    /// Flags the options explicitly clear (`rw`, `suid`, ...), so a bind remount can drop them.
    pub cleared: MsFlags,
    /// Propagation changes, applied in order after the mount.
    pub propagation: Vec<MsFlags>,
    /// Recursive attributes (`rro`, `rnosuid`, ...), applied with mount_setattr(AT_RECURSIVE).
    pub rec_set: u64,
    pub rec_clear: u64,
    /// Everything else, joined with "," as the filesystem's data.
    pub data: Vec<String>,
    /// `idmap` / `ridmap`: map the mount with the container's user namespace.
    pub idmap: Option<bool>,
    /// `tmpcopyup`: copy the underlying directory's content into a new tmpfs.
    pub tmpcopyup: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            rec_set: 0,
            rec_clear: 0,
            data: Vec::new(),
            idmap: None,
            tmpcopyup: false,
        }
    }
}

impl Options {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
}

/// A propagation option name as a flag set (including MS_REC for the `r` forms).
pub fn propagation(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// (name, set?, flag) for plain mount(2) flags.
const FLAGS: &[(&str, bool, MsFlags)] = &[
    ("acl", true, MsFlags::MS_POSIXACL),
    ("async", false, MsFlags::MS_SYNCHRONOUS),
    ("atime", false, MsFlags::MS_NOATIME),
    ("bind", true, MsFlags::MS_BIND),
    ("defaults", true, MsFlags::empty()),
    ("dev", false, MsFlags::MS_NODEV),
    ("diratime", false, MsFlags::MS_NODIRATIME),
    ("dirsync", true, MsFlags::MS_DIRSYNC),
    ("exec", false, MsFlags::MS_NOEXEC),
    ("iversion", true, MsFlags::MS_I_VERSION),
    ("lazytime", true, MsFlags::MS_LAZYTIME),
    ("loud", false, MsFlags::MS_SILENT),
    ("mand", true, MsFlags::MS_MANDLOCK),
    ("noacl", false, MsFlags::MS_POSIXACL),
    ("noatime", true, MsFlags::MS_NOATIME),
    ("nodev", true, MsFlags::MS_NODEV),
    ("nodiratime", true, MsFlags::MS_NODIRATIME),
    ("noexec", true, MsFlags::MS_NOEXEC),
    ("noiversion", false, MsFlags::MS_I_VERSION),
    ("nolazytime", false, MsFlags::MS_LAZYTIME),
    ("nomand", false, MsFlags::MS_MANDLOCK),
    ("norelatime", false, MsFlags::MS_RELATIME),
    ("nostrictatime", false, MsFlags::MS_STRICTATIME),
    ("nosuid", true, MsFlags::MS_NOSUID),
    (
        "nosymfollow",
        true,
        MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW as _),
    ),
    ("rbind", true, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("relatime", true, MsFlags::MS_RELATIME),
    ("remount", true, MsFlags::MS_REMOUNT),
    ("ro", true, MsFlags::MS_RDONLY),
    ("rw", false, MsFlags::MS_RDONLY),
    ("silent", true, MsFlags::MS_SILENT),
    ("strictatime", true, MsFlags::MS_STRICTATIME),
    ("suid", false, MsFlags::MS_NOSUID),
    (
        "symfollow",
        false,
        MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW as _),
    ),
    ("sync", true, MsFlags::MS_SYNCHRONOUS),
];

/// (name, set?, attribute) for the recursive forms.
const REC: &[(&str, bool, u64)] = &[
    ("rro", true, attr::RDONLY),
    ("rrw", false, attr::RDONLY),
    ("rnosuid", true, attr::NOSUID),
    ("rsuid", false, attr::NOSUID),
    ("rnodev", true, attr::NODEV),
    ("rdev", false, attr::NODEV),
    ("rnoexec", true, attr::NOEXEC),
    ("rexec", false, attr::NOEXEC),
    ("rnodiratime", true, attr::NODIRATIME),
    ("rdiratime", false, attr::NODIRATIME),
    ("rrelatime", true, attr::RELATIME),
    ("rnorelatime", false, attr::RELATIME),
    ("rnoatime", true, attr::NOATIME),
    ("ratime", false, attr::NOATIME),
    ("rstrictatime", true, attr::STRICTATIME),
    ("rnostrictatime", false, attr::STRICTATIME),
    ("rnosymfollow", true, attr::NOSYMFOLLOW),
    ("rsymfollow", false, attr::NOSYMFOLLOW),
];

/// Every option name husk understands (for `husk features`).
pub fn known() -> impl Iterator<Item = &'static str> {
    FLAGS
        .iter()
        .map(|f| f.0)
        .chain(REC.iter().map(|r| r.0))
        .chain([
            "private",
            "rprivate",
            "shared",
            "rshared",
            "slave",
            "rslave",
            "unbindable",
            "runbindable",
            "idmap",
            "ridmap",
            "tmpcopyup",
        ])
}

pub fn parse(opts: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    for opt in opts {
        let name = opt.as_str();
        if let Some(&(_, set, flag)) = FLAGS.iter().find(|f| f.0 == name) {
            if set {
                o.flags |= flag;
                o.cleared &= !flag;
            } else {
                o.flags &= !flag;
                o.cleared |= flag;
            }
        } else if let Some(p) = propagation(name) {
            o.propagation.push(p);
        } else if let Some(&(_, set, a)) = REC.iter().find(|r| r.0 == name) {
            if a & attr::ATIME_MASK != 0 || a == attr::RELATIME {
                // The atime attributes are one 3-bit field: setting one clears the others.
                o.rec_clear |= attr::ATIME_MASK;
                if set {
                    o.rec_set = (o.rec_set & !attr::ATIME_MASK) | a;
                }
            } else if set {
                o.rec_set |= a;
                o.rec_clear &= !a;
            } else {
                o.rec_clear |= a;
                o.rec_set &= !a;
            }
        } else if name == "idmap" || name == "ridmap" {
            o.idmap = Some(name == "ridmap");
        } else if name == "tmpcopyup" {
            o.tmpcopyup = true;
        } else if name.is_empty() {
            return Err("empty option".into());
        } else {
            o.data.push(opt.clone());
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Options {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("parse")
    }

    #[test]
    fn flags_data_and_propagation() {
        let o = p(&["nosuid", "strictatime", "mode=755", "size=65536k", "rslave"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
    }

    #[test]
    fn later_option_wins() {
        let o = p(&["ro", "rw"]);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.cleared.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn recursive_attributes() {
        let o = p(&["rbind", "rro", "rnosuid", "ratime"]);
        assert!(o.is_bind() && o.flags.contains(MsFlags::MS_REC));
        assert_eq!(o.rec_set & attr::RDONLY, attr::RDONLY);
        assert_eq!(o.rec_set & attr::NOSUID, attr::NOSUID);
        assert_eq!(o.rec_clear & attr::ATIME_MASK, attr::ATIME_MASK);
    }

    #[test]
    fn idmap_and_extensions() {
        assert_eq!(p(&["bind", "ridmap"]).idmap, Some(true));
        assert!(p(&["tmpcopyup"]).tmpcopyup);
    }
}
