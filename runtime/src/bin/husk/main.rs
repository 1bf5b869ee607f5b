//! `husk`: the runc-compatible command line over the husk-runtime library.

mod cgroup_cmds;
mod commands;
mod sandbox;

use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Root directory for the state of containers.
    #[arg(long, global = true, default_value = "/run/husk")]
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
    /// Accepted for compatibility with runc (checkpointing is not part of husk).
    #[arg(long, global = true, hide = true)]
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

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // runc exits 1 on bad usage; help and version are not errors.
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    if cli.version {
        print!("{}", version());
        return ExitCode::SUCCESS;
    }
    let format = match cli.log_format {
        LogFormat::Text => logging::Format::Text,
        LogFormat::Json => logging::Format::Json,
    };
    if let Err(e) = logging::init(cli.log.as_deref(), format, cli.debug) {
        // No log to write to: the error goes to stderr in the requested format.
        logging::fatal(&e.to_string());
        return ExitCode::from(1);
    }
    let Some(command) = &cli.command else {
        // runc without a command prints its help.
        let _ = Cli::command().print_help();
        return ExitCode::SUCCESS;
    };
    match commands::dispatch(&cli, command) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            logging::fatal(&format!("{e:#}"));
            ExitCode::from(1)
        }
    }
}
