//! The task service (containerd.task.v2.Task): one shim serves one container, or every
//! container of a pod when they share a shim.
//!
//! State lives in one map behind a std mutex that is never held across an `.await`; runtime
//! commands run between two short critical sections, so a process can exit while its `Start`
//! is in flight and each section re-checks what it found.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim_protos::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PauseRequest,
    PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest,
    StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest,
    WaitRequest, WaitResponse,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{MessageField, MessageFull};
use containerd_shim_protos::shim::oci::ProcessDetails;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::ttrpc::r#async::TtrpcContext;
use containerd_shim_protos::ttrpc::{self, Code};
use containerd_shim_protos::types::task::ProcessInfo;
use tokio::task::JoinHandle;

use crate::cgroup::{Located, OomWatch};
use crate::events::Events;
use crate::io::{self, ConsoleSocket, Held, Paths};
use crate::options::Options;
use crate::process::{Exit, Process, Status};
use crate::reaper::Reaper;
use crate::runtime::{ChildStdio, CreateArgs, ExecArgs, Runtime, RuntimeError};

type TtrpcResult<T> = ttrpc::Result<T>;

fn status(code: Code, msg: impl std::fmt::Display) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.to_string()))
}

/// An error and its sources joined with ": ", the way containerd prints runc's.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn unknown(e: &dyn std::error::Error) -> ttrpc::Error {
    status(Code::UNKNOWN, chain(e))
}

/// Runtime failures that mean "that process is gone" map to NotFound, as containerd expects
/// for a kill of a finished process.
fn runtime_error(e: RuntimeError) -> ttrpc::Error {
    let msg = chain(&e);
    let gone = [
        "not running",
        "does not exist",
        "no such process",
        "not found",
    ];
    if gone.iter().any(|g| msg.to_lowercase().contains(g)) {
        status(Code::NOT_FOUND, msg)
    } else {
        status(Code::UNKNOWN, msg)
    }
}

/// Identifiers become file names in the bundle: no separators, no dot names.
fn check_id(what: &str, id: &str) -> TtrpcResult<()> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        return Err(status(
            Code::INVALID_ARGUMENT,
            format!("invalid {what} {id:?}"),
        ));
    }
    Ok(())
}

struct Container {
    bundle: PathBuf,
    runtime: Runtime,
    init: Process,
    execs: HashMap<String, Process>,
    cgroup: Option<Located>,
    oom: Option<JoinHandle<()>>,
    rootfs_mounted: bool,
    /// Restored from a checkpoint at create: running already, `start` only reports it.
    restored: bool,
    /// The init does not own its PID namespace (the host's, or a pod's shared one): when it
    /// exits the kernel kills nothing else, so the shim does (containerd-shim-runc-v2's
    /// ShouldKillAllOnExit).
    kill_all_on_exit: bool,
}

impl Container {
    fn process(&mut self, id: &str, exec_id: &str) -> TtrpcResult<&mut Process> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        self.execs.get_mut(exec_id).ok_or_else(|| {
            status(
                Code::NOT_FOUND,
                format!("exec {exec_id:?} not found in container {id:?}"),
            )
        })
    }
}

struct Shared {
    containers: Mutex<HashMap<String, Container>>,
    /// Ids whose `Create` is in flight, so a second create of the same id fails at once.
    creating: Mutex<Vec<String>>,
    events: Events,
    reaper: Arc<Reaper>,
    namespace: String,
    exit: Arc<ExitSignal>,
}

