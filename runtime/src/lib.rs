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
pub mod process;
pub mod rlimits;
pub mod rootfs;
pub mod sandbox;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod sys;
