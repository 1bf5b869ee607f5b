//! A process's stdio as containerd describes it: paths of fifos that the client (ctr, CRI)
//! reads and writes, `file:///path` for a log file, or empty for none.
//!
//! Without a terminal the shim copies nothing: the fifos themselves become the container's
//! stdio. The shim keeps a reader and a writer on each output fifo for the life of the process,
//! so the container never sees EPIPE while no client is attached, and one `O_RDWR` handle on
//! stdin (no early EOF) until `CloseIO`. When the process exits the shim lets go of an output
//! fifo only once a client has it open for reading: a client that opens late (a quick exec,
//! with hundreds in flight) still finds the output in the fifo, then EOF. Dropping the handles
//! at the exit instead would free the pipe and its unread bytes with it. No copy task, no
//! buffer, no wakeups while the process runs.
//!
//! With a terminal the runtime sends the pty master over a console socket; two small tasks copy
//! stdin fifo → master and master → stdout fifo, ending when the last slave holder exits (EIO).

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::unix::pipe;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

use crate::runtime::ChildStdio;

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("open {what} {path:?}")]
    Open {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {uri:?}: only fifos and file:// are supported")]
    Scheme { what: &'static str, uri: String },
    #[error("listen on console socket {path:?}")]
    Listen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("receive the pty master on {path:?}")]
    Receive {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("resize terminal")]
    Resize(#[source] nix::Error),
}

/// The stdio paths containerd sent for one process.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

enum Target {
    None,
    Fifo(PathBuf),
    File(PathBuf),
}

fn target(what: &'static str, uri: &str) -> Result<Target, IoError> {
    if uri.is_empty() {
        return Ok(Target::None);
    }
    if let Some(p) = uri.strip_prefix("file://") {
        return Ok(Target::File(PathBuf::from(p)));
    }
    if let Some(p) = uri.strip_prefix("fifo://") {
        return Ok(Target::Fifo(PathBuf::from(p)));
    }
    if uri.starts_with('/') {
        return Ok(Target::Fifo(PathBuf::from(uri)));
    }
    Err(IoError::Scheme {
        what,
        uri: uri.to_string(),
    })
}

fn open(what: &'static str, path: &Path, o: &mut OpenOptions) -> Result<File, IoError> {
    o.custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| IoError::Open {
            what,
            path: path.to_path_buf(),
            source,
        })
}

/// Opens a fifo so that opening it never blocks and it never loses its last reader or writer.
fn hold(what: &'static str, path: &Path) -> Result<File, IoError> {
    let f = open(what, path, OpenOptions::new().read(true).write(true))?;
    check_fifo(what, path, &f)?;
    Ok(f)
}

fn check_fifo(what: &'static str, path: &Path, f: &File) -> Result<(), IoError> {
    let is_fifo = f
        .metadata()
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false);
    if !is_fifo {
        return Err(IoError::Open {
            what,
            path: path.to_path_buf(),
            source: std::io::Error::other("not a fifo"),
        });
    }
    Ok(())
}

/// How long an exited process's output waits in its fifo for a client to open it.
const LATE_READER: Duration = Duration::from_secs(30);

/// The shim's own ends of one output fifo.
struct OutputHold {
    path: PathBuf,
    /// Keeps the fifo open for reading while the process runs: its writes never fail.
    reader: File,
    /// Keeps the pipe (and any unread output) alive until a client has opened it.
    writer: File,
}

/// Whether some process has `path` open for reading: opening the write side without blocking
/// fails with ENXIO exactly when there is no reader (fifo(7)).
fn has_reader(path: &Path) -> Option<bool> {
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(_) => Some(true),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Some(false),
        // Gone (the client removed its fifo dir) or unopenable: nobody will read it.
        Err(_) => None,
    }
}

/// How long a start waits for the client to open its output fifos.
const CLIENT_READER: Duration = Duration::from_secs(5);

/// Write ends of output fifos opened once their client was there (see `wait_for_readers`).
#[derive(Default)]
pub struct Ready(Vec<(PathBuf, File)>);

impl Ready {
    fn take(&mut self, path: &Path) -> Option<File> {
        let i = self.0.iter().position(|(p, _)| p == path)?;
        Some(self.0.swap_remove(i).1)
    }
}

/// A write end of `path` if it has a reader now, without blocking and without waking anyone: the
/// open fails (ENXIO) when there is no reader, and a successful one is kept. A probe that were
/// closed again would make a reader blocked in open(2) return and then read EOF at once.
fn writer_if_read(path: &Path) -> Result<Option<File>, ()> {
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        Err(_) => Err(()),
    }
}

