//! OCI `linux.seccomp` → [`Policy`]: per-ABI syscall numbers, actions and argument conditions,
//! with runc's semantics (runc 1.1 over libseccomp 2.5), checked before anything is created.
//!
//! What runc does and husk copies, so the same profile filters the same way:
//! - a name unknown on every ABI is skipped (runc logs "unknown seccomp syscall ignored"); a name
//!   missing on one ABI is skipped for that ABI only;
//! - a rule whose action equals the default action is skipped as redundant;
//! - several conditions on the *same* argument in one rule become separate rules (OR), because
//!   libseccomp refuses them in one rule and runc falls back that way;
//! - an unconditional rule for a syscall wins over conditional ones (libseccomp drops the
//!   narrower rules); among conditional rules the first match in profile order wins;
//! - on i386 the socket and SysV IPC calls are also matched through `socketcall(2)`/`ipc(2)` with
//!   arg0 set to the call number, as libseccomp's x86 backend does;
//! - the "-ENOSYS stub" of runc's patchbpf: unless the default action allows (ALLOW, LOG,
//!   TRACE), syscalls numbered above the highest one the profile names get ENOSYS, so new
//!   syscalls fall back in libc instead of failing with EPERM. Only for ABIs listed in
//!   `architectures`, as runc does.
//!
//! Checked by `difftest/` against libseccomp 2.5.4 (runc 1.1.5's) over the engine default
//! profile and random profiles: identical outcomes except where a syscall has conditional rules
//! with different actions that both match. There husk takes the first in profile order;
//! libseccomp orders its decision tree by argument number and operator (higher argument first),
//! and refuses rules with identical conditions but different actions (runc then fails create),
//! as it refuses ERRNO 4095. husk does not copy libseccomp 2.5.4's code-generation bugs (a
//! comparison reading a stale accumulator, seen with x32 or several rules on one argument).

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
    LinuxSyscall,
};

use super::tables::{INDEX, NONE, SYSCALLS};
use super::SeccompError;

pub(super) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub(super) const AUDIT_ARCH_I386: u32 = 0x4000_0003;
pub(super) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

pub(super) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(super) const RET_KILL_THREAD: u32 = 0x0000_0000;
pub(super) const RET_TRAP: u32 = 0x0003_0000;
pub(super) const RET_ERRNO: u32 = 0x0005_0000;
pub(super) const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub(super) const RET_TRACE: u32 = 0x7ff0_0000;
pub(super) const RET_LOG: u32 = 0x7ffc_0000;
pub(super) const RET_ALLOW: u32 = 0x7fff_0000;
const RET_DATA_MAX: u32 = 0xffff;
const MAX_ERRNO: u32 = 4095;

pub(super) const FLAG_TSYNC: u32 = 1;
pub(super) const FLAG_LOG: u32 = 1 << 1;
pub(super) const FLAG_SPEC_ALLOW: u32 = 1 << 2;
pub(super) const FLAG_NEW_LISTENER: u32 = 1 << 3;
pub(super) const FLAG_TSYNC_ESRCH: u32 = 1 << 4;
pub(super) const FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// libseccomp's default for a syscall from an architecture the filter does not list; runc keeps it.
pub(super) const BAD_ARCH_ACTION: u32 = RET_KILL_THREAD;

const I386_SOCKETCALL: u32 = 102;
const I386_IPC: u32 = 117;