pub struct TaskService {
    s: Arc<Shared>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Container>> {
        self.containers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn with<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Container) -> TtrpcResult<T>,
    ) -> TtrpcResult<T> {
        let mut map = self.lock();
        let c = map
            .get_mut(id)
            .ok_or_else(|| status(Code::NOT_FOUND, format!("container {id:?} not found")))?;
        f(c)
    }

    /// Watches `pid` through the reaper and records its exit (then publishes TaskExit).
    fn watch_exit(self: &Arc<Self>, id: &str, exec_id: &str, pid: i32) {
        let rx = self.reaper.watch(pid);
        let (s, id, exec_id) = (self.clone(), id.to_string(), exec_id.to_string());
        tokio::spawn(async move {
            let code = rx.await.unwrap_or(255);
            s.exited(&id, &exec_id, pid, code).await;
        });
    }

    async fn exited(&self, id: &str, exec_id: &str, pid: i32, code: i32) {
        if exec_id.is_empty() {
            let kill_all = self
                .with(id, |c| Ok(c.kill_all_on_exit.then(|| c.runtime.clone())))
                .ok()
                .flatten();
            if let Some(runtime) = kill_all {
                // Before the exit is announced, as runc's shim: whoever waits for the container
                // then finds none of its processes left.
                if let Err(e) = runtime.kill(id, libc::SIGKILL as u32, true).await {
                    log::warn!(
                        "container {id}: kill the rest after its init exited: {}",
                        chain(&e)
                    );
                }
            }
        }
        let copies = self
            .with(id, |c| Ok(c.process(id, exec_id)?.io.wait_for_copies()))
            .unwrap_or_default();
        // A terminal's last output is read before the exit is announced.
        io::drain(copies).await;
        let Ok(exit) = self.with(id, |c| Ok(c.process(id, exec_id)?.set_exited(code))) else {
            return;
        };
        let process_id = if exec_id.is_empty() { id } else { exec_id };
        self.events
            .exit(id, process_id, u32::try_from(pid).unwrap_or(0), exit)
            .await;
    }

    fn watch_oom(
        self: &Arc<Self>,
        id: &str,
        located: &Located,
        pid: i32,
    ) -> Option<JoinHandle<()>> {
        let mut w = match OomWatch::new(located, pid) {
            Ok(w) => w,
            Err(e) => {
                log::warn!("container {id}: no OOM events: {}", chain(&e));
                return None;
            }
        };
        let (s, id) = (self.clone(), id.to_string());
        Some(tokio::spawn(async move {
            while w.next().await.is_some() {
                s.events.oom(&id).await;
            }
        }))
    }
}

impl TaskService {
    pub fn new(
        namespace: &str,
        exit: Arc<ExitSignal>,
        events: Events,
        reaper: Arc<Reaper>,
    ) -> Self {
        TaskService {
            s: Arc::new(Shared {
                containers: Mutex::new(HashMap::new()),
                creating: Mutex::new(Vec::new()),
                events,
                reaper,
                namespace: namespace.to_string(),
                exit,
            }),
        }
    }

    /// Create's body; the caller releases the id reservation whatever happens.
    async fn create_container(&self, req: &CreateTaskRequest) -> TtrpcResult<u32> {
        let id = req.id.as_str();
        let bundle = PathBuf::from(&req.bundle);
        let opts = Options::from_any(req.options.as_ref(), &self.s.namespace)
            .map_err(|e| status(Code::INVALID_ARGUMENT, chain(&e)))?;
        if !bundle.join("config.json").is_file() {
            return Err(status(
                Code::INVALID_ARGUMENT,
                format!("bundle {} has no config.json", bundle.display()),
            ));
        }
        opts.save(&bundle).map_err(|e| unknown(&e))?;
        let kill_all_on_exit = shares_pid_namespace(&bundle.join("config.json"));
        let rootfs_mounted = mount_rootfs(req, &bundle)?;
        let runtime = Runtime::new(opts, self.s.reaper.clone());
        let paths = Paths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let pid_file = bundle.join("init.pid");
        let image = PathBuf::from(&req.checkpoint);
        let restored = !req.checkpoint.is_empty();
        let launch = if restored {
            Launch::Restore {
                id,
                bundle: &bundle,
                pid_file: &pid_file,
                image: &image,
            }
        } else {
            Launch::Create {
                id,
                bundle: &bundle,
                pid_file: &pid_file,
            }
        };
        let started = start_process(&runtime, &paths, &launch).await;
        let (pid, held) = match started {
            Ok(v) => v,
            Err(e) => {
                // Nothing may stay behind: not the runtime's state, not the rootfs mount.
                let _ = runtime.delete(id, true).await;
                if rootfs_mounted {
                    unmount_rootfs(&bundle);
                }
                return Err(e);
            }
        };
        let mut init = Process::new("", paths.clone());
        init.pid = u32::try_from(pid).unwrap_or(0);
        init.io = held;
        if restored {
            init.status = Status::Running;
        }
        let cgroup = Located::of(pid).ok();
        let oom = cgroup.as_ref().and_then(|l| self.s.watch_oom(id, l, pid));
        self.s.lock().insert(
            id.to_string(),
            Container {
                bundle: bundle.clone(),
                runtime,
                init,
                execs: HashMap::new(),
                cgroup,
                oom,
                rootfs_mounted,
                restored,
                kill_all_on_exit,
            },
        );
        self.s.watch_exit(id, "", pid);
        self.s
            .events
            .create(id, &req.bundle, &paths, u32::try_from(pid).unwrap_or(0))
            .await;
        Ok(u32::try_from(pid).unwrap_or(0))
    }

