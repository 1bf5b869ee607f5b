//! Device access rules: `linux.resources.devices` followed by runc's default allow list, written to
//! `devices.deny` / `devices.allow` on v1 (the v2 eBPF program is built from the same rules).

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::layout::{self, Layout};
use super::CgroupError;

/// One rule; `None` for major/minor is the `*` wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    /// `a`, `b` or `c`.
    pub kind: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    /// A subset of `rwm`, in that order.
    pub access: &'static str,
}

impl DeviceRule {
    const fn allow(
        kind: char,
        major: Option<i64>,
        minor: Option<i64>,
        access: &'static str,
    ) -> Self {
        Self {
            allow: true,
            kind,
            major,
            minor,
            access,
        }
    }

    /// The text the v1 devices controller takes: `c 1:3 rwm`, `a *:* rwm`.
    pub fn cgroup_string(&self) -> String {
        let num = |n: Option<i64>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        format!(
            "{} {}:{} {}",
            self.kind,
            num(self.major),
            num(self.minor),
            self.access
        )
    }
}

/// runc's `specconv.AllowedDevices`, appended after the spec's rules on every container: mknod of
/// anything, and the standard nodes every container gets (null, random, full, tty, zero, urandom,
/// pts, ptmx, tun).
pub const DEFAULT_ALLOWED: &[DeviceRule] = &[
    DeviceRule::allow('c', None, None, "m"),
    DeviceRule::allow('b', None, None, "m"),
    DeviceRule::allow('c', Some(1), Some(3), "rwm"),
    DeviceRule::allow('c', Some(1), Some(8), "rwm"),
    DeviceRule::allow('c', Some(1), Some(7), "rwm"),
    DeviceRule::allow('c', Some(5), Some(0), "rwm"),
    DeviceRule::allow('c', Some(1), Some(5), "rwm"),
    DeviceRule::allow('c', Some(1), Some(9), "rwm"),
    DeviceRule::allow('c', Some(136), None, "rwm"),
    DeviceRule::allow('c', Some(5), Some(2), "rwm"),
    DeviceRule::allow('c', Some(10), Some(200), "rwm"),
];

/// Normalise the access string to the canonical `rwm` order; a missing or empty access means all
/// three (as crun reads it), so `{"allow": false}` denies everything.
fn access_of(access: Option<&str>, json: &str) -> Result<&'static str, CgroupError> {
    let a = access.unwrap_or("");
    if let Some(bad) = a.chars().find(|c| !"rwm".contains(*c)) {
        return Err(CgroupError::config(
            format!("{json}.access"),
            format!("invalid access {a:?}: {bad:?} is not one of r, w, m"),
        ));
    }
    let (r, w, m) = (a.contains('r'), a.contains('w'), a.contains('m'));
    Ok(match (r, w, m) {
        (true, true, true) | (false, false, false) => "rwm",
        (true, true, false) => "rw",
        (true, false, true) => "rm",
        (false, true, true) => "wm",
        (true, false, false) => "r",
        (false, true, false) => "w",
        (false, false, true) => "m",
    })
}

/// The spec's rules (checked) followed by [`DEFAULT_ALLOWED`], the list runc applies.
pub fn rules(spec: Option<&Vec<LinuxDeviceCgroup>>) -> Result<Vec<DeviceRule>, CgroupError> {
    let mut out = Vec::new();
    for (i, d) in spec.into_iter().flatten().enumerate() {
        let json = format!("linux.resources.devices[{i}]");
        let kind = match d.typ().unwrap_or_default() {
            LinuxDeviceType::A => 'a',
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::C | LinuxDeviceType::U => 'c',
            LinuxDeviceType::P => {
                return Err(CgroupError::config(
                    format!("{json}.type"),
                    "fifo (p) devices can't be controlled by the devices cgroup; use a, b or c",
                ))
            }
        };
        for (n, name) in [(d.major(), "major"), (d.minor(), "minor")] {
            if matches!(n, Some(v) if v < 0) {
                return Err(CgroupError::config(
                    format!("{json}.{name}"),
                    "must not be negative (omit it for any)",
                ));
            }
        }
        let rule = DeviceRule {
            allow: d.allow(),
            kind,
            // `a` always means every device, whatever numbers come with it.
            major: if kind == 'a' { None } else { d.major() },
            minor: if kind == 'a' { None } else { d.minor() },
            access: access_of(d.access().as_deref(), &json)?,
        };
        out.push(rule);
    }
    out.extend_from_slice(DEFAULT_ALLOWED);
    Ok(out)
}

/// Apply the rules in order on a fresh v1 devices cgroup. Each write has the kernel's ordered
/// semantics (a deny of `a` resets to deny-all, later allows add exceptions), which is what the OCI
/// list means; no process runs in the cgroup yet, so there is no window to guard as runc's emulator
/// does for live updates.
pub fn apply_v1(layout: &Layout, dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    // One descriptor per file for all rules, in the rules' order.
    let (mut allow, mut deny) = (None, None);
    for r in rules {
        let (slot, file) = if r.allow {
            (&mut allow, "devices.allow")
        } else {
            (&mut deny, "devices.deny")
        };
        let value = r.cgroup_string();
        let control = match slot {
            Some(c) => c,
            None => slot.insert(layout::Control::open(layout, dir, file, &value)?),
        };
        control.write(&value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(json: &str) -> LinuxDeviceCgroup {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn runc_default_spec_rules() {
        let spec = vec![dev(r#"{"allow": false, "access": "rwm"}"#)];
        let r = rules(Some(&spec)).unwrap();
        assert_eq!(r.len(), 1 + DEFAULT_ALLOWED.len());
        assert_eq!(r[0].cgroup_string(), "a *:* rwm");
        assert!(!r[0].allow);
        let strs: Vec<String> = r[1..].iter().map(DeviceRule::cgroup_string).collect();
        assert_eq!(strs[0], "c *:* m");
        assert_eq!(strs[1], "b *:* m");
        assert!(strs.contains(&"c 136:* rwm".to_string()));
        assert!(strs.contains(&"c 10:200 rwm".to_string()));
    }

    #[test]
    fn access_and_type_checks() {
        let spec = vec![dev(
            r#"{"allow": true, "type": "c", "major": 10, "minor": 229, "access": "mwr"}"#,
        )];
        assert_eq!(
            rules(Some(&spec)).unwrap()[0].cgroup_string(),
            "c 10:229 rwm"
        );
        let spec = vec![dev(
            r#"{"allow": true, "type": "c", "major": 1, "access": "rx"}"#,
        )];
        let e = rules(Some(&spec)).unwrap_err().to_string();
        assert!(e.contains("linux.resources.devices[0].access"), "{e}");
        let spec = vec![dev(r#"{"allow": true, "type": "p"}"#)];
        let e = rules(Some(&spec)).unwrap_err().to_string();
        assert!(e.contains("linux.resources.devices[0].type"), "{e}");
        let spec = vec![dev(r#"{"allow": true, "type": "b", "major": -2}"#)];
        assert!(rules(Some(&spec)).is_err());
    }
}
