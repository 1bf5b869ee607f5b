//! `exec`: run another process in a running container.

use std::path::{Path, PathBuf};

use super::ContainerError;

#[derive(Debug, Default)]
pub struct ExecOptions {
    pub process: Option<PathBuf>,
    pub args: Vec<String>,
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub preserve_fds: u32,
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
    pub ignore_paused: bool,
}

pub fn exec(_root: &Path, _id: &str, _opts: ExecOptions) -> Result<i32, ContainerError> {
    Err(ContainerError::Invalid("exec: in progress".into()))
}
