//! `husk sandbox`: run a program under limits in a throw-away container built from the host's
//! own root, and say exactly what happened; see the README, `husk sandbox`.
//!
//! The flow of one run: [`limits::Options`] (parsed and checked: usage errors stop here) →
//! [`plan::build`] (an OCI spec in memory, validated by the runtime's spec code) → a cgroup →
//! [`crate::process::spawn`] → [`run::watch`] (CPU and wall limits) → [`verdict::Verdict`].
//! [`batch`] runs many jobs from a warm pool of pre-made sandboxes.

pub mod batch;
pub mod limits;
pub mod net;
pub mod plan;
pub mod profile;
pub mod run;
pub mod stats;
pub mod verdict;

pub use limits::{Options, UsageError};
pub use verdict::{Status, Verdict};

/// Run one program under `o` and return its verdict (XX on an internal failure).
pub fn run_one(o: &Options) -> Verdict {
    run::run(o, &profile::judge_profile(), 0)
}
