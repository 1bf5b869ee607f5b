//! `husk sandbox`: its own parser, because its exit codes are its own (0 verdict computed, 2
//! bad usage, 3 internal error) where the rest of husk follows runc (1 for everything).

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use husk_runtime::sandbox::{self, Options, Status, UsageError};

const EXIT_OK: i32 = 0;
/// A verdict other than OK, with `--exit-status isolate`.
const EXIT_NOT_OK: i32 = 1;
const EXIT_USAGE: i32 = 2;
const EXIT_INTERNAL: i32 = 3;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum ExitStatus {
    /// 0 whenever a verdict was computed, 2 bad usage, 3 internal error.
    Husk,
    /// isolate's: 0 on OK, 1 on any other verdict, 2 bad usage, 3 internal error (XX).
    Isolate,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum MetaFormat {
    Json,
    Isolate,
}

#[derive(Parser, Debug)]
#[command(
    name = "husk sandbox",
    about = "Run a program under resource limits in a throw-away sandbox and report a verdict",
    long_about = "Run a program under resource limits in a throw-away sandbox and report a \
        verdict.\n\nThe view (minimal by default): the host's /bin, /sbin, /lib* and /usr \
        read-only; from /etc only alternatives, group, host.conf, hosts, ld.so.cache, \
        ld.so.conf(.d), localtime, nsswitch.conf, passwd, protocols, services and java*; a \
        fresh /tmp (--tmp-size); /proc of its own pid namespace, read-only, with hidepid=2; a minimal /dev; \
        and the box at /box, its working directory. The box is the current directory, bound \
        read-write through an idmapped mount (the program owns it; what it writes belongs to \
        the directory's owner); with --dir rules it is a fresh tmpfs of --box-size instead. \
        Nothing else of the host is there unless a --dir rule brings it in. --host-root shows \
        the whole host root read-only instead (weaker: every world-readable file of the host \
        is readable).\n\nThe program has its own pid, mount, ipc, uts, cgroup and network \
        namespaces (loopback only), runs as uid/gid 65534 with no capabilities, no new \
        privileges, a seccomp filter (the engines' default profile plus keyctl, io_uring, \
        ptrace, mount and namespace calls, AF_VSOCK and non-native ABIs blocked), 64 open \
        files, and a clean environment (PATH, HOME=/tmp, LANG=C.UTF-8). It dies with husk.\n\n\
        Verdicts: OK, RE (non-zero exit; 127 with the reason when the program can't be \
        executed), SG (signal), TLE (CPU time), WLE (wall time), MLE (memory), OLE (output: \
        --output, or a program that failed on a full /tmp or tmpfs box), XX (internal error).",
    after_help = "Exit status: 0 when a verdict was computed (whatever it is; with --exit-status \
        isolate, 1 for a verdict other than OK), 2 on bad usage, 3 on an internal error \
        (verdict XX).\n\nSizes: 65536, 64K, 64M, 1.5G. Times: seconds, fractional (0.5).\n\n\
        Batch: --batch JOBS.jsonl reads one JSON object per line, {\"args\": [...]} plus any \
        option above as a key (\"time\": 1, \"memory\": \"64M\", \"stdout\": \"out.txt\", \
        \"env\": [\"A=1\"]); verdicts go to stdout as JSON lines in input order, each with \
        its \"index\"."
)]
struct SandboxCli {
    /// CPU time limit in seconds (fractional).
    #[arg(long, value_name = "SECONDS")]
    time: Option<String>,
    /// Grace time after the CPU limit before the kill (the verdict is TLE either way).
    #[arg(long = "extra-time", value_name = "SECONDS")]
    extra_time: Option<String>,
    /// Wall-clock time limit in seconds.
    #[arg(long = "wall-time", value_name = "SECONDS")]
    wall_time: Option<String>,
    /// Memory limit (cgroup, swap off).
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Process/thread limit [default: 256].
    #[arg(long, value_name = "N")]
    pids: Option<String>,
    /// File size limit: writing more is OLE.
    #[arg(long, alias = "fsize", value_name = "SIZE")]
    output: Option<String>,
    /// Stack size limit.
    #[arg(long, value_name = "SIZE")]
    stack: Option<String>,
    /// Open file descriptor limit [default: 64].
    #[arg(long = "open-files", value_name = "N")]
    open_files: Option<String>,
    /// Size of the box when it is a fresh tmpfs (with --dir rules) [default: 64M].
    #[arg(long = "box-size", value_name = "SIZE")]
    box_size: Option<String>,
    /// Size of /tmp [default: 64M].
    #[arg(long = "tmp-size", value_name = "SIZE")]
    tmp_size: Option<String>,
    /// Show the host's whole root read-only, the current directory read-write at its own path
    /// (the view before the minimal one: weaker).
    #[arg(long = "host-root")]
    host_root: bool,
    /// CPUs the program may run on (like 0-1,3).
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,
    /// Mount rule INSIDE[=OUTSIDE][:rw|:ro|:noexec|:tmpfs] (repeatable; binds are read-only
    /// unless :rw, which is idmapped so the program may write; a relative OUTSIDE is the
    /// current directory's; nosuid and nodev, mounts below it included). Any rule makes the
    /// box a fresh tmpfs instead of the current directory.
    #[arg(long, value_name = "RULE")]
    dir: Vec<String>,
    /// User id inside [default: 65534].
    #[arg(long)]
    uid: Option<String>,
    /// Group id inside [default: 65534].
    #[arg(long)]
    gid: Option<String>,
    /// Set NAME=VALUE, or pass NAME from the caller's environment (repeatable).
    #[arg(short = 'E', long, value_name = "NAME[=VALUE]")]
    env: Vec<String>,
    /// Start from the caller's whole environment instead of a clean one.
    #[arg(long = "full-env")]
    full_env: bool,
    /// Program's standard input from FILE.
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,
    /// Program's standard output to FILE (created or truncated).
    #[arg(long, value_name = "FILE")]
    stdout: Option<PathBuf>,
    /// Program's standard error to FILE (created or truncated).
    #[arg(long, value_name = "FILE")]
    stderr: Option<PathBuf>,
    /// Working directory inside [default: /box].
    #[arg(long, value_name = "DIR")]
    chdir: Option<PathBuf>,
    /// Keep the host's network namespace.
    #[arg(long = "share-net")]
    share_net: bool,
    /// Write the verdict to FILE (instead of one line on stderr).
    #[arg(long, value_name = "FILE")]
    meta: Option<PathBuf>,
    /// Format of --meta: one JSON object, or isolate's key:value lines.
    #[arg(long = "meta-format", value_enum, default_value = "json")]
    meta_format: MetaFormat,
    /// Exit status convention.
    #[arg(long = "exit-status", value_enum, default_value = "husk")]
    exit_status: ExitStatus,
    /// Run the jobs of a JSON-lines file (one {"args": [...], ...} per line).
    #[arg(long, value_name = "JOBS.jsonl", conflicts_with = "command")]
    batch: Option<PathBuf>,
    /// Jobs run at once in batch mode [default: the number of CPUs].
    #[arg(long, value_name = "N", requires = "batch")]
    jobs: Option<usize>,
    /// The program and its arguments (after --).
    #[arg(trailing_var_arg = true, value_name = "CMD")]
    command: Vec<String>,
}

