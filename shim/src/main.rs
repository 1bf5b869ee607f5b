//! `containerd-shim-husk-v2`: the containerd shim v2 for husk (or any runc-compatible runtime).
//!
//! One current-thread tokio runtime: the shim's work is waiting (on containerd's requests, on
//! exits, on OOM events), and a single thread keeps its resident memory per container small.

mod cgroup;
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

/// The flags containerd passes (the containerd-shim crate parses them), for `-h`.
const USAGE: &str = "Usage of containerd-shim-husk-v2:
  -address string
    \tgrpc address back to main containerd
  -bundle string
    \tpath to the bundle if not workdir
  -debug
    \tenable debug output in logs
  -id string
    \tid of the task
  -namespace string
    \tnamespace that owns the shim
  -publish-binary string
    \tpath to publish binary (used for publishing events) (default \"containerd\")
  -socket string
    \tsocket path to serve
  -v\tshow the shim version and exit
";

/// `-v` and `-h` as containerd-shim-runc-v2 answers them (Go's flag package: one or two
/// dashes); `None` for everything else, which goes to the containerd-shim crate.
fn info_flag(args: &[String]) -> Option<(String, bool)> {
    let flag = |a: &str, names: &[&str]| {
        let name = a.strip_prefix("--").or_else(|| a.strip_prefix('-'));
        name.is_some_and(|n| names.contains(&n))
    };
    if args.iter().any(|a| flag(a, &["v"])) {
        let version = format!(
            "containerd-shim-husk-v2:\n  Version:  {}\n  Revision: {}\n  Rust version: {}\n\n",
            env!("CARGO_PKG_VERSION"),
            env!("HUSK_COMMIT"),
            env!("HUSK_RUSTC"),
        );
        return Some((version, false));
    }
    if args.iter().any(|a| flag(a, &["h", "help"])) {
        return Some((USAGE.to_string(), true));
    }
    None
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some((text, to_stderr)) = info_flag(&args) {
        // Go's flag package prints the usage on stderr, the version goes to stdout; both exit 0.
        if to_stderr {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
        return;
    }
    serve();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn version_and_help_flags() {
        let (v, err) = info_flag(&args(&["-v"])).unwrap();
        assert!(v.starts_with("containerd-shim-husk-v2:\n  Version:  "), "{v}");
        assert!(!err);
        assert!(info_flag(&args(&["--v"])).is_some());
        let (h, err) = info_flag(&args(&["--help"])).unwrap();
        assert!(h.contains("-namespace string") && err);
        assert!(info_flag(&args(&["-h"])).is_some());
        assert!(info_flag(&args(&["-namespace", "x", "-id", "y", "start"])).is_none());
        assert!(info_flag(&args(&["-namespace", "x", "-id", "v", "delete"])).is_none());
    }
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