    async fn start_exec(&self, id: &str, exec_id: &str) -> TtrpcResult<u32> {
        let (runtime, bundle, paths, spec) = self.s.with(id, |c| {
            let (runtime, bundle) = (c.runtime.clone(), c.bundle.clone());
            let p = c.process(id, exec_id)?;
            if p.status != Status::Created || p.pid != 0 {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("exec {exec_id:?} of container {id:?} was already started"),
                ));
            }
            let spec = p.spec.clone().ok_or_else(|| {
                status(
                    Code::FAILED_PRECONDITION,
                    format!("exec {exec_id:?} has no process spec"),
                )
            })?;
            Ok((runtime, bundle, p.paths.clone(), spec))
        })?;
        let pid_file = bundle.join(format!("{exec_id}.pid"));
        let log = bundle.join(format!("{exec_id}.log.json"));
        let launch = Launch::Exec {
            id,
            process: &spec,
            pid_file: &pid_file,
            log: &log,
        };
        let started = start_process(&runtime, &paths, &launch).await;
        for f in [&pid_file, &log, &spec] {
            let _ = std::fs::remove_file(f);
        }
        let (pid, held) = match started {
            Ok(v) => v,
            Err(e) => {
                // The exec never ran: it is stopped, and a Wait on it returns.
                let _ = self
                    .s
                    .with(id, |c| Ok(c.process(id, exec_id)?.set_exited(255)));
                return Err(e);
            }
        };
        let upid = u32::try_from(pid).unwrap_or(0);
        self.s.with(id, |c| {
            let p = c.process(id, exec_id)?;
            p.pid = upid;
            p.io = held;
            if p.status == Status::Created {
                p.status = Status::Running;
            }
            Ok(())
        })?;
        self.s.watch_exit(id, exec_id, pid);
        self.s.events.exec_started(id, exec_id, upid).await;
        Ok(upid)
    }
}

/// Whether the container's init shares a PID namespace it does not own: config.json has no
/// `pid` namespace (the host's) or joins one by path (a pod's). An unreadable config counts as
/// shared, the safe side: the kill then finds nothing to kill.
fn shares_pid_namespace(config: &Path) -> bool {
    let Ok(text) = std::fs::read(config) else {
        return true;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return true;
    };
    let pid = v["linux"]["namespaces"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["type"] == "pid"));
    match pid {
        None => true,
        Some(n) => n["path"].as_str().is_some_and(|p| !p.is_empty()),
    }
}

/// What to start: the init (`create`) or an exec (`exec --detach`).
enum Launch<'a> {
    Create {
        id: &'a str,
        bundle: &'a Path,
        pid_file: &'a Path,
    },
    Exec {
        id: &'a str,
        process: &'a Path,
        pid_file: &'a Path,
        log: &'a Path,
    },
    Restore {
        id: &'a str,
        bundle: &'a Path,
        pid_file: &'a Path,
        image: &'a Path,
    },
}

