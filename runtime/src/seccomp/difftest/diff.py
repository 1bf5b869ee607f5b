# Differential check of husk's seccomp compiler against libseccomp 2.5 driven the way runc 1.1 drives it
# (rule skipping, same-argument split, -ENOSYS stub). Usage, from this directory:
#   mkdir -p /tmp/scdiff && python3 gen.py SEED N && python3 engine.py && python3 diff.py
# gen.py writes N random OCI profiles, engine.py prepends the engine default profile (podman caps),
# diff.py runs both programs over many (arch, nr, args) and counts differences. Inputs whose
# libseccomp program reads a stale accumulator (libseccomp 2.5.4 codegen bugs) are set aside.
import ctypes, json, os, random, subprocess, sys, tempfile

lib = ctypes.CDLL("libseccomp.so.2")
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
lib.seccomp_release.argtypes = [ctypes.c_void_p]

class Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]
lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(Cmp)]

ARCH = {"SCMP_ARCH_X86_64": 0xc000003e, "SCMP_ARCH_X86": 0x40000003, "SCMP_ARCH_X32": 0x4000003e, "SCMP_ARCH_NATIVE": 0,
        "SCMP_ARCH_AARCH64": 0xc00000b7}
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}

def action(a, ret):
    data = 1 if ret is None else ret
    return {"SCMP_ACT_KILL": 0, "SCMP_ACT_KILL_THREAD": 0, "SCMP_ACT_KILL_PROCESS": 0x80000000, "SCMP_ACT_TRAP": 0x30000,
            "SCMP_ACT_ERRNO": 0x50000 | data, "SCMP_ACT_TRACE": 0x7ff00000 | data, "SCMP_ACT_LOG": 0x7ffc0000,
            "SCMP_ACT_ALLOW": 0x7fff0000, "SCMP_ACT_NOTIFY": 0x7fc00000}[a]

def runc_filter(p):
    """libseccomp program + stub maxima, built the way runc 1.1 does. None if runc would fail."""
    default = action(p["defaultAction"], p.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    for a in p.get("architectures", []):
        rc = lib.seccomp_arch_add(ctx, ARCH[a])
        if rc not in (0, -17):
            return None, "arch_add %d" % rc
    calls = [(n, s) for s in p.get("syscalls", []) for n in s["names"]]
    if len(calls) > 32:
        lib.seccomp_attr_set(ctx, 8, 2)
    lib.seccomp_attr_set(ctx, 3, 0)
    for name, s in calls:
        act = action(s["action"], s.get("errnoRet"))
        if act == default:
            continue
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr == -1:
            continue
        args = s.get("args") or []
        conds = [Cmp(a["index"], OPS[a["op"]], a["value"], a.get("valueTwo", 0)) for a in args]
        idx = [a["index"] for a in args]
        groups = [[c] for c in conds] if len(set(idx)) != len(idx) else [conds]
        for g in groups:
            arr = (Cmp * max(len(g), 1))(*g)
            rc = lib.seccomp_rule_add_array(ctx, act, nr, len(g), arr)
            if rc != 0:
                return None, "rule_add %s %d" % (name, rc)
    with tempfile.TemporaryFile() as f:
        rc = lib.seccomp_export_bpf(ctx, f.fileno())
        f.seek(0)
        raw = f.read()
    lib.seccomp_release(ctx)
    prog = [(int.from_bytes(raw[i:i+2], "little"), raw[i+2], raw[i+3], int.from_bytes(raw[i+4:i+8], "little")) for i in range(0, len(raw), 8)]
    # runc patchbpf -ENOSYS stub maxima
    maxima = {}
    permissive = p["defaultAction"] in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE")
    if not permissive:
        for a in p.get("architectures", []):
            tok = ARCH[a]
            if tok == 0:
                tok = 0xc000003e
            largest = 0
            for name, s in calls:
                n = lib.seccomp_syscall_resolve_name_arch(tok, name.encode())
                if n == -1:
                    continue
                if n > largest:
                    largest = n
            if largest != 0:
                maxima[tok] = largest
    return (prog, maxima), None

BUG = [False]
def ambiguous(prog):
    src = [set() for _ in prog] + [set()]
    src[0] = {None}
    for i, (code, jt, jf, k) in enumerate(prog):
        if code == 0x20: out = {k}
        else: out = src[i]
        if code == 0x06: continue
        if code == 0x05: succ = [i + 1 + k]
        elif code in (0x15, 0x25, 0x35, 0x45): succ = [i + 1 + jt, i + 1 + jf]
        else: succ = [i + 1]
        for t in succ: src[t] |= out
    return {i for i, (code, _, _, _) in enumerate(prog) if code in (0x15, 0x25, 0x35, 0x45, 0x54) and len(src[i]) > 1}
AMB = [set()]
ARCHES = {0xc000003e, 0x40000003, 0xc00000b7}
def run(prog, arch, nr, args):
    pc, acc = 0, 0
    last = None
    def word(off):
        if off == 0: return nr
        if off == 4: return arch
        if off >= 16:
            a = args[(off - 16) // 8]
            return a & 0xffffffff if (off - 16) % 8 == 0 else a >> 32
        raise Exception(off)
    while True:
        code, jt, jf, k = prog[pc]; pc += 1
        if code in (0x15, 0x25, 0x35) and last == 4 and k not in ARCHES and k != 0x4000003e: BUG[0] = True
        if (pc - 1) in AMB[0]: BUG[0] = True
        if code == 0x20: acc = word(k); last = k
        elif code == 0x54: acc &= k
        elif code == 0x05: pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):
            hit = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k, 0x45: (acc & k) != 0}[code]
            pc += jt if hit else jf
        elif code == 0x06: return k
        else: raise Exception(hex(code))

