//! husk-runtime: the library behind the `husk` OCI runtime, `husk sandbox`, `husk image` and
//! the containerd shim's runtime binary.
//!
//! The create path, in order: [`spec::load`] validates `config.json` into a [`spec::Plan`] before
//! anything changes on disk; [`container::create`] takes the state lock, creates the cgroup and calls
//! [`process::spawn`], whose child runs [`init::run`] inside the new namespaces and ends in
//! [`child`]'s one path to `execve` (which `husk exec` and the sandbox's jobs share).
//! The other verbs are in [`container`] (`start`, `run`, `state`, `kill`, `delete`, `exec`, `pause`,
//! `resume`, `update`, `events`), each a function over the state root (`--root`) and an id; the
//! state directories are runc's, so `husk` and a program using this library see the same
//! containers.
//!
//! # Threading: call from a single-threaded process
//!
//! [`container::create`], [`container::run`] and [`container::exec`] start the container's
//! process with a plain `clone` (no re-exec of a helper binary, no C constructor, which is what
//! makes `husk run` fast), and the child then runs Rust code — the container's set-up — before its
//! `execve`. In a process with other threads, that child would inherit only the calling thread,
//! while locks those threads held at the moment of the clone (the allocator's, stdio's, any
//! mutex) stay locked in it forever: the set-up can deadlock. So the caller must have exactly one
//! thread when it calls them: no async runtime, no thread pool, no thread left running. A
//! multi-threaded program (containerd's shim is one) runs the `husk` binary instead, which is
//! single-threaded. The library itself never starts a thread.
//!
//! # Embedding
//!
//! Create, start, wait for and delete a container, as `husk create`, `husk start` and `husk
//! delete` do, from a program of your own (which needs root, and busybox-static for this rootfs;
//! the example says SKIP and does nothing otherwise):
//!
//! ```
//! use husk_runtime::container::{self, CreateOptions};
//! use nix::sys::wait::{waitpid, WaitStatus};
//! use nix::unistd::Pid;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! if !nix::unistd::geteuid().is_root() || !std::path::Path::new("/bin/busybox").exists() {
//!     println!("SKIP: the example needs root and a static /bin/busybox");
//!     return Ok(());
//! }
//! let work = std::env::temp_dir().join(format!("husk-embed-{}", std::process::id()));
//! let (bundle, root) = (work.join("bundle"), work.join("state"));
//! std::fs::create_dir_all(bundle.join("rootfs/bin"))?;
//! std::fs::copy("/bin/busybox", bundle.join("rootfs/bin/busybox"))?;
//! // runc's default config.json (`husk spec`), running `busybox true`, with an absolute
//! // cgroupsPath of its own (a relative one would go under /husk/).
//! let mut config = husk_runtime::spec::default::generate(false);
//! config["process"]["args"] = serde_json::json!(["/bin/busybox", "true"]);
//! config["process"]["terminal"] = false.into();
//! config["linux"]["cgroupsPath"] = format!("/husk-embed-{}", std::process::id()).into();
//! std::fs::write(bundle.join("config.json"), serde_json::to_vec(&config)?)?;
//!
//! // This process is single-threaded here, as `create` requires (see above). The `Created` it
//! // returns holds the container's state lock: keep only the pid, so that `start` can take it.
//! let pid = container::create(CreateOptions {
//!     id: "embedded".into(),
//!     bundle,
//!     root: root.clone(),
//!     start_barrier: true, // the process waits for `start`, as with `husk create`
//!     ..Default::default()
//! })?
//! .pid;
//! container::start(&root, "embedded")?;
//! // The init is this process's child: reap it, then the container is stopped.
//! let status = waitpid(Pid::from_raw(pid), None)?;
//! assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
//! container::delete(&root, "embedded", false)?;
//! std::fs::remove_dir_all(&work)?;
//! # Ok(())
//! # }
//! ```

pub mod capabilities;
pub mod cgroups;
pub mod checkpoint;
pub mod child;
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
