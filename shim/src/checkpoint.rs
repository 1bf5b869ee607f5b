//! The task API's checkpoint and restore-on-create, as containerd's runc shim does them:
//! `Checkpoint` runs `<runtime> checkpoint --image-path PATH --work-path W [...]` with the
//! flags of the request's `containerd.runc.v1.CheckpointOptions`; a `Create` with `checkpoint`
//! set runs `<runtime> restore --detach` instead of `create`, with the same stdio, console socket
//! and pid file, and the task is then running (a later `Start` only reports it).

use std::path::{Path, PathBuf};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::CodedInputStream;

use crate::runtime::{ChildStdio, Runtime, RuntimeError};

/// containerd.runc.v1.CheckpointOptions (containerd/runtime/v2/runc/options/oci.proto).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CheckpointOptions {
    pub exit: bool,
    pub open_tcp: bool,
    pub external_unix_sockets: bool,
    pub terminal: bool,
    pub file_locks: bool,
    pub empty_namespaces: Vec<String>,
    pub cgroups_mode: String,
    pub image_path: String,
    pub work_path: String,
}

impl CheckpointOptions {
    /// Decode the request's options (absent: all defaults). The shim's protobuf crate has no
    /// generated type for this message: it is read field by field.
    pub fn from_any(any: Option<&Any>) -> Result<Self, String> {
        let mut o = Self::default();
        let Some(any) = any else { return Ok(o) };
        if any.value.is_empty() {
            return Ok(o);
        }
        let name = any.type_url.rsplit('/').next().unwrap_or_default();
        if name != "containerd.runc.v1.CheckpointOptions" {
            return Err(format!(
                "checkpoint options of type {:?}: expected containerd.runc.v1.CheckpointOptions",
                any.type_url
            ));
        }
        let bad = |e: containerd_shim_protos::protobuf::Error| format!("checkpoint options: {e}");
        let mut s = CodedInputStream::from_bytes(&any.value);
        while !s.eof().map_err(bad)? {
            let tag = s.read_raw_varint32().map_err(bad)?;
            match (tag >> 3, tag & 7) {
                (1, 0) => o.exit = s.read_bool().map_err(bad)?,
                (2, 0) => o.open_tcp = s.read_bool().map_err(bad)?,
                (3, 0) => o.external_unix_sockets = s.read_bool().map_err(bad)?,
                (4, 0) => o.terminal = s.read_bool().map_err(bad)?,
                (5, 0) => o.file_locks = s.read_bool().map_err(bad)?,
                (6, 2) => o.empty_namespaces.push(s.read_string().map_err(bad)?),
                (7, 2) => o.cgroups_mode = s.read_string().map_err(bad)?,
                (8, 2) => o.image_path = s.read_string().map_err(bad)?,
                (9, 2) => o.work_path = s.read_string().map_err(bad)?,
                (_, wire) => {
                    let wt = containerd_shim_protos::protobuf::rt::WireType::new(wire)
                        .ok_or_else(|| format!("checkpoint options: wire type {wire}"))?;
                    s.skip_field(wt).map_err(bad)?;
                }
            }
        }
        Ok(o)
    }

    /// The runtime's flags, as the runc shim builds them (`exit` false: leave running).
    pub fn args(&self, image: &Path, work: &Path) -> Vec<String> {
        let mut a = vec![
            "--image-path".to_string(),
            image.display().to_string(),
            "--work-path".to_string(),
            work.display().to_string(),
        ];
        let flags = [
            (!self.exit, "--leave-running"),
            (self.open_tcp, "--tcp-established"),
            (self.external_unix_sockets, "--ext-unix-sk"),
            (self.terminal, "--shell-job"),
            (self.file_locks, "--file-locks"),
        ];
        a.extend(
            flags
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, f)| f.to_string()),
        );
        for ns in &self.empty_namespaces {
            a.push("--empty-ns".into());
            a.push(ns.clone());
        }
        if !self.cgroups_mode.is_empty() {
            a.push("--manage-cgroups-mode".into());
            a.push(self.cgroups_mode.clone());
        }
        a
    }
}

