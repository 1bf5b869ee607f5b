//! `husk sandbox`: run a program under limits in a throw-away container with a minimal view of
//! the host, and say exactly what happened (DESIGN.md §6).
//!
//! The flow of one run: [`limits::Options`] (parsed and checked: usage errors stop here) →
//! [`view`] (the caller's directories the program may write, idmapped) → [`plan::build`] (an
//! OCI spec in memory, validated by the runtime's spec code) → [`exec_check`] → a cgroup →
//! [`crate::process::spawn`] → [`run::watch`] (CPU and wall limits) → [`verdict::Verdict`].
//! Meanwhile a [`holder`] makes the run's network namespace on the other CPU; and on a v1
//! host the cgroup's directories and limits are made after the clone, while the init mounts
//! (the init joins, and its reaper gets the cgroup's files, once they exist).
//! [`batch`] runs many jobs through a [`pool`] of [`zygote`]s that speak a typed
//! [`channel`]; each job's process is made by [`job_child`]. [`cleanup`] removes what a killed
//! husk left.

pub mod batch;
pub mod channel;
pub mod cleanup;
mod etc_cache;
mod etc_copies;
pub mod exec_check;
pub mod fill;
pub mod holder;
pub mod job_child;
mod judge_filter;
pub mod limits;
pub mod net;
pub mod output;
pub mod plan;
pub mod pool;
pub mod profile;
pub mod profile_gen;
pub mod run;
pub mod stats;
pub mod verdict;
pub mod view;
pub mod zygote;

pub use limits::{Options, UsageError};
pub use verdict::{Status, Verdict};

/// Run one program under `o` and return its verdict (XX on an internal failure); a directory
/// that can't be given to the program is a usage error. For a process that exits after it
/// ([`run::Then::Exit`]): a holder is left to die with it.
pub fn run_one(o: &Options) -> Result<Verdict, UsageError> {
    run::run(o, &profile::judge_filter(), 0, run::Then::Exit)
}
