//! The view's `/etc` entries remembered between runs, next to the skeleton.
//!
//! Which of [`super::plan::ETC`]'s names the host has, and which are directories, is looked up
//! by listing the host's `/etc` and following its symlinks: 0.10-0.13 ms of every run here
//! (150 entries in an ext4 htree directory, which the kernel hashes and sorts on each listing).
//! The answer changes only when `/etc` does: creating, removing or renaming an entry (a
//! symlink retargeted with `ln -sf` included) changes the directory's mtime and ctime, so a
//! listing stamped with them (and the directory's device and inode) is reused while they are
//! unchanged. What this can't see is a symlink's target turning from a file into a directory or
//! back without `/etc` changing; the file copies are checked on every run anyway
//! ([`super::etc_copies`]). Best effort: a missing, stale or malformed cache is a fresh
//! lookup.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const MAGIC: &str = "husk-etc-v1";
/// A cache holds a few dozen short names; anything longer is not one of ours.
const MAX: u64 = 16 << 10;

/// `dir`'s identity and change times, as the first line of a cache records them.
pub fn stamp(dir: &Path) -> Option<String> {
    let m = std::fs::metadata(dir).ok()?;
    Some(format!(
        "{} {} {} {} {} {}",
        m.dev(),
        m.ino(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

/// The entries cached in `file` for `stamp`, if it holds exactly that stamp and only names
/// `valid` accepts.
pub fn load(file: &Path, stamp: &str, valid: impl Fn(&str) -> bool) -> Option<Vec<(String, bool)>> {
    let mut text = String::new();
    std::fs::File::open(file)
        .ok()?
        .take(MAX + 1)
        .read_to_string(&mut text)
        .ok()?;
    if text.len() as u64 > MAX {
        return None;
    }
    let mut lines = text.lines();
    if lines.next()? != format!("{MAGIC} {stamp}") {
        return None;
    }
    lines
        .map(|l| {
            let (kind, name) = l.split_once(' ')?;
            let dir = match kind {
                "d" => true,
                "f" => false,
                _ => return None,
            };
            valid(name).then(|| (name.to_string(), dir))
        })
        .collect()
}

/// Record `entries` for `stamp` in `file`, replacing it whole (a concurrent run reads the old
/// cache or the new one, never half of one).
pub fn store(file: &Path, stamp: &str, entries: &[(String, bool)]) {
    let mut text = format!("{MAGIC} {stamp}\n");
    for (name, dir) in entries {
        text.push_str(if *dir { "d " } else { "f " });
        text.push_str(name);
        text.push('\n');
    }
    let tmp = file.with_extension(format!("{}.tmp", std::process::id()));
    if std::fs::write(&tmp, text).is_err() || std::fs::rename(&tmp, file).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("husk-etc-cache-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trips_for_the_same_stamp_only() {
        let d = dir("rt");
        let file = d.join("etc.list");
        let entries = vec![("alternatives".to_string(), true), ("passwd".into(), false)];
        let s = stamp(&d).unwrap();
        store(&file, &s, &entries);
        assert_eq!(load(&file, &s, |_| true), Some(entries));
        // Any change to the directory's entries is a new stamp: the cache is not used.
        std::fs::write(d.join("new"), "").unwrap();
        let s2 = stamp(&d).unwrap();
        assert_ne!(s, s2);
        assert_eq!(load(&file, &s2, |_| true), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_name_not_valid_or_a_malformed_line_spoils_the_whole_cache() {
        let d = dir("bad");
        let file = d.join("etc.list");
        let s = "1 2 3 4 5 6";
        store(&file, s, &[("shadow".into(), false)]);
        assert_eq!(load(&file, s, |n| n != "shadow"), None);
        std::fs::write(&file, format!("{MAGIC} {s}\nx passwd\n")).unwrap();
        assert_eq!(load(&file, s, |_| true), None);
        std::fs::write(&file, format!("{MAGIC} {s}\npasswd\n")).unwrap();
        assert_eq!(load(&file, s, |_| true), None);
        // Past the size bound: not read to the end, so not a cache.
        let long = format!("{MAGIC} {s}\n{}", "f passwd\n".repeat(4000));
        std::fs::write(&file, long).unwrap();
        assert_eq!(load(&file, s, |_| true), None);
        assert_eq!(load(&d.join("absent"), s, |_| true), None);
        let _ = std::fs::remove_dir_all(&d);
    }
}
