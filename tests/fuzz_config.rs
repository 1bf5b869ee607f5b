//! Property test over `config.json`: 10,000 mutated real configs (from `husk spec` and
//! `runc spec`: removed fields, type changes, boundary numbers, odd strings, unknown keys,
//! duplicated array items, at random JSON paths) and 3,000 random seccomp profiles, each handed
//! to `husk run` with `/bin/true` as the process. husk must never panic, die of a signal or
//! hang (10 s per case), must answer with a clear error (exit 1 and exactly one stderr line)
//! or run the container, and must leave nothing behind (state dir, cgroup, processes, mounts).
//! At least 99% of the rejected configs must name a mutated field: its JSON path or key (or,
//! for errors the init meets, the mount destination or file it came from).
//! And kill -9 of husk at 300 random points of create/start/run/exec/delete: `delete --force`
//! afterwards leaves nothing.
//!
//! Deterministic: case n's config depends only on `HUSK_FUZZ_SEED` (default fixed) and n,
//! whatever the number of workers (`HUSK_FUZZ_JOBS`); `HUSK_FUZZ_CASES` sets the count per
//! test, `HUSK_KILL9_TRIALS` the kill -9 trials. A failing case's config is kept in
//! /tmp/husk-fuzz-failures-<pid>/ for replay. Most cases are invalid and cost one ~3 ms
//! `husk run`; the valid ones run /bin/true (~15 ms).
mod common;

use common::*;
use serde_json::{json, Map, Value};
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