/// Waits (bounded) until every output fifo of `p` has a reader, which before the shim opens its
/// own ends can only be the client. containerd-shim-runc-v2 waits the same way (its write-only
/// open of each fifo blocks for a reader), so a process that runs and exits at once never
/// writes before its client is there to read; under load the client's open can lag its Start.
pub async fn wait_for_readers(p: &Paths) -> Ready {
    let mut waiting: Vec<PathBuf> = [&p.stdout, &p.stderr]
        .into_iter()
        .filter_map(|uri| match target("output", uri) {
            Ok(Target::Fifo(path)) => Some(path),
            _ => None,
        })
        .collect();
    waiting.dedup();
    let mut ready = Ready::default();
    let deadline = tokio::time::Instant::now() + CLIENT_READER;
    let mut pause = Duration::from_millis(1);
    loop {
        waiting.retain(|path| match writer_if_read(path) {
            Ok(Some(w)) => {
                ready.0.push((path.clone(), w));
                false
            }
            Ok(None) => true,
            // Missing or unopenable: open_direct reports it.
            Err(()) => false,
        });
        if waiting.is_empty() {
            return ready;
        }
        if tokio::time::Instant::now() >= deadline {
            log::warn!("no client opened {waiting:?} within {CLIENT_READER:?}; starting anyway");
            return ready;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Holds `writer` (a write end of fifo `path`, with no reader of ours left) until a client
/// opens the fifo for reading, then closes it so the client reads what is there and EOF.
async fn release_output(path: PathBuf, writer: File) {
    let deadline = tokio::time::Instant::now() + LATE_READER;
    let mut pause = Duration::from_millis(1);
    while has_reader(&path) == Some(false) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    drop(writer);
}

/// What the shim holds for a process's stdio until it exits.
#[derive(Default)]
pub struct Held {
    stdin: Option<File>,
    outputs: Vec<OutputHold>,
    /// After the exit: read ends of the output fifos, only to count unread bytes.
    unread: Vec<File>,
    copies: Vec<JoinHandle<()>>,
    master: Option<std::sync::Arc<AsyncFd<OwnedFd>>>,
}

impl Held {
    /// `CloseIO`: the process reads EOF once the client's writer is gone too.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
        if let Some(h) = self.copies.first() {
            if self.master.is_some() {
                h.abort();
            }
        }
    }

    /// The process exited: let the clients read to EOF, once they have the fifos open.
    pub fn close_outputs(&mut self) {
        self.stdin = None;
        let outputs = std::mem::take(&mut self.outputs);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for o in outputs {
            // Our reader goes first, so the check sees only the client's.
            drop(o.reader);
            match has_reader(&o.path) {
                Some(false) => {
                    rt.spawn(release_output(o.path, o.writer));
                }
                Some(true) => {
                    // A read end of our own (which never reads) shows how much output the client
                    // has not read yet (FIONREAD); the writer goes, so the client reads to EOF.
                    if let Ok(r) = OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                        .open(&o.path)
                    {
                        self.unread.push(r);
                    }
                }
                None => {}
            }
        }
    }

    /// The read ends that tell whether the client has read all output (see `drained`).
    pub fn take_unread(&mut self) -> Vec<File> {
        std::mem::take(&mut self.unread)
    }

    pub fn resize(&self, width: u32, height: u32) -> Result<(), IoError> {
        let Some(m) = &self.master else {
            return Ok(());
        };
        let ws = libc::winsize {
            ws_row: u16::try_from(height).unwrap_or(u16::MAX),
            ws_col: u16::try_from(width).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call; the fd
        // is the pty master this struct owns.
        let r = unsafe { libc::ioctl(m.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        nix::errno::Errno::result(r)
            .map(drop)
            .map_err(IoError::Resize)
    }

    pub fn wait_for_copies(&mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.copies)
    }
}

/// Opens a process's stdio for direct hand-over (no terminal).
pub fn open_direct(p: &Paths, mut ready: Ready) -> Result<(ChildStdio, Held), IoError> {
    let mut held = Held::default();
    let mut child = ChildStdio::default();
    match target("stdin", &p.stdin)? {
        Target::None => {}
        Target::File(path) => {
            child.stdin = Some(open("stdin", &path, OpenOptions::new().read(true))?.into());
        }
        Target::Fifo(path) => {
            let h = hold("stdin fifo", &path)?;
            // A writer (the hold) exists, so a blocking read-only open returns at once.
            child.stdin = Some(open("stdin fifo", &path, OpenOptions::new().read(true))?.into());
            held.stdin = Some(h);
        }
    }
    child.stdout = output("stdout", &p.stdout, &mut held, &mut ready)?;
    child.stderr = output("stderr", &p.stderr, &mut held, &mut ready)?;
    Ok((child, held))
}

fn output(
    what: &'static str,
    uri: &str,
    held: &mut Held,
    ready: &mut Ready,
) -> Result<Option<OwnedFd>, IoError> {
    Ok(match target(what, uri)? {
        Target::None => None,
        Target::File(path) => {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            Some(open(what, &path, OpenOptions::new().append(true).create(true))?.into())
        }
        Target::Fifo(path) => {
            // Without O_NONBLOCK a read-only open would wait for a writer.
            let reader = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|source| IoError::Open {
                    what,
                    path: path.clone(),
                    source,
                })?;
            check_fifo(what, &path, &reader)?;
            // A reader exists (ours), so the write-only opens return at once.
            let writer = match ready.take(&path) {
                Some(w) => w,
                None => open(what, &path, OpenOptions::new().write(true))?,
            };
            let fd = open(what, &path, OpenOptions::new().write(true))?;
            held.outputs.push(OutputHold {
                path,
                reader,
                writer,
            });
            Some(fd.into())
        }
    })
}

/// A console socket the runtime connects to with the pty master.
pub struct ConsoleSocket {
    pub path: PathBuf,
    dir: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// In a fresh directory under /tmp: bundle paths can exceed sun_path's 108 bytes.
    pub fn new() -> Result<ConsoleSocket, IoError> {
        let dir = unique_dir();
        let path = dir.join("pty.sock");
        let listen = || -> std::io::Result<UnixListener> {
            std::fs::create_dir(&dir)?;
            UnixListener::bind(&path)
        };
        let listener = listen().map_err(|source| IoError::Listen {
            path: path.clone(),
            source,
        })?;
        Ok(ConsoleSocket {
            path,
            dir,
            listener,
        })
    }

    /// Accepts one connection and receives the master fd sent with SCM_RIGHTS.
    pub async fn receive(&self) -> Result<OwnedFd, IoError> {
        let err = |source| IoError::Receive {
            path: self.path.clone(),
            source,
        };
        let (stream, _) = self.listener.accept().await.map_err(err)?;
        loop {
            stream.readable().await.map_err(err)?;
            match stream.try_io(Interest::READABLE, || recv_fd(stream.as_raw_fd())) {
                Ok(fd) => return Ok(fd),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(err(e)),
            }
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn unique_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("husk-shim-{}-{n}", std::process::id()))
}

fn recv_fd(sock: RawFd) -> std::io::Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(std::io::Error::from)?;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: SCM_RIGHTS just installed this fd in our table; nothing else owns it.
                return Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
            }
        }
    }
    Err(std::io::Error::other("no file descriptor in the message"))
}