async fn launch(
    runtime: &Runtime,
    l: &Launch<'_>,
    stdio: ChildStdio,
    console_socket: Option<&Path>,
) -> Result<i32, RuntimeError> {
    match *l {
        Launch::Create {
            id,
            bundle,
            pid_file,
        } => {
            let a = CreateArgs {
                id,
                bundle,
                pid_file,
                console_socket,
            };
            runtime.create(a, stdio).await
        }
        Launch::Restore {
            id,
            bundle,
            pid_file,
            image,
        } => {
            let a = crate::checkpoint::RestoreArgs {
                id,
                bundle,
                pid_file,
                console_socket,
                image,
            };
            runtime.restore(a, stdio).await
        }
        Launch::Exec {
            id,
            process,
            pid_file,
            log,
        } => {
            let a = ExecArgs {
                id,
                process,
                pid_file,
                console_socket,
                log,
            };
            runtime.exec(a, stdio).await
        }
    }
}

/// Opens stdio (direct fifos, or a console socket for a terminal), runs the runtime command
/// with it, and returns the new pid with what the shim holds for its stdio.
async fn start_process(
    runtime: &Runtime,
    paths: &Paths,
    l: &Launch<'_>,
) -> TtrpcResult<(i32, Held)> {
    let ready = io::wait_for_readers(paths).await;
    if !paths.terminal {
        let (stdio, held) =
            io::open_direct(paths, ready).map_err(|e| status(Code::INVALID_ARGUMENT, chain(&e)))?;
        let pid = launch(runtime, l, stdio, None)
            .await
            .map_err(runtime_error)?;
        return Ok((pid, held));
    }
    let console = ConsoleSocket::new().map_err(|e| unknown(&e))?;
    let created = launch(runtime, l, ChildStdio::default(), Some(&console.path));
    tokio::pin!(created);
    let (pid, master) = tokio::select! {
        m = console.receive() => (created.await, Some(m)),
        r = &mut created => (r, None),
    };
    let pid = pid.map_err(runtime_error)?;
    let master = match master {
        Some(m) => m,
        // The runtime finished first; its connection waits in the backlog.
        None => tokio::time::timeout(Duration::from_secs(5), console.receive())
            .await
            .unwrap_or_else(|_| {
                Err(io::IoError::Receive {
                    path: console.path.clone(),
                    source: std::io::Error::other("the runtime sent no terminal"),
                })
            }),
    }
    .map_err(|e| unknown(&e))?;
    let held = io::attach_console(master, paths).map_err(|e| unknown(&e))?;
    // The copy task's own ends hold the fifos from here on.
    drop(ready);
    Ok((pid, held))
}

fn mount_rootfs(req: &CreateTaskRequest, bundle: &Path) -> TtrpcResult<bool> {
    if req.rootfs.is_empty() {
        return Ok(false);
    }
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs)
        .map_err(|e| status(Code::UNKNOWN, format!("create {}: {e}", rootfs.display())))?;
    for m in &req.rootfs {
        let typ = (!m.type_.is_empty()).then_some(m.type_.as_str());
        let src = (!m.source.is_empty()).then_some(m.source.as_str());
        if let Err(e) = containerd_shim::mount::mount_rootfs(typ, src, &m.options, &rootfs) {
            unmount_rootfs(bundle);
            return Err(status(
                Code::UNKNOWN,
                format!(
                    "mount {} {} on {}: {e}",
                    m.type_,
                    m.source,
                    rootfs.display()
                ),
            ));
        }
    }
    Ok(true)
}

pub fn unmount_rootfs(bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    if let Err(e) = containerd_shim::mount::umount_recursive(rootfs.to_str(), libc::MNT_DETACH) {
        log::warn!("unmount {}: {e}", rootfs.display());
    }
}

