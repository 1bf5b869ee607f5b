//! Differential: the same config on a busybox rootfs, run by the binary under test and by runc,
//! must show the container the same world: hostname, ids, capability sets, no_new_privs and
//! seccomp status, mounts (types and options), masked and read-only paths, rlimits, umask, cwd,
//! env, and namespaces distinct from the host's exactly where the config asks for them.
mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

/// Prints one `== section` per thing compared.
fn probe(config: &Value) -> String {
    let list = |key: &str| -> String {
        let paths = config["linux"][key].as_array().cloned().unwrap_or_default();
        paths
            .iter()
            .filter_map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        r#"echo "== hostname"; hostname
echo "== id"; id
echo "== status"; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp)' /proc/self/status
echo "== mountinfo"; cat /proc/self/mountinfo
echo "== masked"
for p in {masked}; do
  if [ -d "$p" ]; then echo "$p dir $(ls -A "$p" | wc -l) entries"
  elif [ -e "$p" ]; then echo "$p file $(cat "$p" 2>&1 | wc -c) bytes"
  else echo "$p absent"; fi
done
echo "== readonly"
for p in {readonly}; do [ -e "$p" ] && echo "$p $(awk -v p="$p" '$5 == p {{print $6}}' /proc/self/mountinfo | cut -d, -f1)"; done
(echo x > /proc/sys/kernel/domainname) 2>&1 | sed 's/^.*: //'
echo "== limits"; cat /proc/self/limits
echo "== umask"; umask
echo "== cwd"; pwd
echo "== env"; env | sort
echo "== ns"; for n in cgroup ipc mnt net pid time user uts; do echo "$n $(readlink /proc/self/ns/$n)"; done
"#,
        masked = list("maskedPaths"),
        readonly = list("readonlyPaths"),
    )
}

/// Runs the probe in `c` and splits its output into sections, with the case's own paths and id
/// replaced by placeholders and mountinfo reduced to what does not vary between runs.
fn sections(c: &mut Case) -> Vec<(String, String)> {
    let script = probe(&c.config);
    c.sh(&script);
    c.write_config();
    let out = c.run().check();
    let text = out
        .stdout
        .replace(&c.dir.to_string_lossy().into_owned(), "<dir>")
        .replace(&c.id, "<id>");
    let mut secs: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            secs.push((name.to_string(), String::new()));
        } else if let Some((name, body)) = secs.last_mut() {
            let line = if name == "mountinfo" {
                normalize_mountinfo(line)
            } else {
                line.to_string()
            };
            body.push_str(&line);
            body.push('\n');
        }
    }
    secs
}

/// `mountpoint root options [propagation tags] fstype source superoptions`, without the ids and
/// device numbers that differ from run to run.
fn normalize_mountinfo(line: &str) -> String {
    let f: Vec<&str> = line.split(' ').collect();
    let Some(dash) = f.iter().position(|x| *x == "-") else {
        return line.to_string();
    };
    let tags: Vec<&str> = f[6..dash]
        .iter()
        .map(|t| t.split(':').next().unwrap_or(t))
        .collect();
    let rest = f[dash + 1..].join(" ");
    format!(
        "{} {} {} [{}] {}",
        f.get(4).unwrap_or(&""),
        f.get(3).unwrap_or(&""),
        f.get(5).unwrap_or(&""),
        tags.join(","),
        rest
    )
}

fn section<'a>(secs: &'a [(String, String)], name: &str) -> &'a str {
    secs.iter()
        .find(|(n, _)| n == name)
        .map(|(_, b)| b.as_str())
        .unwrap_or_else(|| panic!("probe printed no {name}"))
}

/// The ns names whose inode differs from the host's, from a `ns` section.
fn private_namespaces(ns: &str) -> BTreeSet<String> {
    let host = namespaces_of("self");
    ns.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(n, link)| !link.is_empty() && host.iter().any(|(h, hl)| h == n && hl != link))
        .map(|(n, _)| oci_ns_type(n).to_string())
        .collect()
}

/// Runs the config under the binary under test and runc and compares every section.
fn same_as_runc(name: &str, config: Value) {
    let (bin, runc) = (bin_under_test(), runc_bin());
    let mut ours = Case::with_config(&format!("{name}-t"), &bin, config.clone());
    let mut peer = Case::with_config(&format!("{name}-r"), &runc, config.clone());
    let (a, b) = (sections(&mut ours), sections(&mut peer));
    // DIFF_SHOW=1 cargo test --test differential -- --nocapture: what the container saw.
    if std::env::var_os("DIFF_SHOW").is_some() {
        for (n, s) in &a {
            println!("== {n}\n{s}");
        }
    }
    for (sec, body) in b.iter().filter(|(sec, _)| sec != "ns") {
        assert_eq!(
            section(&a, sec),
            body,
            "`{sec}` differs from runc's (left: {}, right: runc)",
            bin.display()
        );
    }
    assert_eq!(a.len(), b.len(), "probe sections differ");
    let (ns_a, ns_b) = (
        private_namespaces(section(&a, "ns")),
        private_namespaces(section(&b, "ns")),
    );
    assert_eq!(
        ns_a, ns_b,
        "namespaces distinct from the host's differ from runc's"
    );

    // Absolute checks on what the binary under test gave the container.
    let requested: BTreeSet<String> = config["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter_map(|n| n["type"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        private_namespaces(section(&a, "ns")),
        requested,
        "namespaces distinct from the host's"
    );
    let masked = section(&a, "masked");
    for line in masked.lines() {
        assert!(
            line.ends_with(" 0 entries") || line.ends_with(" 0 bytes") || line.ends_with(" absent"),
            "not masked: {line}"
        );
    }
    assert!(
        masked.contains("/proc/keys file 0 bytes"),
        "/proc/keys not masked: {masked}"
    );
    assert!(
        section(&a, "readonly").contains("Read-only file system"),
        "/proc/sys is writable"
    );
    assert!(
        section(&a, "readonly").contains("/proc/sys ro"),
        "/proc/sys not mounted ro"
    );
}

#[test]
fn container_sees_the_same_as_under_runc_with_runc_spec() {
    if skip() {
        return;
    }
    same_as_runc("diff-runcspec", spec(&runc_bin(), &[]));
}

#[test]
fn container_sees_the_same_as_under_runc_with_own_spec() {
    if skip() {
        return;
    }
    same_as_runc("diff-ownspec", spec(&bin_under_test(), &[]));
}

#[test]
fn container_sees_the_same_as_under_runc_with_a_non_root_user() {
    if skip() {
        return;
    }
    let mut config = spec(&runc_bin(), &[]);
    config["process"]["user"] =
        serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 63});
    config["process"]["cwd"] = serde_json::json!("/tmp");
    config["process"]["env"]
        .as_array_mut()
        .expect("env")
        .push(serde_json::json!("FOO=bar"));
    config["process"]["rlimits"] = serde_json::json!([
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
        {"type": "RLIMIT_NPROC", "soft": 100, "hard": 200},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
    ]);
    config["hostname"] = serde_json::json!("diffbox");
    same_as_runc("diff-user", config);
}

#[test]
fn container_sees_the_same_as_under_runc_with_a_cgroup_namespace() {
    if skip() {
        return;
    }
    let mut config = spec(&runc_bin(), &[]);
    let nss = config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    if !nss.iter().any(|n| n["type"] == "cgroup") {
        nss.push(serde_json::json!({"type": "cgroup"}));
    }
    same_as_runc("diff-cgns", config);
}
