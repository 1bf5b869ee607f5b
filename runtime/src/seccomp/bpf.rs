//! [`Policy`] → classic BPF for `SECCOMP_SET_MODE_FILTER`.
//!
//! Layout of the program:
//! ```text
//!   ld arch; jeq X86_64 → B64; jeq I386 → B32; ret BAD_ARCH
//!   B64: ld nr; jge X32_BIT → BX32 (or BAD_ARCH when x32 is not listed)
//!        search tree over x86_64 numbers → ret ACTION | rule body
//!   BX32: search tree over x32 numbers (nr is still in A)
//!   B32: ld nr; search tree over i386 numbers
//!   rule bodies: argument checks, first matching rule returns its action
//! ```
//! Each ABI's number line is cut into intervals with one outcome each (an action, a rule body,
//! the default, or ENOSYS above the highest named syscall); a balanced tree of `jge` over the
//! interval starts reaches any outcome in about log2(intervals) jumps and costs one instruction
//! per interval boundary, so the engine default profile fits in a few hundred instructions.
//!
//! The program is emitted back to front: every jump then goes to code already placed, whose
//! distance is known. Conditional jumps reach at most 255 instructions; a farther target gets a
//! fresh copy of its `ret`, or a `ja` trampoline next to the jump.

use oci_spec::runtime::LinuxSeccompOperator as Op;

use super::translate::{
    Abi, AbiPolicy, Cond, Policy, Rule, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, BAD_ARCH_ACTION,
    RET_ERRNO, X32_SYSCALL_BIT,
};

/// One `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const ALU_AND_K: u16 = 0x04 | 0x50; // BPF_ALU | BPF_AND | BPF_K
const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JEQ: u16 = 0x05 | 0x10;
const JGT: u16 = 0x05 | 0x20;
const JGE: u16 = 0x05 | 0x30;
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

const RET_ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

/// Where a jump goes: a return of that action (placed wherever convenient) or emitted code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Ret(u32),
    Code(usize),
}

/// Back-to-front program builder; a label is an index into `rev`.
struct Emitter {
    rev: Vec<Insn>,
    /// The nearest `ret` emitted for each action.
    rets: Vec<(u32, usize)>,
}

impl Emitter {
    fn push(&mut self, code: u16, jt: u8, jf: u8, k: u32) -> Target {
        self.rev.push(Insn { code, jt, jf, k });
        Target::Code(self.rev.len() - 1)
    }

    /// Offset of `label` from the instruction emitted next.
    fn distance(&self, label: usize) -> usize {
        self.rev.len() - label - 1
    }

    fn ret(&mut self, action: u32) -> usize {
        self.rev.push(Insn {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: action,
        });
        let label = self.rev.len() - 1;
        match self.rets.iter_mut().find(|(a, _)| *a == action) {
            Some(slot) => slot.1 = label,
            None => self.rets.push((action, label)),
        }
        label
    }

    /// A label for `t` within `max` of the instruction emitted next, adding a `ret` copy or a
    /// `ja` trampoline when `t` is farther.
    fn reach(&mut self, t: Target, max: usize) -> usize {
        match t {
            Target::Ret(action) => match self.rets.iter().find(|(a, _)| *a == action) {
                Some(&(_, label)) if self.distance(label) <= max => label,
                _ => self.ret(action),
            },
            Target::Code(label) if self.distance(label) <= max => label,
            Target::Code(label) => {
                let far = self.distance(label) as u32;
                self.rev.push(Insn {
                    code: JMP_JA,
                    jt: 0,
                    jf: 0,
                    k: far,
                });
                self.rev.len() - 1
            }
        }
    }

    fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) -> Target {
        // jf first with one slot of slack: reaching jt may add one instruction in between.
        let f = self.reach(jf, 254);
        let t = self.reach(jt, 255);
        let (jt, jf) = (self.distance(t) as u8, self.distance(f) as u8);
        self.push(code, jt, jf, k)
    }

    fn load(&mut self, offset: u32) -> Target {
        self.push(LD_W_ABS, 0, 0, offset)
    }

    /// A: nr; → the outcome for this ABI's range `[lo, hi]`.
    fn abi(&mut self, p: &AbiPolicy, default: Target, lo: u32, hi: u32) -> Target {
        let max = p.enosys_above.unwrap_or(hi).min(hi);
        let mut intervals: Vec<(u32, Target)> = Vec::with_capacity(2 * p.syscalls.len() + 2);
        let mut add = |start: u32, t: Target| match intervals.last() {
            Some(&(_, last)) if last == t => {}
            _ => intervals.push((start, t)),
        };
        let mut next = Some(lo);
        for sc in p.syscalls.iter().filter(|s| s.nr >= lo && s.nr <= max) {
            if next.is_some_and(|n| n < sc.nr) {
                add(next.unwrap_or(lo), default);
            }
            let t = self.syscall(p.rules(sc), default, p.abi);
            add(sc.nr, t);
            next = sc.nr.checked_add(1);
        }
        if let Some(n) = next.filter(|&n| n <= max) {
            add(n, default);
        }
        if max < hi {
            add(max + 1, Target::Ret(RET_ENOSYS));
        }
        self.tree(&intervals)
    }

    fn tree(&mut self, intervals: &[(u32, Target)]) -> Target {
        match intervals {
            [] => unreachable!("an ABI range always has at least one interval"),
            [(_, t)] => *t,
            _ => {
                let mid = intervals.len() / 2;
                let right = self.tree(&intervals[mid..]);
                let left = self.tree(&intervals[..mid]);
                self.jump(JGE, intervals[mid].0, right, left)
            }
        }
    }

    fn syscall(&mut self, rules: &[Rule], default: Target, abi: Abi) -> Target {
        if let [Rule { action, conds }] = rules {
            if conds.is_empty() {
                return Target::Ret(*action);
            }
        }
        let mut next = default;
        for rule in rules.iter().rev() {
            let mut ok = Target::Ret(rule.action);
            for cond in rule.conds.iter().rev() {
                ok = self.cond(cond, ok, next, abi.args_are_32bit());
            }
            next = ok;
        }
        next
    }

    /// One 64-bit comparison as two 32-bit ones (the high word decides unless equal); 32-bit
    /// ABIs compare the low words only, as libseccomp does. Emitted back to front.
    fn cond(&mut self, c: &Cond, ok: Target, fail: Target, only_low: bool) -> Target {
        let lo_off = OFF_ARGS + 8 * u32::from(c.index);
        let hi_off = lo_off + 4;
        let (v_hi, v_lo) = ((c.value >> 32) as u32, c.value as u32);
        // libseccomp masks the expected value too: (arg & mask) == (valueTwo & mask).
        let datum = c.value_two & c.value;
        let (d_hi, d_lo) = ((datum >> 32) as u32, datum as u32);
        if c.op == Op::ScmpCmpMaskedEq {
            // OCI: value is the mask, valueTwo the expected (arg & mask).
            self.jump(JEQ, d_lo, ok, fail);
            self.push(ALU_AND_K, 0, 0, v_lo);
        } else {
            let (code, t, f) = match c.op {
                Op::ScmpCmpEq => (JEQ, ok, fail),
                Op::ScmpCmpNe => (JEQ, fail, ok),
                Op::ScmpCmpGt => (JGT, ok, fail),
                Op::ScmpCmpGe => (JGE, ok, fail),
                Op::ScmpCmpLt => (JGE, fail, ok),
                _ => (JGT, fail, ok), // Le
            };
            self.jump(code, v_lo, t, f);
        }
        let low = self.load(lo_off);
        if only_low || (c.op == Op::ScmpCmpMaskedEq && v_hi == 0) {
            return low;
        }
        match c.op {
            Op::ScmpCmpEq => self.jump(JEQ, v_hi, low, fail),
            Op::ScmpCmpNe => self.jump(JEQ, v_hi, low, ok),
            Op::ScmpCmpGt | Op::ScmpCmpGe => {
                let eq = self.jump(JEQ, v_hi, low, fail);
                self.jump(JGT, v_hi, ok, eq)
            }
            Op::ScmpCmpLt | Op::ScmpCmpLe => {
                let eq = self.jump(JEQ, v_hi, low, ok);
                self.jump(JGT, v_hi, fail, eq)
            }
            Op::ScmpCmpMaskedEq => {
                self.jump(JEQ, d_hi, low, fail);
                self.push(ALU_AND_K, 0, 0, v_hi)
            }
        };
        self.load(hi_off)
    }
}

