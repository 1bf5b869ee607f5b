//! The sandbox's seccomp profile: the engines' default profile (containers-common's
//! `seccomp.json`, as podman and CRI-O hand it to a runtime) resolved for a process with no
//! capabilities on x86_64 only, plus what a judge blocks on top ([`super::profile_gen`]).
//!
//! The engine profile is embedded rather than read from `/usr/share/containers/seccomp.json`
//! at run time: verdicts must not change with what is installed on the judging host, and a
//! missing package must not silently mean "no filter". The judge profile is computed from it
//! by build.rs: parsing the 20 KB engine profile and reducing it took a quarter of a
//! millisecond of every single run (a twentieth of it). And the reduced profile is compiled to
//! BPF ahead too (`judge_filter.rs`, kept in step by a test): a run neither parses nor
//! compiles it.

#[cfg(any(test, not(target_arch = "x86_64")))]
use oci_spec::runtime::LinuxSeccomp;

use crate::seccomp::Compiled;

/// containers-common 0.50.1 `pkg/seccomp/seccomp.json` (Apache-2.0).
#[cfg(test)]
const ENGINE_PROFILE: &str = include_str!("seccomp-default.json");

/// [`super::profile_gen::judge_profile`] of [`ENGINE_PROFILE`], written by build.rs.
#[cfg(any(test, not(target_arch = "x86_64")))]
const JUDGE_PROFILE: &str = include_str!(concat!(env!("OUT_DIR"), "/judge-seccomp.json"));

/// The judge profile's filter. On x86_64 compiled ahead (`sandbox/judge_filter.rs`; a test
/// checks it is what [`crate::seccomp::compile`] makes of the profile): in a fresh process,
/// parsing the profile took 0.20 ms and compiling it 0.19 ms (a release test on this project's
/// VM), of a single run's 6-7 ms.
pub fn judge_filter() -> Compiled {
    #[cfg(target_arch = "x86_64")]
    {
        Compiled::ahead(super::judge_filter::PROGRAM, super::judge_filter::FLAGS)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        crate::seccomp::compile(&judge_seccomp()).unwrap_or_else(|_| kill_everything())
    }
}

/// A filter that kills at the first system call: what a judge gets rather than no filter
/// should the profile not compile.
#[cfg(not(target_arch = "x86_64"))]
fn kill_everything() -> Compiled {
    const RET_K: u16 = 0x06;
    const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
    Compiled::ahead(&[(RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS)], 0)
}

/// The profile as an OCI `linux.seccomp`, parsed straight into its type: through a JSON value
/// first it took half as long again (0.53 against 0.35 ms a parse, measured on this project's
/// VM).
#[cfg(any(test, not(target_arch = "x86_64")))]
pub fn judge_seccomp() -> LinuxSeccomp {
    // build.rs checked that it parses; should it not, every syscall is refused rather than
    // none filtered.
    serde_json::from_str(JUDGE_PROFILE).unwrap_or_else(|_| {
        let mut s = LinuxSeccomp::default();
        s.set_default_action(oci_spec::runtime::LinuxSeccompAction::ScmpActKillProcess);
        s
    })
}

/// The profile as a JSON value (what the generator's output is compared with).
#[cfg(test)]
fn judge_profile() -> serde_json::Value {
    serde_json::from_str(JUDGE_PROFILE).unwrap()
}

#[cfg(test)]
mod tests {
    use super::super::profile_gen;
    use super::*;

    #[test]
    fn the_embedded_profile_is_the_generator_of_the_engine_profile() {
        let engine: serde_json::Value = serde_json::from_str(ENGINE_PROFILE).unwrap();
        assert_eq!(judge_profile(), profile_gen::judge_profile(&engine));
    }

    /// Rewrites judge_filter.rs with `HUSK_WRITE_JUDGE_FILTER=1` (after a change to the
    /// profile, its generator or the compiler).
    #[test]
    fn the_ahead_filter_is_what_the_compiler_makes_of_the_profile() {
        let compiled = crate::seccomp::compile(&judge_seccomp()).unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/sandbox/judge_filter.rs");
        if std::env::var_os("HUSK_WRITE_JUDGE_FILTER").is_some() {
            // Compiled into this test binary is the old one: the next build checks the new.
            std::fs::write(path, judge_filter_source(&compiled)).unwrap();
            return;
        }
        let ahead = judge_filter();
        assert!(
            ahead.program() == compiled.program() && ahead.flags() == compiled.flags(),
            "{path} is stale: HUSK_WRITE_JUDGE_FILTER=1 cargo test -p husk-runtime --lib \
             the_ahead_filter"
        );
    }

    fn judge_filter_source(c: &Compiled) -> String {
        let mut s = String::from(
            "//! The judge profile's seccomp filter for x86_64, compiled ahead: what\n\
             //! `seccomp::compile` makes of `profile::judge_seccomp()`. Written by\n\
             //! `HUSK_WRITE_JUDGE_FILTER=1 cargo test -p husk-runtime --lib the_ahead_filter`,\n\
             //! which without the variable checks it; do not edit.\n\n",
        );
        s += &format!("pub const FLAGS: u32 = {};\n\n", c.flags());
        s += "#[rustfmt::skip]\npub static PROGRAM: &[(u16, u8, u8, u32)] = &[\n";
        for i in c.program() {
            s += &format!(
                "    (0x{:02x}, {}, {}, 0x{:08x}),\n",
                i.code, i.jt, i.jf, i.k
            );
        }
        s += "];\n";
        s
    }

    #[test]
    fn the_generators_numbers_are_libcs() {
        let ns = libc::CLONE_NEWNS
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUSER
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWCGROUP
            | libc::CLONE_NEWTIME;
        assert_eq!(profile_gen::CLONE_NS_FLAGS, ns as u64);
        assert_eq!(profile_gen::AF_VSOCK, libc::AF_VSOCK as u64);
        assert_eq!(profile_gen::EPERM, libc::EPERM as i64);
        assert_eq!(profile_gen::ENOSYS, libc::ENOSYS as i64);
        assert_eq!(profile_gen::EAFNOSUPPORT, libc::EAFNOSUPPORT as i64);
    }

    #[test]
    fn profile_compiles_and_blocks_what_a_judge_blocks() {
        let p = judge_profile();
        let names: Vec<String> = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["names"].as_array().unwrap().clone())
            .filter_map(|n| n.as_str().map(String::from))
            .collect();
        // The engine profile is really there (read, write, ... allowed).
        assert!(names.iter().any(|n| n == "read"));
        assert!(names.iter().any(|n| n == "execve"));
        // keyctl appears once: in our ERRNO rule, not in the engine's allow list.
        assert_eq!(names.iter().filter(|n| *n == "keyctl").count(), 1);
        assert_eq!(names.iter().filter(|n| *n == "mount").count(), 1);
        let s: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(p).unwrap();
        assert_eq!(s, judge_seccomp());
        let c = crate::seccomp::compile(&s).unwrap();
        assert!(c.program().len() < 1024, "{}", c.program().len());
    }
}
