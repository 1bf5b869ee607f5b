//! `exec` into a running container: it joins every namespace of the init, takes the requested
//! user, capabilities, env and cwd (from flags or `--process`), propagates exit codes, detaches,
//! and passes a pty over `--console-socket` with `--tty`.
mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const CAP_SYS_ADMIN_BIT: u32 = 21;

/// A started container running until killed, with its init pid.
fn running(name: &str) -> Option<(Case, i32)> {
    let mut c = Case::new(name)?;
    c.sh(LOOP);
    c.write_config();
    let pid = c.create_and_start();
    Some((c, pid))
}

/// `exec [flags] ID argv...`
fn exec(c: &Case, flags: &[&str], argv: &[&str]) -> Out {
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.push(&c.id);
    args.extend_from_slice(argv);
    c.rt(&args)
}

/// The effective capability mask a process reports in /proc/self/status.
fn cap_eff(status: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .unwrap_or_else(|| panic!("no CapEff: {status}"));
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).expect("CapEff is hex")
}

#[test]
fn exec_joins_every_namespace_of_the_init() {
    let Some((c, pid)) = running("exec-ns") else {
        return;
    };
    let init = namespaces_of(&pid.to_string());
    let script = "for n in cgroup ipc mnt net pid time user uts; do echo $n $(readlink /proc/self/ns/$n); done";
    let out = exec(&c, &[], &["sh", "-c", script]).check();
    let seen: Vec<(String, String)> = out
        .stdout
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .filter(|(_, link)| !link.is_empty())
        .collect();
    assert_eq!(seen, init, "exec'd process namespaces vs the init's");
    let host = namespaces_of("self");
    for ns in c.config["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
    {
        let ty = ns["type"].as_str().unwrap_or_default();
        let (name, link) = seen
            .iter()
            .find(|(n, _)| oci_ns_type(n) == ty)
            .expect("requested ns seen");
        let host_link = host.iter().find(|(n, _)| n == name).map(|(_, l)| l);
        assert_ne!(
            Some(link),
            host_link,
            "exec'd process shares the host's {name} namespace"
        );
    }
}

#[test]
fn exec_runs_as_the_requested_user() {
    let Some((c, _)) = running("exec-user") else {
        return;
    };
    let out = exec(&c, &["--user", "1000:1000"], &["sh", "-c", "id -u; id -g"]).check();
    assert_eq!(out.stdout, "1000\n1000\n");
}

#[test]
fn exec_adds_the_requested_capability() {
    let Some((c, _)) = running("exec-cap") else {
        return;
    };
    let plain = exec(&c, &[], &["cat", "/proc/self/status"]).check();
    assert_eq!(
        cap_eff(&plain.stdout) & (1 << CAP_SYS_ADMIN_BIT),
        0,
        "default spec grants CAP_SYS_ADMIN"
    );
    let with = exec(
        &c,
        &["--cap", "CAP_SYS_ADMIN"],
        &["cat", "/proc/self/status"],
    )
    .check();
    assert_ne!(
        cap_eff(&with.stdout) & (1 << CAP_SYS_ADMIN_BIT),
        0,
        "--cap CAP_SYS_ADMIN not effective"
    );
    assert_eq!(
        cap_eff(&with.stdout) & !(1 << CAP_SYS_ADMIN_BIT),
        cap_eff(&plain.stdout),
        "--cap changed other caps"
    );
}

#[test]
fn exec_sets_env_and_cwd() {
    let Some((c, _)) = running("exec-env") else {
        return;
    };
    let out = exec(
        &c,
        &["--env", "FOO=bar baz", "--cwd", "/tmp"],
        &["sh", "-c", "echo \"$FOO\"; pwd"],
    )
    .check();
    assert_eq!(out.stdout, "bar baz\n/tmp\n");
}

#[test]
fn exec_reads_the_process_from_a_json_file() {
    let Some((c, _)) = running("exec-procjson") else {
        return;
    };
    let process = json!({
        "terminal": false,
        "user": {"uid": 1000, "gid": 1000},
        "args": ["sh", "-c", "echo \"$GREETING\"; pwd; id -u; id -g"],
        "env": ["PATH=/bin:/usr/bin", "GREETING=hello"],
        "cwd": "/etc",
    });
    let path = c.path("process.json");
    std::fs::write(&path, process.to_string()).expect("write process.json");
    let out = c
        .rt(&["exec", "--process", &path.to_string_lossy(), &c.id])
        .check();
    assert_eq!(out.stdout, "hello\n/etc\n1000\n1000\n");
}

#[test]
fn exec_returns_the_process_exit_code() {
    let Some((c, _)) = running("exec-exit") else {
        return;
    };
    let out = exec(&c, &[], &["sh", "-c", "exit 7"]);
    assert_eq!(out.code(), Some(7), "{out:?}");
}

#[test]
fn exec_returns_128_plus_the_killing_signal() {
    let Some((c, _)) = running("exec-sig") else {
        return;
    };
    // Not pid 1 of the namespace, so a signal to itself is not ignored.
    let out = exec(&c, &[], &["sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.code(), Some(137), "{out:?}");
}

#[test]
fn exec_detach_returns_with_the_process_running() {
    let Some((c, init)) = running("exec-detach") else {
        return;
    };
    let pid_file = c.path_str("exec.pid");
    exec(
        &c,
        &["--detach", "--pid-file", &pid_file],
        &["sleep", "1000"],
    )
    .check();
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file written")
        .trim()
        .parse()
        .expect("pid file holds a pid");
    c.track_pid(pid);
    assert!(
        start_time(pid).is_some(),
        "detached process {pid} is not running"
    );
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv: Vec<&str> = cmdline.split('\0').collect();
    assert_eq!(
        argv,
        ["sleep", "1000", ""],
        "--pid-file names another process"
    );
    assert_eq!(
        namespaces_of(&pid.to_string()),
        namespaces_of(&init.to_string())
    );
    // Killing the container takes the exec'd process with it (the drop guard checks it is gone).
}

#[test]
fn exec_tty_passes_a_pty_over_the_console_socket() {
    let Some((c, _)) = running("exec-tty") else {
        return;
    };
    let sock = ConsoleSocket::bind(c.path("console.sock"));
    // runc only takes a console socket together with --detach (without it, it would be the one
    // holding the pty).
    let run = c.spawn(&[
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        &sock.path_str(),
        &c.id,
        "sh",
        "-c",
        "tty; [ -t 1 ] && echo is-a-tty",
    ]);
    let Some(master) = sock.recv_master(WAIT) else {
        panic!("no pty master on the console socket: {:?}", run.wait(WAIT));
    };
    let printed = read_pty(&master, WAIT);
    let out = run.wait(WAIT).check();
    assert!(
        printed.contains("/dev/pts/"),
        "tty printed {printed:?} ({out:?})"
    );
    assert!(
        printed.contains("is-a-tty\r\n"),
        "stdout is no terminal: {printed:?}"
    );
}

#[test]
fn exec_into_a_stopped_container_fails() {
    let Some((c, _)) = running("exec-stopped") else {
        return;
    };
    c.kill("KILL").check();
    c.wait_status("stopped", WAIT);
    exec(&c, &[], &["true"]).check_fails();
}