/// Starts copying between a received pty master and the process's fifos.
pub fn attach_console(master: OwnedFd, p: &Paths) -> Result<Held, IoError> {
    let flags = nix::fcntl::fcntl(master.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)
        .map_err(|e| console_err(e.into()))?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(master.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))
        .map_err(|e| console_err(e.into()))?;
    let master = std::sync::Arc::new(async_fd(master).map_err(console_err)?);
    let mut held = Held {
        master: Some(master.clone()),
        ..Held::default()
    };
    // Copy 0 is stdin (close_stdin aborts it).
    if let Target::Fifo(path) = target("stdin", &p.stdin)? {
        let rx = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&path)
            .map_err(|source| IoError::Open {
                what: "stdin fifo",
                path: path.clone(),
                source,
            })?;
        held.copies.push(tokio::spawn(copy_in(rx, master.clone())));
    } else {
        held.copies.push(tokio::spawn(async {}));
    }
    match target("stdout", &p.stdout)? {
        Target::Fifo(path) => {
            let tx = pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&path)
                .map_err(|source| IoError::Open {
                    what: "stdout fifo",
                    path: path.clone(),
                    source,
                })?;
            held.copies
                .push(tokio::spawn(copy_out(master, Out::Pipe(tx, path))));
        }
        Target::File(path) => {
            let f = open(
                "stdout",
                &path,
                OpenOptions::new().append(true).create(true),
            )?;
            held.copies
                .push(tokio::spawn(copy_out(master, Out::File(f))));
        }
        // Nobody reads: still drain the master so the container never blocks on its terminal.
        Target::None => held
            .copies
            .push(tokio::spawn(copy_out(master, Out::Discard))),
    }
    Ok(held)
}

fn console_err(source: std::io::Error) -> IoError {
    IoError::Receive {
        path: PathBuf::from("pty master"),
        source,
    }
}

async fn copy_in(mut rx: pipe::Receiver, master: std::sync::Arc<AsyncFd<OwnedFd>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut off = 0;
        while off < n {
            let Ok(mut guard) = master.writable().await else {
                return;
            };
            match guard.try_io(|m| {
                nix::unistd::write(m.get_ref().as_fd(), &buf[off..n]).map_err(std::io::Error::from)
            }) {
                Ok(Ok(w)) => off += w,
                Ok(Err(_)) => return,
                Err(_would_block) => continue,
            }
        }
    }
}

