//! `containerd-shim-husk-v2`: the containerd shim v2 for husk (or any runc-compatible runtime).
//!
//! One current-thread tokio runtime: the shim's work is waiting (on containerd's requests, on
//! exits, on OOM events), and a single thread keeps its resident memory per container small.

mod cgroup;
mod checkpoint;
mod events;
mod io;
mod memory;
mod metrics;
mod options;
mod process;
mod reaper;
mod runtime;
mod service;
mod task;

fn main() {
    serve();
}

#[tokio::main(flavor = "current_thread")]
async fn serve() {
    let config = containerd_shim::Config {
        // The shim's own reaper (reaper.rs) owns waitpid; the crate's would race it.
        no_reaper: true,
        ..Default::default()
    };
    containerd_shim::asynchronous::run::<service::Service>("io.containerd.husk.v2", Some(config))
        .await;
}