/// i386 calls that libseccomp also matches through a multiplexer: (name, multiplexer, call
/// number in arg0). Sorted by name.
static I386_MUX: &[(&str, u32, u64)] = &[
    ("accept", I386_SOCKETCALL, 5),
    ("accept4", I386_SOCKETCALL, 18),
    ("bind", I386_SOCKETCALL, 2),
    ("connect", I386_SOCKETCALL, 3),
    ("getpeername", I386_SOCKETCALL, 7),
    ("getsockname", I386_SOCKETCALL, 6),
    ("getsockopt", I386_SOCKETCALL, 15),
    ("listen", I386_SOCKETCALL, 4),
    ("msgctl", I386_IPC, 14),
    ("msgget", I386_IPC, 13),
    ("msgrcv", I386_IPC, 12),
    ("msgsnd", I386_IPC, 11),
    ("recv", I386_SOCKETCALL, 10),
    ("recvfrom", I386_SOCKETCALL, 12),
    ("recvmmsg", I386_SOCKETCALL, 19),
    ("recvmsg", I386_SOCKETCALL, 17),
    ("semctl", I386_IPC, 3),
    ("semget", I386_IPC, 2),
    ("semop", I386_IPC, 1),
    ("semtimedop", I386_IPC, 4),
    ("send", I386_SOCKETCALL, 9),
    ("sendmmsg", I386_SOCKETCALL, 20),
    ("sendmsg", I386_SOCKETCALL, 16),
    ("sendto", I386_SOCKETCALL, 11),
    ("setsockopt", I386_SOCKETCALL, 14),
    ("shmat", I386_IPC, 21),
    ("shmctl", I386_IPC, 24),
    ("shmdt", I386_IPC, 22),
    ("shmget", I386_IPC, 23),
    ("shutdown", I386_SOCKETCALL, 13),
    ("socket", I386_SOCKETCALL, 1),
    ("socketpair", I386_SOCKETCALL, 8),
];

/// The x86 ABIs a filter on x86_64 can see; the discriminant is the column in [`SYSCALLS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Abi {
    X86_64 = 0,
    X86 = 1,
    X32 = 2,
}

