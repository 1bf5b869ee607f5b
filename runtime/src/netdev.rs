//! `linux.netDevices`: moving network devices into a container's network namespace and back,
//! with rtnetlink over a plain socket (runc 1.3's `netnsAttach`/`netnsDetach` are the reference).
//!
//! Moving a device drops its addresses, so [`attach`] reads the permanent ones first and adds them
//! again inside. Requests inside the container's namespace go through a socket opened there: a
//! netlink socket stays bound to the namespace it was created in, so the parent (single-threaded)
//! enters the namespace just long enough to create it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use oci_spec::runtime::Linux;

#[derive(Debug, thiserror::Error)]
pub enum NetdevError {
    #[error("linux.netDevices.{device}: {step}: {source}")]
    Device {
        device: String,
        step: String,
        source: io::Error,
    },
    #[error("{step}: {source}")]
    Netns {
        step: &'static str,
        source: io::Error,
    },
}

/// One entry of `linux.netDevices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDevice {
    /// The name in the runtime's network namespace (the key).
    pub host: String,
    /// The name inside the container (`name`, else the same).
    pub inside: String,
}

/// The devices of `linux.netDevices`, sorted by host name so that moves happen in a stable order.
pub fn from_spec(linux: Option<&Linux>) -> Vec<NetDevice> {
    let mut devs: Vec<NetDevice> = linux
        .and_then(|l| l.net_devices().as_ref())
        .into_iter()
        .flatten()
        .map(|(host, d)| NetDevice {
            host: host.clone(),
            inside: d.name().clone().unwrap_or_else(|| host.clone()),
        })
        .collect();
    devs.sort_by(|a, b| a.host.cmp(&b.host));
    devs
}

/// The kernel's rule for interface names (`dev_valid_name`).
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("an interface name can't be empty");
    }
    if name.len() > 15 {
        return Err("an interface name has at most 15 bytes");
    }
    if name == "." || name == ".." {
        return Err("an interface name can't be \".\" or \"..\"");
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
    {
        return Err("an interface name can't contain '/', ':' or whitespace");
    }
    Ok(())
}

/// Whether a device of this name exists in the caller's network namespace. (Not
/// /sys/class/net, which shows the namespace sysfs was mounted in.)
pub fn exists(name: &str) -> bool {
    let Ok(mut nl) = Netlink::open() else {
        return false;
    };
    nl.link(name).is_ok()
}