fn options(c: &SandboxCli) -> Result<Options, UsageError> {
    let mut o = Options {
        args: c.command.clone(),
        full_env: c.full_env,
        share_net: c.share_net,
        host_root: c.host_root,
        stdin: c.stdin.clone(),
        stdout: c.stdout.clone(),
        stderr: c.stderr.clone(),
        chdir: c.chdir.clone(),
        ..Options::default()
    };
    for (name, v) in [
        ("time", &c.time),
        ("extra-time", &c.extra_time),
        ("wall-time", &c.wall_time),
        ("memory", &c.memory),
        ("pids", &c.pids),
        ("output", &c.output),
        ("stack", &c.stack),
        ("open-files", &c.open_files),
        ("box-size", &c.box_size),
        ("tmp-size", &c.tmp_size),
        ("cpus", &c.cpus),
        ("uid", &c.uid),
        ("gid", &c.gid),
    ] {
        if let Some(v) = v {
            o.set(name, v)?;
        }
    }
    for d in &c.dir {
        o.set("dir", d)?;
    }
    for e in &c.env {
        o.set("env", e)?;
    }
    Ok(o)
}

/// `husk sandbox`'s own command line, for its man page and the completions (gendoc.rs).
#[cfg(feature = "gendoc")]
pub(crate) fn command() -> clap::Command {
    <SandboxCli as clap::CommandFactory>::command()
}

/// Everything after `husk sandbox`, parsed by [`main`] (not by husk's parser, whose usage
/// errors exit 1).
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct RawArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

/// Run `husk sandbox ARGS...`; returns the exit status.
pub fn main(raw: &[String]) -> i32 {
    let argv = std::iter::once("husk sandbox".to_string()).chain(raw.iter().cloned());
    let cli = match SandboxCli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    let usage = |e: UsageError| {
        eprintln!("husk sandbox: {e}");
        EXIT_USAGE
    };
    let o = match options(&cli) {
        Ok(o) => o,
        Err(e) => return usage(e),
    };
    if let Some(jobs) = &cli.batch {
        if let Err(e) = o.check_common() {
            return usage(e);
        }
        let n = cli.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        return match sandbox::batch::run_file(jobs, &o, n.max(1)) {
            Ok(s) if s.bad_lines > 0 => EXIT_USAGE,
            Ok(s) if s.not_ok > 0 && cli.exit_status == ExitStatus::Isolate => EXIT_NOT_OK,
            Ok(_) => EXIT_OK,
            Err(e) => {
                eprintln!("husk sandbox: {e}");
                EXIT_INTERNAL
            }
        };
    }
    if let Err(e) = o.check() {
        return usage(e);
    }
    let v = match sandbox::run_one(&o) {
        Ok(v) => v,
        Err(e) => return usage(e),
    };
    let written = match &cli.meta {
        Some(path) => {
            let text = match cli.meta_format {
                MetaFormat::Json => v.to_json() + "\n",
                MetaFormat::Isolate => v.to_isolate(),
            };
            std::fs::write(path, text).map_err(|e| format!("write --meta {path:?}: {e}"))
        }
        None => {
            let _ = writeln!(std::io::stderr(), "{}", v.human());
            Ok(())
        }
    };
    if let Err(e) = written {
        eprintln!("husk sandbox: {e}");
        return EXIT_INTERNAL;
    }
    if v.status == Status::XX {
        if cli.meta.is_some() {
            eprintln!("husk sandbox: {}", v.message);
        }
        return EXIT_INTERNAL;
    }
    if v.status != Status::OK && cli.exit_status == ExitStatus::Isolate {
        return EXIT_NOT_OK;
    }
    EXIT_OK
}