impl Abi {
    /// i386 and x32 pass 32-bit arguments; libseccomp compares only their low words.
    pub(super) fn args_are_32bit(self) -> bool {
        self != Abi::X86_64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cond {
    pub index: u8,
    pub op: LinuxSeccompOperator,
    pub value: u64,
    pub value_two: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Rule {
    pub action: u32,
    /// All must hold; empty = unconditional.
    pub conds: Vec<Cond>,
}

#[derive(Debug)]
pub(super) struct Syscall {
    pub nr: u32,
    /// Into [`AbiPolicy::rules`]: tried in order, first match wins; a lone unconditional rule
    /// when one exists.
    pub rules: std::ops::Range<usize>,
}

#[derive(Debug)]
pub(super) struct AbiPolicy {
    pub abi: Abi,
    /// runc's -ENOSYS stub: syscalls numbered above this return ENOSYS.
    pub enosys_above: Option<u32>,
    /// Sorted by number, one entry per number.
    pub syscalls: Vec<Syscall>,
    pub rules: Vec<Rule>,
}

impl AbiPolicy {
    pub(super) fn rules(&self, sc: &Syscall) -> &[Rule] {
        &self.rules[sc.rules.clone()]
    }
}

#[derive(Debug)]
pub(super) struct Policy {
    pub default_action: u32,
    /// x86_64 first, then x32 and x86 when the profile lists them.
    pub abis: Vec<AbiPolicy>,
    pub flags: u32,
    pub uses_notify: bool,
}

fn invalid(path: String, message: impl Into<String>) -> SeccompError {
    SeccompError::Invalid {
        path,
        message: message.into(),
    }
}

/// The seccomp return value of an OCI action; ERRNO and TRACE default to EPERM as in runc.
fn action_value(
    action: LinuxSeccompAction,
    ret: Option<u32>,
    ret_path: impl FnOnce() -> String,
) -> Result<u32, SeccompError> {
    // The kernel clamps an errno above MAX_ERRNO (4095), libseccomp refuses it; TRACE data is
    // any 16-bit value.
    let data = |max: u32, what: &str| match ret {
        Some(v) if v > max => Err(invalid(
            ret_path(),
            format!("{v} is not a valid {what} (max {max})"),
        )),
        Some(v) => Ok(v),
        None => Ok(libc::EPERM as u32),
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => RET_ERRNO | data(MAX_ERRNO, "errno")?,
        LinuxSeccompAction::ScmpActTrace => RET_TRACE | data(RET_DATA_MAX, "16-bit trace value")?,
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        LinuxSeccompAction::ScmpActNotify => RET_USER_NOTIF,
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
    })
}

pub(super) fn lookup(name: &str) -> Option<[u32; 3]> {
    let mask = INDEX.len() - 1;
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let mut slot = hash as usize & mask;
    loop {
        let (n, nrs) = SYSCALLS.get(usize::from(INDEX[slot]))?;
        if *n == name {
            return Some(*nrs);
        }
        slot = (slot + 1) & mask;
    }
}

fn i386_mux(name: &str) -> Option<(u32, u64)> {
    I386_MUX
        .binary_search_by(|(n, _, _)| (*n).cmp(name))
        .ok()
        .map(|i| (I386_MUX[i].1, I386_MUX[i].2))
}

/// The ABIs the filter covers: x86_64 always (libseccomp's native arch), x86/x32 when listed.
/// Foreign architectures are accepted and ignored, as they are in effect under runc: an x86_64
/// kernel never reports them, so their part of a libseccomp filter is dead code.
fn abis(arches: &[Arch]) -> ([bool; 3], [bool; 3]) {
    let mut present = [true, false, false];
    let mut listed = [false; 3];
    for arch in arches {
        let abi = match arch {
            Arch::ScmpArchNative | Arch::ScmpArchX86_64 => Abi::X86_64,
            Arch::ScmpArchX86 => Abi::X86,
            Arch::ScmpArchX32 => Abi::X32,
            _ => continue,
        };
        present[abi as usize] = true;
        listed[abi as usize] = true;
    }
    (present, listed)
}

/// One profile rule's conditions as alternatives (OR of ANDs), after runc's same-argument split.
fn alternatives(call: &LinuxSyscall, i: usize) -> Result<Vec<Vec<Cond>>, SeccompError> {
    let args = call.args().as_deref().unwrap_or_default();
    let mut conds = Vec::with_capacity(args.len());
    let mut seen = [0u8; 6];
    for (j, arg) in args.iter().enumerate() {
        let index = arg.index();
        if index >= 6 {
            return Err(invalid(
                format!("linux.seccomp.syscalls[{i}].args[{j}].index"),
                format!("{index} is out of range: syscalls have arguments 0 to 5"),
            ));
        }
        seen[index] += 1;
        conds.push(Cond {
            index: index as u8,
            op: arg.op(),
            value: arg.value(),
            value_two: arg.value_two().unwrap_or(0),
        });
    }
    if seen.iter().any(|&n| n > 1) {
        Ok(conds.into_iter().map(|c| vec![c]).collect())
    } else {
        Ok(vec![conds])
    }
}

struct Entry {
    nr: u32,
    rule: Rule,
}

pub(super) fn translate(seccomp: &LinuxSeccomp) -> Result<Policy, SeccompError> {
    let default_action = action_value(
        seccomp.default_action(),
        seccomp.default_errno_ret(),
        || "linux.seccomp.defaultErrnoRet".into(),
    )?;
    if default_action == RET_USER_NOTIF {
        // The init process would block on its own first syscall before anyone holds the fd.
        return Err(invalid(
            "linux.seccomp.defaultAction".into(),
            "SCMP_ACT_NOTIFY cannot be the default action",
        ));
    }
    let (present, listed) = abis(seccomp.architectures().as_deref().unwrap_or_default());
    let calls = seccomp.syscalls().as_deref().unwrap_or_default();

    let names = calls.iter().map(|c| c.names().len()).sum::<usize>() + 8;
    let mut entries: [Vec<Entry>; 3] = std::array::from_fn(|_| Vec::with_capacity(names));
    let mut max_nr = [0u32; 3];
    let mut uses_notify = false;
    for (i, call) in calls.iter().enumerate() {
        let action = action_value(call.action(), call.errno_ret(), || {
            format!("linux.seccomp.syscalls[{i}].errnoRet")
        })?;
        let alts = alternatives(call, i)?;
        for (k, name) in call.names().iter().enumerate() {
            if name.is_empty() {
                return Err(invalid(
                    format!("linux.seccomp.syscalls[{i}].names[{k}]"),
                    "empty syscall name",
                ));
            }
            if action == RET_USER_NOTIF && name == "write" {
                // The init reports the notify fd with write(2) before the listener has it.
                return Err(invalid(
                    format!("linux.seccomp.syscalls[{i}].names[{k}]"),
                    "SCMP_ACT_NOTIFY cannot be used for write",
                ));
            }
            let nrs = lookup(name);
            let mux = i386_mux(name);
            for abi in [Abi::X86_64, Abi::X86, Abi::X32] {
                if !present[abi as usize] {
                    continue;
                }
                let direct = nrs.map(|n| n[abi as usize]).filter(|&n| n != NONE);
                // libseccomp resolves the multiplexed names to pseudo numbers on i386, so they
                // never raise the -ENOSYS threshold there.
                let counts = !(abi == Abi::X86 && mux.is_some());
                if let (Some(nr), true) = (direct, counts) {
                    max_nr[abi as usize] = max_nr[abi as usize].max(nr);
                }
                if action == default_action {
                    continue;
                }
                let list = &mut entries[abi as usize];
                let before = list.len();
                if let Some(nr) = direct {
                    for conds in &alts {
                        list.push(Entry {
                            nr,
                            rule: Rule {
                                action,
                                conds: conds.clone(),
                            },
                        });
                    }
                }
                if let (Abi::X86, Some((mux_nr, call_nr))) = (abi, mux) {
                    for conds in &alts {
                        let mut conds: Vec<Cond> =
                            conds.iter().copied().filter(|c| c.index != 0).collect();
                        conds.insert(
                            0,
                            Cond {
                                index: 0,
                                op: LinuxSeccompOperator::ScmpCmpEq,
                                value: call_nr,
                                value_two: 0,
                            },
                        );
                        list.push(Entry {
                            nr: mux_nr,
                            rule: Rule { action, conds },
                        });
                    }
                }
                uses_notify |= action == RET_USER_NOTIF && list.len() > before;
            }
        }
    }

    let enosys_stub = !matches!(
        default_action & 0xffff_0000,
        RET_ALLOW | RET_LOG | RET_TRACE
    );
    let mut abis = Vec::with_capacity(3);
    for abi in [Abi::X86_64, Abi::X32, Abi::X86] {
        if !present[abi as usize] {
            continue;
        }
        let max = max_nr[abi as usize];
        let enosys_above = (enosys_stub && listed[abi as usize] && max != 0).then_some(max);
        let (syscalls, rules) = group(std::mem::take(&mut entries[abi as usize]));
        abis.push(AbiPolicy {
            abi,
            enosys_above,
            syscalls,
            rules,
        });
    }

    let mut flags = 0;
    for flag in seccomp.flags().as_deref().unwrap_or_default() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
        };
    }
    if uses_notify {
        flags |= FLAG_NEW_LISTENER;
        if flags & FLAG_TSYNC != 0 {
            // The kernel refuses TSYNC with NEW_LISTENER unless a failed sync reports ESRCH.
            flags |= FLAG_TSYNC_ESRCH;
        }
        if seccomp
            .listener_path()
            .as_ref()
            .is_none_or(|p| p.as_os_str().is_empty())
        {
            // runc fails later, at create, with "seccomp listenerPath is not set".
            return Err(invalid(
                "linux.seccomp.listenerPath".into(),
                "required when a rule uses SCMP_ACT_NOTIFY",
            ));
        }
    } else {
        // The kernel accepts it only together with a listener; without one it means nothing.
        flags &= !FLAG_WAIT_KILLABLE_RECV;
    }
    Ok(Policy {
        default_action,
        abis,
        flags,
        uses_notify,
    })
}

