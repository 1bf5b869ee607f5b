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
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

use crate::confine::{self, ConfineError, Root};
use crate::tarball::{Header, Kind, Reader, TarError};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("read the layer's tar stream")]
    Read(#[source] TarError),
    #[error("entry {path:?}")]
    Entry {
        path: PathBuf,
        #[source]
        source: EntryError,
    },
    #[error("stopped at entry {path:?}: the image unpacks to more than the size bound of {limit} bytes ({human})")]
    TooLarge {
        limit: u64,
        human: String,
        path: PathBuf,
    },
    #[error("stopped at entry {path:?}: the image has more than the bound of {limit} entries")]
    TooManyEntries { limit: u64, path: PathBuf },
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
    Stream(#[source] TarError),
    #[error("write the file's contents")]
    Write(#[source] io::Error),
    #[error("{what} {value} is out of range")]
    Range { what: &'static str, value: u64 },
}

fn sys(op: &'static str) -> impl FnOnce(Errno) -> EntryError {
    move |source| EntryError::Sys { op, source }
}

/// `n` bytes for people: "4.0 GiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Limits on what an image may unpack to, over all its layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Total bytes of regular files (sparse files count their full size).
    pub bytes: Option<u64>,
    /// Entries of every kind, whiteouts included.
    pub entries: Option<u64>,
}

impl Bounds {
    /// 8 GiB: a few times the largest common base images (node, python, golang: about 1 GB).
    pub const DEFAULT_BYTES: u64 = 8 << 30;
    /// 90,000 entries: about twice the largest common base images (~45,000 for the full
    /// Debian-based language images).
    pub const DEFAULT_ENTRIES: u64 = 90_000;
    pub const NONE: Bounds = Bounds {
        bytes: None,
        entries: None,
    };
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            bytes: Some(Bounds::DEFAULT_BYTES),
            entries: Some(Bounds::DEFAULT_ENTRIES),
        }
    }
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
    bounds: Bounds,
    total_bytes: u64,
    total_entries: u64,
    warnings: Vec<String>,
    skipped_devices: u64,
    buf: Vec<u8>,
}

