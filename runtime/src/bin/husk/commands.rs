//! One function per command; each is a thin call into the library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use husk_runtime::container::{self, CreateOptions, ExecOptions};

use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container (it waits for `start` to run its process).
    Create(CreateArgs),
    /// Run the process of a created container.
    Start { id: String },
    /// Create and start a container; wait for it unless --detach.
    Run(RunArgs),
    /// Print the state of a container as JSON.
    State { id: String },
    /// List containers.
    List {
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Print only the ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Send a signal (default SIGTERM) to a container's init, or with --all to all its processes.
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a stopped container (any container with --force).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Run a new process in a running container.
    Exec(ExecArgs),
    /// Write a default config.json into the bundle.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long = "rootless", id = "spec_rootless")]
        rootless: bool,
    },
    /// Print the features of this runtime as JSON.
    Features,
    /// Freeze all processes of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List the processes of a container.
    Ps(crate::cgroup_cmds::PsArgs),
    /// Print container events and stats (OOM kills, resource usage).
    Events(crate::cgroup_cmds::EventsArgs),
    /// Change the resources of a running container.
    Update(crate::cgroup_cmds::UpdateArgs),
    /// Run a program under limits in a throw-away sandbox and report a verdict (see --help).
    Sandbox(crate::sandbox::RawArgs),
    /// Images: unpack to a bundle, inspect, pack a directory (`husk image --help`).
    #[command(disable_help_flag = true)]
    Image {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    id: String,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    create: CreateArgs,
    #[arg(short, long)]
    detach: bool,
    /// Keep the container's state after it exits.
    #[arg(long)]
    keep: bool,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    #[arg(long)]
    cwd: Option<PathBuf>,
    #[arg(short, long)]
    env: Vec<String>,
    #[arg(short, long)]
    tty: bool,
    /// UID[:GID]
    #[arg(short, long)]
    user: Option<String>,
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// A process.json to run instead of the command line.
    #[arg(short, long)]
    process: Option<PathBuf>,
    #[arg(short, long)]
    detach: bool,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "process-label")]
    process_label: Option<String>,
    #[arg(long)]
    apparmor: Option<String>,
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    #[arg(short, long)]
    cap: Vec<String>,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn create_options(cli: &Cli, a: &CreateArgs, start_barrier: bool) -> CreateOptions {
    CreateOptions {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        root: cli.root.clone(),
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
        listen_fds: listen_fds(),
        cgroup_manager: cli.cgroup_manager(),
        start_barrier,
        console_fd: None,
    }
}

/// Run the command; its error comes back as one message whose causes each appear once (an
/// error that prints its source and then the source itself would say everything twice).
pub fn dispatch(cli: &Cli) -> Result<i32> {
    run(cli).map_err(|e| {
        let mut s = String::new();
        for c in e.chain() {
            let t = c.to_string();
            if s.is_empty() {
                s = t;
            } else if !s.ends_with(&t) {
                s.push_str(": ");
                s.push_str(&t);
            }
        }
        anyhow::anyhow!(s)
    })
}

fn run(cli: &Cli) -> Result<i32> {
    let root = &cli.root;
    match &cli.command {
        Command::Create(a) => {
            container::create(create_options(cli, a, true))?;
        }
        Command::Start { id } => container::start(root, id)?,
        Command::Run(a) => {
            return Ok(container::run(
                create_options(cli, &a.create, true),
                a.detach,
                a.keep,
            )?)
        }
        Command::State { id } => {
            let c = container::load(root, id, false)?;
            println!("{}", serde_json::to_string_pretty(&c.to_json())?);
        }
        Command::List { format, quiet } => list(root, format, *quiet)?,
        Command::Kill { all, id, signal } => {
            let sig = container::parse_signal(signal)?;
            container::kill(root, id, sig, *all)?;
        }
        Command::Delete { force, id } => container::delete(root, id, *force)?,
        Command::Exec(a) => return exec(cli, a),
        Command::Image { args } => return image(args),
        Command::Spec { bundle, rootless } => {
            husk_runtime::spec::default::write(bundle, *rootless)?
        }
        Command::Pause { id } => container::pause(root, id)?,
        Command::Resume { id } => container::resume(root, id)?,
        Command::Ps(a) => crate::cgroup_cmds::ps(root, a)?,
        Command::Events(a) => crate::cgroup_cmds::events(root, a)?,
        Command::Update(a) => crate::cgroup_cmds::update(root, a)?,
        Command::Sandbox(a) => return Ok(crate::sandbox::main(&a.args)),
        Command::Features => println!(
            "{}",
            serde_json::to_string_pretty(&husk_runtime::features::features())?
        ),
    }
    Ok(0)
}

