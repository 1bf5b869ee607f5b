//! `husk sandbox`: verdicts, accuracy against the program's own clock and rusage, isolation, the isolate meta format,
//! bad usage, and batch mode. Every run is checked to leave no cgroup behind.

mod common;

use serde_json::Value;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A scratch directory the sandboxed program (uid 65534) may write to, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("husk-sbx-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        Dir(d)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

struct Out {
    code: Option<i32>,
    stderr: String,
    stdout: String,
    meta: Option<String>,
}

impl Out {
    fn verdict(&self) -> Value {
        let m = self.meta.as_deref().unwrap_or_else(|| {
            panic!("no --meta written; stderr: {}", self.stderr);
        });
        serde_json::from_str(m).unwrap_or_else(|e| panic!("meta {m:?}: {e}"))
    }
    fn status(&self) -> String {
        self.verdict()["status"].as_str().unwrap_or("").to_string()
    }
}

/// The cgroup directories a husk process with this pid made (`/husk-sandbox-<pid>-*`).
fn leftover_cgroups(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("husk-sandbox-{pid}-");
    let mut out = Vec::new();
    for h in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        for e in fs::read_dir(h.path()).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() && name.starts_with(&prefix) {
                out.push(e.path());
            }
        }
    }
    out
}

/// Run `husk sandbox ARGS` in `cwd` with `--meta` (JSON unless ARGS choose otherwise).
fn sandbox_in(cwd: &Path, args: &[&str], meta: bool) -> Out {
    let meta_file = cwd.join(format!(
        "meta-{}.out",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let mut cmd = Command::new(common::bin_under_test());
    cmd.arg("sandbox").current_dir(cwd);
    if meta {
        cmd.arg("--meta").arg(&meta_file);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn husk");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait husk");
    let left = leftover_cgroups(pid);
    assert!(left.is_empty(), "leftover cgroups: {left:?}");
    let meta = fs::read_to_string(&meta_file).ok();
    let _ = fs::remove_file(&meta_file);
    Out {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        meta,
    }
}

fn sandbox(dir: &Dir, args: &[&str]) -> Out {
    sandbox_in(&dir.0, args, true)
}

/// Compile a C program into `dir` (None when there's no compiler).
fn cc(dir: &Dir, name: &str, src: &str) -> Option<PathBuf> {
    let c = dir.path(&format!("{name}.c"));
    fs::write(&c, src).unwrap();
    let bin = dir.path(name);
    let ok = Command::new("cc")
        .args(["-O1", "-o"])
        .arg(&bin)
        .arg(&c)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then_some(bin)
}

#[test]
fn ok_re_sg() {
    if common::skip() {
        return;
    }
    let d = Dir::new("basic");
    let o = sandbox(&d, &["--", "/bin/true"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.status(), "OK");
    assert_eq!(o.verdict()["exit_code"], 0);

    let o = sandbox(&d, &["--", "sh", "-c", "exit 3"]);
    assert_eq!(o.code, Some(0));
    assert_eq!(o.status(), "RE");
    assert_eq!(o.verdict()["exit_code"], 3);

    let o = sandbox(&d, &["--", "sh", "-c", "kill -SEGV $$"]);
    assert_eq!(o.status(), "SG");
    assert_eq!(o.verdict()["signal"], 11);

    // Without --meta: one human line on stderr.
    let o = sandbox_in(&d.0, &["--", "sh", "-c", "exit 4"], false);
    assert_eq!(o.code, Some(0));
    assert!(o.stderr.contains("RE (exit code 4)"), "{}", o.stderr);
}

#[test]
fn time_limit_kills_promptly() {
    if common::skip() {
        return;
    }
    let d = Dir::new("tle");
    for grace in ["0", "0.2"] {
        let o = sandbox(
            &d,
            &[
                "--time",
                "1",
                "--extra-time",
                grace,
                "--",
                "sh",
                "-c",
                "while :; do :; done",
            ],
        );
        let v = o.verdict();
        assert_eq!(v["status"], "TLE", "{v}");
        let cpu = v["cpu_time_s"].as_f64().unwrap();
        let g: f64 = grace.parse().unwrap();
        assert!(cpu >= 1.0, "{v}");
        // Killed within 20 ms of CPU time past the limit (plus grace).
        assert!(cpu <= 1.0 + g + 0.020, "cpu {cpu} with grace {g}: {v}");
    }
}

#[test]
fn wall_time_limit() {
    if common::skip() {
        return;
    }
    let d = Dir::new("wle");
    let t = Instant::now();
    let o = sandbox(&d, &["--wall-time", "1", "--", "sleep", "5"]);
    assert_eq!(o.status(), "WLE");
    assert!(t.elapsed() < Duration::from_secs(3));
    let w = o.verdict()["wall_time_s"].as_f64().unwrap();
    assert!((1.0..1.1).contains(&w), "{w}");
}

#[test]
fn memory_limit_is_mle() {
    if common::skip() {
        return;
    }
    let d = Dir::new("mle");
    let Some(bin) = cc(
        &d,
        "eat",
        "#include <stdlib.h>\nint main(){size_t n=256u<<20; volatile char*p=malloc(n); \
         if(!p) return 2; for(size_t i=0;i<n;i+=4096) p[i]=1; return 0;}\n",
    ) else {
        eprintln!("skip: no C compiler");
        return;
    };
    assert!(bin.exists());
    // The box is the test's directory, at /box.
    let o = sandbox(&d, &["--memory", "64M", "--", "./eat"]);
    let v = o.verdict();
    assert_eq!(v["status"], "MLE", "{v}");
    assert_eq!(v["oom_killed"], true);
}

#[test]
fn output_limit_is_ole() {
    if common::skip() {
        return;
    }
    let d = Dir::new("ole");
    let out = d.path("out");
    let o = sandbox(
        &d,
        &[
            "--output",
            "1M",
            "--stdout",
            out.to_str().unwrap(),
            "--",
            "head",
            "-c",
            "6000000",
            "/dev/zero",
        ],
    );
    assert_eq!(o.status(), "OLE", "{}", o.verdict());
    assert_eq!(fs::metadata(&out).unwrap().len(), 1 << 20);
    // Through a shell, to a file of the sandbox's own.
    let o = sandbox(
        &d,
        &[
            "--output",
            "1M",
            "--",
            "sh",
            "-c",
            "head -c 6000000 /dev/zero > /tmp/x",
        ],
    );
    assert_eq!(o.status(), "OLE", "{}", o.verdict());
}

#[test]
fn fork_bomb_is_contained() {
    if common::skip() {
        return;
    }
    let d = Dir::new("bomb");
    let t = Instant::now();
    let o = sandbox(
        &d,
        &[
            "--pids",
            "16",
            "--wall-time",
            "2",
            "--",
            "sh",
            "-c",
            "f(){ f | f & }; f; sleep 1",
        ],
    );
    let v = o.verdict();
    assert_ne!(v["status"], "XX", "{v}");
    assert!(t.elapsed() < Duration::from_secs(5));
    // The host still forks fine.
    assert!(Command::new("true").status().unwrap().success());
}

#[test]
fn cpu_and_memory_accuracy() {
    if common::skip() {
        return;
    }
    let d = Dir::new("accuracy");
    if cc(
        &d,
        "spin",
        // Prints the CPU time the kernel charged it, as it ends.
        "#include <stdio.h>\n#include <time.h>\n\
         int main(){volatile unsigned long x=0; for(unsigned long i=0;i<500000000UL;i++) x+=i; \
         struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID,&t); \
         printf(\"%ld.%09ld\\n\",(long)t.tv_sec,t.tv_nsec); return (int)(x&1);}\n",
    )
    .is_none()
    {
        eprintln!("skip: no C compiler");
        return;
    }
    // The verdict against the program's own account of the same run: runs of one program on
    // this host differ by a fifth from one to the next (the VM's neighbours), so two separate
    // runs can't be compared to 5%. The cgroup charges the program and the little around it
    // (its exec and loader, the reaper): never less than the program's own clock, and not
    // more than a few milliseconds over. A clock started late (after the program began)
    // makes it less.
    for _ in 0..3 {
        let o = sandbox(&d, &["--", "./spin"]);
        let v = o.verdict();
        assert_eq!(v["status"], "OK", "{v}");
        let own: f64 = o.stdout.trim().parse().unwrap_or_else(|e| {
            panic!("the program's own CPU time {:?}: {e}", o.stdout);
        });
        let i = v["cpu_time_s"].as_f64().unwrap();
        assert!(own > 0.1, "job too short to compare: {own}");
        assert!(
            i >= own - 0.002 && i <= own * 1.02 + 0.02,
            "cpu_time_s {i} vs the program's own {own}"
        );
        let wall = v["wall_time_s"].as_f64().unwrap();
        assert!(
            wall >= own - 0.002,
            "wall_time_s {wall} below its CPU time {own}"
        );
    }
    let Some(touch) = cc(
        &d,
        "touch100",
        "#include <stdlib.h>\nint main(){size_t n=100u<<20; volatile char*p=malloc(n); \
         if(!p) return 2; for(size_t i=0;i<n;i+=4096) p[i]=1; return 0;}\n",
    ) else {
        return;
    };
    assert!(touch.exists());
    let o = sandbox(&d, &["--", "./touch100"]);
    let kb = o.verdict()["max_rss_kb"].as_f64().unwrap();
    let want = 100.0 * 1024.0;
    assert!((kb - want).abs() <= 0.05 * want, "max_rss_kb {kb}");
}

#[test]
fn isolation() {
    if common::skip() {
        return;
    }
    let d = Dir::new("iso");
    let host_file = d.path("host-owned");
    fs::write(&host_file, "x").unwrap();
    let script = r#"
        n=$(ls /proc | grep -c '^[0-9]')
        echo "procs=$n"
        echo "ifaces=$(ls /sys/class/net 2>/dev/null | tr '\n' ' ')"
        echo "netdev=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')"
        touch /etc/husk-probe 2>/dev/null && echo "etc=writable" || echo "etc=ro"
        touch /usr/husk-probe 2>/dev/null && echo "usr=writable" || echo "usr=ro"
        touch /tmp/probe && echo "tmp=rw"
        echo "fds=$(ls /proc/self/fd | tr '\n' ' ')"
        grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t' | tr '\n' ' '
        echo
        id -u
    "#;
    let out = d.path("out.txt");
    let o = sandbox(
        &d,
        &["--stdout", out.to_str().unwrap(), "--", "sh", "-c", script],
    );
    assert_eq!(o.status(), "OK", "{}", o.verdict());
    let text = fs::read_to_string(&out).unwrap();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
            .to_string()
    };
    // Only its own processes: the reaper, sh, ls, grep.
    let procs: usize = get("procs").parse().unwrap();
    assert!(procs <= 6, "sees {procs} processes:\n{text}");
    assert_eq!(get("netdev").trim(), "lo", "{text}");
    assert_eq!(get("etc"), "ro");
    assert_eq!(get("usr"), "ro");
    assert_eq!(get("tmp"), "rw");
    // No descriptor of husk's: 0-2 and the one ls opens for /proc/self/fd.
    assert_eq!(get("fds").trim(), "0 1 2 3", "{text}");
    assert!(text.contains("CapEff:0000000000000000"), "{text}");
    assert!(text.contains("CapBnd:0000000000000000"), "{text}");
    assert!(text.contains("NoNewPrivs:1"), "{text}");
    assert!(text.contains("Seccomp:2"), "{text}");
    assert!(text.lines().any(|l| l == "65534"), "{text}");
    assert!(!Path::new("/etc/husk-probe").exists());

    // Loopback works; ptrace, mount, modules, clock changes and keyrings are refused.
    let py = r#"
import ctypes, socket, os, errno
libc = ctypes.CDLL(None, use_errno=True)
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
c = socket.create_connection(s.getsockname()); print("loopback=ok")
def errno_of(r):
    return "ok" if r == 0 else errno.errorcode.get(ctypes.get_errno(), "?")
print("ptrace=" + errno_of(libc.ptrace(16, 1, 0, 0)))
print("mount=" + errno_of(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)))
print("init_module=" + errno_of(libc.syscall(175, None, 0, b"")))
print("settime=" + errno_of(libc.syscall(164, None, None)))
print("keyctl=" + errno_of(libc.syscall(250, 0, 0, 0, 0, 0)))
print("io_uring=" + errno_of(libc.syscall(425, 1, None)))
print("unshare=" + errno_of(libc.unshare(0x10000000)))
try:
    socket.socket(40, socket.SOCK_STREAM); print("vsock=ok")
except OSError as e:
    print("vsock=" + errno.errorcode.get(e.errno, "?"))
try:
    open(os.environ.get("HOSTFILE"), "a").write("y"); print("hostfile=written")
except OSError as e:
    print("hostfile=" + errno.errorcode.get(e.errno, "?"))
"#;
    let out2 = d.path("out2.txt");
    let hostfile_env = format!("HOSTFILE={}", host_file.display());
    let o = sandbox(
        &d,
        &[
            "--stdout",
            out2.to_str().unwrap(),
            "--env",
            &hostfile_env,
            "--",
            "python3",
            "-c",
            py,
        ],
    );
    let text = fs::read_to_string(&out2).unwrap_or_default();
    assert_eq!(o.status(), "OK", "{} {text}", o.verdict());
    for (k, bad) in [
        ("loopback", "?"),
        ("ptrace", "ok"),
        ("mount", "ok"),
        ("init_module", "ok"),
        ("settime", "ok"),
        ("keyctl", "ok"),
        ("io_uring", "ok"),
        ("unshare", "ok"),
        ("vsock", "ok"),
        ("hostfile", "written"),
    ] {
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing in {text}"));
        assert_ne!(v, bad, "{k}={v}\n{text}");
    }
    assert_eq!(fs::read_to_string(&host_file).unwrap(), "x");

    // --dir rules: a read-only bind can't be written, a tmpfs can.
    let ro = Dir::new("iso-ro");
    let rule = format!("/data={}", ro.0.display());
    let o = sandbox(
        &d,
        &[
            "--dir",
            &rule,
            "--dir",
            "/scratch:tmpfs",
            "--",
            "sh",
            "-c",
            "touch /scratch/a && ! touch /data/b 2>/dev/null",
        ],
    );
    assert_eq!(o.status(), "OK", "{}", o.verdict());
    assert!(!ro.path("b").exists());
}

/// A parser in the style of the ones judges use for isolate's meta files.
fn parse_isolate(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn isolate_meta_matches_json() {
    if common::skip() {
        return;
    }
    let d = Dir::new("isolate");
    for (args, json_status, isolate_status) in [
        (vec!["--", "sh", "-c", "exit 2"], "RE", Some("RE")),
        (vec!["--", "sh", "-c", "kill -SEGV $$"], "SG", Some("SG")),
        (
            vec!["--time", "0.3", "--", "sh", "-c", "while :; do :; done"],
            "TLE",
            Some("TO"),
        ),
        (vec!["--", "true"], "OK", None),
    ] {
        let json = sandbox(&d, &args);
        let v = json.verdict();
        assert_eq!(v["status"], json_status);
        let mut iso_args = vec!["--meta-format", "isolate"];
        iso_args.extend(args.iter());
        let iso = sandbox(&d, &iso_args);
        let m = parse_isolate(iso.meta.as_deref().unwrap());
        assert_eq!(m.get("status").map(String::as_str), isolate_status, "{m:?}");
        for k in [
            "time",
            "time-wall",
            "max-rss",
            "csw-voluntary",
            "csw-forced",
        ] {
            assert!(m.contains_key(k), "{k} missing: {m:?}");
        }
        let t: f64 = m["time"].parse().unwrap();
        let jt = v["cpu_time_s"].as_f64().unwrap();
        assert!((t - jt).abs() < 0.1, "isolate time {t} vs json {jt}");
        match json_status {
            "RE" => assert_eq!(m["exitcode"], "2"),
            "SG" => assert_eq!(m["exitsig"], "11"),
            "TLE" => assert_eq!(m["killed"], "1"),
            _ => assert_eq!(m["exitcode"], "0"),
        }
    }
}

#[test]
fn bad_usage_exits_2() {
    if common::skip() {
        return;
    }
    let d = Dir::new("usage");
    for (args, needle) in [
        (vec!["--memory", "lots", "--", "true"], "--memory"),
        (vec!["--bogus", "--", "true"], "--bogus"),
        (vec![], "COMMAND"),
        (vec!["--stdin", "/nonexistent/in", "--", "true"], "--stdin"),
        (vec!["--dir", "/x=/nonexistent/dir", "--", "true"], "--dir"),
        (vec!["--time", "soon", "--", "true"], "--time"),
    ] {
        let o = sandbox(&d, &args);
        assert_eq!(o.code, Some(2), "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains(needle), "{args:?}: {}", o.stderr);
        assert!(o.meta.is_none());
    }
    let o = sandbox_in(&d.0, &["--help"], false);
    assert_eq!(o.code, Some(0));
    assert!(o.stdout.contains("Exit status: 0"), "{}", o.stdout);
}

#[test]
fn batch_of_1000_and_private_tmp() {
    if common::skip() {
        return;
    }
    let d = Dir::new("batch");
    let jobs = d.path("jobs.jsonl");
    let mut text = String::new();
    for _ in 0..1000 {
        text.push_str("{\"args\": [\"/bin/true\"]}\n");
    }
    fs::write(&jobs, &text).unwrap();
    let t = Instant::now();
    let o = sandbox_in(&d.0, &["--batch", jobs.to_str().unwrap()], false);
    let took = t.elapsed();
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let lines: Vec<Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1000);
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["index"], i);
        assert_eq!(v["status"], "OK", "{v}");
    }
    eprintln!("1000 jobs in {took:?}");

    // Each job writes a marker to /tmp and reports what it found there first.
    let mut text = String::new();
    for i in 0..20 {
        let out = d.path(&format!("tmp-{i}.txt"));
        text.push_str(&format!(
            "{{\"args\": [\"sh\", \"-c\", \"ls -A /tmp; touch /tmp/job-{i}; sleep 0.0{}\"], \"stdout\": \"{}\"}}\n",
            i % 3,
            out.display()
        ));
    }
    text.push_str("{\"memory\": \"lots\", \"args\": [\"true\"]}\n");
    text.push_str("not json\n");
    fs::write(&jobs, &text).unwrap();
    let o = sandbox_in(
        &d.0,
        &["--batch", jobs.to_str().unwrap(), "--jobs", "2"],
        false,
    );
    assert_eq!(o.code, Some(2), "bad lines make the exit status 2");
    assert!(
        o.stderr.contains("line 21") && o.stderr.contains("line 22"),
        "{}",
        o.stderr
    );
    let lines: Vec<Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 22);
    for (i, line) in lines.iter().take(20).enumerate() {
        assert_eq!(line["status"], "OK", "{line}");
        let seen = fs::read_to_string(d.path(&format!("tmp-{i}.txt"))).unwrap();
        assert!(
            !seen.contains("job-"),
            "job {i} saw another job's /tmp: {seen}"
        );
    }
    assert_eq!(lines[20]["status"], "XX");
}

