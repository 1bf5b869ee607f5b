//! The five capability sets of `process.capabilities`, set exactly as configured.

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("{what} capability set: {source}")]
    Set {
        what: &'static str,
        #[source]
        source: caps::errors::CapsError,
    },
    #[error("capability {0} is not known to this kernel")]
    Unknown(String),
}

fn to_set(v: Option<&Capabilities>) -> Result<CapsHashSet, CapsError> {
    let mut out = CapsHashSet::new();
    for c in v.into_iter().flatten() {
        // oci-spec serializes a capability by its config.json name ("CAP_SYS_ADMIN"), which is
        // the name caps parses.
        let name = match serde_json::to_value(c) {
            Ok(serde_json::Value::String(s)) => s,
            _ => format!("{c:?}"),
        };
        let cap: Capability = name.parse().map_err(|_| CapsError::Unknown(name.clone()))?;
        out.insert(cap);
    }
    Ok(out)
}

/// The highest capability the running kernel knows (`/proc/sys/kernel/cap_last_cap`).
fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drop the bounding set to what's configured. Done while still privileged (before setuid).
pub fn drop_bounding(c: Option<&LinuxCapabilities>) -> Result<(), CapsError> {
    let keep = to_set(c.and_then(|c| c.bounding().as_ref()))?;
    let last = last_cap();
    for cap in caps::all() {
        if cap.index() <= last && !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|source| CapsError::Set {
                what: "bounding",
                source,
            })?;
        }
    }
    Ok(())
}

/// Set permitted, inheritable, effective, then raise ambient. Done after the user switch (with
/// PR_SET_KEEPCAPS held), so the sets are exactly what the config lists.
pub fn apply(c: Option<&LinuxCapabilities>) -> Result<(), CapsError> {
    let permitted = to_set(c.and_then(|c| c.permitted().as_ref()))?;
    let inheritable = to_set(c.and_then(|c| c.inheritable().as_ref()))?;
    let effective = to_set(c.and_then(|c| c.effective().as_ref()))?;
    let ambient = to_set(c.and_then(|c| c.ambient().as_ref()))?;
    let set = |what, set, v: &CapsHashSet| {
        caps::set(None, set, v).map_err(|source| CapsError::Set { what, source })
    };
    // Permitted only shrinks, and effective must stay inside it: inheritable first (while
    // CAP_SETPCAP is still effective), then effective, then permitted.
    set("inheritable", CapSet::Inheritable, &inheritable)?;
    set("effective", CapSet::Effective, &effective)?;
    set("permitted", CapSet::Permitted, &permitted)?;
    caps::clear(None, CapSet::Ambient).map_err(|source| CapsError::Set {
        what: "ambient",
        source,
    })?;
    // The kernel only allows ambient capabilities that are both permitted and inheritable;
    // runc skips the others (runc spec lists ambient caps with an empty inheritable set).
    for cap in ambient
        .into_iter()
        .filter(|c| permitted.contains(c) && inheritable.contains(c))
    {
        caps::raise(None, CapSet::Ambient, cap).map_err(|source| CapsError::Set {
            what: "ambient",
            source,
        })?;
    }
    Ok(())
}
