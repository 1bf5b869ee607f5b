//! Hand the seccomp notify fd to the agent at `listenerPath`, as runc does.
//!
//! runc's protocol (libcontainer `sendContainerProcessState`): connect a `SOCK_STREAM` unix
//! socket to `listenerPath`, send the JSON `ContainerProcessState`
//! (`{"ociVersion","fds":["seccompFd"],"pid","metadata","state":{…}}`) in one `sendmsg` whose
//! `SCM_RIGHTS` carries the fd, close. The agent maps `fds[i]` to the i-th passed fd. runc sends
//! from the parent after copying the fd out of the init with `pidfd_getfd`; status is
//! `creating` for the init process and `running` for `exec`.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{
    connect, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use oci_spec::runtime::{ContainerProcessState, State, SECCOMP_FD_NAME};

use super::SeccompError;

/// Send `notify_fd` and the container process state to the seccomp agent at `listener_path`.
/// `state.pid` is the process that installed the filter; empty `metadata` is left out.
pub fn send_to_listener(
    listener_path: &Path,
    notify_fd: BorrowedFd<'_>,
    state: &State,
    metadata: Option<&str>,
) -> Result<(), SeccompError> {
    let sock = connect_listener(listener_path)?;
    send_on(sock.as_fd(), listener_path, notify_fd, state, metadata)
}

/// Connect to the agent. The runtime does this before the container's mounts hide the host
/// path; the container process sends on the connected socket after installing its filter.
pub fn connect_listener(listener_path: &Path) -> Result<OwnedFd, SeccompError> {
    let connect_err = |source| SeccompError::ListenerConnect {
        path: listener_path.to_path_buf(),
        source,
    };
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(connect_err)?;
    let addr = UnixAddr::new(listener_path).map_err(connect_err)?;
    connect(sock.as_raw_fd(), &addr).map_err(connect_err)?;
    Ok(sock)
}

/// Send the fd and the state on a connected listener socket (see [`connect_listener`]).
pub fn send_on(
    sock: BorrowedFd<'_>,
    listener_path: &Path,
    notify_fd: BorrowedFd<'_>,
    state: &State,
    metadata: Option<&str>,
) -> Result<(), SeccompError> {
    let mut msg = ContainerProcessState::default();
    msg.set_version(state.version().clone());
    msg.set_fds(vec![SECCOMP_FD_NAME.to_string()]);
    msg.set_pid(state.pid().unwrap_or_default());
    msg.set_metadata(metadata.filter(|m| !m.is_empty()).map(str::to_string));
    msg.set_state(state.clone());
    let json = serde_json::to_vec(&msg).map_err(SeccompError::ListenerState)?;
    let send_err = |source| SeccompError::ListenerSend {
        path: listener_path.to_path_buf(),
        source,
    };
    let fds = [notify_fd.as_raw_fd()];
    let mut sent = sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&json)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(send_err)?;
    // A stream socket may take a large state in pieces; the fd went with the first one.
    while sent < json.len() {
        sent += sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&json[sent..])],
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(send_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::IoSliceMut;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    use std::os::unix::net::UnixListener;

    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    use oci_spec::runtime::ContainerState;

    use super::*;

    #[test]
    fn listener_receives_the_fd_and_the_state() {
        let dir =
            std::env::temp_dir().join(format!("husk-seccomp-listener-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("agent.sock");
        let listener = UnixListener::bind(&path).expect("bind");

        let (probe, _keep) = nix::unistd::pipe().expect("pipe");
        let mut state = State::default();
        state.set_version("1.2.0".into());
        state.set_id("c1".into());
        state.set_status(ContainerState::Creating);
        state.set_pid(Some(4242));
        state.set_bundle("/b".into());
        state.set_annotations(Some(HashMap::from([("k".to_string(), "v".to_string())])));
        // connect() completes against the backlog, so one thread can be both sides.
        let sent = send_to_listener(&path, probe.as_fd(), &state, Some("meta"));
        let (conn, _) = listener.accept().expect("accept");
        std::fs::remove_dir_all(&dir).expect("clean up");
        sent.expect("send");

        let mut buf = vec![0u8; 4096];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg");
        let mut fds = Vec::new();
        for c in msg.cmsgs().expect("cmsgs") {
            if let ControlMessageOwned::ScmRights(r) = c {
                fds.extend(r);
            }
        }
        let len = msg.bytes;
        assert_eq!(fds.len(), 1);
        // SAFETY: SCM_RIGHTS installed this fd in our table just now; nothing else owns it.
        let got = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        let st = |fd: &OwnedFd| {
            nix::sys::stat::fstat(fd.as_raw_fd())
                .map(|s| (s.st_dev, s.st_ino))
                .expect("fstat")
        };
        assert_eq!(st(&got), st(&probe), "the same pipe arrived");
        let v: serde_json::Value = serde_json::from_slice(&buf[..len]).expect("json");
        assert_eq!(
            v,
            serde_json::json!({
                "ociVersion": "1.2.0", "fds": ["seccompFd"], "pid": 4242, "metadata": "meta",
                "state": {"ociVersion": "1.2.0", "id": "c1", "status": "creating", "pid": 4242, "bundle": "/b", "annotations": {"k": "v"}}
            })
        );
    }

    #[test]
    fn missing_listener_names_the_path() {
        let (probe, _keep) = nix::unistd::pipe().expect("pipe");
        let err = send_to_listener(
            Path::new("/nonexistent/agent.sock"),
            probe.as_fd(),
            &State::default(),
            None,
        )
        .expect_err("no agent");
        assert_eq!(
            err.to_string(),
            "connect to seccomp listener \"/nonexistent/agent.sock\""
        );
    }
}