/// Entries in profile order → one [`Syscall`] per number (ascending), and their rules in
/// profile order. A counting sort: numbers are dense and below ~600 past the x32 bit.
fn group(list: Vec<Entry>) -> (Vec<Syscall>, Vec<Rule>) {
    let key = |nr: u32| (nr & !X32_SYSCALL_BIT) as usize;
    let size = list.iter().map(|e| key(e.nr) + 1).max().unwrap_or(0);
    let mut start = vec![0usize; size + 1];
    for e in &list {
        start[key(e.nr) + 1] += 1;
    }
    for k in 1..=size {
        start[k] += start[k - 1];
    }
    let mut slots: Vec<Option<Rule>> = vec![None; list.len()];
    let mut next = start.clone();
    let mut nrs = vec![0u32; size];
    for e in list {
        let k = key(e.nr);
        nrs[k] = e.nr;
        slots[next[k]] = Some(e.rule);
        next[k] += 1;
    }
    let mut syscalls = Vec::new();
    let mut rules = Vec::with_capacity(slots.len());
    for k in 0..size {
        let group = &mut slots[start[k]..start[k + 1]];
        if group.is_empty() {
            continue;
        }
        let first = rules.len();
        // An unconditional rule makes the conditional ones unreachable (libseccomp drops them).
        match group
            .iter()
            .position(|r| r.as_ref().is_some_and(|r| r.conds.is_empty()))
        {
            Some(pos) => rules.extend(group[pos].take()),
            None => rules.extend(group.iter_mut().filter_map(Option::take)),
        }
        syscalls.push(Syscall {
            nr: nrs[k],
            rules: first..rules.len(),
        });
    }
    (syscalls, rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::tests::profile;

    fn abi(p: &Policy, abi: Abi) -> &AbiPolicy {
        p.abis.iter().find(|a| a.abi == abi).expect("abi present")
    }

    fn rules(p: &Policy, a: Abi, nr: u32) -> &[Rule] {
        abi(p, a)
            .syscalls
            .iter()
            .find(|s| s.nr == nr)
            .map(|s| abi(p, a).rules(s))
            .unwrap_or_default()
    }

    fn err_path(json: serde_json::Value) -> String {
        match translate(&profile(json)) {
            Err(SeccompError::Invalid { path, .. }) => path,
            other => panic!("expected an invalid-profile error, got {other:?}"),
        }
    }

    #[test]
    fn every_action_has_its_kernel_value() {
        let cases = [
            ("SCMP_ACT_KILL", None, RET_KILL_THREAD),
            ("SCMP_ACT_KILL_THREAD", None, RET_KILL_THREAD),
            ("SCMP_ACT_KILL_PROCESS", None, RET_KILL_PROCESS),
            ("SCMP_ACT_TRAP", None, RET_TRAP),
            ("SCMP_ACT_ERRNO", None, RET_ERRNO | 1),
            ("SCMP_ACT_ERRNO", Some(38), RET_ERRNO | 38),
            ("SCMP_ACT_TRACE", None, RET_TRACE | 1),
            ("SCMP_ACT_TRACE", Some(7), RET_TRACE | 7),
            ("SCMP_ACT_LOG", None, RET_LOG),
            ("SCMP_ACT_NOTIFY", None, RET_USER_NOTIF),
        ];
        for (action, ret, want) in cases {
            let p = translate(&profile(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": "/run/agent.sock",
                "syscalls": [{"names": ["getpid"], "action": action, "errnoRet": ret}]
            })))
            .expect("translate");
            assert_eq!(
                rules(&p, Abi::X86_64, 39),
                [Rule {
                    action: want,
                    conds: vec![]
                }],
                "{action}"
            );
        }
    }

    #[test]
    fn default_errno_ret_and_redundant_rules() {
        let p = translate(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}
            ]
        })))
        .expect("translate");
        assert_eq!(p.default_action, RET_ERRNO | 38);
        assert!(
            rules(&p, Abi::X86_64, 39).is_empty(),
            "same as default: skipped like runc"
        );
        assert_eq!(rules(&p, Abi::X86_64, 110)[0].action, RET_ERRNO | 1);
    }

    #[test]
    fn operators_and_same_argument_split() {
        let ops = [
            "SCMP_CMP_NE",
            "SCMP_CMP_LT",
            "SCMP_CMP_LE",
            "SCMP_CMP_EQ",
            "SCMP_CMP_GE",
            "SCMP_CMP_GT",
            "SCMP_CMP_MASKED_EQ",
        ];
        for op in ops {
            let p = translate(&profile(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["dup"], "action": "SCMP_ACT_ERRNO",
                              "args": [{"index": 0, "value": 5, "valueTwo": 4, "op": op},
                                       {"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]}]
            })))
            .expect("translate");
            let r = rules(&p, Abi::X86_64, 32);
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].conds.len(), 2, "{op}: two arguments → one AND rule");
            assert_eq!(r[0].conds[0].op.to_string(), op);
        }
        let p = translate(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["dup"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_EQ"},
                                   {"index": 0, "value": 6, "op": "SCMP_CMP_EQ"}]}]
        })))
        .expect("translate");
        assert_eq!(
            rules(&p, Abi::X86_64, 32).len(),
            2,
            "same argument twice → two rules (OR) like runc"
        );
    }

    #[test]
    fn unconditional_rule_wins_and_order_is_kept() {
        let p = translate(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["dup"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_EQ"}]},
                {"names": ["dup"], "action": "SCMP_ACT_KILL_PROCESS", "args": [{"index": 0, "value": 6, "op": "SCMP_CMP_EQ"}]},
                {"names": ["dup2"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_EQ"}]},
                {"names": ["dup2"], "action": "SCMP_ACT_TRAP"}
            ]
        })))
        .expect("translate");
        let dup = rules(&p, Abi::X86_64, 32);
        assert_eq!(
            (dup[0].action, dup[1].action),
            (RET_ERRNO | 1, RET_KILL_PROCESS)
        );
        assert_eq!(
            rules(&p, Abi::X86_64, 33),
            [Rule {
                action: RET_TRAP,
                conds: vec![]
            }]
        );
    }

    #[test]
    fn unknown_names_are_skipped_and_compat_names_go_to_their_abi() {
        let p = translate(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["no_such_syscall", "_llseek", "arch_prctl", "s390_runtime_instr"], "action": "SCMP_ACT_ALLOW"}]
        })))
        .expect("translate");
        assert_eq!(
            abi(&p, Abi::X86_64)
                .syscalls
                .iter()
                .map(|s| s.nr)
                .collect::<Vec<_>>(),
            [158]
        );
        assert_eq!(
            abi(&p, Abi::X86)
                .syscalls
                .iter()
                .map(|s| s.nr)
                .collect::<Vec<_>>(),
            [140, 384]
        );
        assert_eq!(
            abi(&p, Abi::X32)
                .syscalls
                .iter()
                .map(|s| s.nr)
                .collect::<Vec<_>>(),
            [X32_SYSCALL_BIT | 158]
        );
    }

    #[test]
    fn i386_socket_calls_are_also_matched_through_socketcall() {
        let p = translate(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86"],
            "syscalls": [{"names": ["socket", "accept", "shmget", "getpid"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 2, "value": 0, "op": "SCMP_CMP_EQ"}]}]
        })))
        .expect("translate");
        let x86 = abi(&p, Abi::X86);
        let nrs: Vec<u32> = x86.syscalls.iter().map(|s| s.nr).collect();
        assert_eq!(
            nrs,
            [20, 102, 117, 359, 395],
            "getpid, socketcall, ipc, socket, shmget; accept has no direct call"
        );
        let socketcall = x86.rules(&x86.syscalls[1]);
        assert_eq!(socketcall.len(), 2);
        assert_eq!(
            socketcall[0].conds[0],
            Cond {
                index: 0,
                op: LinuxSeccompOperator::ScmpCmpEq,
                value: 1,
                value_two: 0
            }
        );
        assert_eq!(socketcall[1].conds[0].value, 5);
        assert_eq!(
            socketcall[0].conds[1].index, 2,
            "other conditions are kept, as libseccomp does"
        );
        assert_eq!(x86.rules(&x86.syscalls[2])[0].conds[0].value, 23);
        assert_eq!(
            x86.enosys_above,
            Some(20),
            "socket family names don't count, as in runc"
        );
    }

    #[test]
    fn enosys_stub_follows_runc() {
        let json = |default: &str, arches: serde_json::Value| {
            serde_json::json!({
                "defaultAction": default, "architectures": arches,
                "syscalls": [{"names": ["getpid", "_llseek", "read"], "action": "SCMP_ACT_ALLOW"}]
            })
        };
        let p = translate(&profile(json(
            "SCMP_ACT_ERRNO",
            serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]),
        )))
        .expect("translate");
        assert_eq!(abi(&p, Abi::X86_64).enosys_above, Some(39));
        assert_eq!(abi(&p, Abi::X86).enosys_above, Some(140));
        let p =
            translate(&profile(json("SCMP_ACT_ERRNO", serde_json::json!([])))).expect("translate");
        assert_eq!(
            abi(&p, Abi::X86_64).enosys_above,
            None,
            "not listed: runc adds no stub"
        );
        for permissive in ["SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"] {
            let p = translate(&profile(json(
                permissive,
                serde_json::json!(["SCMP_ARCH_X86_64"]),
            )))
            .expect("translate");
            assert_eq!(abi(&p, Abi::X86_64).enosys_above, None, "{permissive}");
        }
    }

    #[test]
    fn foreign_architectures_are_ignored() {
        let p = translate(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_NATIVE"],
            "syscalls": []
        })))
        .expect("translate");
        assert_eq!(
            p.abis.iter().map(|a| a.abi).collect::<Vec<_>>(),
            [Abi::X86_64]
        );
    }

    #[test]
    fn bad_architecture_is_refused_with_its_path() {
        let json = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]});
        let err = serde_path_to_error::deserialize::<_, LinuxSeccomp>(json)
            .expect_err("unknown architecture");
        assert_eq!(err.path().to_string(), "architectures[1]");
    }

    #[test]
    fn errors_name_the_json_path() {
        assert_eq!(
            err_path(
                serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 4096})
            ),
            "linux.seccomp.defaultErrnoRet"
        );
        assert_eq!(
            err_path(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"})),
            "linux.seccomp.defaultAction"
        );
        assert_eq!(
            err_path(
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["getpid"], "action": "SCMP_ACT_TRACE", "errnoRet": 65536}]})
            ),
            "linux.seccomp.syscalls[1].errnoRet"
        );
        assert_eq!(
            err_path(
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["dup"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]})
            ),
            "linux.seccomp.syscalls[2].args[0].index"
        );
        assert_eq!(
            err_path(
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getpid", ""], "action": "SCMP_ACT_ERRNO"}]})
            ),
            "linux.seccomp.syscalls[0].names[1]"
        );
        assert_eq!(
            err_path(
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x", "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}]})
            ),
            "linux.seccomp.syscalls[0].names[1]"
        );
        assert_eq!(
            err_path(
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})
            ),
            "linux.seccomp.listenerPath"
        );
        let json = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["dup"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]});
        let err = serde_path_to_error::deserialize::<_, LinuxSeccomp>(json)
            .expect_err("unknown operator");
        assert_eq!(err.path().to_string(), "syscalls[0].args[0].op");
    }

    #[test]
    fn flags() {
        let p = translate(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
        })))
        .expect("translate");
        assert_eq!(p.flags, FLAG_TSYNC | FLAG_LOG | FLAG_SPEC_ALLOW);
        let p = translate(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        })))
        .expect("translate");
        assert!(p.uses_notify);
        assert_eq!(
            p.flags,
            FLAG_TSYNC | FLAG_TSYNC_ESRCH | FLAG_NEW_LISTENER | FLAG_WAIT_KILLABLE_RECV
        );
    }

    #[test]
    fn multiplexer_table_agrees_with_the_syscall_table() {
        assert!(
            I386_MUX.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted for binary search"
        );
        assert!(
            SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted for binary search"
        );
        // libseccomp knows no direct i386 call for these; the table must agree.
        for name in ["accept", "send", "recv", "semop", "semtimedop"] {
            assert_eq!(lookup(name).map_or(NONE, |n| n[1]), NONE, "{name}");
        }
        assert_eq!(lookup("socket").map(|n| n[1]), Some(359));
        assert_eq!(lookup("recvmmsg").map(|n| n[1]), Some(337));
        assert_eq!(lookup("shmctl").map(|n| n[1]), Some(396));
    }
}
