//! The cgroup v2 device controller: v2 has no devices.allow/deny files, access is decided by a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the cgroup directory. This builds that program
//! from the same [`DeviceRule`] list v1 writes, with v1's meaning, and loads/attaches it with the
//! raw `bpf(2)` syscall (no libbpf, no cilium-style assembler: the program is a few dozen fixed
//! instructions and a dependency would sit on the create path's time budget).
//!
//! Semantics (v1's, which runc reproduces on v2 through its emulator): rules apply in order and a
//! later rule overrides an earlier one; `a` resets everything before it to allow-all or deny-all;
//! with no matching rule the access is denied (runc's v2 default). v1 keeps exceptions per access
//! bit (`allow c 1:3 rw` then `deny c 1:3 w` leaves read), so the program decides each requested
//! bit (mknod, read, write) separately: for each bit, the last rule that covers the device and that
//! bit wins, and the access is allowed only when every requested bit is.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::devices::DeviceRule;
use super::CgroupError;

// include/uapi/linux/bpf.h
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `bpf_cgroup_dev_ctx.access_type`: the low 16 bits are the device type, the high the access.
pub const DEV_BLOCK: i32 = 1;
pub const DEV_CHAR: i32 = 2;
pub const ACC_MKNOD: i32 = 1;
pub const ACC_READ: i32 = 2;
pub const ACC_WRITE: i32 = 4;

/// One eBPF instruction as the kernel reads it (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes used: class | op | source.
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_K: u8 = 0xb4;
const JMP_JA: u8 = 0x05;
const JMP_JSET_K: u8 = 0x45;
const JMP_EXIT: u8 = 0x95;
/// JMP32 compares the low 32 bits, so majors and minors above i32::MAX compare right too.
const JMP32_JNE_K: u8 = 0x56;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// A jump whose target is a label, resolved once the program is laid out.
enum Item {
    Insn(Insn),
    /// `code dst imm` jumping to label.
    Jump(u8, u8, i32, usize),
    Label(usize),
}

struct Asm {
    items: Vec<Item>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels += 1;
        self.labels - 1
    }
    fn put(&mut self, i: Insn) {
        self.items.push(Item::Insn(i));
    }
    fn jump(&mut self, code: u8, dst: u8, imm: i32, to: usize) {
        self.items.push(Item::Jump(code, dst, imm, to));
    }
    fn here(&mut self, l: usize) {
        self.items.push(Item::Label(l));
    }
    fn ret(&mut self, v: i32) {
        self.put(insn(ALU32_MOV_K, R0, 0, 0, v));
        self.put(insn(JMP_EXIT, 0, 0, 0, 0));
    }
    fn finish(self) -> Result<Vec<Insn>, String> {
        let mut at = vec![usize::MAX; self.labels];
        let mut pc = 0;
        for it in &self.items {
            match it {
                Item::Label(l) => at[*l] = pc,
                _ => pc += 1,
            }
        }
        let mut out = Vec::with_capacity(pc);
        for it in self.items {
            match it {
                Item::Label(_) => {}
                Item::Insn(i) => out.push(i),
                Item::Jump(code, dst, imm, l) => {
                    // Offsets count from the instruction after the jump.
                    let off = at[l] as i64 - out.len() as i64 - 1;
                    let off = i16::try_from(off)
                        .map_err(|_| format!("device program too long ({pc} instructions)"))?;
                    out.push(insn(code, dst, 0, off, imm));
                }
            }
        }
        Ok(out)
    }
}

