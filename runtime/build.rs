//! Links the `husk` binary with link/hot.ld, which gathers the code a `husk run` executes into
//! one `.text.hot` output section ahead of `.text`.
//!
//! Why: the kernel maps file pages around each fault (64 KiB, "fault-around"), so the resident
//! size of a short-lived process is the number of 64 KiB windows of its binary it touches, not
//! the bytes it runs. Spread over the link order, the ~0.8 MB that `husk run` executes touched
//! 51 of the 54 windows of a 3.4 MB .text; gathered, peak RSS fell from ~3.9 MB to ~2.8 MB.
//! The script names functions by section-name patterns with hashes wildcarded, so it only ever
//! moves code: a pattern that matches nothing (renamed function, new toolchain) is harmless.
//!
//! Also the build facts for `husk --version` (runc prints its commit and toolchain the same way):
//! HUSK_COMMIT (the git commit, or "unknown" outside a checkout; a set HUSK_COMMIT wins, for
//! builds from a tarball) and HUSK_RUSTC (the compiler's version line).

use std::env;
use std::path::PathBuf;
use std::process::Command;

#[path = "src/sandbox/profile_gen.rs"]
mod profile_gen;

/// The sandbox's seccomp profile, reduced from the embedded engine profile once here rather
/// than on every run (src/sandbox/profile.rs).
fn judge_profile() {
    let src = "src/sandbox/seccomp-default.json";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=src/sandbox/profile_gen.rs");
    let text = std::fs::read_to_string(src).unwrap_or_else(|e| panic!("read {src}: {e}"));
    let engine: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{src}: {e}"));
    let judge = profile_gen::judge_profile(&engine);
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let path = out.join("judge-seccomp.json");
    std::fs::write(&path, judge.to_string())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// HUSK_COMMIT and HUSK_RUSTC for `husk --version`.
fn build_facts() {
    println!("cargo:rerun-if-env-changed=HUSK_COMMIT");
    let commit = match env::var("HUSK_COMMIT") {
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
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = output(&rustc, &["--version"]).unwrap_or_else(|| "rustc unknown".into());
    println!("cargo:rustc-env=HUSK_RUSTC={version}");
}

fn main() {
    build_facts();
    judge_profile();
    let script = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("link")
        .join("hot.ld");
    println!("cargo:rerun-if-changed=link/hot.ld");
    println!("cargo:rerun-if-changed=build.rs");
    // ELF linkers (GNU ld, lld) only; unoptimized builds are not worth the longer link.
    let linux = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let elf = env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "gnu" || e == "musl");
    let optimized = env::var("OPT_LEVEL").is_ok_and(|o| o != "0");
    if linux && elf && optimized && script.exists() {
        println!("cargo:rustc-link-arg-bin=husk=-Wl,-T,{}", script.display());
    }
}
