import json, random, sys
random.seed(int(sys.argv[1]))
n = int(sys.argv[2])
ACTS = ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG"]
NAMES = ["read", "getpid", "dup", "dup3", "socket", "accept", "connect", "shmget", "semop", "_llseek", "arch_prctl", "socketcall", "ipc",
         "personality", "clone", "mmap", "no_such_call", "s390_runtime_instr", "recvmmsg", "sendmmsg", "uselib", "open", "openat",
         "close_range", "futex_waitv", "rt_sigaction", "keyctl", "mkdir"]
VALS = [0, 1, 2, 9, 16, 0xffffffff, 0x100000000, 0x100000001, 0x7e020000, 1 << 63, 0xffffffffffffffff, 5, 0x80000000]
OPS = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"]
out = []
for _ in range(n):
    p = {"defaultAction": random.choice(ACTS)}
    if random.random() < 0.5:
        p["defaultErrnoRet"] = random.choice([1, 38, 13])
    p["architectures"] = random.sample(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], random.randint(0, 3))
    rules = []
    for _ in range(random.randint(1, 7)):
        r = {"names": random.sample(NAMES, random.randint(1, 3)), "action": random.choice(ACTS)}
        if random.random() < 0.5:
            r["errnoRet"] = random.choice([1, 2, 38, 4095])
        if random.random() < 0.6:
            r["args"] = []
            for _ in range(random.randint(1, 3)):
                r["args"].append({"index": random.randint(0, 3), "value": random.choice(VALS), "valueTwo": random.choice(VALS), "op": random.choice(OPS)})
        rules.append(r)
    p["syscalls"] = rules
    out.append(p)
json.dump(out, open("/tmp/scdiff/profiles.json", "w"))