/// The program for `rules` (in OCI order, runc's defaults included): returns 1 to allow, 0 to deny.
pub fn program(rules: &[DeviceRule]) -> Result<Vec<Insn>, CgroupError> {
    let mut a = Asm {
        items: Vec::new(),
        labels: 0,
    };
    // R2 = device type, R3 = requested access, R4 = major, R5 = minor.
    a.put(insn(LDX_W, R2, R1, 0, 0));
    a.put(insn(ALU32_AND_K, R2, 0, 0, 0xffff));
    a.put(insn(LDX_W, R3, R1, 0, 0));
    a.put(insn(ALU32_RSH_K, R3, 0, 0, 16));
    a.put(insn(LDX_W, R4, R1, 4, 0));
    a.put(insn(LDX_W, R5, R1, 8, 0));
    let deny = a.label();
    let mut denies = false;
    for (bit, ch) in [(ACC_MKNOD, 'm'), (ACC_READ, 'r'), (ACC_WRITE, 'w')] {
        let check = a.label();
        let next_bit = a.label();
        a.jump(JMP_JSET_K, R3, bit, check);
        a.jump(JMP_JA, 0, 0, next_bit);
        a.here(check);
        // Last match wins: test the rules from the last one back.
        let mut decided = false;
        for r in rules.iter().rev() {
            if r.kind == 'a' {
                // Matches every device and access: nothing before it is reachable.
                a.jump(JMP_JA, 0, 0, if r.allow { next_bit } else { deny });
                denies |= !r.allow;
                decided = true;
                break;
            }
            if !r.access.contains(ch) {
                continue;
            }
            let skip = a.label();
            let ty = if r.kind == 'b' { DEV_BLOCK } else { DEV_CHAR };
            a.jump(JMP32_JNE_K, R2, ty, skip);
            for (reg, n, what) in [(R4, r.major, "major"), (R5, r.minor, "minor")] {
                if let Some(n) = n {
                    let n = u32::try_from(n).map_err(|_| {
                        CgroupError::Unsupported(format!(
                            "device rule {}: {what} {n} does not fit the kernel's 32 bits",
                            r.cgroup_string()
                        ))
                    })?;
                    // The same bits: JMP32 compares them as u32.
                    a.jump(JMP32_JNE_K, reg, n as i32, skip);
                }
            }
            a.jump(JMP_JA, 0, 0, if r.allow { next_bit } else { deny });
            denies |= !r.allow;
            a.here(skip);
        }
        if !decided {
            // No rule covers this bit: denied. (After an `a` this would be dead code, which the
            // verifier refuses.)
            a.jump(JMP_JA, 0, 0, deny);
            denies = true;
        }
        a.here(next_bit);
    }
    a.ret(1);
    if denies {
        a.here(deny);
        a.ret(0);
    }
    a.finish().map_err(CgroupError::Unsupported)
}

/// What the program answers for one access, by interpreting its instructions: the unit tests check
/// the generated code's meaning without loading it.
#[cfg(test)]
fn simulate(prog: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> Option<i32> {
    let mut reg = [0u64; 11];
    let ctx = [((access as u32) << 16) | kind as u32, major, minor];
    let mut pc = 0usize;
    for _ in 0..100_000 {
        let i = prog.get(pc)?;
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        let imm = i.imm as u32 as u64;
        let mut next = pc + 1;
        let target = (pc as i64 + 1 + i64::from(i.off)) as usize;
        match i.code {
            LDX_W if src == 1 => reg[dst] = u64::from(*ctx.get(i.off as usize / 4)?),
            ALU32_AND_K => reg[dst] = (reg[dst] as u32 & imm as u32) as u64,
            ALU32_RSH_K => reg[dst] = ((reg[dst] as u32) >> imm) as u64,
            ALU32_MOV_K => reg[dst] = imm,
            JMP_JA => next = target,
            JMP_JSET_K if reg[dst] & (i.imm as i64 as u64) != 0 => next = target,
            JMP_JSET_K => {}
            JMP32_JNE_K if reg[dst] as u32 != imm as u32 => next = target,
            JMP32_JNE_K => {}
            JMP_EXIT => return Some(reg[0] as i32),
            _ => return None,
        }
        pc = next;
    }
    None
}

fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> std::io::Result<i64> {
    // SAFETY: attr is a live, writable buffer of the length passed; the kernel reads (and for
    // query writes) at most that many bytes, and any pointers inside it point to live buffers the
    // caller keeps alive across this call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn put32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}
fn put64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn fd_from(r: i64) -> std::io::Result<OwnedFd> {
    let fd = i32::try_from(r).map_err(|_| std::io::Error::other("bpf returned a bad fd"))?;
    // SAFETY: a non-negative return of these bpf commands is a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn load(prog: &[Insn]) -> std::io::Result<OwnedFd> {
    match load_with_log(prog, &mut []) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            // Once more with the verifier's log, which says why (a log too small fails the load
            // with ENOSPC, so the fast path goes without).
            let mut log = vec![0u8; 1 << 20];
            let Err(again) = load_with_log(prog, &mut log) else {
                return Err(e);
            };
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let msg = String::from_utf8_lossy(&log[..end]);
            let last = msg.lines().rev().take(3).collect::<Vec<_>>();
            let last: Vec<&str> = last.into_iter().rev().collect();
            Err(std::io::Error::new(
                again.kind(),
                format!("{again}; verifier: {}", last.join(" | ")),
            ))
        }
    }
}

