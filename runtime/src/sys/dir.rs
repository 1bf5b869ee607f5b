//! Directory listings read with `getdents64` into a buffer on the stack.
//!
//! `std::fs::read_dir` goes through libc's `opendir`, whose 2 KiB buffer musl takes from its
//! own malloc (not husk's allocator), which maps a fresh page group for it and unmaps it at
//! `closedir`. Each unmap is a TLB shootdown of every CPU that has husk's memory loaded, and a
//! sandbox run lists directories while a holder sharing that memory runs on the other CPU
//! ([`crate::sandbox`]'s network namespace): an inter-processor interrupt per listing, which
//! a VM pays for in exits (1.4 of a run's 22 IPIs, counted with the `ipi:*` tracepoints).

use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// An entry's type as the directory reports it (`d_type`), or as `lstat` does where the file
/// system reports none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

/// One entry of a listing (never `.` or `..`).
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: OsString,
    pub kind: Kind,
}

impl DirEntry {
    /// The name if it is UTF-8 (the names husk looks for all are).
    pub fn name_str(&self) -> Option<&str> {
        self.name.to_str()
    }
}

/// The entries of directory `dir`, in the order the file system returns them.
pub fn list_dir(dir: &Path) -> io::Result<Vec<DirEntry>> {
    use nix::fcntl::OFlag;
    let fd = super::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`, which outlives it.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        if n == 0 {
            return Ok(out);
        }
        parse(&buf[..n.min(buf.len())], &mut |name, d_type| {
            let kind = match d_type {
                libc::DT_DIR => Kind::Dir,
                libc::DT_REG => Kind::File,
                libc::DT_LNK => Kind::Symlink,
                libc::DT_UNKNOWN => lstat_kind(&fd, name),
                _ => Kind::Other,
            };
            out.push(DirEntry {
                name: OsString::from(std::ffi::OsStr::from_bytes(name)),
                kind,
            });
        });
    }
}

/// `dir/name` for each entry: the path std's `DirEntry::path` gives.
pub fn entry_path(dir: &Path, e: &DirEntry) -> PathBuf {
    dir.join(&e.name)
}

/// Call `each(name, d_type)` for every record in a `getdents64` buffer but `.` and `..`. A
/// record that runs past the buffer (which the kernel never writes) ends the walk.
fn parse(buf: &[u8], each: &mut dyn FnMut(&[u8], u8)) {
    // struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
    const NAME: usize = 19;
    let mut at = 0;
    while at + NAME <= buf.len() {
        let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
        let Some(rec) = buf.get(at..at + reclen).filter(|_| reclen > NAME) else {
            return;
        };
        let name = &rec[NAME..];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        if name != b"." && name != b".." {
            each(name, rec[18]);
        }
        at += reclen;
    }
}

fn lstat_kind(dir: &impl AsRawFd, name: &[u8]) -> Kind {
    use nix::sys::stat::{fstatat, SFlag};
    let Ok(st) = fstatat(
        Some(dir.as_raw_fd()),
        std::ffi::OsStr::from_bytes(name),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) else {
        return Kind::Other;
    };
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFREG => Kind::File,
        SFlag::S_IFLNK => Kind::Symlink,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_what_std_lists_with_the_same_types() {
        let base = std::env::temp_dir().join(format!("husk-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("d")).unwrap();
        std::fs::write(base.join("f"), "").unwrap();
        std::os::unix::fs::symlink("d", base.join("l")).unwrap();
        // More names than one 8 KiB buffer holds.
        for i in 0..300 {
            std::fs::write(base.join(format!("many-{i:03}-{}", "x".repeat(40))), "").unwrap();
        }
        let mut ours: Vec<_> = list_dir(&base)
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        ours.sort_by(|a, b| a.0.cmp(&b.0));
        let mut std_: Vec<_> = std::fs::read_dir(&base)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let t = e.file_type().unwrap();
                let kind = if t.is_dir() {
                    Kind::Dir
                } else if t.is_symlink() {
                    Kind::Symlink
                } else if t.is_file() {
                    Kind::File
                } else {
                    Kind::Other
                };
                (e.file_name(), kind)
            })
            .collect();
        std_.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(ours.len(), 303);
        assert_eq!(ours, std_);
        std::fs::remove_dir_all(&base).unwrap();
        assert_eq!(
            list_dir(&base).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
    }

    #[test]
    fn a_truncated_record_ends_the_walk() {
        // One record ("ab", a directory) and the start of a second whose length runs past.
        let mut buf = vec![0u8; 24];
        buf[16..18].copy_from_slice(&24u16.to_ne_bytes());
        buf[18] = libc::DT_DIR;
        buf[19..21].copy_from_slice(b"ab");
        buf.extend_from_slice(&[0u8; 20]);
        buf[24 + 16..24 + 18].copy_from_slice(&200u16.to_ne_bytes());
        let mut seen = Vec::new();
        parse(&buf, &mut |n, t| seen.push((n.to_vec(), t)));
        assert_eq!(seen, [(b"ab".to_vec(), libc::DT_DIR)]);
    }
}