fn seed() -> u64 {
    std::env::var("HUSK_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EC0_4A11_F022_2026)
}

fn cases(default: usize) -> usize {
    std::env::var("HUSK_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

const STRINGS: &[&str] = &[
    "",
    ".",
    "..",
    "/",
    "/../../../../etc",
    "../../../../../tmp",
    "relative/path",
    "/proc/self/fd/3",
    "/dev/null",
    "a\nb",
    "nul\u{0}byte",
    "ünïcödé ☃",
    "-1",
    "0x10",
    "SCMP_ACT_ALLOW",
    "RLIMIT_NOFILE",
    "CAP_SYS_ADMIN",
    "CAP_BOGUS",
    "mount",
    "bogus",
    "tmpfs",
    "bind",
    "ro",
    "nosuid",
    "size=1k",
    "idmap",
    "user",
    "pid",
    "network",
    "cgroup",
    "time",
];

fn random_string(r: &mut Rng) -> String {
    match r.below(4) {
        0 => "x".repeat(r.below(5000)),
        1 => (0..r.below(40))
            .map(|_| char::from_u32(r.below(0x2FF) as u32 + 1).unwrap_or('?'))
            .collect(),
        _ => r.pick(STRINGS).to_string(),
    }
}

fn random_number(r: &mut Rng) -> Value {
    match r.below(12) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(u32::MAX),
        3 => json!(u64::MAX),
        4 => json!(i64::MIN),
        5 => json!(1.5),
        6 => json!(1e308),
        7 => json!((1u64 << 53) + 1),
        8 => json!(u32::MAX as u64 + 1),
        9 => json!(65535),
        _ => json!(r.next() % 100_000),
    }
}

fn random_value(r: &mut Rng, depth: u32) -> Value {
    match r.below(if depth > 2 { 4 } else { 7 }) {
        0 => Value::Null,
        1 => json!(r.chance(50)),
        2 => random_number(r),
        3 => json!(random_string(r)),
        4 => Value::Array(
            (0..r.below(4))
                .map(|_| random_value(r, depth + 1))
                .collect(),
        ),
        5 => {
            let mut m = Map::new();
            for _ in 0..r.below(4) {
                m.insert(random_string(r), random_value(r, depth + 1));
            }
            Value::Object(m)
        }
        _ => json!([random_string(r)]),
    }
}

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Idx(usize),
}

/// Every JSON path of `v` (the root excluded).
fn paths(v: &Value, prefix: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                prefix.push(Seg::Key(k.clone()));
                out.push(prefix.clone());
                paths(c, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                prefix.push(Seg::Idx(i));
                out.push(prefix.clone());
                paths(c, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn get_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    let mut cur = v;
    for s in path {
        cur = match s {
            Seg::Key(k) => cur.get_mut(k.as_str())?,
            Seg::Idx(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

/// One mutation at a random path; returns a description and the path.
fn mutate(r: &mut Rng, cfg: &mut Value) -> (String, Vec<Seg>) {
    let mut all = Vec::new();
    paths(cfg, &mut Vec::new(), &mut all);
    if all.is_empty() {
        return ("nothing to mutate".into(), Vec::new());
    }
    let path = r.pick(&all).clone();
    (mutate_at(r, cfg, &path), path)
}

/// The mutation itself, at `path`.
fn mutate_at(r: &mut Rng, cfg: &mut Value, path: &[Seg]) -> String {
    let path = path.to_vec();
    let name = path
        .iter()
        .map(|s| match s {
            Seg::Key(k) => format!(".{k}"),
            Seg::Idx(i) => format!("[{i}]"),
        })
        .collect::<String>();
    let (parent_path, last) = path.split_at(path.len() - 1);
    let op = r.below(7);
    match op {
        0 => {
            // Remove the field or the array item.
            if let Some(p) = get_mut(cfg, parent_path) {
                match (&last[0], p) {
                    (Seg::Key(k), Value::Object(m)) => {
                        m.remove(k);
                    }
                    (Seg::Idx(i), Value::Array(a)) if *i < a.len() => {
                        a.remove(*i);
                    }
                    _ => {}
                }
            }
            format!("remove {name}")
        }
        1 => {
            let v = random_value(r, 0);
            if let Some(t) = get_mut(cfg, &path) {
                *t = v;
            }
            format!("random value at {name}")
        }
        2 => {
            // Type change keeping the content where possible.
            if let Some(t) = get_mut(cfg, &path) {
                *t = match t.take() {
                    Value::String(s) => s
                        .parse::<i64>()
                        .map(|n| json!(n))
                        .unwrap_or_else(|_| json!([s])),
                    Value::Number(n) => json!(n.to_string()),
                    Value::Bool(b) => json!(if b { 1 } else { 0 }),
                    Value::Array(a) => json!({"0": Value::Array(a)}),
                    Value::Object(o) => Value::Array(o.into_iter().map(|(_, v)| v).collect()),
                    Value::Null => json!({}),
                };
            }
            format!("type change at {name}")
        }
        3 => {
            let n = random_number(r);
            if let Some(t) = get_mut(cfg, &path) {
                *t = n;
            }
            format!("number at {name}")
        }
        4 => {
            let s = random_string(r);
            if let Some(t) = get_mut(cfg, &path) {
                *t = json!(s);
            }
            format!("string at {name}")
        }
        5 => {
            // An unknown key in an object, or a duplicated array item.
            let k = format!("husk-fuzz-{}", r.below(1000));
            let v = random_value(r, 1);
            if let Some(t) = get_mut(cfg, &path) {
                match t {
                    Value::Object(m) => {
                        m.insert(k, v);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        let dup = a[0].clone();
                        a.push(dup);
                    }
                    _ => {}
                }
            }
            format!("extend {name}")
        }
        _ => {
            if let Some(t) = get_mut(cfg, &path) {
                if let Value::Array(a) = t {
                    a.truncate(a.len() / 2);
                } else {
                    *t = Value::Null;
                }
            }
            format!("truncate/null {name}")
        }
    }
}

/// Keeps the fuzzer off the host: the rootfs stays the case's, the cgroup is always the case's
/// absolute path (absent, a runtime would put it under the caller's cgroup), and nothing may
/// propagate mounts back to the host.
fn sanitize(cfg: &mut Value, cgroups_path: &str) {
    if let Some(p) = cfg.get_mut("root").and_then(|r| r.get_mut("path")) {
        if p.is_string() {
            *p = json!("rootfs");
        }
    }
    if !cfg.get("linux").is_some_and(Value::is_object) {
        cfg["linux"] = json!({});
    }
    cfg["linux"]["cgroupsPath"] = json!(cgroups_path);
    if let Some(l) = cfg["linux"].as_object_mut() {
        if l.get("rootfsPropagation")
            .and_then(Value::as_str)
            .is_some_and(|p| p.contains("shared"))
        {
            l.remove("rootfsPropagation");
        }
        // No hooks: they would run host programs.
    }
    if let Some(o) = cfg.as_object_mut() {
        o.remove("hooks");
    }
    if let Some(ms) = cfg.get_mut("mounts").and_then(Value::as_array_mut) {
        for m in ms {
            if let Some(opts) = m.get_mut("options").and_then(Value::as_array_mut) {
                opts.retain(|o| !o.as_str().is_some_and(|s| s.contains("shared")));
            }
        }
    }
}

const SYSCALLS: &[&str] = &[
    "read",
    "write",
    "openat",
    "close",
    "execve",
    "exit_group",
    "getpid",
    "getppid",
    "mmap",
    "brk",
    "arch_prctl",
    "socket",
    "personality",
    "clone",
    "clone3",
    "unshare",
    "mount",
    "ptrace",
    "kill",
    "uname",
    "getuid",
    "ioctl",
    "prctl",
    "seccomp",
    "fstat",
    "newfstatat",
    "rt_sigaction",
    "set_tid_address",
    "socketcall",
    "waitpid",
    "no_such_syscall",
    "",
];
const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_BOGUS",
];
const ARCHES: &[&str] = &[
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_BOGUS",
];
const OPS: &[&str] = &[
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_BOGUS",
];
const FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    "SECCOMP_FILTER_FLAG_BOGUS",
];

fn u64_value(r: &mut Rng) -> Value {
    match r.below(6) {
        0 => json!(0),
        1 => json!(u64::MAX),
        2 => json!(u32::MAX),
        3 => json!(1u64 << 32),
        4 => json!(-1),
        _ => json!(r.next()),
    }
}

fn u64_valid(r: &mut Rng) -> Value {
    match r.below(5) {
        0 => json!(0),
        1 => json!(u64::MAX),
        2 => json!(u32::MAX),
        3 => json!(1u64 << 32),
        _ => json!(r.next()),
    }
}

/// A random seccomp profile: mostly well-formed (so it compiles and runs), sometimes not.
fn random_profile(r: &mut Rng) -> Value {
    // Three in four profiles use only valid pieces; the rest draw from everything.
    let valid = r.chance(75);
    let pick_valid = |r: &mut Rng, all: &[&'static str]| -> &'static str {
        if valid {
            // The bogus entry is always the last of each list.
            all[r.below(all.len() - 1)]
        } else {
            all[r.below(all.len())]
        }
    };
    let small = |r: &mut Rng| -> Value {
        if valid {
            json!(r.below(4096))
        } else {
            u64_value(r)
        }
    };
    // /bin/true runs under most profiles: bias the default to ALLOW.
    let default = if r.chance(60) {
        "SCMP_ACT_ALLOW"
    } else {
        pick_valid(r, ACTIONS)
    };
    let mut p = json!({"defaultAction": default});
    if r.chance(30) {
        p["defaultErrnoRet"] = small(r);
    }
    if r.chance(70) {
        let n = r.below(4);
        let arches: Vec<&str> = if valid {
            (0..n).map(|_| *r.pick(&ARCHES[..3])).collect()
        } else {
            (0..n).map(|_| *r.pick(ARCHES)).collect()
        };
        p["architectures"] = json!(arches);
    }
    if r.chance(20) {
        p["flags"] = json!((0..r.below(3))
            .map(|_| pick_valid(r, FLAGS))
            .collect::<Vec<_>>());
    }
    if r.chance(if valid { 2 } else { 20 }) {
        p["listenerPath"] = json!(format!("/nonexistent/husk-fuzz-{}.sock", r.below(100)));
    }
    let mut rules = Vec::new();
    for _ in 0..r.below(24) {
        let names: Vec<&str> = (0..1 + r.below(4))
            .map(|_| pick_valid(r, SYSCALLS))
            .collect();
        let mut action = pick_valid(r, ACTIONS);
        if valid && action == "SCMP_ACT_NOTIFY" {
            action = "SCMP_ACT_ERRNO";
        }
        let mut rule = json!({"names": names, "action": action});
        if r.chance(40) {
            rule["errnoRet"] = small(r);
        }
        if r.chance(50) {
            let args: Vec<Value> = (0..1 + r.below(4))
                .map(|_| {
                    json!({
                        "index": if valid || r.chance(80) { json!(r.below(6)) } else { u64_value(r) },
                        "value": if valid { u64_valid(r) } else { u64_value(r) },
                        "valueTwo": if valid { u64_valid(r) } else { u64_value(r) },
                        "op": pick_valid(r, OPS),
                    })
                })
                .collect();
            rule["args"] = json!(args);
        }
        rules.push(rule);
    }
    p["syscalls"] = json!(rules);
    if !valid && r.chance(30) {
        // And one structural mutation on top.
        let mut wrapped = json!({"seccomp": p});
        let _ = mutate(r, &mut wrapped);
        return wrapped.get("seccomp").cloned().unwrap_or(Value::Null);
    }
    p
}

#[derive(Default)]
struct Stats {
    cases: usize,
    errors: usize,
    /// Rejections whose message names a mutated field (its JSON path or key, or for a mount
    /// the destination it came from).
    named: usize,
    ran: usize,
    failures: Vec<String>,
    unnamed: Vec<String>,
}

impl Stats {
    fn add(&mut self, o: Stats) {
        self.cases += o.cases;
        self.errors += o.errors;
        self.named += o.named;
        self.ran += o.ran;
        self.failures.extend(o.failures);
        self.unnamed.extend(o.unnamed);
    }
}

/// The longest a single case may take: a hang fails the case (and the run goes on).
const CASE_LIMIT: Duration = Duration::from_secs(10);

/// `linux.namespaces[2].type`: a path the way husk's messages (and editors) write it.
fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Idx(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Whether `msg` names the field at `path` of `before` or `after` (the config before and after
/// the mutations): a path of two or more of its first segments (or all of a shorter one), its
/// last key, or, for errors the init meets (which name what they act on), the mount's
/// destination or the string now at the path (an executable, a masked path).
fn names(msg: &str, path: &[Seg], before: &Value, after: &Value) -> bool {
    names_in(msg, path, before) || names_in(msg, path, after) || {
        let mut v = after;
        for seg in path {
            v = match seg {
                Seg::Key(k) => &v[k.as_str()],
                Seg::Idx(i) => &v[*i],
            };
        }
        v.as_str().is_some_and(|s| s.len() >= 2 && msg.contains(s))
    }
}

fn names_in(msg: &str, path: &[Seg], cfg: &Value) -> bool {
    if path.is_empty() {
        return true;
    }
    let min = path.len().min(2);
    if (min..=path.len()).any(|n| msg.contains(&render(&path[..n]))) {
        return true;
    }
    if let Some(Seg::Key(k)) = path.iter().rev().find(|s| matches!(s, Seg::Key(_))) {
        if k.len() >= 2 && msg.contains(k.as_str()) {
            return true;
        }
    }
    if let [Seg::Key(m), Seg::Idx(i), ..] = path {
        if m == "mounts" {
            if let Some(d) = cfg["mounts"][*i]["destination"].as_str() {
                if !d.is_empty() && msg.contains(d) {
                    return true;
                }
            }
        }
    }
    false
}

/// Runs one config through `husk run` and checks the answer and what is left behind.
/// `mutated` are the paths changed (in `before`); `None` when the config is not a mutation.
fn check_case(
    c: &Case,
    n: usize,
    cfg: &Value,
    what: &str,
    mutated: Option<(&[Vec<Seg>], &Value)>,
    st: &mut Stats,
    keep: &PathBuf,
) {
    let id = format!("fz{n}");
    let text = serde_json::to_string(cfg).expect("encode config");
    fs::write(c.bundle.join("config.json"), &text).expect("write config");
    fs::write(&c.log, "").expect("truncate the log");
    let s = c.spawn(&["run", "--bundle", &c.bundle_str(), &id]);
    let (out_path, err_path) = (s.stdout.clone(), s.stderr.clone());
    let mut child = s.child;
    let deadline = Instant::now() + CASE_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_micros(250)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stderr_text = fs::read_to_string(&err_path).unwrap_or_default();
    let _ = fs::remove_file(out_path);
    let _ = fs::remove_file(err_path);
    st.cases += 1;
    let stderr = stderr_text.trim_end();
    // husk's own errors go to --log (JSON) as well; the container's stderr is the same file
    // as husk's, so the log tells whose words stderr holds.
    let errors: Vec<String> = c
        .log_lines()
        .iter()
        .filter(|l| l["level"] == "error")
        .map(|l| l["msg"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut problems = Vec::new();
    let code = status.and_then(|s| s.code());
    match (status, code, errors.first()) {
        (None, _, _) => problems.push(format!("hung for more than {CASE_LIMIT:?}")),
        (Some(s), None, _) => problems.push(format!("husk died of a signal: {s}")),
        (_, Some(0), Some(_)) => problems.push("exit 0 after logging an error".into()),
        (_, Some(_), Some(msg)) => {
            st.errors += 1;
            // HUSK_FUZZ_SHOW=1: every error husk gave, to see what the generators produce.
            if std::env::var_os("HUSK_FUZZ_SHOW").is_some() {
                println!("case {n}: {msg}");
            }
            if msg.contains('\n') || stderr.lines().count() != 1 {
                problems.push("error message is not one line".into());
            }
            match mutated {
                Some((paths, before)) if !paths.iter().any(|p| names(msg, p, before, cfg)) => {
                    let at: Vec<String> = paths.iter().map(|p| render(p)).collect();
                    st.unnamed.push(format!(
                        "case {n} ({what}): names none of {at:?}: {}",
                        msg.chars().take(300).collect::<String>()
                    ));
                }
                _ => st.named += 1,
            }
        }
        // The container ran: its status and its stderr, nothing from husk.
        (_, Some(_), None) => st.ran += 1,
    }
    if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
        problems.push("panic".into());
    }
    // Leftovers of this case: cheap checks every time, the /proc scan every 50 cases.
    if c.root.join(&id).exists() {
        problems.push(format!("state dir {id} left behind"));
    }
    let cgs = cgroup_dirs(&c.cgroups_path());
    if !cgs.is_empty() {
        problems.push(format!("cgroup left behind: {cgs:?}"));
        for d in &cgs {
            for pid in pids_in_cgroup(&c.cgroups_path()) {
                // SAFETY: plain syscall; the pid is in this case's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
            rmdir_tree(d);
        }
    }
    if n.is_multiple_of(50) || !problems.is_empty() {
        let marked = marked_pids(&c.id);
        if !marked.is_empty() {
            problems.push(format!("processes left behind: {marked:?}"));
        }
        let mounts = mounts_under(&c.dir);
        if !mounts.is_empty() {
            problems.push(format!("mounts left behind: {mounts:?}"));
        }
    }
    if !problems.is_empty() {
        let _ = c.rt(&["delete", "--force", &id]);
        let _ = fs::create_dir_all(keep);
        let file = keep.join(format!("{n}.json"));
        let _ = fs::write(&file, &text);
        st.failures.push(format!(
            "case {n} ({what}): {}; exit {:?}; stderr {:?}; config {}",
            problems.join(", "),
            code,
            stderr.chars().take(300).collect::<String>(),
            file.display()
        ));
    }
}

/// The share of rejections that must name the mutated field.
const NAMED_MIN: f64 = 0.99;

fn report(name: &str, st: &Stats, started: Instant, check_names: bool) {
    let share = if st.errors == 0 {
        1.0
    } else {
        st.named as f64 / st.errors as f64
    };
    println!(
        "{name}: {} cases in {:.1} s: {} clear errors ({:.2}% name the mutated field), {} \
         containers ran, {} failures",
        st.cases,
        started.elapsed().as_secs_f64(),
        st.errors,
        share * 100.0,
        st.ran,
        st.failures.len()
    );
    for u in st.unnamed.iter().take(40) {
        println!("  {u}");
    }
    assert!(
        st.failures.is_empty(),
        "{name}: {} of {} cases failed (seed {}), first ones:\n{}",
        st.failures.len(),
        st.cases,
        seed(),
        st.failures
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    if check_names {
        assert!(
            share >= NAMED_MIN,
            "{name}: only {:.2}% of {} rejections name the mutated field (want {:.0}%); first \
             misses:\n{}",
            share * 100.0,
            st.errors,
            NAMED_MIN * 100.0,
            st.unnamed
                .iter()
                .take(15)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// A case's own random stream: case `n` is the same config whatever the worker count.
fn case_rng(salt: u64, n: usize) -> Rng {
    // splitmix64 of (seed, salt, n): xorshift must not start from 0.
    let mut z = seed() ^ salt ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Rng((z ^ (z >> 31)) | 1)
}

/// How many cases run at once (`HUSK_FUZZ_JOBS`, default twice the cores, at most 4: a case
/// spends much of its time waiting for processes to start and exit): each worker is a case of
/// its own (bundle, root, cgroup).
fn jobs() -> usize {
    std::env::var("HUSK_FUZZ_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() * 2)
                .unwrap_or(1)
                .min(4)
        })
        .max(1)
}

/// Runs `total` cases over [`jobs`] workers; `case` builds case `n` (its config, a
/// description and the mutated paths with the config before them) for worker `c`.
#[allow(clippy::type_complexity)]
fn fuzz(
    name: &str,
    total: usize,
    case: &(dyn Fn(&Case, usize) -> (Value, String, Option<(Vec<Vec<Seg>>, Value)>) + Sync),
) -> Option<Stats> {
    if skip() {
        return None;
    }
    let keep = std::env::temp_dir().join(format!("husk-fuzz-failures-{}", std::process::id()));
    let workers = jobs();
    let mut all = Stats::default();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let keep = keep.clone();
                s.spawn(move || {
                    let c = Case::new(&format!("{name}{w}")).expect("case");
                    let mut st = Stats::default();
                    for n in (w..total).step_by(workers) {
                        let (cfg, what, mutated) = case(&c, n);
                        let m = mutated.as_ref().map(|(p, b)| (p.as_slice(), b));
                        check_case(&c, n, &cfg, &what, m, &mut st, &keep);
                    }
                    st
                })
            })
            .collect();
        for h in handles {
            all.add(h.join().expect("fuzz worker"));
        }
    });
    Some(all)
}

#[test]
fn fuzz_mutated_configs() {
    let bases: Vec<Value> = [spec(&bin_under_test(), &[]), spec(&runc_bin(), &[])]
        .into_iter()
        .map(|mut b| {
            b["process"]["terminal"] = json!(false);
            b["process"]["args"] = json!(["/bin/true"]);
            b
        })
        .collect();
    let started = Instant::now();
    let Some(st) = fuzz("fzcfg", cases(10_000), &|c, n| {
        let mut r = case_rng(0xC0F1, n);
        let mut cfg = r.pick(&bases).clone();
        cfg["process"]["env"] = json!(["PATH=/bin:/usr/bin", format!("{MARK}={}", c.id)]);
        let before = cfg.clone();
        let k = 1 + r.below(3);
        let (what, paths): (Vec<String>, Vec<Vec<Seg>>) =
            (0..k).map(|_| mutate(&mut r, &mut cfg)).unzip();
        sanitize(&mut cfg, &c.cgroups_path());
        (cfg, what.join("; "), Some((paths, before)))
    }) else {
        return;
    };
    report("mutated configs", &st, started, true);
}

#[test]
fn fuzz_random_seccomp_profiles() {
    let mut base = spec(&runc_bin(), &[]);
    base["process"]["terminal"] = json!(false);
    base["process"]["args"] = json!(["/bin/true"]);
    let started = Instant::now();
    let Some(st) = fuzz("fzsec", cases(3_000), &|c, n| {
        let mut r = case_rng(0x5ECC, n);
        let mut cfg = base.clone();
        cfg["process"]["env"] = json!(["PATH=/bin:/usr/bin", format!("{MARK}={}", c.id)]);
        cfg["linux"]["seccomp"] = random_profile(&mut r);
        // Half the profiles without no_new_privs: installed while still privileged.
        if r.chance(50) {
            cfg["process"]["noNewPrivileges"] = json!(false);
        }
        sanitize(&mut cfg, &c.cgroups_path());
        (cfg, "random seccomp profile".into(), None)
    }) else {
        return;
    };
    report("random seccomp profiles", &st, started, false);
}

/// Pids of live processes whose command line has `arg` as one of its words after the first
/// (husk itself, or a half-made init that is still husk, at work on container `arg`).
fn pids_with_arg(arg: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if cmd.split(|b| *b == 0).skip(1).any(|a| a == arg.as_bytes()) && start_time(pid).is_some()
        {
            out.push(pid);
        }
    }
    out
}

/// One kill -9 trial: `op` of container `id` is SIGKILLed after `delay`, then `delete --force`
/// must leave nothing of it. Returns what was left (and removes it).
fn kill9_trial(c: &Case, id: &str, op: usize, delay: Duration) -> Vec<String> {
    let bundle = c.bundle_str();
    let prepare: &[&[&str]] = match op {
        0 | 2 => &[],
        1 => &[&["create", "--bundle", &bundle, id]],
        _ => &[&["create", "--bundle", &bundle, id], &["start", id]],
    };
    for args in prepare {
        c.rt(args).check();
    }
    let args: Vec<&str> = match op {
        0 => vec!["create", "--bundle", &bundle, id],
        1 => vec!["start", id],
        2 => vec!["run", "--bundle", &bundle, id],
        3 => vec!["exec", id, "sh", "-c", "sleep 5"],
        _ => vec!["delete", "--force", id],
    };
    let s = c.spawn(&args);
    let mut child = s.child;
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
    let out = c.rt(&["delete", "--force", id]);
    let mut left = Vec::new();
    if out.code().is_none() || out.stderr.contains("panicked") {
        left.push(format!(
            "delete --force: {}: {}",
            out.status,
            out.stderr.trim()
        ));
    }
    // Give dying processes a moment to be reaped by their new parent.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut now = Vec::new();
        if c.root.join(id).exists() {
            now.push(format!("state dir {id}"));
        }
        for d in cgroup_dirs(&c.cgroups_path()) {
            now.push(format!("cgroup dir {}", d.display()));
        }
        for p in marked_pids(&c.id) {
            now.push(format!("container process {p}"));
        }
        for p in pids_with_arg(id) {
            now.push(format!("process {p} at work on {id}"));
        }
        for m in mounts_under(&c.dir) {
            now.push(format!("mount {m}"));
        }
        if now.is_empty() || Instant::now() > deadline {
            left = now.into_iter().chain(left).collect();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !left.is_empty() {
        // Scrub, so that one failure does not cascade into the next trials.
        for p in marked_pids(&c.id).into_iter().chain(pids_with_arg(id)) {
            // SAFETY: plain syscall; the pid is this case's container or husk at work on it.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
        let _ = c.rt(&["delete", "--force", id]);
        for d in cgroup_dirs(&c.cgroups_path()) {
            rmdir_tree(&d);
        }
    }
    left
}

/// kill -9 of husk at random points of create, start, run, exec and delete (≥ 300 trials,
/// `HUSK_KILL9_TRIALS`): `delete --force` afterwards leaves no state, cgroup, process or mount.
#[test]
fn kill9_at_random_points_leaves_nothing_after_delete_force() {
    if skip() {
        return;
    }
    const OPS: [&str; 5] = ["create", "start", "run", "exec", "delete --force"];
    let trials = std::env::var("HUSK_KILL9_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300usize);
    let started = Instant::now();
    let limit = Duration::from_secs(240);
    let workers = jobs().min(2);
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    let mut c = Case::new(&format!("fzk9{w}")).expect("case");
                    c.sh(LOOP);
                    c.write_config();
                    let mut failures = Vec::new();
                    for n in (w..trials).step_by(workers) {
                        assert!(
                            started.elapsed() < limit,
                            "kill -9 trials took more than {limit:?}"
                        );
                        let mut r = case_rng(0x6B39, n);
                        let op = r.below(OPS.len());
                        let delay = Duration::from_micros(r.below(40_000) as u64);
                        let id = format!("k9-{n}");
                        let left = kill9_trial(&c, &id, op, delay);
                        if !left.is_empty() {
                            failures.push(format!(
                                "trial {n}: kill -9 of {} after {delay:?}: {left:?}",
                                OPS[op]
                            ));
                        }
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("kill -9 worker"))
            .collect()
    });
    println!(
        "kill -9 trials: {trials} in {:.1} s, {} left something behind",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {trials} kill -9 trials left something after delete --force:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