fn load_with_log(prog: &[Insn], log: &mut [u8]) -> std::io::Result<OwnedFd> {
    let license = b"Apache\0";
    // union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level, log_size,
    // log_buf, kern_version, prog_flags, prog_name[16], prog_ifindex, expected_attach_type.
    let mut attr = [0u8; 72];
    put32(&mut attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE);
    put32(&mut attr, 4, prog.len() as u32);
    put64(&mut attr, 8, prog.as_ptr() as u64);
    put64(&mut attr, 16, license.as_ptr() as u64);
    if !log.is_empty() {
        put32(&mut attr, 24, 1);
        put32(&mut attr, 28, log.len() as u32);
        put64(&mut attr, 32, log.as_mut_ptr() as u64);
    }
    attr[48..52].copy_from_slice(b"husk");
    put32(&mut attr, 68, BPF_CGROUP_DEVICE);
    bpf(BPF_PROG_LOAD, &mut attr).and_then(fd_from)
}

/// Ids of the device programs attached to the cgroup directly.
fn attached(dir: &OwnedFd) -> std::io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    // query: target_fd, attach_type, query_flags, attach_flags, prog_ids (u64), prog_cnt.
    let mut attr = [0u8; 40];
    put32(&mut attr, 0, dir.as_raw_fd() as u32);
    put32(&mut attr, 4, BPF_CGROUP_DEVICE);
    put64(&mut attr, 16, ids.as_mut_ptr() as u64);
    put32(&mut attr, 24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut attr)?;
    let n = u32::from_ne_bytes([attr[24], attr[25], attr[26], attr[27]]) as usize;
    ids.truncate(n.min(64));
    Ok(ids)
}

fn attach_cmd(cmd: libc::c_long, dir: &OwnedFd, prog: &OwnedFd, flags: u32) -> std::io::Result<()> {
    // target_fd, attach_bpf_fd, attach_type, attach_flags.
    let mut attr = [0u8; 20];
    put32(&mut attr, 0, dir.as_raw_fd() as u32);
    put32(&mut attr, 4, prog.as_raw_fd() as u32);
    put32(&mut attr, 8, BPF_CGROUP_DEVICE);
    put32(&mut attr, 12, flags);
    bpf(cmd, &mut attr).map(|_| ())
}

