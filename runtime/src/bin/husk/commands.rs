//! One function per command; each is a thin call into the library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use husk_runtime::container::{self, CreateOptions, ExecOptions};
use husk_runtime::signal::Sig;
use husk_runtime::state::StateError;

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
    /// Checkpoint a running container with CRIU (>= 4.1; --criu PATH).
    #[command(after_help = crate::checkpoint_cmds::HELP)]
    Checkpoint(crate::checkpoint_cmds::CheckpointArgs),
    /// Restore a container from a CRIU checkpoint.
    #[command(after_help = crate::checkpoint_cmds::HELP)]
    Restore(crate::checkpoint_cmds::RestoreArgs),
    /// Run a program under limits in a throw-away sandbox and report a verdict (see --help).
    Sandbox(crate::sandbox::RawArgs),
    /// Images: unpack to a bundle, inspect, pack a directory (`husk image --help`).
    #[command(disable_help_flag = true)]
    Image {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Write the man pages and shell completions into DIR (packaging only; see gendoc.rs).
    #[cfg(feature = "gendoc")]
    #[command(name = "__gendoc", hide = true)]
    Gendoc { dir: PathBuf },
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

pub fn dispatch(cli: &Cli, command: &Command) -> Result<i32> {
    let root = &cli.root;
    match command {
        Command::Create(a) => {
            debug_create("create", cli, a);
            container::create(create_options(cli, a, true))?;
            husk_runtime::logging::debug(&format!("container {} created", a.id));
        }
        Command::Start { id } => container::start(root, id)?,
        Command::Run(a) => {
            debug_create("run", cli, &a.create);
            return Ok(container::run(
                create_options(cli, &a.create, true),
                a.detach,
                a.keep,
            )?);
        }
        Command::State { id } => {
            let c = container::load(root, id, false)?;
            println!("{}", serde_json::to_string_pretty(&c.to_json())?);
        }
        Command::List { format, quiet } => list(root, format, *quiet)?,
        Command::Kill { all, id, signal } => {
            let sig = container::parse_signal(signal)?;
            match container::kill(root, id, sig, *all) {
                // runc: `kill --all` of a stopped container succeeds; whatever is left in its
                // cgroup (processes of a shared or host PID namespace) still gets the signal.
                Err(container::ContainerError::WrongStatus {
                    status: container::Status::Stopped,
                    ..
                }) if *all => kill_leftovers(root, id, sig)?,
                r => r?,
            }
        }
        Command::Delete { force, id } => match container::delete(root, id, *force) {
            // runc: `delete --force` of a container that does not exist succeeds, silently.
            Err(container::ContainerError::State(StateError::NotFound(_))) if *force => {}
            r => r?,
        },
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
        Command::Checkpoint(a) => return crate::checkpoint_cmds::checkpoint(cli, a),
        Command::Restore(a) => return crate::checkpoint_cmds::restore(cli, a),
        Command::Sandbox(a) => return Ok(crate::sandbox::main(&a.args)),
        #[cfg(feature = "gendoc")]
        Command::Gendoc { dir } => crate::gendoc::write(dir)?,
        Command::Features => println!(
            "{}",
            serde_json::to_string_pretty(&husk_runtime::features::features())?
        ),
    }
    Ok(0)
}

/// The debug lines of the create path (`--debug`), as runc's tell what it is about to do.
fn debug_create(verb: &str, cli: &Cli, a: &CreateArgs) {
    if !husk_runtime::logging::debug_enabled() {
        return;
    }
    husk_runtime::logging::debug(&format!(
        "{verb}: container {} from bundle {} (root {}, cgroup manager {:?}, console socket {}, pid file {})",
        a.id,
        a.bundle.display(),
        cli.root.display(),
        cli.cgroup_manager(),
        a.console_socket.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "none".into()),
        a.pid_file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "none".into()),
    ));
}

/// The processes still in a stopped container's cgroup get the signal (`kill --all`).
fn kill_leftovers(root: &std::path::Path, id: &str, sig: Sig) -> Result<()> {
    container::kill_leftovers(root, id, sig)
        .with_context(|| format!("signal the processes left in container {id}"))
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
    match container::exec(&cli.root, &a.id, opts) {
        // As runc: a process that could not be started in the container (its program not
        // found or not runnable, its set-up refused) makes `exec` exit 255, so engines tell it
        // from the program's own status; a failed execve itself is the process's exit 1.
        Err(container::ContainerError::Process(husk_runtime::process::ProcessError::Init(f))) => {
            husk_runtime::logging::fatal(&format!(
                "exec in container {}: exec failed: unable to start container process: {}",
                a.id, f.message
            ));
            Ok(if f.step == "exec" { 1 } else { 255 })
        }
        r => r.with_context(|| format!("exec in container {}", a.id)),
    }
}

/// `husk image ...` is the `husk-image` binary (kept apart so the runtime binary stays small):
/// exec it with the same arguments, from husk's own directory, else from PATH.
fn image(args: &[String]) -> Result<i32> {
    use std::os::unix::process::CommandExt;
    let bin = find_image_helper()?;
    let err = std::process::Command::new(&bin).args(args).exec();
    Err(anyhow::anyhow!("husk image: run {}: {err}", bin.display()))
}

const IMAGE_HELPER: &str = "husk-image";

/// The `husk-image` next to the running husk (`/proc/self/exe`, so a symlinked husk looks
/// beside its target), else the first executable `husk-image` on PATH. The error names every
/// place looked at.
fn find_image_helper() -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let beside = std::env::current_exe()
        .ok()
        .map(|me| me.with_file_name(IMAGE_HELPER));
    if let Some(b) = beside.as_deref().filter(|b| executable(b)) {
        return Ok(b.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(IMAGE_HELPER))
        .find(|p| executable(p))
    {
        return Ok(found);
    }
    let beside = beside.map_or_else(
        || "(the husk binary's own path is unknown)".to_string(),
        |b| b.display().to_string(),
    );
    anyhow::bail!(
        "husk image needs the {IMAGE_HELPER} binary: not found at {beside} (beside husk) nor in \
         PATH ({}); install it next to husk (the Debian package and `cargo install --path images` \
         do) or on PATH",
        path.to_string_lossy()
    )
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