fn process_state(id: &str, bundle: &Path, p: &Process) -> StateResponse {
    let exit = p.exit();
    StateResponse {
        id: if p.exec_id.is_empty() {
            id.to_string()
        } else {
            p.exec_id.clone()
        },
        bundle: bundle.display().to_string(),
        pid: p.pid,
        status: p.status.to_proto().into(),
        stdin: p.paths.stdin.clone(),
        stdout: p.paths.stdout.clone(),
        stderr: p.paths.stderr.clone(),
        terminal: p.paths.terminal,
        exit_status: exit.map(|e| e.status).unwrap_or(0),
        exited_at: exit
            .map(|e| MessageField::some(e.timestamp()))
            .unwrap_or_default(),
        exec_id: p.exec_id.clone(),
        ..Default::default()
    }
}

fn pack<M: MessageFull>(m: &M) -> TtrpcResult<Any> {
    Ok(Any {
        type_url: M::descriptor().full_name().to_string(),
        value: m
            .write_to_bytes()
            .map_err(|e| status(Code::INTERNAL, format!("encode {}: {e}", M::NAME)))?,
        ..Default::default()
    })
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        check_id("container id", &req.id)?;
        {
            let mut creating = self
                .s
                .creating
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if creating.contains(&req.id) || self.s.lock().contains_key(&req.id) {
                return Err(status(
                    Code::ALREADY_EXISTS,
                    format!("container {:?} already exists", req.id),
                ));
            }
            creating.push(req.id.clone());
        }
        let r = self.create_container(&req).await;
        self.s
            .creating
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|i| i != &req.id);
        Ok(CreateTaskResponse {
            pid: r?,
            ..Default::default()
        })
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let id = req.id.as_str();
        let pid = if req.exec_id.is_empty() {
            let (runtime, pid) = self.s.with(id, |c| {
                if c.restored && c.init.status == Status::Running {
                    return Ok((None, c.init.pid));
                }
                if c.init.status != Status::Created {
                    return Err(status(
                        Code::FAILED_PRECONDITION,
                        format!("container {id:?} is not created (it was started or it exited)"),
                    ));
                }
                Ok((Some(c.runtime.clone()), c.init.pid))
            })?;
            if let Some(runtime) = runtime {
                runtime.start(id).await.map_err(runtime_error)?;
            }
            self.s.with(id, |c| {
                if c.init.status == Status::Created {
                    c.init.status = Status::Running;
                }
                Ok(())
            })?;
            self.s.events.start(id, pid).await;
            pid
        } else {
            self.start_exec(id, &req.exec_id).await?
        };
        crate::memory::trim_soon();
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        self.s.with(&req.id, |c| {
            let bundle = c.bundle.clone();
            let p = c.process(&req.id, &req.exec_id)?;
            Ok(process_state(&req.id, &bundle, p))
        })
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let id = req.id.as_str();
        let unread = self
            .s
            .with(id, |c| Ok(c.process(id, &req.exec_id)?.io.take_unread()))
            .unwrap_or_default();
        io::drained(unread).await;
        if !req.exec_id.is_empty() {
            return self.s.with(id, |c| {
                let p = c.process(id, &req.exec_id)?;
                if matches!(p.status, Status::Running | Status::Paused) {
                    return Err(status(
                        Code::FAILED_PRECONDITION,
                        format!(
                            "exec {:?} of container {id:?} is still running",
                            req.exec_id
                        ),
                    ));
                }
                let (pid, exit) = (p.pid, p.exit().unwrap_or(Exit::now(0)));
                if let Some(spec) = &p.spec {
                    let _ = std::fs::remove_file(spec);
                }
                c.execs.remove(&req.exec_id);
                Ok(DeleteResponse {
                    pid,
                    exit_status: exit.status,
                    exited_at: MessageField::some(exit.timestamp()),
                    ..Default::default()
                })
            });
        }
        let runtime = self.s.with(id, |c| {
            if matches!(c.init.status, Status::Running | Status::Paused) {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("container {id:?} is still running: kill it first"),
                ));
            }
            Ok(c.runtime.clone())
        })?;
        if let Err(e) = runtime.delete(id, true).await {
            log::warn!("{}", chain(&e));
        }
        let Some(c) = self.s.lock().remove(id) else {
            return Err(status(
                Code::NOT_FOUND,
                format!("container {id:?} not found"),
            ));
        };
        if let Some(h) = &c.oom {
            h.abort();
        }
        if c.rootfs_mounted {
            unmount_rootfs(&c.bundle);
        }
        // Deleted before it ran: the runtime killed the init.
        let exit = c.init.exit().unwrap_or(Exit::now(128 + libc::SIGKILL));
        self.s.events.delete(id, c.init.pid, exit).await;
        Ok(DeleteResponse {
            pid: c.init.pid,
            exit_status: exit.status,
            exited_at: MessageField::some(exit.timestamp()),
            ..Default::default()
        })
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let (pids, execs) = self.s.with(&req.id, |c| {
            let pids = match &c.cgroup {
                Some(l) => l.pids().map_err(|e| unknown(&e))?,
                None => vec![c.init.pid],
            };
            let execs: HashMap<u32, String> = c
                .execs
                .values()
                .filter(|p| p.pid != 0)
                .map(|p| (p.pid, p.exec_id.clone()))
                .collect();
            Ok((pids, execs))
        })?;
        let mut processes = Vec::with_capacity(pids.len());
        for pid in pids {
            let info = match execs.get(&pid) {
                Some(exec_id) => MessageField::some(pack(&ProcessDetails {
                    exec_id: exec_id.clone(),
                    ..Default::default()
                })?),
                None => MessageField::none(),
            };
            processes.push(ProcessInfo {
                pid,
                info,
                ..Default::default()
            });
        }
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        let runtime = self.s.with(&req.id, |c| Ok(c.runtime.clone()))?;
        runtime.pause(&req.id).await.map_err(runtime_error)?;
        self.s.with(&req.id, |c| {
            if c.init.status == Status::Running {
                c.init.status = Status::Paused;
            }
            Ok(())
        })?;
        self.s.events.paused(&req.id).await;
        Ok(Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        let runtime = self.s.with(&req.id, |c| Ok(c.runtime.clone()))?;
        runtime.resume(&req.id).await.map_err(runtime_error)?;
        self.s.with(&req.id, |c| {
            if c.init.status == Status::Paused {
                c.init.status = Status::Running;
            }
            Ok(())
        })?;
        self.s.events.resumed(&req.id).await;
        Ok(Empty::new())
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        req: containerd_shim_protos::api::CheckpointTaskRequest,
    ) -> TtrpcResult<Empty> {
        let (runtime, bundle) = self
            .s
            .with(&req.id, |c| Ok((c.runtime.clone(), c.bundle.clone())))?;
        crate::checkpoint::task(&runtime, &bundle, &req)
            .await
            .map_err(|e| status(Code::UNKNOWN, e))?;
        Ok(Empty::new())
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        let id = req.id.as_str();
        if req.exec_id.is_empty() {
            let runtime = self.s.with(id, |c| Ok(c.runtime.clone()))?;
            runtime
                .kill(id, req.signal, req.all)
                .await
                .map_err(runtime_error)?;
            return Ok(Empty::new());
        }
        let pid = self.s.with(id, |c| {
            let p = c.process(id, &req.exec_id)?;
            match p.status {
                Status::Stopped => Err(status(Code::NOT_FOUND, "process already finished")),
                _ if p.pid == 0 => Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("exec {:?} was not started", req.exec_id),
                )),
                _ => Ok(p.pid),
            }
        })?;
        // Any signal 1-64: real-time ones too (SIGRTMIN+3 is systemd's stop signal), which
        // nix's Signal cannot name.
        let sig = i32::try_from(req.signal)
            .ok()
            .filter(|n| (1..=64).contains(n))
            .ok_or_else(|| {
                status(
                    Code::INVALID_ARGUMENT,
                    format!("invalid signal {}", req.signal),
                )
            })?;
        // SAFETY: kill(2) takes two integers and touches no memory of ours.
        let r = unsafe { libc::kill(pid as i32, sig) };
        nix::errno::Errno::result(r).map_err(|e| {
            status(
                if e == nix::errno::Errno::ESRCH {
                    Code::NOT_FOUND
                } else {
                    Code::UNKNOWN
                },
                format!("signal exec {:?} (pid {pid}): {e}", req.exec_id),
            )
        })?;
        Ok(Empty::new())
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let id = req.id.as_str();
        check_id("exec id", &req.exec_id)?;
        let spec = req
            .spec
            .as_ref()
            .ok_or_else(|| status(Code::INVALID_ARGUMENT, "exec request has no process spec"))?;
        self.s.with(id, |c| {
            if c.execs.contains_key(&req.exec_id) {
                return Err(status(
                    Code::ALREADY_EXISTS,
                    format!("exec {:?} already exists in container {id:?}", req.exec_id),
                ));
            }
            if c.init.status == Status::Stopped {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("container {id:?} has exited"),
                ));
            }
            let path = c.bundle.join(format!("{}.process.json", req.exec_id));
            std::fs::write(&path, &spec.value)
                .map_err(|e| status(Code::UNKNOWN, format!("write {}: {e}", path.display())))?;
            let mut p = Process::new(
                &req.exec_id,
                Paths {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                },
            );
            p.spec = Some(path);
            c.execs.insert(req.exec_id.clone(), p);
            Ok(())
        })?;
        self.s.events.exec_added(id, &req.exec_id).await;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        self.s.with(&req.id, |c| {
            c.process(&req.id, &req.exec_id)?
                .io
                .resize(req.width, req.height)
                .map_err(|e| unknown(&e))
        })?;
        Ok(Empty::new())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        if req.stdin {
            self.s.with(&req.id, |c| {
                c.process(&req.id, &req.exec_id)?.io.close_stdin();
                Ok(())
            })?;
        }
        Ok(Empty::new())
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let resources = req
            .resources
            .as_ref()
            .ok_or_else(|| status(Code::INVALID_ARGUMENT, "update request has no resources"))?;
        let (runtime, path) = self.s.with(&req.id, |c| {
            Ok((c.runtime.clone(), c.bundle.join("update-resources.json")))
        })?;
        std::fs::write(&path, &resources.value)
            .map_err(|e| status(Code::UNKNOWN, format!("write {}: {e}", path.display())))?;
        let r = runtime.update(&req.id, &path).await;
        let _ = std::fs::remove_file(&path);
        r.map_err(runtime_error)?;
        Ok(Empty::new())
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let mut rx = self.s.with(&req.id, |c| {
            Ok(c.process(&req.id, &req.exec_id)?.subscribe())
        })?;
        let exit = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| status(Code::NOT_FOUND, format!("process {:?} went away", req.id)))?
            .unwrap_or(Exit::now(255));
        Ok(WaitResponse {
            exit_status: exit.status,
            exited_at: MessageField::some(exit.timestamp()),
            ..Default::default()
        })
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let runtime = self.s.with(&req.id, |c| Ok(c.runtime.clone()))?;
        let stats = runtime.stats(&req.id).await.map_err(runtime_error)?;
        let any = crate::metrics::pack_for_host(&stats)
            .map_err(|e| status(Code::INTERNAL, format!("encode metrics: {e}")))?;
        Ok(StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> TtrpcResult<ConnectResponse> {
        let task_pid = self.s.with(&req.id, |c| Ok(c.init.pid)).unwrap_or_default();
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        // A pod's shim stays while any of its containers does.
        if self.s.lock().is_empty() {
            self.s.exit.signal();
        }
        Ok(Empty::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_namespace_sharing_from_config() {
        let dir = std::env::temp_dir().join(format!("husk-shim-pidns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("config.json");
        let case = |ns: &str| {
            std::fs::write(&f, format!(r#"{{"linux":{{"namespaces":{ns}}}}}"#)).unwrap();
            shares_pid_namespace(&f)
        };
        assert!(!case(r#"[{"type":"pid"},{"type":"mount"}]"#));
        assert!(!case(r#"[{"type":"pid","path":""}]"#));
        assert!(case(r#"[{"type":"pid","path":"/proc/7/ns/pid"}]"#));
        assert!(case(r#"[{"type":"mount"}]"#));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(shares_pid_namespace(&f));
    }
}
