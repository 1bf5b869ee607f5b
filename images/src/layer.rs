//! Apply one layer (an uncompressed tar stream) onto the rootfs, as the OCI image spec says:
//! entries replace what lower layers left, `.wh.NAME` removes NAME from lower layers, and
//! `.wh..wh..opq` empties its directory of everything lower layers put there.
//!
//! Every path goes through [`confine`]: the parent directory is resolved inside the root and
//! the entry is created relative to that descriptor without following its last component, so
//! no entry, hard link or whiteout can touch anything outside the rootfs.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

use crate::confine::{self, ConfineError, Root};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("read the layer's tar stream")]
    Read(#[source] io::Error),
    #[error("entry {path:?}")]
    Entry {
        path: PathBuf,
        #[source]
        source: EntryError,
    },
    #[error("the layers unpack to more than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Path(#[from] ConfineError),
    #[error("hard link target {target:?}")]
    LinkTarget {
        target: PathBuf,
        #[source]
        source: ConfineError,
    },
    #[error("hard link target {target:?} does not exist in the rootfs")]
    LinkTargetMissing { target: PathBuf },
    #[error("hard link has no target")]
    LinkWithoutTarget,
    #[error("whiteout {name:?} names no file")]
    BadWhiteout { name: String },
    #[error("{op}")]
    Sys {
        op: &'static str,
        #[source]
        source: Errno,
    },
    #[error("read the entry from the tar stream")]
    Stream(#[source] io::Error),
    #[error("write the file's contents")]
    Write(#[source] io::Error),
    #[error("the header declares {declared} bytes but the stream ends after {got}")]
    Truncated { declared: u64, got: u64 },
    #[error("{what} {value} is out of range")]
    Range { what: &'static str, value: u64 },
}

fn sys(op: &'static str) -> impl FnOnce(Errno) -> EntryError {
    move |source| EntryError::Sys { op, source }
}

/// What one layer did.
#[derive(Debug, Default, Clone, Copy)]
pub struct LayerStats {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
}

/// Ownership, mode, time and xattrs of one entry.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

/// Applies layers in order onto one rootfs; [`Applier::finish`] sets directory times last.
pub struct Applier<'r> {
    root: &'r Root,
    /// The last parent directory resolved: tar streams list a directory's files together.
    cache: Option<(PathBuf, OwnedFd)>,
    /// Paths this layer has written (and their ancestors): whiteouts only hide lower layers.
    upper: HashSet<PathBuf>,
    /// Directory times, set at the end because adding children changes them.
    dir_times: HashMap<PathBuf, TimeSpec>,
    chown: bool,
    max_bytes: Option<u64>,
    total_bytes: u64,
    warnings: Vec<String>,
    skipped_devices: u64,
    buf: Vec<u8>,
}

impl<'r> Applier<'r> {
    /// `chown`: apply the owners in the image (needs root or a user namespace mapping them).
    pub fn new(root: &'r Root, chown: bool, max_bytes: Option<u64>) -> Applier<'r> {
        Applier {
            root,
            cache: None,
            upper: HashSet::new(),
            dir_times: HashMap::new(),
            chown,
            max_bytes,
            total_bytes: 0,
            warnings: Vec::new(),
            skipped_devices: 0,
            buf: vec![0; 128 * 1024],
        }
    }

    /// Apply one layer's tar stream. The stream is read to its end-of-archive marker only: the
    /// caller drains what follows (so a digest check at end of stream still runs).
    pub fn apply<R: Read>(&mut self, layer: R) -> Result<LayerStats, LayerError> {
        self.upper.clear();
        self.cache = None;
        let mut stats = LayerStats::default();
        let mut archive = tar::Archive::new(layer);
        for entry in archive.entries().map_err(LayerError::Read)? {
            let mut entry = entry.map_err(LayerError::Read)?;
            let raw = entry.path().map_err(LayerError::Read)?.into_owned();
            self.entry(&mut entry, &raw, &mut stats)
                .map_err(|source| LayerError::Entry { path: raw, source })?;
            if let Some(limit) = self.max_bytes {
                if self.total_bytes > limit {
                    return Err(LayerError::TooLarge { limit });
                }
            }
        }
        Ok(stats)
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &Path,
        stats: &mut LayerStats,
    ) -> Result<(), EntryError> {
        let rel = confine::relative(raw)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        stats.entries += 1;
        let Some(name) = rel.file_name().map(OsStr::to_owned) else {
            // "./": the root directory itself.
            let meta = meta(entry)?;
            let dir = confine::openat(
                self.root.fd().as_raw_fd(),
                Path::new("."),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            )
            .map_err(sys("open the rootfs"))?;
            self.set_meta(dir.as_fd(), &meta)?;
            self.dir_times.insert(PathBuf::new(), meta.mtime);
            return Ok(());
        };
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if let Some(target) = name.as_bytes().strip_prefix(WHITEOUT.as_bytes()) {
            stats.whiteouts += 1;
            return self.whiteout(&parent_rel, &name, target);
        }
        self.mark_upper(&rel);
        let meta = meta(entry)?;
        let parent = self.parent(&parent_rel)?;
        let dir = parent.as_fd();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let file = self.create(dir, &name, confine::create_file)?;
                let declared = entry.size();
                let got = self.copy(entry, &file)?;
                // tar readers end an entry quietly when the stream ends: a header that declares
                // more than the stream holds (a "bomb" that never arrives) is caught here.
                if got < declared && kind != tar::EntryType::GNUSparse && !self.over_limit() {
                    return Err(EntryError::Truncated { declared, got });
                }
                stats.bytes += got;
                self.set_meta(file.as_fd(), &meta)?;
                futimens(&file, meta.mtime)?;
            }
            tar::EntryType::Directory => {
                self.create(dir, &name, |d, n| {
                    match confine::mkdirat(d, n, 0o700) {
                        // An existing directory stays (with what lower layers put in it).
                        Err(Errno::EEXIST) if confine::kind_at(d, n)? == Some(SFlag::S_IFDIR) => {
                            Ok(())
                        }
                        r => r,
                    }
                })?;
                let fd = confine::openat(
                    dir.as_raw_fd(),
                    Path::new(&name),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
                )
                .map_err(sys("open the directory"))?;
                self.set_meta(fd.as_fd(), &meta)?;
                self.dir_times.insert(rel.clone(), meta.mtime);
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(EntryError::Stream)?
                    .ok_or(EntryError::LinkWithoutTarget)?
                    .into_owned();
                self.create(dir, &name, |d, n| {
                    nix::unistd::symlinkat(&target, Some(d.as_raw_fd()), n)
                })?;
                self.set_meta_at(dir, &name, &meta, false)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(EntryError::Stream)?
                    .ok_or(EntryError::LinkWithoutTarget)?
                    .into_owned();
                self.hard_link(dir, &name, &target)?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    tar::EntryType::Char => (SFlag::S_IFCHR, device(entry)?),
                    tar::EntryType::Block => (SFlag::S_IFBLK, device(entry)?),
                    _ => (SFlag::S_IFIFO, 0),
                };
                let made = self.create(dir, &name, |d, n| {
                    nix::sys::stat::mknodat(
                        Some(d.as_raw_fd()),
                        n,
                        sflag,
                        Mode::from_bits_truncate(0o600),
                        dev,
                    )
                });
                match made {
                    // In a user namespace the kernel refuses device nodes: skip them as engines do.
                    Err(EntryError::Sys {
                        source: Errno::EPERM,
                        ..
                    }) if sflag != SFlag::S_IFIFO => {
                        self.skipped_devices += 1;
                        return Ok(());
                    }
                    r => r?,
                }
                self.set_meta_at(dir, &name, &meta, true)?;
            }
            other => self.warnings.push(format!(
                "skipped {raw:?}: unsupported tar entry type {:?}",
                other.as_byte() as char
            )),
        }
        // Only this entry's parent is cached, and no entry removes its own parent, so the
        // descriptor stays valid for the next entry (whiteouts, which can, clear the cache).
        self.cache = Some((parent_rel, parent));
        Ok(())
    }

    /// The parent directory's descriptor: the cached one if the previous entry had the same
    /// parent (tar streams list a directory's files together), else freshly resolved.
    fn parent(&mut self, parent_rel: &Path) -> Result<OwnedFd, EntryError> {
        match self.cache.take() {
            Some((p, fd)) if p == parent_rel => Ok(fd),
            _ => Ok(self.root.dir(parent_rel, true)?),
        }
    }

    /// Run `make` for `name` in `dir`; if something is in the way, remove it (a whole tree for
    /// a directory) and try once more, as a later layer's entry replaces a lower one's.
    fn create<T>(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        make: impl Fn(BorrowedFd<'_>, &OsStr) -> Result<T, Errno>,
    ) -> Result<T, EntryError> {
        match make(dir, name) {
            Err(Errno::EEXIST) => {}
            r => return r.map_err(sys("create")),
        }
        if confine::kind_at(dir, name).map_err(sys("stat the existing entry"))?
            == Some(SFlag::S_IFDIR)
        {
            confine::remove_all(dir, name).map_err(sys("remove the directory in the way"))?;
        } else {
            confine::unlinkat(dir, name, false).map_err(sys("remove the file in the way"))?;
        }
        make(dir, name).map_err(sys("create"))
    }

    fn hard_link(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        target: &Path,
    ) -> Result<(), EntryError> {
        let link_err = |source| EntryError::LinkTarget {
            target: target.to_path_buf(),
            source,
        };
        let trel = confine::relative(target).map_err(link_err)?;
        let Some(tname) = trel.file_name().map(OsStr::to_owned) else {
            return Err(EntryError::LinkTargetMissing {
                target: target.to_path_buf(),
            });
        };
        let tdir = self
            .root
            .dir(trel.parent().unwrap_or(Path::new("")), false)
            .map_err(link_err)?;
        let link = |d: BorrowedFd<'_>, n: &OsStr| {
            // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink, never what it names.
            nix::unistd::linkat(
                Some(tdir.as_raw_fd()),
                tname.as_os_str(),
                Some(d.as_raw_fd()),
                n,
                AtFlags::empty(),
            )
        };
        match self.create(dir, name, link) {
            Err(EntryError::Sys {
                source: Errno::ENOENT,
                ..
            }) => Err(EntryError::LinkTargetMissing {
                target: target.to_path_buf(),
            }),
            r => r,
        }
    }

    fn whiteout(
        &mut self,
        parent_rel: &Path,
        name: &OsStr,
        target: &[u8],
    ) -> Result<(), EntryError> {
        self.cache = None;
        if name == OPAQUE {
            let dir = self.root.dir(parent_rel, true)?;
            let dir = confine::openat(
                dir.as_raw_fd(),
                Path::new("."),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            )
            .map_err(sys("open the opaque directory"))?;
            let upper = &self.upper;
            confine::clear_dir(dir, &mut |n| upper.contains(&parent_rel.join(n)))
                .map_err(sys("empty the opaque directory"))?;
            self.mark_upper(parent_rel);
            return Ok(());
        }
        let target = OsStr::from_bytes(target);
        if target.is_empty() || target == "." || target == ".." {
            return Err(EntryError::BadWhiteout {
                name: name.to_string_lossy().into_owned(),
            });
        }
        if self.upper.contains(&parent_rel.join(target)) {
            return Ok(()); // whiteouts hide lower layers only
        }
        let dir = match self.root.dir(parent_rel, false) {
            Ok(d) => d,
            // Hiding something in a directory that does not exist: nothing to do.
            Err(ConfineError::Resolve {
                source: Errno::ENOENT | Errno::ENOTDIR,
                ..
            }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        confine::remove_all(dir.as_fd(), target).map_err(sys("remove the whited-out path"))
    }

    fn mark_upper(&mut self, rel: &Path) {
        let mut p = rel;
        while !p.as_os_str().is_empty() && self.upper.insert(p.to_path_buf()) {
            p = p.parent().unwrap_or(Path::new(""));
        }
    }

    fn over_limit(&self) -> bool {
        self.max_bytes.is_some_and(|l| self.total_bytes > l)
    }

    fn copy<R: Read>(&mut self, src: &mut R, mut dst: &File) -> Result<u64, EntryError> {
        let mut n = 0u64;
        loop {
            let got = match src.read(&mut self.buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(EntryError::Stream(e)),
            };
            dst.write_all(&self.buf[..got]).map_err(EntryError::Write)?;
            n += got as u64;
            self.total_bytes += got as u64;
            if let Some(limit) = self.max_bytes {
                if self.total_bytes > limit {
                    break; // apply() reports it after this entry
                }
            }
        }
        Ok(n)
    }

    /// Owner, mode and xattrs through an open descriptor (chown first: it clears set-id bits).
    fn set_meta(&mut self, fd: BorrowedFd<'_>, meta: &Meta) -> Result<(), EntryError> {
        if self.chown {
            nix::unistd::fchown(
                fd.as_raw_fd(),
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(sys("chown"))?;
        }
        nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(meta.mode))
            .map_err(sys("chmod"))?;
        for (name, value) in &meta.xattrs {
            // SAFETY: `name` is NUL-terminated and `value` is a live buffer of the given length.
            let r = unsafe {
                libc::fsetxattr(
                    fd.as_raw_fd(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            };
            if r != 0 {
                self.warnings
                    .push(format!("xattr {name:?} not set: {}", Errno::last()));
            }
        }
        Ok(())
    }

    /// Owner, mode (not for symlinks) and time of `name` in `dir`, not following it.
    fn set_meta_at(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        meta: &Meta,
        chmod: bool,
    ) -> Result<(), EntryError> {
        if self.chown {
            nix::unistd::fchownat(
                Some(dir.as_raw_fd()),
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(sys("chown"))?;
        }
        if chmod {
            // The entry was just made by mknodat (not a symlink), so following is moot.
            nix::sys::stat::fchmodat(
                Some(dir.as_raw_fd()),
                name,
                Mode::from_bits_truncate(meta.mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .map_err(sys("chmod"))?;
        }
        nix::sys::stat::utimensat(
            Some(dir.as_raw_fd()),
            name,
            &meta.mtime,
            &meta.mtime,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(sys("set times"))
    }

    /// Set the directory times recorded while applying and return the warnings collected.
    pub fn finish(mut self) -> Result<Vec<String>, ConfineError> {
        for (rel, time) in std::mem::take(&mut self.dir_times) {
            let (parent, name) = match rel.file_name() {
                Some(n) => (rel.parent().unwrap_or(Path::new("")), n),
                None => (Path::new(""), OsStr::new(".")),
            };
            let dir = match self.root.dir(parent, false) {
                Ok(d) => d,
                Err(ConfineError::Resolve { .. }) => continue, // removed by a later layer
                Err(e) => return Err(e),
            };
            let _ = nix::sys::stat::utimensat(
                Some(dir.as_raw_fd()),
                name,
                &time,
                &time,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            );
        }
        if self.skipped_devices > 0 {
            self.warnings.push(format!(
                "skipped {} device node(s): not permitted here (a user namespace?)",
                self.skipped_devices
            ));
        }
        Ok(self.warnings)
    }
}

fn futimens(f: &File, t: TimeSpec) -> Result<(), EntryError> {
    nix::sys::stat::futimens(f.as_raw_fd(), &t, &t).map_err(sys("set times"))
}

fn device<R: Read>(entry: &tar::Entry<'_, R>) -> Result<libc::dev_t, EntryError> {
    let h = entry.header();
    let major = h.device_major().map_err(EntryError::Stream)?.unwrap_or(0);
    let minor = h.device_minor().map_err(EntryError::Stream)?.unwrap_or(0);
    Ok(libc::makedev(major, minor))
}

fn id(what: &'static str, v: u64) -> Result<u32, EntryError> {
    u32::try_from(v).map_err(|_| EntryError::Range { what, value: v })
}

/// The entry's metadata: the ustar fields, overridden by PAX records where present.
fn meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, EntryError> {
    let h = entry.header();
    let bad = EntryError::Stream;
    let mode = h.mode().map_err(bad)? & 0o7777;
    let mut uid = h.uid().map_err(bad)?;
    let mut gid = h.gid().map_err(bad)?;
    let mut mtime = TimeSpec::new(
        i64::try_from(h.mtime().map_err(bad)?).map_err(|_| EntryError::Range {
            what: "mtime",
            value: u64::MAX,
        })?,
        0,
    );
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions().map_err(bad)? {
        for ext in pax {
            let ext = ext.map_err(bad)?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                if let Ok(name) = CString::new(name) {
                    xattrs.push((name, value.to_vec()));
                }
            } else if key == b"uid" {
                uid = parse_u64(value).unwrap_or(uid);
            } else if key == b"gid" {
                gid = parse_u64(value).unwrap_or(gid);
            } else if key == b"mtime" {
                mtime = parse_time(value).unwrap_or(mtime);
            }
        }
    }
    Ok(Meta {
        mode,
        uid: id("uid", uid)?,
        gid: id("gid", gid)?,
        mtime,
        xattrs,
    })
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// A PAX time, "seconds[.fraction]".
fn parse_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32)
    };
    Some(TimeSpec::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn header() -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = header();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    }

    fn special(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, link: &str) {
        let mut h = header();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_entry_type(kind);
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        b.append_data(&mut h, path, &[][..]).unwrap();
    }

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("rootfs");
        fs::create_dir(&r).unwrap();
        (t, r)
    }

    #[test]
    fn applies_whiteouts_opaque_dirs_links_in_order() {
        let (_t, r) = setup();
        let root = Root::open(&r).unwrap();
        let mut a = Applier::new(&root, false, None);
        let l1 = tar_of(|b| {
            special(b, "etc", tar::EntryType::Directory, "");
            file(b, "etc/group", b"root:x:0:\n");
            file(b, "etc/passwd", b"root\n");
            special(b, "opt/dir", tar::EntryType::Directory, "");
            file(b, "opt/dir/old", b"old");
            special(b, "bin/sh", tar::EntryType::Symlink, "busybox");
        });
        a.apply(&l1[..]).unwrap();
        let l2 = tar_of(|b| {
            special(b, "etc/.wh.group", tar::EntryType::Regular, "");
            special(b, "opt/dir/.wh..wh..opq", tar::EntryType::Regular, "");
            file(b, "opt/dir/new", b"new");
            special(b, "opt/hard", tar::EntryType::Link, "opt/dir/new");
            file(b, "etc/passwd", b"replaced\n");
        });
        let st = a.apply(&l2[..]).unwrap();
        assert_eq!(st.whiteouts, 2);
        a.finish().unwrap();
        assert!(!r.join("etc/group").exists());
        assert_eq!(fs::read(r.join("etc/passwd")).unwrap(), b"replaced\n");
        assert!(!r.join("opt/dir/old").exists());
        assert_eq!(fs::read(r.join("opt/hard")).unwrap(), b"new");
        assert_eq!(
            fs::read_link(r.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
    }

    #[test]
    fn opaque_after_new_entries_keeps_them() {
        let (_t, r) = setup();
        let root = Root::open(&r).unwrap();
        let mut a = Applier::new(&root, false, None);
        a.apply(&tar_of(|b| file(b, "d/lower", b"l"))[..]).unwrap();
        let l2 = tar_of(|b| {
            file(b, "d/upper", b"u");
            special(b, "d/.wh..wh..opq", tar::EntryType::Regular, "");
        });
        a.apply(&l2[..]).unwrap();
        assert!(r.join("d/upper").exists());
        assert!(!r.join("d/lower").exists());
    }

    #[test]
    fn replaces_a_directory_with_a_file_and_back() {
        let (_t, r) = setup();
        let root = Root::open(&r).unwrap();
        let mut a = Applier::new(&root, false, None);
        a.apply(&tar_of(|b| file(b, "x/y/z", b"z"))[..]).unwrap();
        a.apply(&tar_of(|b| file(b, "x", b"now a file"))[..])
            .unwrap();
        assert_eq!(fs::read(r.join("x")).unwrap(), b"now a file");
        a.apply(&tar_of(|b| file(b, "x/again", b"a"))[..])
            .unwrap_err();
        a.apply(
            &tar_of(|b| {
                special(b, "x", tar::EntryType::Directory, "");
                file(b, "x/again", b"a");
            })[..],
        )
        .unwrap();
        assert!(r.join("x/again").is_file());
    }

    #[test]
    fn applies_pax_xattrs_owners_and_times() {
        let (_t, r) = setup();
        let root = Root::open(&r).unwrap();
        let mut a = Applier::new(&root, false, None);
        let l = tar_of(|b| {
            b.append_pax_extensions([
                ("SCHILY.xattr.user.husk", &b"yes"[..]),
                ("mtime", &b"1234.5"[..]),
            ])
            .unwrap();
            file(b, "f", b"data");
        });
        a.apply(&l[..]).unwrap();
        assert!(a.finish().unwrap().is_empty());
        let md = fs::metadata(r.join("f")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((md.mtime(), md.mtime_nsec()), (1234, 500_000_000));
        let mut buf = [0u8; 8];
        let path = std::ffi::CString::new(r.join("f").to_str().unwrap()).unwrap();
        // SAFETY: path is NUL-terminated and buf is a live buffer of the given length.
        let n = unsafe {
            libc::getxattr(
                path.as_ptr(),
                c"user.husk".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(&buf[..usize::try_from(n).unwrap()], b"yes");
    }

    #[test]
    fn pax_times_parse() {
        assert_eq!(parse_time(b"12.5"), Some(TimeSpec::new(12, 500_000_000)));
        assert_eq!(parse_time(b"7"), Some(TimeSpec::new(7, 0)));
        assert_eq!(parse_time(b"x"), None);
    }
}