/// Open a network namespace file (`/proc/<pid>/ns/net` or a bind mount of one). Holding the
/// descriptor keeps the namespace alive after its last process is gone.
pub fn open_netns(path: &Path) -> io::Result<OwnedFd> {
    crate::sys::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Move `devs` from the caller's network namespace into `netns`, renamed, up, with their
/// addresses. Each device that reached `netns` is pushed to `moved`, also when a later step
/// fails, so the caller can [`detach`] exactly those.
pub fn attach(
    devs: &[NetDevice],
    netns: BorrowedFd,
    moved: &mut Vec<NetDevice>,
) -> Result<(), NetdevError> {
    let mut host = Netlink::open().map_err(|source| NetdevError::Netns {
        step: "open netlink socket",
        source,
    })?;
    let mut inside = Netlink::open_in(netns)?;
    for d in devs {
        let fail = |step: &str| {
            let device = d.host.clone();
            let step = step.to_string();
            move |source: io::Error| NetdevError::Device {
                device,
                step,
                source,
            }
        };
        let (index, flags) = host.link(&d.host).map_err(fail("look up device"))?;
        let addrs = host.addresses(index).map_err(fail("read addresses"))?;
        host.set_up(index, false).map_err(fail("set device down"))?;
        // Rename and move in one request: a name taken in either namespace can't get in the way
        // between two steps.
        if let Err(e) = host.move_to(index, &d.inside, netns) {
            if flags & libc::IFF_UP as u32 != 0 {
                let _ = host.set_up(index, true);
            }
            return Err(fail(&format!(
                "move into the container's network namespace as {:?}",
                d.inside
            ))(e));
        }
        moved.push(d.clone());
        let (index, _) = inside
            .link(&d.inside)
            .map_err(fail("look up moved device"))?;
        inside.set_up(index, true).map_err(fail("set device up"))?;
        for a in &addrs {
            inside.add_address(index, a).map_err(fail("add address"))?;
        }
    }
    Ok(())
}

/// Move `devs` from `netns` back to the caller's network namespace under their host names,
/// down (as runc does, so they don't clash with the host's configuration; addresses set in the
/// container stay behind). Tries every device; returns what failed.
pub fn detach(devs: &[NetDevice], netns: BorrowedFd) -> Vec<NetdevError> {
    let mut errors = Vec::new();
    let own = match open_netns(Path::new("/proc/thread-self/ns/net")) {
        Ok(fd) => fd,
        Err(source) => {
            errors.push(NetdevError::Netns {
                step: "open own network namespace",
                source,
            });
            return errors;
        }
    };
    let mut inside = match Netlink::open_in(netns) {
        Ok(nl) => nl,
        Err(e) => {
            errors.push(e);
            return errors;
        }
    };
    for d in devs {
        let r = (|| -> Result<(), (&str, io::Error)> {
            let (index, _) = inside
                .link(&d.inside)
                .map_err(|e| ("look up device in the container", e))?;
            inside
                .set_up(index, false)
                .map_err(|e| ("set device down", e))?;
            inside
                .move_to(index, &d.host, own.as_fd())
                .map_err(|e| ("move back to the runtime's network namespace", e))
        })();
        if let Err((step, source)) = r {
            errors.push(NetdevError::Device {
                device: d.host.clone(),
                step: step.to_string(),
                source,
            });
        }
    }
    errors
}

/// An address as the kernel reports it, to be added again after a move.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Address {
    family: u8,
    prefix_len: u8,
    scope: u8,
    /// `IFA_F_*`, from `IFA_FLAGS` when given (it holds the bits that don't fit the header's u8).
    flags: u32,
    local: Option<Vec<u8>>,
    address: Option<Vec<u8>>,
    broadcast: Option<Vec<u8>>,
}

impl Address {
    /// Whether to carry it over: only addresses someone configured (dynamic ones have lifetimes
    /// that belong to the old namespace) and no IPv6 link-local one, which the kernel makes anew
    /// when the device comes up.
    fn keep(&self) -> bool {
        let link_local = self.family == libc::AF_INET6 as u8
            && self
                .address
                .as_deref()
                .or(self.local.as_deref())
                .is_some_and(|a| a.len() == 16 && a[0] == 0xfe && a[1] & 0xc0 == 0x80);
        self.flags & IFA_F_PERMANENT != 0 && !link_local
    }
}

const IFA_F_NODAD: u32 = 0x02;
const IFA_F_PERMANENT: u32 = 0x80;
const IFA_F_NOPREFIXROUTE: u32 = 0x200;
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const NLMSG_HDRLEN: usize = 16;