impl<'r> Applier<'r> {
    /// `chown`: apply the owners in the image (needs root or a user namespace mapping them).
    pub fn new(root: &'r Root, chown: bool, bounds: Bounds) -> Applier<'r> {
        Applier {
            root,
            cache: None,
            upper: HashSet::new(),
            dir_times: HashMap::new(),
            chown,
            bounds,
            total_bytes: 0,
            total_entries: 0,
            warnings: Vec::new(),
            skipped_devices: 0,
            buf: vec![0; 128 * 1024],
        }
    }

    /// Apply one layer's tar stream. The stream is read to its end-of-archive marker only: the
    /// caller drains what follows (so a digest check at end of stream still runs).
    pub fn apply<R: Read>(&mut self, layer: R) -> Result<LayerStats, LayerError> {
        self.apply_with(layer, &mut |_| {})
    }

    /// [`Applier::apply`], calling `progress` after each entry.
    pub fn apply_with<R: Read>(
        &mut self,
        layer: R,
        progress: &mut dyn FnMut(&LayerStats),
    ) -> Result<LayerStats, LayerError> {
        self.upper.clear();
        self.cache = None;
        let mut stats = LayerStats::default();
        let mut tar = Reader::new(layer);
        while let Some(h) = tar.next_header().map_err(LayerError::Read)? {
            let raw = PathBuf::from(OsStr::from_bytes(&h.name));
            self.check_bounds(&h, &raw)?;
            self.entry(&mut tar, &h, &raw, &mut stats)
                .map_err(|source| LayerError::Entry { path: raw, source })?;
            progress(&stats);
        }
        Ok(stats)
    }

    /// Count the entry against the bounds before anything of it is written: a header declares
    /// its size, so a bomb stops at its header.
    fn check_bounds(&mut self, h: &Header, raw: &Path) -> Result<(), LayerError> {
        self.total_entries += 1;
        if let Some(limit) = self.bounds.entries {
            if self.total_entries > limit {
                return Err(LayerError::TooManyEntries {
                    limit,
                    path: raw.to_path_buf(),
                });
            }
        }
        if h.kind == Kind::File {
            self.total_bytes = self.total_bytes.saturating_add(h.size);
            if let Some(limit) = self.bounds.bytes {
                if self.total_bytes > limit {
                    return Err(LayerError::TooLarge {
                        limit,
                        human: human_bytes(limit),
                        path: raw.to_path_buf(),
                    });
                }
            }
        }
        Ok(())
    }

    fn entry<R: Read>(
        &mut self,
        tar: &mut Reader<R>,
        h: &Header,
        raw: &Path,
        stats: &mut LayerStats,
    ) -> Result<(), EntryError> {
        let rel = confine::relative(raw)?;
        stats.entries += 1;
        let Some(name) = rel.file_name().map(OsStr::to_owned) else {
            // "/", "." or "./": the root directory itself (its metadata, as umoci applies it).
            if h.kind != Kind::Dir {
                self.warnings.push(format!(
                    "skipped {raw:?}: names the root but is not a directory"
                ));
                return Ok(());
            }
            let meta = meta(h)?;
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
        let meta = meta(h)?;
        let parent = self.parent(&parent_rel)?;
        let dir = parent.as_fd();
        match h.kind {
            Kind::File => {
                let file = self.create(dir, &name, confine::create_file)?;
                match &h.sparse {
                    None => self.copy(tar, &file)?,
                    Some(map) => self.copy_sparse(tar, &file, map, h.size)?,
                }
                stats.bytes += h.size;
                self.set_meta(file.as_fd(), &meta)?;
                futimens(&file, meta.mtime)?;
            }
            Kind::Dir => {
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
            Kind::Symlink => {
                if h.link.is_empty() {
                    return Err(EntryError::LinkWithoutTarget);
                }
                let target = OsStr::from_bytes(&h.link);
                self.create(dir, &name, |d, n| {
                    nix::unistd::symlinkat(target, Some(d.as_raw_fd()), n)
                })?;
                self.set_meta_at(dir, &name, &meta, false)?;
            }
            Kind::HardLink => {
                if h.link.is_empty() {
                    return Err(EntryError::LinkWithoutTarget);
                }
                self.hard_link(dir, &name, Path::new(OsStr::from_bytes(&h.link)))?;
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                let (sflag, dev) = match h.kind {
                    Kind::Char => (SFlag::S_IFCHR, libc::makedev(h.dev_major, h.dev_minor)),
                    Kind::Block => (SFlag::S_IFBLK, libc::makedev(h.dev_major, h.dev_minor)),
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
            Kind::Other(byte) => self.warnings.push(format!(
                "skipped {raw:?}: unsupported tar entry type {:?}",
                byte as char
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

    /// The entry's data into `dst`, all of it (a stream that ends early is an error).
    fn copy<R: Read>(&mut self, src: &mut Reader<R>, mut dst: &File) -> Result<(), EntryError> {
        loop {
            let got = src.read_data(&mut self.buf).map_err(EntryError::Stream)?;
            if got == 0 {
                return Ok(());
            }
            dst.write_all(&self.buf[..got]).map_err(EntryError::Write)?;
        }
    }

    /// A sparse entry's fragments at their offsets; the holes between them stay holes.
    fn copy_sparse<R: Read>(
        &mut self,
        src: &mut Reader<R>,
        dst: &File,
        map: &[(u64, u64)],
        size: u64,
    ) -> Result<(), EntryError> {
        for &(mut off, len) in map {
            let end = off + len; // validated by the reader: no overflow, within size
            while off < end {
                let want = usize::try_from(end - off)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                let got = src
                    .read_data(&mut self.buf[..want])
                    .map_err(EntryError::Stream)?;
                if got == 0 {
                    break; // the reader checked the map against the data it carries
                }
                dst.write_all_at(&self.buf[..got], off)
                    .map_err(EntryError::Write)?;
                off += got as u64;
            }
        }
        dst.set_len(size).map_err(EntryError::Write)
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

fn id(what: &'static str, v: u64) -> Result<u32, EntryError> {
    u32::try_from(v).map_err(|_| EntryError::Range { what, value: v })
}

/// The entry's metadata (the reader has applied its PAX records).
fn meta(h: &Header) -> Result<Meta, EntryError> {
    let xattrs = h
        .xattrs
        .iter()
        .filter_map(|(k, v)| CString::new(k.clone()).ok().map(|k| (k, v.clone())))
        .collect();
    Ok(Meta {
        mode: h.mode,
        uid: id("uid", h.uid)?,
        gid: id("gid", h.gid)?,
        mtime: TimeSpec::new(h.mtime.0, h.mtime.1),
        xattrs,
    })
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
        let mut a = Applier::new(&root, false, Bounds::NONE);
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
        let mut a = Applier::new(&root, false, Bounds::NONE);
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
        let mut a = Applier::new(&root, false, Bounds::NONE);
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
        let mut a = Applier::new(&root, false, Bounds::NONE);
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
}