/// Where CRIU writes its work files and log for a checkpoint of the container in `bundle`
/// (the runc shim's `criu-work`), unless the options name one.
pub fn work_dir(bundle: &Path, o: &CheckpointOptions) -> PathBuf {
    if o.work_path.is_empty() {
        bundle.join("criu-work")
    } else {
        PathBuf::from(&o.work_path)
    }
}

pub struct RestoreArgs<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: &'a Path,
    pub console_socket: Option<&'a Path>,
    pub image: &'a Path,
}

impl Runtime {
    /// `checkpoint`: errors come back on stderr (runc and husk print them there).
    pub async fn checkpoint(&self, id: &str, args: &[String]) -> Result<(), RuntimeError> {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.push(id);
        self.run("checkpoint", &all).await.map(drop)
    }

    /// `restore --detach`: the restored init is reparented to the shim; returns its pid.
    pub async fn restore(&self, a: RestoreArgs<'_>, io: ChildStdio) -> Result<i32, RuntimeError> {
        let log = a.bundle.join("log.json");
        let work = a.bundle.join("criu-work");
        let mut c = self.command(Some(&log));
        c.arg("restore")
            .arg("--detach")
            .arg("--bundle")
            .arg(a.bundle);
        c.arg("--image-path")
            .arg(a.image)
            .arg("--work-path")
            .arg(&work);
        c.arg("--pid-file").arg(a.pid_file);
        if let Some(s) = a.console_socket {
            c.arg("--console-socket").arg(s);
        }
        if self.opts.no_pivot_root {
            c.arg("--no-pivot");
        }
        c.arg(a.id);
        self.run_with_stdio(c, io, "restore", &log).await?;
        crate::runtime::read_pid(a.pid_file).await
    }
}

/// The task API's Checkpoint for the container in `bundle`: the image goes to the options'
/// `image_path` or else the request's `path`; on failure CRIU's log is kept as
/// `<bundle>/criu-dump.log` and named in the error (as the runc shim does).
pub async fn task(
    runtime: &Runtime,
    bundle: &Path,
    req: &containerd_shim_protos::api::CheckpointTaskRequest,
) -> Result<(), String> {
    let o = CheckpointOptions::from_any(req.options.as_ref())?;
    let image = if o.image_path.is_empty() {
        PathBuf::from(&req.path)
    } else {
        PathBuf::from(&o.image_path)
    };
    let work = work_dir(bundle, &o);
    let r = runtime.checkpoint(&req.id, &o.args(&image, &work)).await;
    let kept = bundle.join("criu-dump.log");
    if r.is_err() {
        let _ = std::fs::copy(work.join("dump.log"), &kept);
    }
    if o.work_path.is_empty() {
        let _ = std::fs::remove_dir_all(&work);
    }
    r.map_err(|e| {
        let mut msg = e.to_string();
        if kept.is_file() {
            msg.push_str(&format!(" (CRIU's log: {})", kept.display()));
        }
        msg
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_checkpoint_options_decode_to_runc_flags() {
        // exit=true, open_tcp=true, empty_namespaces=["network"], image_path="/i"
        let value = vec![
            8, 1, 16, 1, 0x32, 7, b'n', b'e', b't', b'w', b'o', b'r', b'k', 0x42, 2, b'/', b'i',
        ];
        let any = Any {
            type_url: "containerd.runc.v1.CheckpointOptions".into(),
            value,
            ..Default::default()
        };
        let o = CheckpointOptions::from_any(Some(&any)).expect("decode");
        assert!(o.exit && o.open_tcp && !o.terminal);
        assert_eq!(o.empty_namespaces, ["network"]);
        assert_eq!(o.image_path, "/i");
        let a = o.args(Path::new("/img"), Path::new("/w"));
        assert_eq!(
            a,
            [
                "--image-path",
                "/img",
                "--work-path",
                "/w",
                "--tcp-established",
                "--empty-ns",
                "network"
            ]
        );
        let leave = CheckpointOptions::default().args(Path::new("/img"), Path::new("/w"));
        assert!(leave.contains(&"--leave-running".to_string()));
    }

    #[test]
    fn other_option_types_are_refused() {
        let any = Any {
            type_url: "x.Other".into(),
            value: vec![8, 1],
            ..Default::default()
        };
        assert!(CheckpointOptions::from_any(Some(&any)).is_err());
    }
}
