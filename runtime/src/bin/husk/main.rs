//! `husk`: the runc-compatible command line over the husk-runtime library.
// The entry point is our own `main` (see `main` below); the unit tests keep the harness's.
#![cfg_attr(not(test), no_main)]

mod cgroup_cmds;
mod checkpoint_cmds;
mod commands;
#[cfg(feature = "gendoc")]
mod gendoc;
mod sandbox;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, ValueEnum};
use husk_runtime::logging;

#[derive(Parser, Debug)]
#[command(
    name = "husk",
    disable_version_flag = true,
    about = "husk: a fast, runc-compatible OCI container runtime"
)]
pub struct Cli {
    /// Print the version, commit, runtime-spec version and seccomp support (as runc -v).
    #[arg(short = 'v', long = "version", visible_short_alias = 'V')]
    version: bool,
    /// Root directory for the state of containers [default: /run/husk; for a non-root user
    /// with XDG_RUNTIME_DIR set, $XDG_RUNTIME_DIR/husk, as runc's rootless mode]
    #[arg(long = "root", global = true, value_name = "ROOT")]
    root_arg: Option<PathBuf>,
    /// The state root in effect (see `root_arg`).
    #[arg(skip)]
    root: PathBuf,
    /// Log file (errors also go to stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Write debug lines to the log.
    #[arg(long, global = true)]
    debug: bool,
    /// Manage cgroups through systemd (cgroupsPath is slice:prefix:name).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Cgroup manager, as crun's flag: cgroupfs, systemd (= --systemd-cgroup), or disabled
    /// (no cgroup of the container's own; refused when linux.resources sets limits).
    #[arg(
        long = "cgroup-manager",
        global = true,
        value_enum,
        conflicts_with = "systemd_cgroup"
    )]
    cgroup_manager: Option<CgroupManagerArg>,
    /// Accepted for compatibility: rootless mode is detected from the caller's uid.
    #[arg(long, num_args = 0..=1, default_missing_value = "auto")]
    rootless: Option<String>,
    /// CRIU binary for checkpoint/restore (else $HUSK_CRIU, criu on PATH, /opt/criu/sbin/criu).
    #[arg(long, global = true)]
    criu: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<commands::Command>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum CgroupManagerArg {
    Cgroupfs,
    Systemd,
    Disabled,
}

/// `--root`, else `$XDG_RUNTIME_DIR/husk` for a rootless caller (runc's rootless default), else
/// /run/husk (where a non-root user gets a clear permission error).
fn state_root(given: Option<PathBuf>) -> PathBuf {
    if let Some(r) = given {
        return r;
    }
    // runc's shouldHonorXDGRuntimeDir: a non-root user, or root of a user namespace that is
    // not the real root (rootless podman runs its runtime so, with USER still the user's).
    let honour_xdg = !nix::unistd::geteuid().is_root()
        || (husk_runtime::sys::in_user_namespace()
            && std::env::var_os("USER").is_none_or(|u| u != "root"));
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty()) {
        Some(x) if honour_xdg => PathBuf::from(x).join("husk"),
        _ => PathBuf::from("/run/husk"),
    }
}

impl Cli {
    fn cgroup_manager(&self) -> husk_runtime::container::CgroupManager {
        use husk_runtime::container::CgroupManager as M;
        match (self.cgroup_manager, self.systemd_cgroup) {
            (Some(CgroupManagerArg::Disabled), _) => M::Disabled,
            (Some(CgroupManagerArg::Systemd), _) | (None, true) => M::Systemd,
            _ => M::Cgroupfs,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// `husk --version`, shaped like runc's (`runc version`, `commit:`, `spec:`, `go:`,
/// `libseccomp:`): husk has no libseccomp, its seccomp filters come from its own compiler.
fn version() -> String {
    let archs = husk_runtime::features::SECCOMP_ARCHS
        .iter()
        .map(|a| a.trim_start_matches("SCMP_ARCH_").to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "husk version {}\ncommit: {}\nspec: {}\nrustc: {}\nseccomp: built-in BPF compiler, no libseccomp (architectures: {})\n",
        env!("CARGO_PKG_VERSION"),
        env!("HUSK_COMMIT"),
        husk_runtime::spec::default::OCI_VERSION,
        env!("HUSK_RUSTC").trim_start_matches("rustc "),
        if archs.is_empty() { "none" } else { &archs },
    )
}

/// musl's malloc returns memory to the kernel eagerly and takes a lock for every call: a
/// sandboxed run of /bin/true made 47 mmap and 29 munmap calls, and its parse and plan took
/// twice as long as with glibc's. dlmalloc (Doug Lea's allocator, from which glibc's descends,
/// in Rust) is the allocator of the `husk` binary built for musl (.cargo/config.toml), as of
/// `husk-image`; the shim, an idle process, keeps the C library's.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// The process's entry, called by the C runtime in place of std's. std's start-up finds the
/// main thread's stack guard by reading and parsing /proc/self/maps (glibc's
/// pthread_getattr_np), and maps an alternate signal stack for its stack-overflow message:
/// about twenty system calls and a walk of the address space before every husk command, a
/// twentieth of a millisecond on this kind of host, and all for the wording of a crash. What
/// of it husk relies on is kept: SIGPIPE ignored (a write to a closed pipe is an EPIPE error,
/// not a silent death) and descriptors 0-2 open (a file husk opens must not become a stdio
/// descriptor). The arguments are taken from `argv` here: on musl std fills `std::env::args`
/// only in its own start-up (the environment, read from `environ`, needs nothing). `exit`
/// flushes std's stdout as a return from std's main would.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    start_up();
    // A panic (there should be none) ends the process that panicked, whichever fork of husk
    // it is: see `sys::abort_self`.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        husk_runtime::sys::abort_self()
    }));
    std::process::exit(husk_main(args(argc, argv)).into())
}

