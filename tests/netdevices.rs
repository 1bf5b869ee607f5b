//! `linux.netDevices`: a device moves from the runtime's network namespace into the container's,
//! renamed, up, with its addresses, and comes back under its own name when the container's
//! namespace outlives it (joined by path, or taken before `delete --force` kills the init).
//!
//! Nothing here touches the host's network: each test makes its own namespaces (`ip netns add`),
//! its devices inside them, and runs the runtime in one of them through `nsenter --net` (not
//! `ip netns exec`, whose fresh /sys hides the cgroup mounts). husk only: runc 1.1 predates
//! netDevices.
mod common;
use common::*;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

/// A network namespace of the test's own, deleted on drop (also when the test fails).
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("husk-nd-{}-{tag}", std::process::id());
        let ok = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(
            ok.is_ok_and(|s| s.success()),
            "ip netns add {name} failed (is iproute2 installed?)"
        );
        Netns { name }
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n NS ARGS`; Err(stderr) when it fails.
    fn ip(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .map_err(|e| format!("run ip: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `ip link show DEV` in this namespace, `None` if there is no such device.
    fn link(&self, dev: &str) -> Option<String> {
        self.ip(&["-o", "link", "show", "dev", dev]).ok()
    }

    /// Makes `dev` here with `addrs`, up: a dummy device, or when the kernel has no dummy
    /// driver (and `modprobe dummy` can't load one) a veth whose peer stays behind. Fails the
    /// test with the reason when neither can be made.
    fn add_device(&self, dev: &str, addrs: &[&str]) {
        let dummy = |ns: &Netns| ns.ip(&["link", "add", dev, "type", "dummy"]);
        let mut made = dummy(self);
        if made.is_err() {
            let _ = Command::new("modprobe").arg("dummy").status();
            made = dummy(self);
        }
        if let Err(e) = made {
            println!(
                "NOTE: no dummy driver here ({}); moving a veth instead",
                e.trim()
            );
            let peer = format!("{dev}p");
            if let Err(e2) = self.ip(&["link", "add", dev, "type", "veth", "peer", "name", &peer]) {
                panic!(
                    "can't make a test device: dummy: {} (modprobe dummy failed too); veth: {}",
                    e.trim(),
                    e2.trim()
                );
            }
        }
        for a in addrs {
            // nodad: an IPv6 address usable at once, and a flag the move must keep.
            let mut args = vec!["addr", "add", a, "dev", dev];
            if a.contains(':') {
                args.push("nodad");
            }
            self.ip(&args)
                .unwrap_or_else(|e| panic!("ip addr add {a}: {e}"));
        }
        self.ip(&["link", "set", dev, "up"])
            .unwrap_or_else(|e| panic!("ip link set {dev} up: {e}"));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Whether `ip link`/`ip addr` output shows the device administratively up.
fn is_up(text: &str) -> bool {
    let flags = text
        .split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map(|(f, _)| f)
        .unwrap_or_default();
    flags.split(',').any(|f| f == "UP")
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    // A dead namespace is dismantled by a kernel worker, a little after its last process.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A husk case whose every runtime command (the harness's own `delete --force` on drop too)
/// runs in `ns`, moving `d0` in as `eth7`. `None` when skipped or when testing runc.
fn case_in(name: &str, ns: &Netns) -> Option<Case> {
    let mut c = Case::new(name)?;
    if !c.is_husk() {
        println!("SKIP: runc 1.1 has no linux.netDevices");
        return None;
    }
    let wrapper = c.path("husk-in-netns");
    let bin = std::path::absolute(&c.bin).expect("absolute binary path");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec nsenter --net={} {} \"$@\"\n",
            ns.path(),
            bin.display()
        ),
    )
    .expect("write wrapper");
    let chmod = Command::new("chmod").arg("755").arg(&wrapper).status();
    assert!(chmod.is_ok_and(|s| s.success()), "chmod wrapper");
    c.bin = wrapper;
    c.config["linux"]["netDevices"] = json!({"d0": {"name": "eth7"}});
    Some(c)
}

fn assert_configured(where_: &str, text: &str) {
    assert!(text.contains("eth7"), "{where_}: no eth7: {text}");
    assert!(is_up(text), "{where_}: eth7 not up: {text}");
    assert!(
        text.contains("inet 10.254.0.1/24"),
        "{where_}: IPv4 address lost: {text}"
    );
    assert!(
        text.contains("inet6 fd00:254::1/64"),
        "{where_}: IPv6 address lost: {text}"
    );
}

const ADDRS: [&str; 2] = ["10.254.0.1/24", "fd00:254::1/64"];

#[test]
fn device_moves_into_a_new_netns_and_dies_with_it() {
    let rt = Netns::new("new");
    let Some(mut c) = case_in("nd-new", &rt) else {
        return;
    };
    rt.add_device("d0", &ADDRS);
    c.sh("ip addr show eth7");
    c.write_config();
    let out = c.run().check();
    assert_configured("in the container", &out.stdout);
    // The namespace died with the init: a virtual device goes with it (a physical one would
    // return to the initial namespace).
    wait_until("d0 destroyed with the container's namespace", || {
        rt.link("d0").is_none()
    });
    assert!(rt.link("eth7").is_none());
}

#[test]
fn force_delete_takes_the_device_back_before_the_kill() {
    let rt = Netns::new("force");
    let Some(mut c) = case_in("nd-force", &rt) else {
        return;
    };
    rt.add_device("d0", &ADDRS);
    c.sh(LOOP);
    c.write_config();
    c.create_and_start();
    assert!(rt.link("d0").is_none(), "d0 still in the runtime's netns");
    let out = c.rt(&["exec", &c.id, "ip", "addr", "show", "eth7"]).check();
    assert_configured("exec in the container", &out.stdout);
    c.rt(&["delete", "--force", &c.id]).check();
    let back = rt.link("d0").expect("d0 back in the runtime's netns");
    assert!(!is_up(&back), "returned down: {back}");
    assert!(rt.link("eth7").is_none());
    c.assert_clean();
}

#[test]
fn joined_netns_keeps_the_device_until_delete() {
    let rt = Netns::new("jrt");
    let joined = Netns::new("jns");
    let Some(mut c) = case_in("nd-join", &rt) else {
        return;
    };
    rt.add_device("d0", &ADDRS);
    for ns in c.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
    {
        if ns["type"] == "network" {
            ns["path"] = json!(joined.path());
        }
    }
    c.sh("exit 0");
    c.write_config();
    c.create().check();
    assert!(rt.link("d0").is_none(), "d0 still in the runtime's netns");
    let inside = joined
        .ip(&["addr", "show", "eth7"])
        .expect("eth7 in the joined netns");
    assert_configured("in the joined netns", &inside);
    c.start().check();
    c.wait_status("stopped", Duration::from_secs(10));
    // The container is gone, the joined namespace is not: the device is still there.
    assert!(
        joined.link("eth7").is_some(),
        "eth7 left the joined netns early"
    );
    c.delete().check();
    let back = rt.link("d0").expect("d0 back in the runtime's netns");
    assert!(!is_up(&back), "returned down: {back}");
    assert!(
        joined.link("eth7").is_none(),
        "eth7 still in the joined netns"
    );
    c.assert_clean();
}

#[test]
fn failed_create_returns_the_device() {
    let rt = Netns::new("fail");
    let Some(mut c) = case_in("nd-fail", &rt) else {
        return;
    };
    rt.add_device("d0", &ADDRS);
    // Runs after the move, in the runtime's namespaces: the create fails with the device moved.
    c.config["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    c.write_config();
    let out = c.create().check_fails();
    assert!(out.stderr.contains("createRuntime"), "{}", out.stderr);
    // The init is dead, but its namespace was held open for the way back.
    let back = rt.link("d0").expect("d0 back after the failed create");
    assert!(!is_up(&back), "returned down: {back}");
    c.assert_clean();
}

#[test]
fn bad_net_devices_are_refused_naming_the_entry() {
    let rt = Netns::new("bad");
    let cases: [(&str, serde_json::Value, &str); 4] = [
        (
            "nd-missing",
            json!({"nosuch0": {}}),
            "linux.netDevices.nosuch0",
        ),
        (
            "nd-slash",
            json!({"d0": {"name": "a/b"}}),
            "linux.netDevices.d0.name",
        ),
        (
            "nd-long",
            json!({"d0": {"name": "sixteen_bytes_xx"}}),
            "linux.netDevices.d0.name",
        ),
        (
            "nd-dup",
            json!({"d0": {"name": "x0"}, "lo": {"name": "x0"}}),
            "linux.netDevices.lo.name",
        ),
    ];
    let mut made = false;
    for (name, devs, fragment) in cases {
        let Some(mut c) = case_in(name, &rt) else {
            return;
        };
        if !made {
            rt.add_device("d0", &ADDRS);
            made = true;
        }
        c.config["linux"]["netDevices"] = devs;
        c.write_config();
        let out = c.create().check_fails();
        assert!(
            out.stderr.contains(fragment),
            "want {fragment}: {}",
            out.stderr
        );
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        c.assert_clean();
    }
    // Without a network namespace of the container's own there is nowhere to move them.
    let Some(mut c) = case_in("nd-nonet", &rt) else {
        return;
    };
    if let Some(nss) = c.config["linux"]["namespaces"].as_array_mut() {
        nss.retain(|n| n["type"] != "network");
    }
    c.write_config();
    let out = c.create().check_fails();
    assert!(
        out.stderr.contains("linux.netDevices") && out.stderr.contains("network namespace"),
        "{}",
        out.stderr
    );
    // Refused before anything moved.
    let d0 = rt.link("d0").expect("d0 untouched");
    assert!(is_up(&d0), "d0 was touched: {d0}");
}
