//! Build facts for `containerd-shim-husk-v2 -v` (as containerd-shim-runc-v2 -v prints them):
//! HUSK_COMMIT (the git commit, or "unknown" outside a checkout; a set HUSK_COMMIT wins, for
//! builds from a tarball) and HUSK_RUSTC (the compiler's version line).

use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=HUSK_COMMIT");
    let commit = match std::env::var("HUSK_COMMIT") {
        Ok(c) if !c.is_empty() => c,
        _ => output("git", &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into()),
    };
    // Rebuild when HEAD moves: HEAD itself, the branch it names, and packed refs. In a worktree
    // these live in different git dirs; --git-path resolves each.
    for p in ["HEAD", "packed-refs"] {
        if let Some(path) = output("git", &["rev-parse", "--git-path", p]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(r) = output("git", &["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = output("git", &["rev-parse", "--git-path", &r]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rustc-env=HUSK_COMMIT={commit}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = output(&rustc, &["--version"]).unwrap_or_else(|| "rustc unknown".into());
    println!("cargo:rustc-env=HUSK_RUSTC={version}");
}
