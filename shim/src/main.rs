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

/// The flags containerd passes (the containerd-shim crate parses them), for `-h`.
const USAGE: &str = "  -address string
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
/// dashes; the program named as it was called); `None` for everything else, which goes to the
/// containerd-shim crate.
fn info_flag(argv0: &str, args: &[String]) -> Option<(String, bool)> {
    let flag = |a: &str, names: &[&str]| {
        let name = a.strip_prefix("--").or_else(|| a.strip_prefix('-'));
        name.is_some_and(|n| names.contains(&n))
    };
    if args.iter().any(|a| flag(a, &["v"])) {
        let version = format!(
            "{argv0}:\n  Version:  {}\n  Revision: {}\n  Rust version: {}\n\n",
            env!("CARGO_PKG_VERSION"),
            env!("HUSK_COMMIT"),
            env!("HUSK_RUSTC"),
        );
        return Some((version, false));
    }
    if args.iter().any(|a| flag(a, &["h", "help"])) {
        return Some((format!("Usage of {argv0}:\n{USAGE}"), true));
    }
    None
}

fn main() {
    let mut args = std::env::args();
    let argv0 = args
        .next()
        .unwrap_or_else(|| "containerd-shim-husk-v2".to_string());
    let args: Vec<String> = args.collect();
    if let Some((text, to_stderr)) = info_flag(&argv0, &args) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn version_and_help_flags() {
        let me = "/usr/bin/containerd-shim-husk-v2";
        let (v, err) = info_flag(me, &args(&["-v"])).unwrap();
        assert!(v.starts_with(&format!("{me}:\n  Version:  ")), "{v}");
        assert!(!err);
        assert!(info_flag(me, &args(&["--v"])).is_some());
        let (h, err) = info_flag(me, &args(&["--help"])).unwrap();
        assert!(h.starts_with(&format!("Usage of {me}:\n  -address")), "{h}");
        assert!(h.contains("-namespace string") && err);
        assert!(info_flag(me, &args(&["-h"])).is_some());
        assert!(info_flag(me, &args(&["-namespace", "x", "-id", "y", "start"])).is_none());
        assert!(info_flag(me, &args(&["-namespace", "x", "-id", "v", "delete"])).is_none());
    }
}
