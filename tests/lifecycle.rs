//! The container lifecycle as an engine drives it: create → start → kill → delete, with `state`,
//! `list` (table, JSON, quiet) and `--pid-file` checked at every step, and runc's exit codes.
mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// `list` in its three formats shows exactly this case's container with `status` (or nothing).
fn assert_list_agrees(c: &Case, status: Option<&str>, pid: i64) {
    let table = c.rt(&["list"]).check().stdout;
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
        "list header: {table}"
    );
    let rows: Vec<Vec<&str>> = lines
        .map(|l| l.split_whitespace().collect())
        .filter(|r: &Vec<&str>| !r.is_empty())
        .collect();
    let json = c.rt(&["list", "--format", "json"]).check().json();
    let quiet = c.rt(&["list", "-q"]).check().stdout;
    let Some(status) = status else {
        assert!(rows.is_empty(), "list shows a deleted container: {table}");
        assert!(
            json.is_null() || json == Value::Array(vec![]),
            "list --format json: {json}"
        );
        assert_eq!(quiet.trim(), "", "list -q");
        return;
    };
    assert_eq!(rows.len(), 1, "list: {table}");
    let (pid_s, bundle) = (pid.to_string(), c.bundle_str());
    assert_eq!(
        rows[0][..4],
        [c.id.as_str(), pid_s.as_str(), status, bundle.as_str()],
        "list row: {table}"
    );
    let arr = json
        .as_array()
        .unwrap_or_else(|| panic!("list --format json is no array: {json}"));
    assert_eq!(arr.len(), 1, "list --format json: {json}");
    assert_eq!(arr[0]["id"], c.id.as_str());
    assert_eq!(arr[0]["status"], status);
    assert_eq!(arr[0]["pid"], pid);
    assert_eq!(arr[0]["bundle"], bundle.as_str());
    assert_eq!(
        quiet.lines().collect::<Vec<_>>(),
        [c.id.as_str()],
        "list -q"
    );
}