def runc_eval(f, arch, nr, args):
    prog, maxima = f
    ENOSYS = 0x50026
    if arch == 0xc000003e:
        if nr & 0x40000000:
            m = maxima.get(0x4000003e)
        else:
            m = maxima.get(0xc000003e)
        if m is not None and nr > m:
            return ENOSYS
    elif arch in maxima and nr > maxima[arch]:
        return ENOSYS
    return run(prog, arch, nr, args)

def inputs(p):
    vals = set([0])
    for s in p.get("syscalls", []):
        for a in s.get("args") or []:
            v, w = a["value"], a.get("valueTwo", 0)
            for x in (v, v - 1, v + 1, w, v | (1 << 32), v & 0xffffffff, v >> 32, w | (1 << 33)):
                if 0 <= x < 1 << 64: vals.add(x)
    vals = sorted(vals)
    vecs = [[0] * 6]
    for i in range(6):
        for v in vals:
            vec = [0] * 6; vec[i] = v; vecs.append(vec)
    for s in p.get("syscalls", []):
        args = s.get("args") or []
        if len(args) > 1:
            vec = [0] * 6
            for a in args: vec[a["index"]] = a["value"] if a["op"] != "SCMP_CMP_MASKED_EQ" else a.get("valueTwo", 0)
            vecs.append(vec)
    return vecs

def nrs(p):
    names = set(n for s in p.get("syscalls", []) for n in s["names"])
    out = {}
    for arch in (0xc000003e, 0x40000003, 0xc00000b7):
        s = set()
        for n in names:
            for tok in (0xc000003e, 0x40000003, 0x4000003e):
                r = lib.seccomp_syscall_resolve_name_arch(tok, n.encode())
                if r >= 0:
                    s.update([r, r + 1, max(r - 1, 0)])
        s.update([0, 1, 102, 117, 0x3fffffff, 0x40000000, 0xffffffff, 600, 1000])
        out[arch] = sorted(s)
    return out

def main():
    random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    profiles = json.load(open("/tmp/scdiff/profiles.json"))
    inp = "/tmp/scdiff/in.json"; out = "/tmp/scdiff/out.json"
    json.dump(profiles, open(inp, "w"))
    env = dict(os.environ, HUSK_SECCOMP_IN=inp, HUSK_SECCOMP_OUT=out, CARGO_TARGET_DIR="/work/wt/seccomp-target")
    subprocess.run(["cargo", "test", "-q", "--release", "-p", "husk-runtime", "--lib", "seccomp::tests::dump_programs_for_difftest", "--", "--nocapture"],
                   cwd="/work/wt/seccomp", env=env, check=True, capture_output=True)
    mine = json.load(open(out))
    stats = {"same": 0, "diff": 0, "runc_fails": 0, "husk_fails": 0, "both_fail": 0}
    shown = 0
    for i, (p, m) in enumerate(zip(profiles, mine)):
        r, err = runc_filter(p)
        if r is None or isinstance(m, str):
            key = "both_fail" if r is None and isinstance(m, str) else ("runc_fails" if r is None else "husk_fails")
            stats[key] += 1
            if key != "both_fail" and shown < 10:
                shown += 1
                print("profile", i, key, err, m if isinstance(m, str) else "", json.dumps(p)[:400])
            continue
        prog = [tuple(x) for x in m]
        bad = 0
        vecs = inputs(p)
        amb = ambiguous(r[0])
        assert not ambiguous(prog), "husk program with ambiguous accumulator"

        for arch, ns in nrs(p).items():
            for nr in ns:
                for args in vecs:
                    BUG[0] = False
                    AMB[0] = amb
                    a = runc_eval(r, arch, nr, args)
                    bug = BUG[0]
                    AMB[0] = set()
                    b = run(prog, arch, nr, args)
                    if a != b and bug:
                        stats["libseccomp_bug_inputs"] = stats.get("libseccomp_bug_inputs", 0) + 1
                        continue
                    if a != b:
                        bad += 1
                        if bad <= 3 and shown < 30:
                            shown += 1
                            print("profile", i, "arch %x nr %x args %s runc %x husk %x" % (arch, nr, [hex(x) for x in args], a, b))
        from collections import defaultdict
        acts = defaultdict(set)
        for sc in p.get("syscalls", []):
            for n in sc["names"]:
                acts[n].add(action(sc["action"], sc.get("errnoRet")))
        # same syscall reachable by rules with different actions (incl. i386 socketcall/ipc)
        overlap = any(len(v) > 1 for v in acts.values()) or (len(set().union(*[acts[n] for n in acts if n in ("socket","accept","connect","recvmmsg","sendmmsg","shmget","semop","socketcall","ipc")] or [set()])) > 1)
        stats[("diff_overlapping_rules" if overlap else "diff_other") if bad else "same"] = stats.get(("diff_overlapping_rules" if overlap else "diff_other") if bad else "same", 0) + 1
        if bad and shown < 30:
            print("   ", json.dumps(p)[:600])
    print(stats)

main()
