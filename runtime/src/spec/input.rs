//! Reading a file a user hands husk (`config.json`, `exec --process`, `update -r`, a state
//! file): it must be a regular file, and no more than a bound is read, so that a path to
//! `/dev/zero` or a FIFO with an endless writer is refused by name instead of eating memory.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The bound for a JSON document a user hands husk: far above any real config.
pub const LIMIT: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("open {path:?}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path:?} is {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path:?} is larger than {limit} bytes, the most husk reads of it")]
    TooBig { path: PathBuf, limit: u64 },
}

impl ReadError {
    /// "a FIFO", "a character device", ...: what a file that is not regular is.
    pub fn kind_of(t: std::fs::FileType) -> &'static str {
        if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_symlink() {
            "a symlink"
        } else {
            "not a regular file"
        }
    }

    /// The message without the path, for errors that name the file themselves.
    pub fn reason(&self) -> String {
        match self {
            ReadError::Io { error, .. } => error.to_string(),
            ReadError::NotRegular { kind, .. } => format!("is {kind}, not a regular file"),
            ReadError::TooBig { limit, .. } => {
                format!("is larger than {limit} bytes, the most husk reads of it")
            }
        }
    }
}

/// Read all of `path`, which must be a regular file of at most `limit` bytes. The open does not
/// block (a FIFO without a writer would hang it), and a file that grows while read is cut off
/// at the bound.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let io = |error| ReadError::Io {
        path: path.to_path_buf(),
        error,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    read_from(f, path, limit)
}

/// [`read_bounded`] of an open file (stdin for `update -r -` is a pipe and is allowed; a bound
/// still applies).
pub fn read_open(
    f: File,
    path: &Path,
    limit: u64,
    regular_only: bool,
) -> Result<Vec<u8>, ReadError> {
    if regular_only {
        return read_from(f, path, limit);
    }
    take(f, path, limit, 0)
}

fn read_from(f: File, path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let meta = f.metadata().map_err(|error| ReadError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let t = meta.file_type();
    if !t.is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
            kind: ReadError::kind_of(t),
        });
    }
    if meta.len() > limit {
        return Err(ReadError::TooBig {
            path: path.to_path_buf(),
            limit,
        });
    }
    take(f, path, limit, meta.len())
}

fn take(f: File, path: &Path, limit: u64, hint: u64) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::with_capacity(usize::try_from(hint).unwrap_or(0).saturating_add(1));
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|error| ReadError::Io {
            path: path.to_path_buf(),
            error,
        })?;
    if buf.len() as u64 > limit {
        return Err(ReadError::TooBig {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_fifos_and_big_files() {
        let e = read_bounded(Path::new("/dev/zero"), LIMIT).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let dir = std::env::temp_dir().join(format!("husk-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_bounded(&fifo, LIMIT).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let big = dir.join("big");
        std::fs::write(&big, vec![b' '; 11]).unwrap();
        let e = read_bounded(&big, 10).unwrap_err();
        assert!(e.to_string().contains("larger than 10 bytes"), "{e}");
        assert_eq!(read_bounded(&big, 11).unwrap().len(), 11);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