/// A NETLINK_ROUTE socket, bound to the network namespace it was opened in.
struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    fn open() -> io::Result<Self> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        Ok(Netlink { fd, seq: 0 })
    }

    /// A socket in `netns`: enter it, open, return. Safe in husk's single-threaded parent; a
    /// failed return would leave the process in the container's namespace, so it is an error.
    fn open_in(netns: BorrowedFd) -> Result<Self, NetdevError> {
        let ns_err = |step| {
            move |e: nix::Error| NetdevError::Netns {
                step,
                source: e.into(),
            }
        };
        let own = open_netns(Path::new("/proc/thread-self/ns/net")).map_err(|source| {
            NetdevError::Netns {
                step: "open own network namespace",
                source,
            }
        })?;
        nix::sched::setns(netns, CloneFlags::CLONE_NEWNET)
            .map_err(ns_err("enter the container's network namespace"))?;
        let nl = Netlink::open();
        nix::sched::setns(own.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(ns_err("return to own network namespace"))?;
        nl.map_err(|source| NetdevError::Netns {
            step: "open netlink socket in the container's network namespace",
            source,
        })
    }

    /// Send one request and collect the replies up to its ack or the end of its dump.
    fn transact(&mut self, mut msg: Vec<u8>) -> io::Result<Vec<Vec<u8>>> {
        self.seq = self.seq.wrapping_add(1);
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        socket::send(self.fd.as_raw_fd(), &msg, MsgFlags::empty())?;
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC)?;
            if n > buf.len() {
                return Err(io::Error::other("netlink reply larger than the buffer"));
            }
            let mut rest = &buf[..n];
            while rest.len() >= NLMSG_HDRLEN {
                let mlen = u32_at(rest, 0) as usize;
                if mlen < NLMSG_HDRLEN || mlen > rest.len() {
                    return Err(io::Error::other("malformed netlink message"));
                }
                let kind = u16::from_ne_bytes([rest[4], rest[5]]);
                let seq = u32_at(rest, 8);
                let payload = &rest[NLMSG_HDRLEN..mlen];
                rest = &rest[align(mlen).min(rest.len())..];
                if seq != self.seq {
                    continue;
                }
                match kind as libc::c_int {
                    libc::NLMSG_ERROR | libc::NLMSG_DONE => {
                        let code = if payload.len() >= 4 {
                            i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]])
                        } else {
                            0
                        };
                        return if code < 0 {
                            Err(io::Error::from_raw_os_error(-code))
                        } else {
                            Ok(replies)
                        };
                    }
                    _ => replies.push(payload.to_vec()),
                }
            }
        }
    }

    /// The index and flags of the device called `name` (ENODEV if there is none).
    fn link(&mut self, name: &str) -> io::Result<(i32, u32)> {
        let mut m = header(libc::RTM_GETLINK, libc::NLM_F_ACK);
        m.extend_from_slice(&ifinfomsg(0, 0, 0));
        attr(&mut m, libc::IFLA_IFNAME, &nul_terminated(name));
        self.transact(m)?
            .iter()
            .find(|p| p.len() >= IFINFOMSG_LEN)
            .map(|p| (u32_at(p, 4) as i32, u32_at(p, 8)))
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    fn set_up(&mut self, index: i32, up: bool) -> io::Result<()> {
        let iff_up = libc::IFF_UP as u32;
        let mut m = header(libc::RTM_NEWLINK, libc::NLM_F_ACK);
        m.extend_from_slice(&ifinfomsg(index, if up { iff_up } else { 0 }, iff_up));
        self.transact(m).map(drop)
    }

    /// Rename the device and move it into `netns`, in one request.
    fn move_to(&mut self, index: i32, name: &str, netns: BorrowedFd) -> io::Result<()> {
        let mut m = header(libc::RTM_NEWLINK, libc::NLM_F_ACK);
        m.extend_from_slice(&ifinfomsg(index, 0, 0));
        attr(&mut m, libc::IFLA_IFNAME, &nul_terminated(name));
        let fd = netns.as_raw_fd() as u32;
        attr(&mut m, libc::IFLA_NET_NS_FD, &fd.to_ne_bytes());
        self.transact(m).map(drop)
    }

    /// The addresses of device `index` worth keeping across a move (see [`Address::keep`]).
    fn addresses(&mut self, index: i32) -> io::Result<Vec<Address>> {
        let mut m = header(libc::RTM_GETADDR, libc::NLM_F_DUMP);
        m.extend_from_slice(&[0u8; IFADDRMSG_LEN]);
        let replies = self.transact(m)?;
        Ok(replies
            .iter()
            .filter_map(|p| parse_address(p, index))
            .filter(Address::keep)
            .collect())
    }

    fn add_address(&mut self, index: i32, a: &Address) -> io::Result<()> {
        let flags = libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL;
        let mut m = header(libc::RTM_NEWADDR, flags);
        m.extend_from_slice(&[a.family, a.prefix_len, 0, a.scope]);
        m.extend_from_slice(&index.to_ne_bytes());
        for (kind, value) in [
            (libc::IFA_LOCAL, &a.local),
            (libc::IFA_ADDRESS, &a.address),
            (libc::IFA_BROADCAST, &a.broadcast),
        ] {
            if let Some(v) = value {
                attr(&mut m, kind, v);
            }
        }
        let kept = a.flags & (IFA_F_NODAD | IFA_F_NOPREFIXROUTE);
        attr(&mut m, libc::IFA_FLAGS, &kept.to_ne_bytes());
        match self.transact(m) {
            // Already there (the kernel or someone inside made it): what we wanted.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r.map(drop),
        }
    }
}