/// The whole filter program, front to back.
pub(super) fn generate(policy: &Policy) -> Vec<Insn> {
    let mut e = Emitter {
        rev: Vec::with_capacity(512),
        rets: Vec::new(),
    };
    let default = Target::Ret(policy.default_action);
    let bad_arch = Target::Ret(BAD_ARCH_ACTION);
    let find = |abi: Abi| policy.abis.iter().find(|p| p.abi == abi);

    // Emitted last block first.
    let b32 = find(Abi::X86).map(|p| {
        let tree = e.abi(p, default, 0, u32::MAX);
        if let Target::Ret(_) = tree {
            return tree;
        }
        e.reach(tree, 0);
        e.load(OFF_NR)
    });
    let bx32 = match find(Abi::X32) {
        Some(p) => e.abi(p, default, X32_SYSCALL_BIT, u32::MAX),
        // nr -1 (a syscall skipped by a tracer) stays x86_64, as in libseccomp.
        None => e.jump(JEQ, u32::MAX, default, bad_arch),
    };
    let b64 = match find(Abi::X86_64) {
        Some(p) => e.abi(p, default, 0, X32_SYSCALL_BIT - 1),
        None => default,
    };
    // x32 shares x86_64's audit arch; only the x32 bit in nr tells them apart.
    e.jump(JGE, X32_SYSCALL_BIT, bx32, b64);
    let b64 = e.load(OFF_NR);
    let other = match b32 {
        Some(b32) => e.jump(JEQ, AUDIT_ARCH_I386, b32, bad_arch),
        None => bad_arch,
    };
    e.jump(JEQ, AUDIT_ARCH_X86_64, b64, other);
    e.load(OFF_ARCH);
    e.rev.reverse();
    e.rev
}