/// Loads the program for `rules` and makes it the cgroup's only device program. The new program is
/// attached before the old ones are detached: with several attached, all must allow, so an update
/// never has a moment without a filter.
pub fn apply(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    let prog = program(rules)?;
    let io = |op: &'static str| {
        move |source: std::io::Error| CgroupError::Io {
            op,
            path: dir.to_path_buf(),
            source,
        }
    };
    let dfd = crate::sys::open(
        dir,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| io("open cgroup")(std::io::Error::from(e)))?;
    let old = attached(&dfd).map_err(io("query device programs of cgroup"))?;
    let pfd = load(&prog).map_err(io("load device eBPF program for cgroup"))?;
    attach_cmd(BPF_PROG_ATTACH, &dfd, &pfd, BPF_F_ALLOW_MULTI)
        .map_err(io("attach device eBPF program to cgroup"))?;
    for id in old {
        let mut attr = [0u8; 12];
        put32(&mut attr, 0, id);
        let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr).and_then(fd_from) else {
            continue; // gone already
        };
        attach_cmd(BPF_PROG_DETACH, &dfd, &fd, 0)
            .map_err(io("detach old device eBPF program from cgroup"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::devices::{rules, DEFAULT_ALLOWED};
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroup;

    fn spec(json: &str) -> Vec<DeviceRule> {
        let v: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
        rules(Some(&v)).unwrap()
    }

    fn ok(p: &[Insn], kind: i32, acc: i32, major: u32, minor: u32) -> bool {
        match simulate(p, kind, acc, major, minor) {
            Some(1) => true,
            Some(0) => false,
            other => panic!("program returned {other:?}"),
        }
    }

    #[test]
    fn prologue_reads_the_context() {
        let p = program(&[]).unwrap();
        assert_eq!(p[0], insn(LDX_W, R2, R1, 0, 0));
        assert_eq!(p[1], insn(ALU32_AND_K, R2, 0, 0, 0xffff));
        assert_eq!(p[3], insn(ALU32_RSH_K, R3, 0, 0, 16));
        assert_eq!(p[4], insn(LDX_W, R4, R1, 4, 0));
        assert_eq!(p[5], insn(LDX_W, R5, R1, 8, 0));
        // The program ends with both exits: allow, then deny.
        let n = p.len();
        assert_eq!(
            &p[n - 4..],
            &[
                insn(ALU32_MOV_K, R0, 0, 0, 1),
                insn(JMP_EXIT, 0, 0, 0, 0),
                insn(ALU32_MOV_K, R0, 0, 0, 0),
                insn(JMP_EXIT, 0, 0, 0, 0),
            ]
        );
        // Every jump lands inside the program.
        for (pc, i) in p.iter().enumerate() {
            if (i.code & 0x07 == 0x05 || i.code & 0x07 == 0x06) && i.code != JMP_EXIT {
                let t = pc as i64 + 1 + i64::from(i.off);
                assert!((0..n as i64).contains(&t), "jump at {pc} to {t}");
            }
        }
    }

    #[test]
    fn allow_all_has_no_dead_code() {
        let p = program(&spec(r#"[{"allow": true, "access": "rwm"}]"#)).unwrap();
        assert!(ok(&p, DEV_BLOCK, ACC_READ | ACC_WRITE, 8, 0));
        // No deny exit: it would be unreachable, and the verifier refuses unreachable code.
        assert!(!p.iter().any(|i| *i == insn(ALU32_MOV_K, R0, 0, 0, 0)));
    }

    #[test]
    fn no_rules_denies_everything() {
        let p = program(&[]).unwrap();
        assert!(!ok(&p, DEV_CHAR, ACC_READ, 1, 3));
        assert!(!ok(&p, DEV_BLOCK, ACC_MKNOD, 8, 0));
    }

    #[test]
    fn one_rule_compiles_to_its_checks() {
        let r = spec(r#"[{"allow": true, "type": "c", "major": 10, "minor": 229, "access": "r"}]"#);
        let p = program(&r[..1]).unwrap();
        // Type, major, minor compare with JMP32 JNE; the rule is only in the read chain.
        let jne: Vec<(u8, i32)> = p
            .iter()
            .filter(|i| i.code == JMP32_JNE_K)
            .map(|i| (i.regs & 0xf, i.imm))
            .collect();
        assert_eq!(jne, vec![(R2, DEV_CHAR), (R4, 10), (R5, 229)]);
        assert!(ok(&p, DEV_CHAR, ACC_READ, 10, 229));
        assert!(!ok(&p, DEV_CHAR, ACC_WRITE, 10, 229));
        assert!(!ok(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 10, 229));
        assert!(!ok(&p, DEV_BLOCK, ACC_READ, 10, 229));
        assert!(!ok(&p, DEV_CHAR, ACC_READ, 10, 228));
    }

    #[test]
    fn runc_default_spec() {
        let p = program(&spec(r#"[{"allow": false, "access": "rwm"}]"#)).unwrap();
        assert_eq!(DEFAULT_ALLOWED.len(), 11);
        // /dev/null, /dev/zero, ptys, tun: open for rw allowed.
        for (maj, min) in [
            (1, 3),
            (1, 5),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 2),
            (136, 7),
            (10, 200),
        ] {
            assert!(
                ok(&p, DEV_CHAR, ACC_READ | ACC_WRITE, maj, min),
                "{maj}:{min}"
            );
        }
        // mknod of anything, but no open of what isn't listed.
        assert!(ok(&p, DEV_CHAR, ACC_MKNOD, 1, 1));
        assert!(ok(&p, DEV_BLOCK, ACC_MKNOD, 8, 0));
        assert!(!ok(&p, DEV_CHAR, ACC_READ, 1, 1));
        assert!(!ok(&p, DEV_BLOCK, ACC_READ, 8, 0));
        assert!(!ok(&p, DEV_CHAR, ACC_WRITE, 10, 229));
    }

    #[test]
    fn last_match_wins_per_access_bit() {
        let r = spec(
            r#"[{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}]"#,
        );
        let p = program(&r).unwrap();
        assert!(ok(&p, DEV_CHAR, ACC_READ, 1, 3));
        // null is in the defaults, appended after: they allow it again.
        assert!(ok(&p, DEV_CHAR, ACC_WRITE, 1, 3));
        let p = program(&r[..2]).unwrap();
        assert!(ok(&p, DEV_CHAR, ACC_READ, 1, 3));
        assert!(!ok(&p, DEV_CHAR, ACC_WRITE, 1, 3));
        assert!(!ok(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3));
    }

    #[test]
    fn wildcards_and_a_resets() {
        let r = spec(
            r#"[{"allow": true, "type": "b", "major": 8, "access": "rwm"},
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 136, "access": "rw"},
                {"allow": true, "access": "rwm"},
                {"allow": false, "type": "b", "access": "w"}]"#,
        );
        // The allow-all `a` makes everything before it moot; the block deny after it still holds.
        let p = program(&r[..5]).unwrap();
        assert!(ok(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 4, 1));
        assert!(ok(&p, DEV_BLOCK, ACC_READ, 8, 1));
        assert!(!ok(&p, DEV_BLOCK, ACC_WRITE, 8, 1));
        // Up to the deny-all: the earlier block allow is reset, the pty wildcard holds.
        let p = program(&r[..3]).unwrap();
        assert!(!ok(&p, DEV_BLOCK, ACC_READ, 8, 0));
        assert!(ok(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 136, 42));
        assert!(!ok(&p, DEV_CHAR, ACC_MKNOD, 136, 42));
    }

    #[test]
    fn big_numbers_compare_as_u32() {
        let r = [DeviceRule {
            allow: true,
            kind: 'c',
            major: Some(0xffff_fff0),
            minor: None,
            access: "r",
        }];
        let p = program(&r).unwrap();
        assert!(ok(&p, DEV_CHAR, ACC_READ, 0xffff_fff0, 1));
        assert!(!ok(&p, DEV_CHAR, ACC_READ, 0x7fff_fff0, 1));
        let r = [DeviceRule {
            major: Some(1 << 33),
            ..r[0]
        }];
        assert!(program(&r).is_err());
    }

    /// The kernel's verifier takes the program and an update replaces it (root and a cgroup2
    /// mount needed; this host's controller-less /sys/fs/cgroup/unified will do).
    #[test]
    fn loads_and_attaches_in_the_kernel() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let base = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .find(|b| {
                Path::new(b).join("cgroup.procs").exists()
                    && Path::new(b).join("cgroup.subtree_control").exists()
            });
        let Some(base) = base else {
            return;
        };
        let dir = Path::new(base).join(format!("husk-bpf-test-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let res = (|| {
            apply(&dir, &spec(r#"[{"allow": false, "access": "rwm"}]"#))?;
            apply(
                &dir,
                &spec(r#"[{"allow": true, "type": "c", "major": 10, "access": "r"}]"#),
            )
        })();
        let dfd = crate::sys::open(
            &dir,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        let n = attached(&dfd).map(|v| v.len());
        drop(dfd);
        std::fs::remove_dir(&dir).unwrap();
        res.unwrap();
        assert_eq!(n.unwrap(), 1, "the update must replace the program");
    }
}
