//! Why a program can't start, named before anything is spawned: not found, a directory, no
//! execute bit, a missing ELF interpreter, a damaged ELF file, a file that is neither ELF nor
//! a `#!` script. Each is RE with exit code 127 (as a shell reports it) and the reason in the
//! verdict's message, in a single run and in batch alike. Whatever this can't judge is left to
//! `execve`, whose errno the job child reports the same way.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::limits::{environment, Options};
use super::verdict::{Status, Verdict};

/// Maps a path inside the sandbox to where the runtime can look at it (None: can't tell).
pub type Resolver<'a> = dyn Fn(&Path) -> Option<PathBuf> + 'a;

/// The verdict of a program that could not be executed.
pub fn exec_failed(message: impl Into<String>) -> Verdict {
    let mut v = Verdict::internal(message);
    v.status = Status::RE;
    v.exit_code = Some(127);
    v
}

/// Check the program of `o` started in `cwd`; `Some(verdict)` when it can't run.
pub fn check(o: &Options, cwd: &Path, resolve: &Resolver) -> Option<Verdict> {
    let arg0 = o.args.first()?;
    let (inside, host) = if arg0.contains('/') {
        let inside = cwd.join(arg0);
        let host = resolve(&inside)?;
        if std::fs::symlink_metadata(&host).is_err() && std::fs::metadata(&host).is_err() {
            return Some(exec_failed(format!(
                "exec {arg0:?}: not found (ENOENT): no such file in the sandbox"
            )));
        }
        (inside, host)
    } else {
        let env = environment(o, &std::env::vars().collect::<Vec<_>>());
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/bin:/bin")
            .to_string();
        let mut found = None;
        for dir in path.split(':').filter(|d| d.starts_with('/')) {
            let inside = Path::new(dir).join(arg0);
            let host = resolve(&inside)?;
            if std::fs::metadata(&host).is_ok_and(|m| m.is_file()) {
                found = Some((inside, host));
                break;
            }
        }
        match found {
            Some(f) => f,
            None => {
                return Some(exec_failed(format!(
                    "exec {arg0:?}: not found (ENOENT): no such executable in PATH={path}"
                )))
            }
        }
    };
    let why = file_problem(&host, resolve)?;
    Some(exec_failed(format!("exec {:?}: {why}", inside)))
}

/// What is wrong with the file at `host` as a program, if anything.
fn file_problem(host: &Path, resolve: &Resolver) -> Option<String> {
    let meta = std::fs::metadata(host).ok()?;
    if meta.is_dir() {
        return Some("is a directory (EACCES)".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Some(format!(
            "not executable (EACCES): mode {:o} has no execute bit",
            meta.permissions().mode() & 0o7777
        ));
    }
    let mut head = Vec::with_capacity(256);
    std::fs::File::open(host)
        .ok()?
        .take(256)
        .read_to_end(&mut head)
        .ok()?;
    if head.starts_with(b"\x7fELF") {
        return match elf_interpreter(host, &head) {
            Err(why) => Some(format!("a damaged ELF file (ENOEXEC): {why}")),
            Ok(None) => None,
            Ok(Some(interp)) => match resolve(Path::new(&interp)) {
                Some(h) if std::fs::metadata(&h).is_err() => Some(format!(
                    "its ELF interpreter {interp:?} is not in the sandbox (ENOENT)"
                )),
                _ => None,
            },
        };
    }
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let interp = line.split_whitespace().next().unwrap_or("");
        if interp.is_empty() {
            return Some("an empty #! line (ENOEXEC)".into());
        }
        return match resolve(Path::new(interp)) {
            Some(h) if std::fs::metadata(&h).is_err() => Some(format!(
                "its #! interpreter {interp:?} is not in the sandbox (ENOENT)"
            )),
            _ => None,
        };
    }
    Some(
        "not an executable format (ENOEXEC): neither an ELF binary nor a script with a #! line"
            .into(),
    )
}

/// The `PT_INTERP` of a 64-bit little-endian ELF file (None: static, or not one this reads).
fn elf_interpreter(host: &Path, head: &[u8]) -> Result<Option<String>, String> {
    if head.len() < 64 {
        return Err("shorter than an ELF header".into());
    }
    // ELFCLASS64, ELFDATA2LSB: what this host runs; anything else is for execve to judge.
    if head[4] != 2 || head[5] != 1 {
        return Ok(None);
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as u64;
    let u64_at = |b: &[u8], o: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(x)
    };
    let (phoff, phentsize, phnum) = (u64_at(head, 0x20), u16_at(head, 0x36), u16_at(head, 0x38));
    // Only the program headers and the interpreter's name are read, never the whole file.
    let file = std::fs::File::open(host).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if phentsize < 56 || phnum > 256 || phoff.saturating_add(phentsize * phnum) > len {
        return Err("its program headers lie outside the file".into());
    }
    let read = |off: u64, n: usize| -> Result<Vec<u8>, String> {
        use std::os::unix::fs::FileExt;
        let mut b = vec![0u8; n];
        file.read_exact_at(&mut b, off).map_err(|e| e.to_string())?;
        Ok(b)
    };
    let phdrs = read(phoff, (phentsize * phnum) as usize)?;
    for i in 0..phnum as usize {
        let ph = &phdrs[i * phentsize as usize..];
        if u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) != 3 {
            continue;
        }
        let (off, size) = (u64_at(ph, 8), u64_at(ph, 32));
        if off.saturating_add(size) > len || size == 0 || size > 4096 {
            return Err("its interpreter entry lies outside the file".into());
        }
        let raw = read(off, size as usize)?;
        let s = raw.split(|b| *b == 0).next().unwrap_or_default();
        return Ok(Some(String::from_utf8_lossy(s).into_owned()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &Path) -> Option<String> {
        let o = Options {
            args: vec![path.to_string_lossy().into_owned()],
            ..Options::default()
        };
        check(&o, Path::new("/"), &|p: &Path| Some(p.to_path_buf())).map(|v| {
            assert_eq!((v.status, v.exit_code), (Status::RE, Some(127)));
            v.message
        })
    }

    #[test]
    fn each_failure_is_named() {
        let d = crate::testutil::TempDir::new("exec-check");
        let write = |name: &str, body: &[u8], mode: u32| {
            let p = d.0.join(name);
            std::fs::write(&p, body).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        assert_eq!(run(Path::new("/bin/sh")), None);
        assert!(run(&d.0.join("missing")).unwrap().contains("not found"));
        let m = run(&write("noexec", b"#!/bin/sh\n", 0o644)).unwrap();
        assert!(m.contains("not executable"), "{m}");
        let m = run(&write("noshebang", b"echo hi\n", 0o755)).unwrap();
        assert!(m.contains("neither an ELF binary nor a script"), "{m}");
        let m = run(&write("badinterp", b"#!/no/such/sh\n", 0o755)).unwrap();
        assert!(m.contains("#! interpreter \"/no/such/sh\""), "{m}");
        let mut elf = std::fs::read("/bin/true").unwrap();
        let m = run(&write("garbage", &elf[..80], 0o755)).unwrap();
        assert!(m.contains("damaged ELF"), "{m}");
        // Point PT_INTERP's bytes at a name that doesn't exist.
        let pos = elf.windows(10).position(|w| w == b"/lib64/ld-").unwrap();
        elf[pos + 1] = b'X';
        let m = run(&write("nointerp", &elf, 0o755)).unwrap();
        assert!(m.contains("ELF interpreter \"/Xib64/ld-"), "{m}");
    }
}