/// The command line from the C runtime's `argv` (std fills `std::env::args` only from its own
/// start-up on some C libraries, which `main` replaces).
#[cfg(not(test))]
fn args(argc: libc::c_int, argv: *const *const libc::c_char) -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    (0..argc.max(0) as usize)
        .map(|i| {
            // SAFETY: the C runtime passes argc valid, NUL-terminated strings in argv, which
            // live as long as the process.
            let a = unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) };
            std::ffi::OsStr::from_bytes(a.to_bytes()).to_os_string()
        })
        .collect()
}

/// The part of std's start-up husk relies on (see `main`).
#[cfg(not(test))]
fn start_up() {
    // SAFETY: SIG_IGN for SIGPIPE installs no handler; nothing else runs yet.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll reads and writes the three pollfd entries of the live array.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
    for p in fds.iter() {
        // POLLNVAL: not open (when poll itself failed, check each).
        let closed = if polled < 0 {
            // SAFETY: F_GETFD only reads the descriptor's flags.
            let flags = unsafe { libc::fcntl(p.fd, libc::F_GETFD) };
            flags < 0
        } else {
            p.revents & libc::POLLNVAL != 0
        };
        if closed {
            // SAFETY: open of a constant path; the lowest free descriptor is the closed one.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if fd != p.fd {
                // As std: a process that can't have its stdio is not started.
                std::process::abort();
            }
        }
    }
}

/// The command's exit status (0-255).
// Unused by the unit tests' build, whose harness has its own main.
#[cfg_attr(test, allow(dead_code))]
fn husk_main(args: Vec<std::ffi::OsString>) -> u8 {
    // `husk sandbox ...` goes straight to its own parser: husk's whole command tree (every
    // runc command and flag) costs a fifth of a millisecond to build, a twentieth of a
    // sandboxed run. With global flags before it, it takes the common path below.
    // (A non-UTF-8 argument takes it too, for clap's error.)
    let mut argv = args.iter().cloned();
    if argv.nth(1).is_some_and(|a| a == "sandbox") {
        if let Ok(rest) = argv.map(|a| a.into_string()).collect::<Result<Vec<_>, _>>() {
            return sandbox::main(&rest).clamp(0, 255) as u8;
        }
    }
    // go-runc (containerd's runc shim) passes `restore -no-subreaper`, Go flag style, which
    // urfave/cli accepts and clap does not.
    let args = args.into_iter().map(|a| {
        if a == "-no-subreaper" {
            "--no-subreaper".into()
        } else {
            a
        }
    });
    let cli = match Cli::try_parse_from(args) {
        Ok(mut c) => {
            c.root = state_root(c.root_arg.clone());
            c
        }
        Err(e) => {
            let _ = e.print();
            // runc exits 1 on bad usage; help and version are not errors.
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    if cli.version {
        print!("{}", version());
        return 0;
    }
    let format = match cli.log_format {
        LogFormat::Text => logging::Format::Text,
        LogFormat::Json => logging::Format::Json,
    };
    if let Err(e) = logging::init(cli.log.as_deref(), format, cli.debug) {
        // No log to write to: the error goes to stderr in the requested format.
        logging::fatal(&e.to_string());
        return 1;
    }
    let Some(command) = &cli.command else {
        // runc without a command prints its help.
        let _ = Cli::command().print_help();
        return 0;
    };
    match commands::dispatch(&cli, command) {
        Ok(code) => code.clamp(0, 255) as u8,
        Err(e) => {
            // Each layer once: a layer whose text already ends the message (an error that
            // prints its source itself) is not repeated.
            let mut msg = String::new();
            for layer in e.chain().map(|l| l.to_string()) {
                if !msg.ends_with(&layer) {
                    if !msg.is_empty() {
                        msg.push_str(": ");
                    }
                    msg.push_str(&layer);
                }
            }
            if cli.root_arg.is_none()
                && cli.root == std::path::Path::new("/run/husk")
                && !nix::unistd::geteuid().is_root()
                && msg.contains("Permission denied")
            {
                msg.push_str(
                    " (husk keeps state in /run/husk; as a non-root user set XDG_RUNTIME_DIR \
                     or pass --root DIR)",
                );
            }
            logging::fatal(&msg);
            1
        }
    }
}
