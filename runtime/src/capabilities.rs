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

/// The highest capability the running kernel knows (`/proc/sys/kernel/cap_last_cap`), read
/// once per process.
fn last_cap() -> u8 {
    static LAST: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40)
    })
}

/// Drop the bounding set to what's configured. Done while still privileged (before setuid).
/// Only what is still in the set is dropped: a drop replaces the process's credentials (an
/// allocation and an RCU free each), a read does not, and a process whose parent dropped the
/// set already (the batch zygote's jobs) has nothing left to drop.
pub fn drop_bounding(c: Option<&LinuxCapabilities>) -> Result<(), CapsError> {
    let keep = to_set(c.and_then(|c| c.bounding().as_ref()))?;
    let last = last_cap();
    // Each drop is a new set of credentials (prepared, committed, the old one freed after an
    // RCU grace period) even for a capability the set lacks already, 1-2 us apiece here. A
    // full set (a container's init) is dropped straight away, one prctl per capability; one
    // that lacks the first to drop (a batch job, whose zygote emptied it) is read first
    // (a read changes no credentials) and only what is there is dropped: 41 credential
    // changes less per job.
    let mut read_first = None;
    for cap in caps::all() {
        if cap.index() > last || keep.contains(&cap) {
            continue;
        }
        let present = || caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(true);
        let there = match read_first {
            Some(false) => true,
            Some(true) => present(),
            None => {
                let p = present();
                read_first = Some(!p);
                p
            }
        };
        if !there {
            continue;
        }
        // Only a refusal asks whether it was there at all, as a process without CAP_SETPCAP
        // may still "drop" what its bounding set lacks already.
        if let Err(source) = caps::drop(None, CapSet::Bounding, cap) {
            if caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(true) {
                return Err(CapsError::Set {
                    what: "bounding",
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Set permitted, inheritable, effective, then raise ambient. Done after the user switch (with
/// PR_SET_KEEPCAPS held), so the sets are exactly what the config lists.
///
/// With `keep`, that capability stays effective and permitted even where the config leaves it
/// out, and the returned [`Final`] takes it away later in one `capset(2)`: the seccomp filter of
/// a process without no_new_privs needs CAP_SYS_ADMIN to go in, and it goes in last.
pub fn apply(
    c: Option<&LinuxCapabilities>,
    keep: Option<Capability>,
) -> Result<Option<Final>, CapsError> {
    let mut permitted = to_set(c.and_then(|c| c.permitted().as_ref()))?;
    let inheritable = to_set(c.and_then(|c| c.inheritable().as_ref()))?;
    let mut effective = to_set(c.and_then(|c| c.effective().as_ref()))?;
    let ambient = to_set(c.and_then(|c| c.ambient().as_ref()))?;
    let configured_permitted = permitted.clone();
    let last = match keep {
        Some(k) if !(permitted.contains(&k) && effective.contains(&k)) => {
            let f = Final::new(&effective, &permitted, &inheritable);
            permitted.insert(k);
            effective.insert(k);
            Some(f)
        }
        _ => None,
    };
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
    // runc skips the others (runc spec lists ambient caps with an empty inheritable set). Only
    // the configured permitted set counts, so the final capset takes no ambient one away.
    for cap in ambient
        .into_iter()
        .filter(|c| configured_permitted.contains(c) && inheritable.contains(c))
    {
        caps::raise(None, CapSet::Ambient, cap).map_err(|source| CapsError::Set {
            what: "ambient",
            source,
        })?;
    }
    Ok(last)
}

/// The configured effective, permitted and inheritable sets as one ready `capset(2)`: built
/// ahead, so applying them allocates nothing and makes exactly one system call.
#[derive(Debug)]
pub struct Final {
    data: [CapData; 2],
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

impl Final {
    fn new(effective: &CapsHashSet, permitted: &CapsHashSet, inheritable: &CapsHashSet) -> Self {
        let mut data = [CapData::default(); 2];
        let bits = |s: &CapsHashSet, word: usize| {
            s.iter()
                .map(|c| c.index() as usize)
                .filter(|i| i / 32 == word)
                .fold(0u32, |acc, i| acc | (1 << (i % 32)))
        };
        for (w, d) in data.iter_mut().enumerate() {
            d.effective = bits(effective, w);
            d.permitted = bits(permitted, w);
            d.inheritable = bits(inheritable, w);
        }
        Self { data }
    }

    /// Set the three sets to what the config lists.
    pub fn apply(&self) -> Result<(), nix::Error> {
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        // SAFETY: a v3 header and two data words, both alive for the call, as capset(2) takes
        // them; the kernel only reads the data.
        let r = unsafe {
            libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapHeader,
                self.data.as_ptr(),
            )
        };
        nix::errno::Errno::result(r).map(drop)
    }
}