/// An `RTM_NEWADDR` reply for device `index`, parsed.
fn parse_address(p: &[u8], index: i32) -> Option<Address> {
    if p.len() < IFADDRMSG_LEN || u32_at(p, 4) as i32 != index {
        return None;
    }
    let mut a = Address {
        family: p[0],
        prefix_len: p[1],
        flags: u32::from(p[2]),
        scope: p[3],
        local: None,
        address: None,
        broadcast: None,
    };
    let mut rest = &p[IFADDRMSG_LEN..];
    while rest.len() >= 4 {
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]);
        if len < 4 || len > rest.len() {
            break;
        }
        let value = &rest[4..len];
        match kind {
            libc::IFA_LOCAL => a.local = Some(value.to_vec()),
            libc::IFA_ADDRESS => a.address = Some(value.to_vec()),
            libc::IFA_BROADCAST => a.broadcast = Some(value.to_vec()),
            libc::IFA_FLAGS if value.len() == 4 => a.flags = u32_at(value, 0),
            _ => {}
        }
        rest = &rest[align(len).min(rest.len())..];
    }
    Some(a)
}

/// A netlink header for a request of `kind`; length and sequence are filled in on send.
fn header(kind: u16, flags: libc::c_int) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&((libc::NLM_F_REQUEST | flags) as u16).to_ne_bytes());
    m.extend_from_slice(&[0u8; 8]);
    m
}

fn ifinfomsg(index: i32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut b = [0u8; IFINFOMSG_LEN];
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

fn attr(m: &mut Vec<u8>, kind: u16, value: &[u8]) {
    m.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(value);
    m.resize(align(m.len()), 0);
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_kernels_rule() {
        for ok in ["eth0", "a", "exactly15bytes_", "dev-1.2"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "tab\t",
            "sixteen_bytes_xx",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn spec_devices_default_to_their_host_name_sorted() {
        let linux: Linux = serde_json::from_value(serde_json::json!({
            "netDevices": {"b0": {}, "a0": {"name": "eth0"}}
        }))
        .unwrap();
        assert_eq!(
            from_spec(Some(&linux)),
            [
                NetDevice {
                    host: "a0".into(),
                    inside: "eth0".into()
                },
                NetDevice {
                    host: "b0".into(),
                    inside: "b0".into()
                }
            ]
        );
        assert!(from_spec(None).is_empty());
    }

    #[test]
    fn keeps_permanent_addresses_but_not_ipv6_link_local() {
        let mut msg = vec![libc::AF_INET6 as u8, 64, 0, 0];
        msg.extend_from_slice(&7i32.to_ne_bytes());
        let mut ll = [0u8; 16];
        ll[0] = 0xfe;
        ll[1] = 0x80;
        attr(&mut msg, libc::IFA_ADDRESS, &ll);
        attr(&mut msg, libc::IFA_FLAGS, &IFA_F_PERMANENT.to_ne_bytes());
        let a = parse_address(&msg, 7).unwrap();
        assert_eq!(a.flags, IFA_F_PERMANENT);
        assert!(!a.keep(), "fe80::/10 is made by the kernel");
        assert!(parse_address(&msg, 8).is_none(), "another device's");

        let mut global = a.clone();
        global.address = Some(vec![
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
        ]);
        assert!(global.keep());
        global.flags = 0;
        assert!(!global.keep(), "dynamic addresses stay behind");
    }

    #[test]
    fn loopback_is_found_in_this_namespace() {
        // Every network namespace has `lo`; a name that can't exist is not found.
        let mut nl = Netlink::open().unwrap();
        let (index, _) = nl.link("lo").unwrap();
        assert!(index > 0);
        assert!(exists("lo"));
        assert!(!exists("husk-no-such0"));
        // The dump parses (lo has 127.0.0.1 when up; it may be down in a bare namespace).
        nl.addresses(index).unwrap();
    }
}