/// Runs `prog` on one `struct seccomp_data` as the kernel would; for tests and debugging.
#[cfg(test)]
pub(super) fn run(prog: &[Insn], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let word = |off: u32| -> u32 {
        match off {
            0 => nr,
            4 => arch,
            o if (16..64).contains(&o) => {
                let a = args[((o - 16) / 8) as usize];
                if (o - 16) % 8 == 0 {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            o => panic!("load from offset {o}"),
        }
    };
    let (mut pc, mut acc) = (0usize, 0u32);
    loop {
        let i = prog[pc];
        pc += 1;
        match i.code {
            LD_W_ABS => acc = word(i.k),
            ALU_AND_K => acc &= i.k,
            JMP_JA => pc += i.k as usize,
            JEQ | JGT | JGE => {
                let hit = match i.code {
                    JEQ => acc == i.k,
                    JGT => acc > i.k,
                    _ => acc >= i.k,
                };
                pc += usize::from(if hit { i.jt } else { i.jf });
            }
            RET_K => return i.k,
            c => panic!("unknown opcode {c:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::tests::profile;
    use crate::seccomp::translate::{translate, RET_ALLOW, RET_KILL_PROCESS, RET_TRAP};

    fn prog(json: serde_json::Value) -> Vec<Insn> {
        generate(&translate(&profile(json)).expect("translate"))
    }

    /// Every jump lands inside the program and every path ends in `ret`: what the kernel checks.
    fn check(prog: &[Insn]) {
        assert!(!prog.is_empty() && prog.len() <= 4096);
        for (pc, i) in prog.iter().enumerate() {
            match i.code {
                JMP_JA => assert!(pc + 1 + (i.k as usize) < prog.len()),
                JEQ | JGT | JGE => assert!(pc + 1 + usize::from(i.jt.max(i.jf)) < prog.len()),
                LD_W_ABS | ALU_AND_K => assert!(pc + 1 < prog.len()),
                RET_K => {}
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    const X64: u32 = AUDIT_ARCH_X86_64;

    #[test]
    fn arch_dispatch_and_x32_bit() {
        let both = prog(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_X86"],
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}]
        }));
        check(&both);
        assert_eq!(run(&both, X64, 39, [0; 6]), RET_ERRNO | 1);
        assert_eq!(
            run(&both, X64, X32_SYSCALL_BIT | 39, [0; 6]),
            RET_ERRNO | 1,
            "x32 getpid"
        );
        assert_eq!(run(&both, X64, X32_SYSCALL_BIT | 38, [0; 6]), RET_ALLOW);
        assert_eq!(
            run(&both, AUDIT_ARCH_I386, 20, [0; 6]),
            RET_ERRNO | 1,
            "i386 getpid is 20"
        );
        assert_eq!(
            run(&both, AUDIT_ARCH_I386, 39, [0; 6]),
            RET_ALLOW,
            "i386 39 is mkdir"
        );
        assert_eq!(run(&both, 0xc000_00b7, 39, [0; 6]), BAD_ARCH_ACTION);

        let native = prog(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"}));
        check(&native);
        assert_eq!(run(&native, X64, 39, [0; 6]), RET_ALLOW);
        assert_eq!(
            run(&native, X64, X32_SYSCALL_BIT | 39, [0; 6]),
            BAD_ARCH_ACTION,
            "x32 not listed"
        );
        assert_eq!(
            run(&native, X64, u32::MAX, [0; 6]),
            RET_ALLOW,
            "nr -1 stays x86_64 (libseccomp)"
        );
        assert_eq!(
            run(&native, AUDIT_ARCH_I386, 20, [0; 6]),
            BAD_ARCH_ACTION,
            "x86 not listed"
        );
    }

    #[test]
    fn enosys_above_the_highest_named_syscall() {
        let p = prog(serde_json::json!({
            "defaultAction": "SCMP_ACT_KILL_PROCESS",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["read", "getpid", "socket"], "action": "SCMP_ACT_ALLOW"}]
        }));
        check(&p);
        assert_eq!(run(&p, X64, 0, [0; 6]), RET_ALLOW);
        assert_eq!(run(&p, X64, 1, [0; 6]), RET_KILL_PROCESS);
        assert_eq!(run(&p, X64, 41, [0; 6]), RET_ALLOW);
        assert_eq!(run(&p, X64, 42, [0; 6]), RET_ENOSYS);
        assert_eq!(run(&p, X64, X32_SYSCALL_BIT - 1, [0; 6]), RET_ENOSYS);
        assert_eq!(run(&p, X64, X32_SYSCALL_BIT | 41, [0; 6]), RET_ALLOW);
        assert_eq!(run(&p, X64, X32_SYSCALL_BIT | 40, [0; 6]), RET_KILL_PROCESS);
        assert_eq!(run(&p, X64, X32_SYSCALL_BIT | 42, [0; 6]), RET_ENOSYS);
        assert_eq!(run(&p, X64, u32::MAX, [0; 6]), RET_ENOSYS);
    }

    /// Each operator against values around its operand, in both words, on 64-bit and 32-bit ABIs.
    #[test]
    fn operators_compare_64_bit_arguments() {
        let value: u64 = 0x0000_0001_8000_0000;
        let probes = [
            0,
            1,
            value - 1,
            value,
            value + 1,
            0x0000_0002_0000_0000,
            0x0000_0000_8000_0000,
            0x0000_0001_0000_0000,
            u64::MAX,
            0x0000_0002_8000_0000,
        ];
        type Holds = fn(u64, u64) -> bool;
        let cases: [(&str, Holds); 6] = [
            ("SCMP_CMP_EQ", |a, v| a == v),
            ("SCMP_CMP_NE", |a, v| a != v),
            ("SCMP_CMP_LT", |a, v| a < v),
            ("SCMP_CMP_LE", |a, v| a <= v),
            ("SCMP_CMP_GT", |a, v| a > v),
            ("SCMP_CMP_GE", |a, v| a >= v),
        ];
        for (op, holds) in cases {
            let p = prog(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                "syscalls": [{"names": ["dup"], "action": "SCMP_ACT_ERRNO", "errnoRet": 9,
                              "args": [{"index": 3, "value": value, "op": op}]}]
            }));
            check(&p);
            for a in probes {
                let want = if holds(a, value) {
                    RET_ERRNO | 9
                } else {
                    RET_ALLOW
                };
                assert_eq!(
                    run(&p, X64, 32, [0, 0, 0, a, 0, 0]),
                    want,
                    "x86_64 {op} arg={a:#x}"
                );
                let want32 = if holds(u64::from(a as u32), u64::from(value as u32)) {
                    RET_ERRNO | 9
                } else {
                    RET_ALLOW
                };
                assert_eq!(
                    run(&p, AUDIT_ARCH_I386, 41, [0, 0, 0, a, 0, 0]),
                    want32,
                    "i386 {op} arg={a:#x}"
                );
            }
        }
    }

    #[test]
    fn masked_eq_masks_the_expected_value_too() {
        // libseccomp compares (arg & mask) == (valueTwo & mask).
        let p = prog(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["clone"], "action": "SCMP_ACT_TRAP",
                          "args": [{"index": 0, "value": 0xff, "valueTwo": 0x1_0000_0001u64, "op": "SCMP_CMP_MASKED_EQ"}]}]
        }));
        assert_eq!(run(&p, X64, 56, [0x1, 0, 0, 0, 0, 0]), RET_TRAP);
        assert_eq!(run(&p, X64, 56, [0x7_0000_0101, 0, 0, 0, 0, 0]), RET_TRAP);
        assert_eq!(run(&p, X64, 56, [0x2, 0, 0, 0, 0, 0]), RET_ALLOW);
    }

    #[test]
    fn masked_eq_checks_both_halves() {
        let p = prog(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["clone"], "action": "SCMP_ACT_TRAP",
                          "args": [{"index": 0, "value": 0x0000_00ff_7e02_0000u64, "valueTwo": 0x0000_0001_0002_0000u64, "op": "SCMP_CMP_MASKED_EQ"}]}]
        }));
        check(&p);
        let mask: u64 = 0x0000_00ff_7e02_0000;
        for a in [
            0u64,
            0x0002_0000,
            0x1_0002_0000,
            0x1_0002_1234,
            0x3_0002_0000,
            0x1_1002_0000,
            0xf00_0001_0002_0000,
        ] {
            let want = if a & mask == 0x1_0002_0000 {
                RET_TRAP
            } else {
                RET_ALLOW
            };
            assert_eq!(run(&p, X64, 56, [a, 0, 0, 0, 0, 0]), want, "arg={a:#x}");
        }
    }

    #[test]
    fn several_args_and_rules() {
        let p = prog(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
                 "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_EQ"}, {"index": 2, "value": 9, "op": "SCMP_CMP_EQ"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 2, "value": 9, "op": "SCMP_CMP_NE"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_NE"}]}
            ]
        }));
        check(&p);
        assert_eq!(run(&p, X64, 41, [16, 3, 9, 0, 0, 0]), RET_ERRNO | 22);
        assert_eq!(run(&p, X64, 41, [16, 3, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, X64, 41, [2, 1, 9, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, X64, 40, [2, 1, 9, 0, 0, 0]), RET_ERRNO | 1);
    }

    /// Far targets: many syscalls with rule bodies push jumps past 255 instructions.
    #[test]
    fn long_programs_use_trampolines() {
        let names: Vec<String> = crate::seccomp::tables::SYSCALLS
            .iter()
            .filter(|(_, n)| n[0] < 300)
            .map(|(n, _)| n.to_string())
            .collect();
        let rules: Vec<serde_json::Value> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                serde_json::json!({"names": [n], "action": "SCMP_ACT_ERRNO", "errnoRet": i + 1,
                                   "args": [{"index": 1, "value": i, "op": "SCMP_CMP_EQ"}]})
            })
            .collect();
        let p = prog(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
        check(&p);
        assert!(p.len() > 1000, "{}", p.len());
        for (i, n) in names.iter().enumerate() {
            let nr = crate::seccomp::translate::lookup(n).expect("known")[0];
            assert_eq!(
                run(&p, X64, nr, [0, i as u64, 0, 0, 0, 0]),
                RET_ERRNO | (i as u32 + 1),
                "{n}"
            );
            assert_eq!(
                run(&p, X64, nr, [0, i as u64 + 1, 0, 0, 0, 0]),
                RET_ALLOW,
                "{n}"
            );
        }
    }
}