#[test]
fn create_start_kill_delete_walks_every_status() {
    let Some(mut c) = Case::new("life") else {
        return;
    };
    c.sh(&format!("echo started; {LOOP}"));
    c.write_config();
    assert_list_agrees(&c, None, 0);

    let pid_file = c.path_str("init.pid");
    let create = c.spawn(&[
        "create",
        "--bundle",
        &c.bundle_str(),
        "--pid-file",
        &pid_file,
        &c.id,
    ]);
    let container_stdout = create.stdout.clone();
    create.wait(CMD_TIMEOUT).check();
    let st = c.state().expect("state after create");
    assert_eq!(st["id"], c.id.as_str());
    assert_eq!(st["status"], "created");
    assert_eq!(st["bundle"], c.bundle_str().as_str());
    assert!(
        st["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "ociVersion: {st}"
    );
    let pid = st["pid"]
        .as_i64()
        .filter(|p| *p > 0)
        .unwrap_or_else(|| panic!("no pid: {st}"));
    let written = std::fs::read_to_string(&pid_file).expect("pid file written");
    assert_eq!(written.trim(), pid.to_string(), "--pid-file");
    assert!(
        start_time(pid as i32).is_some(),
        "init {pid} is alive while created"
    );
    assert_list_agrees(&c, Some("created"), pid);
    std::thread::sleep(Duration::from_millis(200));
    let early = std::fs::read_to_string(&container_stdout).unwrap_or_default();
    assert_eq!(early, "", "the user process ran before start");

    c.start().check();
    assert_eq!(c.status(), "running");
    assert_eq!(c.pid() as i64, pid, "start kept the init pid");
    assert_list_agrees(&c, Some("running"), pid);
    let deadline = std::time::Instant::now() + WAIT;
    while std::fs::read_to_string(&container_stdout).unwrap_or_default() != "started\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "container printed nothing after start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    c.kill("TERM").check();
    c.wait_status("stopped", WAIT);
    assert_list_agrees(&c, Some("stopped"), 0);

    c.delete().check();
    assert!(c.state().is_none(), "state works after delete");
    assert_list_agrees(&c, None, 0);
    c.assert_clean();
}

#[test]
fn run_returns_the_container_exit_code() {
    let Some(mut c) = Case::new("run-exit") else {
        return;
    };
    c.sh("echo out; echo err >&2; exit 3");
    c.write_config();
    let out = c.run();
    assert_eq!(out.code(), Some(3), "{out:?}");
    assert_eq!(out.stdout, "out\n");
    assert!(out.stderr.contains("err"), "{out:?}");
    c.assert_clean();
}

#[test]
fn run_returns_128_plus_the_killing_signal() {
    let Some(mut c) = Case::new("run-sig") else {
        return;
    };
    c.sh("while :; do sleep 0.1; done");
    c.write_config();
    let run = c.spawn(&["run", "--bundle", &c.bundle_str(), &c.id]);
    c.wait_status("running", WAIT);
    c.kill("KILL").check();
    let out = run.wait(WAIT);
    assert_eq!(out.code(), Some(137), "{out:?}");
    c.assert_clean();
}

#[test]
fn run_detach_returns_with_the_container_running() {
    let Some(mut c) = Case::new("run-detach") else {
        return;
    };
    c.sh(LOOP);
    c.write_config();
    c.rt(&["run", "--detach", "--bundle", &c.bundle_str(), &c.id])
        .check();
    assert_eq!(c.status(), "running");
    c.kill("TERM").check();
    c.wait_status("stopped", WAIT);
    c.delete().check();
    c.assert_clean();
}

/// A running container stops after `kill ID <signal>`.
fn stops_on(signal: &str, name: &str) {
    let Some(mut c) = Case::new(name) else { return };
    c.sh(LOOP);
    c.write_config();
    c.create_and_start();
    c.kill(signal).check();
    c.wait_status("stopped", WAIT);
}

#[test]
fn kill_takes_a_bare_signal_name() {
    stops_on("KILL", "kill-name");
}

#[test]
fn kill_takes_a_sig_prefixed_name() {
    stops_on("SIGKILL", "kill-signame");
}

#[test]
fn kill_takes_a_signal_number() {
    stops_on("9", "kill-num");
}

#[test]
fn kill_takes_term_by_number() {
    stops_on("15", "kill-term-num");
}

#[test]
fn kill_defaults_to_term() {
    let Some(mut c) = Case::new("kill-default") else {
        return;
    };
    c.sh(LOOP);
    c.write_config();
    c.create_and_start();
    c.rt(&["kill", &c.id]).check();
    c.wait_status("stopped", WAIT);
}

#[test]
fn start_twice_fails() {
    let Some(mut c) = Case::new("start-twice") else {
        return;
    };
    c.sh(LOOP);
    c.write_config();
    c.create_and_start();
    c.start().check_fails();
    assert_eq!(c.status(), "running");
}

#[test]
fn start_after_stop_fails() {
    let Some(c) = Case::new("start-stopped") else {
        return;
    };
    c.create().check();
    c.start().check();
    c.wait_status("stopped", WAIT);
    c.start().check_fails();
}

#[test]
fn delete_running_needs_force() {
    let Some(mut c) = Case::new("del-force") else {
        return;
    };
    c.sh(LOOP);
    c.write_config();
    let pid = c.create_and_start();
    c.delete().check_fails();
    assert_eq!(
        c.status(),
        "running",
        "a refused delete changed the container"
    );
    c.rt(&["delete", "--force", &c.id]).check();
    assert!(c.state().is_none(), "state works after delete --force");
    assert!(
        start_time(pid).is_none(),
        "init {pid} survived delete --force"
    );
    c.assert_clean();
}

#[test]
fn delete_force_removes_a_created_container() {
    let Some(mut c) = Case::new("del-created") else {
        return;
    };
    c.sh(LOOP);
    c.write_config();
    c.create().check();
    let pid = c.pid();
    c.rt(&["delete", "--force", &c.id]).check();
    assert!(
        start_time(pid).is_none(),
        "init {pid} survived delete --force"
    );
    c.assert_clean();
}

#[test]
fn state_of_a_stopped_container_keeps_its_id_and_bundle() {
    let Some(c) = Case::new("state-stopped") else {
        return;
    };
    c.create().check();
    c.start().check();
    c.wait_status("stopped", WAIT);
    let st = c.state().expect("state of a stopped container");
    assert_eq!(st["id"], c.id.as_str());
    assert_eq!(st["bundle"], c.bundle_str().as_str());
}

#[test]
fn create_with_a_terminal_sends_the_pty_over_the_console_socket() {
    let Some(mut c) = Case::new("console") else {
        return;
    };
    c.config["process"]["terminal"] = serde_json::json!(true);
    c.sh("tty; [ -t 0 ] && [ -t 1 ] && echo is-a-tty");
    c.write_config();
    let sock = ConsoleSocket::bind(c.path("console.sock"));
    let create = c.spawn(&[
        "create",
        "--bundle",
        &c.bundle_str(),
        "--console-socket",
        &sock.path_str(),
        &c.id,
    ]);
    let Some(master) = sock.recv_master(WAIT) else {
        panic!(
            "no pty master on the console socket: {:?}",
            create.wait(WAIT)
        );
    };
    create.wait(CMD_TIMEOUT).check();
    assert_eq!(c.status(), "created");
    c.start().check();
    let printed = read_pty(&master, WAIT);
    assert!(printed.contains("/dev/pts/"), "tty printed {printed:?}");
    assert!(
        printed.contains("is-a-tty\r\n"),
        "stdio is no terminal: {printed:?}"
    );
    c.wait_status("stopped", WAIT);
}

/// Socket activation as runc does it: with `LISTEN_PID` naming husk and `LISTEN_FDS=N`, fds
/// 3..3+N reach the process (ahead of `--preserve-fds`) with `LISTEN_FDS=N` and `LISTEN_PID=1`;
/// a `LISTEN_PID` of another process passes nothing.
#[test]
fn listen_fds_are_passed_like_runc() {
    let Some(mut c) = Case::new("listen-fds") else {
        return;
    };
    c.sh("echo \"$LISTEN_FDS $LISTEN_PID\"; echo via-3 >&3; echo via-4 >&4");
    c.write_config();
    let (f3, f4) = (c.path("fd3"), c.path("fd4"));
    // `exec` keeps the shell's pid, so $$ is husk's pid.
    let script = format!(
        "exec 3>'{}' 4>'{}'; exec env LISTEN_PID=$$ LISTEN_FDS=1 '{}' --root '{}' run \
         --preserve-fds 1 --bundle '{}' '{}'",
        f3.display(),
        f4.display(),
        c.bin.display(),
        c.root.display(),
        c.bundle_str(),
        c.id
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", &script]);
    let out = c.spawn_cmd(cmd, "run with LISTEN_FDS").wait(CMD_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, "1 1\n");
    assert_eq!(std::fs::read_to_string(&f3).unwrap(), "via-3\n");
    assert_eq!(std::fs::read_to_string(&f4).unwrap(), "via-4\n");

    // Meant for another process: nothing is passed, nothing is added to the environment.
    let script = format!(
        "exec 3>'{}'; exec env LISTEN_PID=1 LISTEN_FDS=1 '{}' --root '{}' run --bundle '{}' '{}'",
        f3.display(),
        c.bin.display(),
        c.root.display(),
        c.bundle_str(),
        c.id
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", &script]);
    let out = c
        .spawn_cmd(cmd, "run with another's LISTEN_PID")
        .wait(CMD_TIMEOUT);
    assert_ne!(out.code(), Some(0), "fd 3 should not exist: {out:?}");
    assert_eq!(out.stdout, " \n", "{out:?}");
    c.assert_clean();
}

/// The container's process may run on every CPU husk may: the init is placed on another CPU
/// than husk's while the two set up side by side, and returns to all of them before anything
/// of the container's runs (a mask left behind would be the container's).
#[test]
fn the_process_may_run_on_every_cpu_husk_may() {
    let Some(mut c) = Case::new("cpus") else {
        return;
    };
    c.sh("grep Cpus_allowed_list /proc/self/status");
    c.write_config();
    let out = c.run();
    assert_eq!(out.code(), Some(0), "{out:?}");
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let ours = ours
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list"))
        .unwrap();
    assert_eq!(out.stdout.trim(), ours, "{out:?}");
    c.assert_clean();
}