fn list(root: &std::path::Path, format: &str, quiet: bool) -> Result<()> {
    let all = container::list(root)?;
    // A container whose state can't be read is still listed (status "unknown"), and why goes
    // to stderr: it may still have processes and a cgroup, and `delete --force` removes it.
    for c in &all {
        if let container::Listed::Unreadable { id, error } = c {
            eprintln!(
                "husk list: container {id}: status unknown: {}",
                husk_runtime::init::chain(error)
            );
        }
    }
    if quiet {
        for c in &all {
            match c {
                container::Listed::Ok(c) => println!("{}", c.state.id),
                container::Listed::Unreadable { id, .. } => println!("{id}"),
            }
        }
        return Ok(());
    }
    if format == "json" {
        let v: Vec<_> = all
            .iter()
            .map(|c| match c {
                container::Listed::Ok(c) => c.to_json(),
                container::Listed::Unreadable { id, .. } => serde_json::json!({
                    "ociVersion": "",
                    "id": id,
                    "pid": 0,
                    "status": "unknown",
                    "bundle": "",
                    "rootfs": "",
                    "created": "0001-01-01T00:00:00Z",
                    "owner": "",
                }),
            })
            .collect();
        // runc prints a nil slice, "null", when there are no containers.
        if v.is_empty() {
            println!("null");
        } else {
            println!("{}", serde_json::to_string(&v)?);
        }
        return Ok(());
    }
    let rows: Vec<[String; 6]> = all
        .iter()
        .map(|c| match c {
            container::Listed::Ok(c) => {
                let pid = if c.status == container::Status::Stopped {
                    0
                } else {
                    c.state.pid
                };
                [
                    c.state.id.clone(),
                    pid.to_string(),
                    c.status.to_string(),
                    c.state.bundle.display().to_string(),
                    c.state.created.clone(),
                    c.state.owner.clone(),
                ]
            }
            container::Listed::Unreadable { id, .. } => [
                id.clone(),
                "0".into(),
                "unknown".into(),
                String::new(),
                String::new(),
                String::new(),
            ],
        })
        .collect();
    let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
    // runc's tabwriter: cells padded by 3, at least 12 wide; the last column unpadded.
    let mut width = [0usize; 6];
    for r in std::iter::once(&header).chain(rows.iter()) {
        for (i, cell) in r.iter().enumerate() {
            width[i] = width[i].max(cell.len() + 3).max(12);
        }
    }
    for r in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i == 5 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = width[i]));
            }
        }
        println!("{line}");
    }
    Ok(())
}

fn exec(cli: &Cli, a: &ExecArgs) -> Result<i32> {
    if a.process.is_none() && a.command.is_empty() {
        anyhow::bail!("exec: either --process or a command is required");
    }
    let opts = ExecOptions {
        process: a.process.clone(),
        args: a.command.clone(),
        tty: a.tty,
        console_socket: a.console_socket.clone(),
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        env: a.env.clone(),
        cwd: a.cwd.clone(),
        user: a.user.clone(),
        additional_gids: a.additional_gids.clone(),
        caps: a.cap.clone(),
        no_new_privs: a.no_new_privs,
        preserve_fds: a.preserve_fds,
        listen_fds: listen_fds(),
        apparmor: a.apparmor.clone(),
        process_label: a.process_label.clone(),
        ignore_paused: a.ignore_paused,
    };
    container::exec(&cli.root, &a.id, opts).with_context(|| format!("exec in container {}", a.id))
}

/// `husk image ...` is the `husk-image` binary next to this one (kept apart so the runtime
/// binary stays small); exec it with the same arguments.
fn image(args: &[String]) -> Result<i32> {
    use std::os::unix::process::CommandExt;
    let me = std::env::current_exe().context("find the husk binary")?;
    let bin = me.with_file_name("husk-image");
    let err = std::process::Command::new(&bin).args(args).exec();
    Err(anyhow::anyhow!("run {}: {err}", bin.display()))
}

/// How many socket-activation descriptors the caller handed over: `LISTEN_FDS`, honoured only
/// when `LISTEN_PID` names this process (sd_listen_fds(3); runc's activation.Files).
fn listen_fds() -> u32 {
    let pid = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok());
    if pid != Some(std::process::id()) {
        return 0;
    }
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