/// As a user (uid 65534 here): a user namespace maps the caller to the sandbox's uid, the
/// limits that need a cgroup fall back to rlimits, and the verdict says which — never silently.
#[test]
fn non_root_caller_gets_a_user_namespace_and_is_told_what_is_unenforced() {
    if common::skip() {
        return;
    }
    let Ok(setpriv) = which("setpriv") else {
        panic!("setpriv (util-linux) is missing: apt-get install util-linux");
    };
    let d = Dir::new("nonroot");
    let run = |args: &[&str]| {
        let meta = d.path("meta.json");
        let _ = fs::remove_file(&meta);
        let out = Command::new(&setpriv)
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(common::bin_under_test())
            .arg("sandbox")
            .arg("--meta")
            .arg(&meta)
            .args(args)
            .current_dir(&d.0)
            .stdin(Stdio::null())
            .output()
            .expect("run setpriv husk sandbox");
        let v: Value = serde_json::from_str(&fs::read_to_string(&meta).unwrap_or_else(|_| {
            panic!("no meta; stderr: {}", String::from_utf8_lossy(&out.stderr))
        }))
        .unwrap();
        (v, String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (v, out) = run(&[
        "--pids",
        "32",
        "--",
        "sh",
        "-c",
        "id -u; ls /proc | grep -c '^[0-9]'; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; \
         cat /proc/self/uid_map",
    ]);
    assert_eq!(v["status"], "OK", "{v}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"65534"), "{out}");
    let procs: u32 = lines.get(1).and_then(|l| l.parse().ok()).unwrap_or(99);
    assert!(procs <= 5, "sees other processes: {out}");
    assert_eq!(lines.get(2), Some(&"lo"), "{out}");
    assert!(out.contains("65534      65534          1"), "{out}");
    let msg = v["message"].as_str().unwrap_or("");
    assert!(msg.contains("--pids (RLIMIT_NPROC)"), "{v}");

    let (v, _) = run(&["--time", "0.5", "--", "sh", "-c", "while :; do :; done"]);
    assert_eq!(v["status"], "TLE", "{v}");
    assert!(
        v["message"].as_str().unwrap_or("").contains("--time"),
        "{v}"
    );
    let (v, _) = run(&[
        "--memory",
        "64M",
        "--",
        "sh",
        "-c",
        "exec head -c 200000000 /dev/zero | tail -c 1 >/dev/null",
    ]);
    assert!(
        v["message"].as_str().unwrap_or("").contains("RLIMIT_AS"),
        "{v}"
    );
    let (v, _) = run(&["--wall-time", "0.5", "--", "sleep", "5"]);
    assert_eq!(v["status"], "WLE", "{v}");
    let _ = fs::remove_dir_all("/tmp/husk-sandbox-65534");
}

/// The program may run on every CPU husk may: husk places its helpers and the sandbox's init
/// on another CPU than its own while they set up side by side; the init returns to all of them
/// before the program is forked.
#[test]
fn the_program_may_run_on_every_cpu_husk_may() {
    if common::skip() {
        return;
    }
    let d = Dir::new("cpus");
    let out = d.path("out.txt");
    let o = sandbox(
        &d,
        &[
            "--stdout",
            out.to_str().unwrap(),
            "--",
            "grep",
            "Cpus_allowed_list",
            "/proc/self/status",
        ],
    );
    assert_eq!(o.status(), "OK", "{}", o.verdict());
    let theirs = fs::read_to_string(&out).unwrap();
    let ours = fs::read_to_string("/proc/self/status").unwrap();
    let ours = ours
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list"))
        .unwrap();
    assert_eq!(theirs.trim(), ours);
}

/// A run makes only the file systems its program uses: /proc, /dev, /dev/shm and /tmp (the box
/// is the caller's directory; the masks of files are binds of /dev/null). Each new one is a
/// superblock made and torn down per run and per batch job; a fresh /run and a tmpfs masking
/// /proc/acpi cost 0.2 ms of a run. What they guarded stays guarded: /proc is read-only, /run
/// is the skeleton's empty read-only directory.
#[test]
fn a_run_mounts_only_the_file_systems_its_program_uses() {
    if common::skip() {
        return;
    }
    let d = Dir::new("fresh-fs");
    let out = d.path("out.txt");
    let script = r#"
        awk '{ for (i = 7; $i != "-"; i++) ; if ($4 == "/" && ($(i+1) == "tmpfs" || $(i+1) == "proc")) print $5 }' /proc/self/mountinfo | sort | tr '\n' ' '
        echo
        touch /run/probe 2>/dev/null && echo run=writable || echo run=ro
        mkdir /proc/acpi/probe 2>/dev/null && echo acpi=writable || echo acpi=ro
        ls -A /run | wc -l
    "#;
    let o = sandbox(
        &d,
        &["--stdout", out.to_str().unwrap(), "--", "sh", "-c", script],
    );
    assert_eq!(o.status(), "OK", "{}", o.verdict());
    let text = fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap().trim(),
        "/dev /dev/shm /proc /tmp",
        "{text}"
    );
    assert_eq!(lines.next(), Some("run=ro"), "{text}");
    assert_eq!(lines.next(), Some("acpi=ro"), "{text}");
    assert_eq!(lines.next().map(str::trim), Some("0"), "{text}");
}

/// A batch job's init changes no credentials to empty a bounding set its zygote emptied once
/// for the slot: each `PR_CAPBSET_DROP` is a new set of credentials even for a capability that
/// is gone already, and 41 of them per job were 2% of a `--jobs 1` batch.
#[test]
fn batch_jobs_drop_no_bounding_capability_their_zygote_dropped() {
    if common::skip() {
        return;
    }
    let d = Dir::new("batch-caps");
    let jobs = d.path("jobs.jsonl");
    fs::write(&jobs, "{\"args\": [\"/bin/true\"]}\n".repeat(5)).unwrap();
    let batch = ["--jobs", "1", "--batch", jobs.to_str().unwrap()];
    let (stdout, log) = strace_sandbox(&d, "prctl", &batch);
    let oks = stdout.matches("\"OK\"").count();
    assert_eq!(oks, 5, "{stdout}");
    let drops = log.matches("PR_CAPBSET_DROP").count();
    // The zygote's one pass (at most one per capability), none per job.
    assert!(
        (1..=64).contains(&drops),
        "{drops} bounding-set drops for 5 jobs:\n{log}"
    );
}

/// A pool's slots join their cgroups the way a container's init does (`CLONE_INTO_CGROUP`, or
/// "0" written to the v1 `tasks` files by the zygote itself), never by a pid written to
/// `cgroup.procs`: that write waits for an RCU grace period, and made a pool's start 8-30 ms
/// slow. The jobs' limits still hold (the memory tests of `sandbox_judge` and the pids tests
/// here run through the same slots).
#[test]
fn a_pool_slot_joins_its_cgroup_without_moving_a_process_by_pid() {
    if common::skip() {
        return;
    }
    let d = Dir::new("batch-join");
    let jobs = d.path("jobs.jsonl");
    fs::write(&jobs, "{\"args\": [\"/bin/true\"]}\n".repeat(2)).unwrap();
    let batch = ["--jobs", "1", "--batch", jobs.to_str().unwrap()];
    let (stdout, log) = strace_sandbox(&d, "open,openat", &batch);
    assert_eq!(stdout.matches("\"OK\"").count(), 2, "{stdout}");
    let moves: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("/cgroup.procs\"") && l.contains("O_WRONLY"))
        .collect();
    assert!(moves.is_empty(), "{moves:#?}");
    assert!(
        log.contains("husk-sandbox-"),
        "no slot cgroup opened:\n{log}"
    );
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

/// The strace log (`strace -f -e trace=CALLS`) of `husk sandbox -- /bin/true`, which must
/// succeed.
fn strace_single_run(tag: &str, calls: &str) -> String {
    let dir = Dir::new(tag);
    strace_sandbox(&dir, calls, &["--", "/bin/true"]).1
}

/// `husk sandbox ARGS` in `dir` under `strace -f -e trace=CALLS`, which must succeed: its
/// stdout and the strace log.
fn strace_sandbox(dir: &Dir, calls: &str, args: &[&str]) -> (String, String) {
    let strace = which("strace").expect("strace (scripts/setup installs it)");
    let log = dir.path("strace.log");
    let out = Command::new(strace)
        .args(["-f", "-qq", "-e", &format!("trace={calls}"), "-o"])
        .arg(&log)
        .arg(common::bin_under_test())
        .arg("sandbox")
        .args(args)
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        fs::read_to_string(&log).unwrap(),
    )
}

/// husk's own processes (the runtime, its holders, the sandbox's init) unmap nothing during a
/// run: on a VM every unmap of memory that another CPU has loaded is a TLB shootdown there
/// (an inter-processor interrupt, paid for in exits), and a run had eight of them (musl's
/// malloc behind `opendir` and `realpath`, the program's stack), 0.25 ms of a single run
/// (`scripts/bench-sandbox`). The program's own unmaps (after its exec) don't count.
#[test]
fn husk_unmaps_nothing_of_its_own() {
    let log = strace_single_run("unmap", "munmap,execve");
    let mut program = std::collections::HashSet::new();
    let mut ours = Vec::new();
    for line in log.lines() {
        let Some((pid, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        if call.starts_with("execve(\"/bin/true\"") && call.ends_with("= 0") {
            program.insert(pid.to_string());
        } else if call.starts_with("munmap(") && !program.contains(pid) {
            ours.push(line.to_string());
        }
    }
    assert!(
        !program.is_empty(),
        "the program's exec is not in the log:\n{log}"
    );
    assert!(ours.is_empty(), "husk's processes unmapped: {ours:#?}");
}

/// A single run leaves its network namespace's holder to die with husk (PDEATHSIG) rather than
/// killing it: alive at husk's exit, it keeps husk's memory from being torn down on the
/// caller's time (`run::Then::Exit`). It must still die: strace waits for it, and sees it
/// killed.
#[test]
fn a_single_runs_net_holder_dies_with_husk_not_before() {
    let log = strace_single_run("holder", "clone,clone3,kill,exit_group");
    let husk = log.split_whitespace().next().unwrap().to_string();
    let by_husk: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with(&format!("{husk} ")))
        .collect();
    // The first child husk clones is the holder (it shares husk's memory: CLONE_VM). Its pid
    // ends the clone's line, or the line that resumes it.
    let at = by_husk
        .iter()
        .position(|l| l.contains("CLONE_VM"))
        .expect("the holder's clone");
    let returned = if by_husk[at].contains("<unfinished") {
        by_husk[at..].iter().find(|l| l.contains("clone resumed>"))
    } else {
        by_husk.get(at)
    };
    let holder = returned
        .and_then(|l| l.rsplit("= ").next())
        .map(|p| p.trim().to_string())
        .expect("the holder's pid");
    let killed_by_husk = by_husk
        .iter()
        .any(|l| l.contains(&format!("kill({holder}, SIGKILL")));
    assert!(!killed_by_husk, "husk killed its holder itself:\n{log}");
    let died = log
        .lines()
        .any(|l| l.starts_with(&format!("{holder} ")) && l.contains("killed by SIGKILL"));
    assert!(died, "the holder did not die of husk's exit:\n{log}");
}