enum Out {
    Pipe(pipe::Sender, PathBuf),
    File(File),
    Discard,
}

async fn copy_out(master: std::sync::Arc<AsyncFd<OwnedFd>>, mut out: Out) {
    let mut buf = vec![0u8; 8192];
    loop {
        let Ok(mut guard) = master.readable().await else {
            return;
        };
        let n = match guard.try_io(|m| {
            nix::unistd::read(m.get_ref().as_raw_fd(), &mut buf).map_err(std::io::Error::from)
        }) {
            // EIO: every slave fd is closed, the terminal's processes are gone.
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_would_block) => continue,
        };
        let ok = match &mut out {
            Out::Pipe(tx, _) => tx.write_all(&buf[..n]).await.is_ok(),
            Out::File(f) => std::io::Write::write_all(f, &buf[..n]).is_ok(),
            Out::Discard => true,
        };
        if !ok {
            out = Out::Discard;
        }
    }
    // As for direct stdio: the output stays in the fifo until a client has opened it.
    if let Out::Pipe(tx, path) = out {
        // Our sender is a reader too, so this write-only open returns at once.
        let writer = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path);
        drop(tx);
        if let Ok(w) = writer {
            if has_reader(&path) == Some(false) {
                tokio::spawn(release_output(path, w));
            }
        }
    }
}

/// Registers an owned fd with the reactor.
pub fn async_fd(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd keeps its descriptor open and unchanged until it is dropped, which
    // happens only with the AsyncFd that owns it.
    Ok(unsafe { AsyncFd::register(fd) }?)
}

/// How long a `Delete` waits for the client to read an exited process's last output.
const CLIENT_DRAIN: Duration = Duration::from_secs(2);

/// Bytes in the pipe behind `f` that no one has read yet.
fn unread_bytes(f: &File) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int to the pointer, which outlives the call; the fd is open.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r < 0 {
        0
    } else {
        usize::try_from(n).unwrap_or(0)
    }
}

/// Waits (bounded) until the client has read everything an exited process wrote. Clients
/// (ctr, CRI's exec) delete the process and then cancel their fifo copies, which drops output a
/// lagging reader has not taken yet; so `Delete` answers once the fifos are empty.
pub async fn drained(unread: Vec<File>) {
    let deadline = tokio::time::Instant::now() + CLIENT_DRAIN;
    let mut pause = Duration::from_millis(1);
    while unread.iter().any(|f| unread_bytes(f) > 0) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Waits for the copies of an exited process, bounded: a grandchild may keep the slave open.
pub async fn drain(copies: Vec<JoinHandle<()>>) {
    for h in copies.into_iter().skip(1) {
        let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stdio_uris() {
        assert!(matches!(target("stdout", "").unwrap(), Target::None));
        assert!(matches!(
            target("stdout", "/run/x/stdout").unwrap(),
            Target::Fifo(_)
        ));
        assert!(matches!(
            target("stdout", "file:///var/log/x").unwrap(),
            Target::File(_)
        ));
        let e = target("stdout", "binary:///usr/bin/logger").err().unwrap();
        assert_eq!(
            e.to_string(),
            "stdout \"binary:///usr/bin/logger\": only fifos and file:// are supported"
        );
    }

    /// The bug this guards against: a process that writes and exits before the client opens
    /// the fifo; the client must still read the output, then EOF.
    #[tokio::test(flavor = "current_thread")]
    async fn output_survives_a_late_reader() {
        use std::io::{Read, Write};
        let dir = std::env::temp_dir().join(format!("husk-shim-late-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("stdout");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let p = Paths {
            stdout: fifo.display().to_string(),
            ..Paths::default()
        };
        let (child, mut held) = open_direct(&p, Ready::default()).unwrap();
        let mut out = File::from(child.stdout.unwrap());
        out.write_all(b"late but here\n").unwrap();
        drop(out); // the process exited
        held.close_outputs();
        tokio::time::sleep(Duration::from_millis(30)).await;
        // The client opens only now, blocking until a writer exists, as containerd's fifo does.
        let path = fifo.clone();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            File::open(&path).unwrap().read_to_string(&mut s).unwrap();
            s
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !reader.is_finished() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(reader.is_finished(), "the late reader saw no EOF");
        assert_eq!(reader.join().unwrap(), "late but here\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn direct_stdio_rejects_a_missing_fifo() {
        let p = Paths {
            stdout: "/nonexistent/husk-shim-test/stdout".into(),
            ..Paths::default()
        };
        let e = open_direct(&p, Ready::default()).err().unwrap();
        assert!(e.to_string().starts_with("open stdout"), "{e}");
    }
}
