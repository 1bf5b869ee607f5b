//! The minimal view's `/etc` files as copies in the skeleton root, refreshed when the host's
//! change. A bind of each (nine files on a Debian host) cost every run a mount, an attribute
//! change, two walks of the target path and the mount's teardown when the run's mount
//! namespace goes; a copy costs a stat of the host's file and one of the copy. Directories
//! (`alternatives`, `ld.so.conf.d`, `java*`) stay binds.
//!
//! A copy carries the modification time its source had when it was opened, so a run compares
//! size and time of the two and copies again only what differs. Each copy is written under a
//! temporary name and renamed into place with its time already set: runs refreshing at once
//! each leave a copy whose time is that of its own content, and a source changed while it was
//! read differs from the copy's time at the next run.

use std::fs::{File, FileTimes, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Bring the copies in `etc` (the skeleton's) of the host's `/etc/<name>` up to date.
pub fn refresh<'a>(
    etc: &Path,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), (PathBuf, io::Error)> {
    refresh_from(Path::new("/etc"), etc, names)
}

fn refresh_from<'a>(
    host: &Path,
    etc: &Path,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), (PathBuf, io::Error)> {
    for name in names {
        let src = host.join(name);
        // Followed, as the program would: /etc/localtime is a symlink into /usr/share/zoneinfo.
        let dst = etc.join(name);
        let want = match std::fs::metadata(&src) {
            Ok(m) => m,
            // Gone since /etc was listed: so goes the copy.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let _ = std::fs::remove_file(&dst);
                continue;
            }
            Err(e) => return Err((src, e)),
        };
        let current = std::fs::symlink_metadata(&dst).is_ok_and(|have| {
            have.is_file()
                && have.len() == want.len()
                && (have.mtime(), have.mtime_nsec()) == (want.mtime(), want.mtime_nsec())
        });
        if !current {
            copy(&src, &dst, name).map_err(|e| (dst.clone(), e))?;
        }
    }
    Ok(())
}

fn copy(src: &Path, dst: &Path, name: &str) -> io::Result<()> {
    let mut from = File::open(src)?;
    // The time of what is read, taken before the read (see the module's doc).
    let meta = from.metadata()?;
    let tmp = dst.with_file_name(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    remove_dead_temporaries(dst, name);
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let done = io::copy(&mut from, &mut to)
        .and_then(|_| to.set_permissions(Permissions::from_mode(meta.mode() & 0o755)))
        .and_then(|()| to.set_times(FileTimes::new().set_modified(meta.modified()?)))
        .and_then(|()| std::fs::rename(&tmp, dst));
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

/// The temporary copies of `name` that a husk killed while copying left (its pid is gone);
/// a live one's is its own to rename.
fn remove_dead_temporaries(dst: &Path, name: &str) {
    let Some(dir) = dst.parent() else {
        return;
    };
    let prefix = format!(".{name}.");
    for e in crate::sys::list_dir(dir).into_iter().flatten() {
        let pid = e.name_str().and_then(|f| f.strip_prefix(&prefix));
        if pid.is_some_and(|p| p.parse::<u32>().is_ok() && !Path::new("/proc").join(p).exists()) {
            let _ = std::fs::remove_file(crate::sys::entry_path(dir, &e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn dirs(tag: &str) -> (PathBuf, PathBuf) {
        let base = std::env::temp_dir().join(format!("husk-etc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (host, etc) = (base.join("host"), base.join("etc"));
        std::fs::create_dir_all(&host).unwrap();
        std::fs::create_dir_all(&etc).unwrap();
        (host, etc)
    }

    #[test]
    fn copies_follow_the_host_and_are_left_alone_while_it_is_unchanged() {
        let (host, etc) = dirs("follow");
        std::fs::write(host.join("passwd"), "root:x:0:0\n").unwrap();
        std::fs::set_permissions(host.join("passwd"), Permissions::from_mode(0o644)).unwrap();
        // A mount point left by an older husk: an empty file; and the temporary copy of a
        // husk killed while copying (no such pid), and one of a live one (pid 1 always is).
        std::fs::write(etc.join("passwd"), "").unwrap();
        std::fs::write(etc.join(".passwd.4194305"), "").unwrap();
        std::fs::write(etc.join(".passwd.1"), "").unwrap();
        refresh_from(&host, &etc, ["passwd"].into_iter()).unwrap();
        let copy = etc.join("passwd");
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), "root:x:0:0\n");
        assert_eq!(std::fs::metadata(&copy).unwrap().mode() & 0o777, 0o644);
        let ino = std::fs::metadata(&copy).unwrap().ino();
        refresh_from(&host, &etc, ["passwd"].into_iter()).unwrap();
        assert_eq!(std::fs::metadata(&copy).unwrap().ino(), ino, "copied again");

        // Same size, new content and time: copied again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(host.join("passwd"), "user:x:1:1\n").unwrap();
        refresh_from(&host, &etc, ["passwd"].into_iter()).unwrap();
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), "user:x:1:1\n");
        let mut names: Vec<_> = std::fs::read_dir(&etc)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        assert_eq!(names, [".passwd.1", "passwd"], "temporary files");
        let _ = std::fs::remove_dir_all(host.parent().unwrap());
    }

    #[test]
    fn a_symlinked_file_is_copied_as_its_target_and_a_vanished_one_goes() {
        let (host, etc) = dirs("link");
        std::fs::write(host.join("zone"), "TZif").unwrap();
        std::os::unix::fs::symlink(host.join("zone"), host.join("localtime")).unwrap();
        refresh_from(&host, &etc, ["localtime"].into_iter()).unwrap();
        assert!(std::fs::symlink_metadata(etc.join("localtime"))
            .unwrap()
            .is_file());
        assert_eq!(
            std::fs::read_to_string(etc.join("localtime")).unwrap(),
            "TZif"
        );
        std::fs::remove_file(host.join("localtime")).unwrap();
        refresh_from(&host, &etc, ["localtime"].into_iter()).unwrap();
        assert!(!etc.join("localtime").exists());
        let _ = std::fs::remove_dir_all(host.parent().unwrap());
    }
}
