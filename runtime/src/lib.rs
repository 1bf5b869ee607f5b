//! husk-runtime: the library behind the `husk` OCI runtime, the containerd shim and `husk sandbox`.
//!
//! The create path, in order: [`spec::load`] validates `config.json` into a [`spec::Plan`] before
//! anything changes on disk; [`container::create`] takes the state lock, creates the cgroup and calls
//! [`process::spawn`], whose child runs [`init::run`] inside the new namespaces and ends in `execve`.
//! The runtime is single-threaded on purpose: that is what makes a plain `clone` safe without a
//! re-exec or a C constructor (see DESIGN.md §2).

pub mod capabilities;
pub mod cgroups;
pub mod console;
pub mod container;
pub mod features;
pub mod hooks;
pub mod init;
pub mod logging;
pub mod netdev;
pub mod process;
pub mod rlimits;
pub mod rootfs;
pub mod sandbox;
pub mod seccomp;
pub mod signal;
pub mod spec;
pub mod state;
pub mod sys;

/// Helpers for the unit tests.
#[cfg(test)]
pub(crate) mod testutil {
    use std::path::PathBuf;

    /// A directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "husk-test-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).expect("create temp dir");
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
