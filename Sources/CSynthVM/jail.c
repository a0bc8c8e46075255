// The worker jail's syscalls (declarations and contracts: include/csynthvm_jail.h; the design:
// docs/security.md and docs/processes.md).
#define _GNU_SOURCE
#include "csynthvm_jail.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// ---- The monitor's side: clone into new namespaces -------------------------------------------

// What the child reports through the result pipe when a step before (or the) exec fails.
enum jail_child_step {
    STEP_RELEASE = 1, STEP_SETGROUPS, STEP_SETRESGID, STEP_SETRESUID, STEP_CAPGET, STEP_CAPSET,
    STEP_AMBIENT, STEP_PDEATHSIG, STEP_MONITOR_GONE, STEP_FDS, STEP_EXEC,
};

static const char *jail_child_step_name(int step) {
    switch (step) {
    case STEP_RELEASE: return "waiting for the uid/gid maps";
    case STEP_SETGROUPS: return "setgroups(0, NULL)";
    case STEP_SETRESGID: return "setresgid";
    case STEP_SETRESUID: return "setresuid";
    case STEP_CAPGET: return "capget";
    case STEP_CAPSET: return "capset (inheritable)";
    case STEP_AMBIENT: return "PR_CAP_AMBIENT_RAISE";
    case STEP_PDEATHSIG: return "PR_SET_PDEATHSIG";
    case STEP_MONITOR_GONE: return "checking the monitor is still there";
    case STEP_FDS: return "arranging fds";
    case STEP_EXEC: return "execve";
    default: return "an unknown step";
    }
}

struct jail_child_report { int step; int err; };

// The capabilities the worker keeps across exec (ambient), in its own user namespace only, for
// Jail.enter: CAP_SYS_ADMIN (mount, pivot_root), CAP_SETPCAP (drop the bounding set, lock the
// securebits), CAP_SYS_RESOURCE (max_user_namespaces = 0 in its namespace). Jail.enter drops all.
static const int jail_ambient_caps[] = { CAP_SYS_ADMIN, CAP_SETPCAP, CAP_SYS_RESOURCE };

// Runs in the child of a fork-like clone() of a multi-threaded process: raw syscalls only (no
// malloc, no locks, no stdio) until execve.
static void __attribute__((noreturn)) jail_child(const char *path, char *const argv[], char *const envp[],
                                                 const int *high, int nfds, int err_high, int null_high,
                                                 const struct svm_jail_ids *ids, int release_fd, int result_fd) {
    struct jail_child_report report = { 0, 0 };
    // Signal dispositions and mask are the monitor's; a worker starts from the defaults.
    for (int s = 1; s < NSIG; s++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        (void)sigaction(s, &sa, NULL);  // EINVAL for SIGKILL, SIGSTOP and glibc's own: ignored
    }
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    // Die with the monitor from here on. Until the maps are written the monitor has not let go,
    // so a monitor that dies now leaves the release pipe without writer: read() sees EOF.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) { report.step = STEP_PDEATHSIG; goto fail; }
    char byte;
    ssize_t n;
    do { n = read(release_fd, &byte, 1); } while (n < 0 && errno == EINTR);
    if (n != 1) _exit(127);  // the monitor gave up (it kills us too) or died

    // Raw syscalls: glibc's wrappers would try to apply the change to the monitor's other
    // threads, which do not exist in this child. Not root in this namespace (uid 0 is unmapped),
    // so the uid change keeps the full capability set the clone gave us in the new namespace.
    if (!ids->deny_setgroups && syscall(SYS_setgroups, 0, NULL) < 0) { report.step = STEP_SETGROUPS; goto fail; }
    if (syscall(SYS_setresgid, ids->gid, ids->gid, ids->gid) < 0) { report.step = STEP_SETRESGID; goto fail; }
    if (syscall(SYS_setresuid, ids->uid, ids->uid, ids->uid) < 0) { report.step = STEP_SETRESUID; goto fail; }
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &header, data) < 0) { report.step = STEP_CAPGET; goto fail; }
    data[0].inheritable = 0;
    data[1].inheritable = 0;
    for (size_t i = 0; i < sizeof jail_ambient_caps / sizeof jail_ambient_caps[0]; i++)
        data[0].inheritable |= 1u << jail_ambient_caps[i];
    if (syscall(SYS_capset, &header, data) < 0) { report.step = STEP_CAPSET; goto fail; }
    for (size_t i = 0; i < sizeof jail_ambient_caps / sizeof jail_ambient_caps[0]; i++) {
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, jail_ambient_caps[i], 0, 0) < 0) {
            report.step = STEP_AMBIENT;
            goto fail;
        }
    }
    // The uid change cleared the parent-death signal (commit_creds does on any euid change):
    // arm it again, then make sure the monitor did not die in between (it holds the release
    // pipe's write end open until our exec has succeeded).
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) { report.step = STEP_PDEATHSIG; goto fail; }
    struct pollfd p = { release_fd, POLLIN, 0 };
    if (poll(&p, 1, 0) < 0 || (p.revents & (POLLHUP | POLLERR))) { report.step = STEP_MONITOR_GONE; errno = ESRCH; goto fail; }

    // The handed fds onto 3, 4, ...; everything else close-on-exec (the pipes included: the
    // result pipe closing is how the monitor learns the exec worked).
    // The output pipe as stdout and stderr (svm_spawn_worker says why).
    if (err_high >= 0 && (dup2(err_high, 1) < 0 || dup2(err_high, 2) < 0)) { report.step = STEP_FDS; goto fail; }
    // stdin is /dev/null (opened by the monitor: the jail has no /dev): the console's input is
    // the guest's, never a worker's.
    if (dup2(null_high, 0) < 0) { report.step = STEP_FDS; goto fail; }
    for (int i = 0; i < nfds; i++) {
        if (dup2(high[i], 3 + i) < 0) { report.step = STEP_FDS; goto fail; }
    }
    if (syscall(SYS_close_range, 3 + nfds, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */) < 0) { report.step = STEP_FDS; goto fail; }
    execve(path, argv, envp);
    report.step = STEP_EXEC;
fail:
    report.err = errno;
    (void)!write(result_fd, &report, sizeof report);
    _exit(127);
}

static int jail_write_proc(pid_t pid, const char *file, const char *text, char *err, size_t errlen) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    int e = 0;
    if (fd < 0) {
        e = errno;
    } else {
        ssize_t n = write(fd, text, strlen(text));
        if (n < 0) e = errno;
        else if ((size_t)n != strlen(text)) e = EIO;
        close(fd);
    }
    if (e) {
        // The text without its newline, for a one-line message.
        int len = (int)strcspn(text, "\n");
        snprintf(err, errlen, "writing \"%.*s\" to %s: %s", len, text, path, strerror(e));
    }
    return -e;
}

// A close-on-exec duplicate of fd at or above `floor`, the original closed.
static int jail_move_high(int fd, int floor) {
    int h = fcntl(fd, F_DUPFD_CLOEXEC, floor);
    int e = errno;
    close(fd);
    errno = e;
    return h;
}

int svm_spawn_worker_jailed(const char *path, char *const argv[], const int *fds, int nfds, int stderr_fd,
                            const struct svm_jail_ids *ids, pid_t *pid, char *err, size_t errlen) {
    return svm_spawn_worker_jailed_ex(path, argv, fds, nfds, stderr_fd, ids, 0, pid, err, errlen);
}

int svm_spawn_worker_jailed_ex(const char *path, char *const argv[], const int *fds, int nfds, int stderr_fd,
                               const struct svm_jail_ids *ids, int clone_parent, pid_t *pid, char *err, size_t errlen) {
    if (errlen > 0) err[0] = 0;
    *pid = 0;
    if (nfds < 0 || nfds > 64) {
        snprintf(err, errlen, "%d fds to hand over (at most 64)", nfds);
        return -EINVAL;
    }
    // Everything the child needs is prepared here: after clone it may not allocate.
    char uid_map[48], gid_map[48];
    snprintf(uid_map, sizeof uid_map, "%u %u 1\n", ids->uid, ids->host_uid);
    snprintf(gid_map, sizeof gid_map, "%u %u 1\n", ids->gid, ids->host_gid);
    char *const envp[] = { "PATH=/usr/bin:/bin", "SWIFT_BACKTRACE=enable=no", NULL };
    // Every fd the child uses is moved above the numbers it hands out (3 .. 3+nfds-1), so no
    // dup2 onto a target can clobber a source still needed.
    const int floor = 3 + nfds + 64;
    int high[64], err_high = -1, null_high = -1, release[2] = { -1, -1 }, result[2] = { -1, -1 };
    int made = 0, r = 0;
    for (; made < nfds; made++) {
        high[made] = fcntl(fds[made], F_DUPFD_CLOEXEC, floor);
        if (high[made] < 0) { r = -errno; snprintf(err, errlen, "F_DUPFD_CLOEXEC: %s", strerror(errno)); goto out; }
    }
    if (stderr_fd >= 0 && (err_high = fcntl(stderr_fd, F_DUPFD_CLOEXEC, floor)) < 0) {
        r = -errno;
        snprintf(err, errlen, "F_DUPFD_CLOEXEC: %s", strerror(errno));
        goto out;
    }
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0 || (null_high = jail_move_high(null_fd, floor)) < 0) {
        r = -errno;
        snprintf(err, errlen, "/dev/null: %s", strerror(errno));
        goto out;
    }
    if (pipe2(release, O_CLOEXEC) < 0 || pipe2(result, O_CLOEXEC) < 0) {
        r = -errno;
        snprintf(err, errlen, "pipe2: %s", strerror(errno));
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        if ((release[i] = jail_move_high(release[i], floor)) < 0 || (result[i] = jail_move_high(result[i], floor)) < 0) {
            r = -errno;
            snprintf(err, errlen, "F_DUPFD_CLOEXEC: %s", strerror(errno));
            goto out;
        }
    }

    // No signal handler of the monitor's may run in the child before it has reset them.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    long child = syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET
                                                    | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD
                                                    | (clone_parent ? CLONE_PARENT : 0)),
                         NULL, NULL, NULL, 0);
    if (child == 0) {
        close(release[1]);
        close(result[0]);
        jail_child(path, argv, envp, high, nfds, err_high, null_high, ids, release[0], result[1]);
    }
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (child < 0) {
        r = -clone_errno;
        snprintf(err, errlen, "clone(CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWNET|CLONE_NEWIPC|CLONE_NEWUTS): %s",
                 strerror(clone_errno));
        goto out;
    }
    close(release[0]);
    release[0] = -1;
    close(result[1]);
    result[1] = -1;

    if (ids->deny_setgroups && (r = jail_write_proc((pid_t)child, "setgroups", "deny", err, errlen)) < 0) goto kill;
    if ((r = jail_write_proc((pid_t)child, "uid_map", uid_map, err, errlen)) < 0) goto kill;
    if ((r = jail_write_proc((pid_t)child, "gid_map", gid_map, err, errlen)) < 0) goto kill;
    ssize_t n;
    do { n = write(release[1], "1", 1); } while (n < 0 && errno == EINTR);
    if (n != 1) { r = -errno; snprintf(err, errlen, "releasing the child: %s", strerror(errno)); goto kill; }
    // EOF: the exec worked (the pipe was close-on-exec). A report: the step that failed.
    struct jail_child_report report;
    do { n = read(result[0], &report, sizeof report); } while (n < 0 && errno == EINTR);
    if (n == 0) {
        *pid = (pid_t)child;
        r = 0;
        goto out;
    }
    if (n == (ssize_t)sizeof report) {
        r = -report.err;
        snprintf(err, errlen, "in the child, %s: %s", jail_child_step_name(report.step), strerror(report.err));
    } else {
        r = n < 0 ? -errno : -EIO;
        snprintf(err, errlen, "reading the child's report: %s", n < 0 ? strerror(errno) : "short read");
    }
kill:
    kill((pid_t)child, SIGKILL);
    // A sibling (CLONE_PARENT) is our parent's to reap: its pid is returned for that.
    if (clone_parent) *pid = (pid_t)child;
    else while (waitpid((pid_t)child, NULL, 0) < 0 && errno == EINTR) {}
out:
    for (int i = 0; i < made; i++) close(high[i]);
    if (err_high >= 0) close(err_high);
    if (null_high >= 0) close(null_high);
    for (int i = 0; i < 2; i++) {
        if (release[i] >= 0) close(release[i]);
        if (result[i] >= 0) close(result[i]);
    }
    return r;
}

// ---- The worker's side: an empty, read-only root --------------------------------------------

#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef FSCONFIG_SET_STRING
#define FSCONFIG_SET_STRING 1
#endif
#ifndef FSCONFIG_CMD_CREATE
#define FSCONFIG_CMD_CREATE 6
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#define MOUNT_ATTR_NOEXEC 0x00000008
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

int svm_jail_pivot_to_empty_root(const char **step) {
    int fs = -1, mnt = -1, r = 0;
#define STEP(name, call) do { *step = name; if ((call) < 0) { r = -errno; goto out; } } while (0)
    STEP("mount(\"/\", MS_REC|MS_PRIVATE)", mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
    // The new mount API makes the tmpfs without needing a host directory to mount it on, and
    // read-only from birth: there is nothing to put in it.
    STEP("fsopen(tmpfs)", fs = (int)syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC));
    STEP("fsconfig(size)", syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "size", "4k", 0));
    STEP("fsconfig(nr_inodes)", syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "nr_inodes", "1", 0));
    STEP("fsconfig(mode)", syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "mode", "0555", 0));
    STEP("fsconfig(create)", syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0));
    STEP("fsmount", mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC,
                                        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
    // Over "/", then into it: pivot_root(".", ".") stacks the old root on top of the new one,
    // and the detach takes it away (pivot_root(2), "new_root and put_old may be the same").
    STEP("move_mount(tmpfs -> /)", syscall(SYS_move_mount, mnt, "", AT_FDCWD, "/", MOVE_MOUNT_F_EMPTY_PATH));
    STEP("fchdir(new root)", fchdir(mnt));
    STEP("pivot_root(\".\", \".\")", syscall(SYS_pivot_root, ".", "."));
    STEP("umount2(old root, MNT_DETACH)", umount2(".", MNT_DETACH));
    STEP("chdir(\"/\")", chdir("/"));
    *step = "";
#undef STEP
out:
    if (mnt >= 0) close(mnt);
    if (fs >= 0) close(fs);
    return r;
}

int svm_set_no_new_privs(void) {
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? -errno : 0;
}

int svm_get_no_new_privs(void) {
    int r = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
    return r < 0 ? -errno : r;
}

int svm_setrlimit(int resource, uint64_t value) {
    struct rlimit l = { (rlim_t)value, (rlim_t)value };
    return setrlimit(resource, &l) < 0 ? -errno : 0;
}

const int svm_RLIMIT_NPROC = RLIMIT_NPROC;

int svm_unshare(int flags) {
    return unshare(flags) < 0 ? -errno : 0;
}

const int svm_CLONE_NEWUSER = CLONE_NEWUSER;

// ---- The memory-budget reporter ---------------------------------------------------------------

static const char *budget_prefix = "worker";
static size_t budget_probe;
static int budget_status;
// The handler's own stack: a worker that overflowed its stack, or has no memory left to map one,
// still gets a report.
static char budget_stack[32768] __attribute__((aligned(16)));

static void budget_reporter(int sig, siginfo_t *info, void *ucontext) {
    (void)sig;
    (void)info;
    (void)ucontext;
    int saved = errno;
    int exhausted = saved == ENOMEM;
    if (!exhausted) {
        void *p = mmap(NULL, budget_probe, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) exhausted = errno == ENOMEM;
        else munmap(p, budget_probe);
    }
    if (exhausted) {
        static const char tail[] = ": out of memory: its memory budget (RLIMIT_AS) is used up\n";
        char line[256];
        size_t n = 0;
        while (budget_prefix[n] && n < sizeof line - sizeof tail) { line[n] = budget_prefix[n]; n++; }
        memcpy(line + n, tail, sizeof tail - 1);
        (void)!write(2, line, n + sizeof tail - 1);
        _exit(budget_status);
    }
    // SA_RESETHAND put the default action back: a fault re-runs its instruction and now kills
    // (force_sig: even a PID namespace's init); abort() raises SIGABRT again on its own.
    errno = saved;
}

int svm_install_memory_budget_reporter(const char *prefix, size_t probe_bytes, int exit_status) {
    if (prefix) budget_prefix = prefix;
    budget_probe = probe_bytes;
    budget_status = exit_status;
    stack_t st;
    memset(&st, 0, sizeof st);
    st.ss_sp = budget_stack;
    st.ss_size = sizeof budget_stack;
    if (sigaltstack(&st, NULL) < 0) return -errno;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = budget_reporter;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    static const int fatal[] = { SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGABRT };
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        if (sigaction(fatal[i], &sa, NULL) < 0) return -errno;
    return 0;
}

void svm_test_crash_after(unsigned ms) {
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
    *(volatile int *)16 = 1;
}

// ---- Peer credentials ------------------------------------------------------------------------

int svm_set_passcred(int sock, int on) {
    int v = on ? 1 : 0;
    return setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &v, sizeof v) < 0 ? -errno : 0;
}

long svm_recv_with_credentials(int sock, void *buf, size_t len, pid_t *pid, uint32_t *uid, uint32_t *gid) {
    union {
        char buf[CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { buf, len };
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof ctl.buf;
    ssize_t n;
    do { n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    if (n == 0) return 0;
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) return -EMSGSIZE;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
            struct ucred cred;
            memcpy(&cred, CMSG_DATA(c), sizeof cred);
            *pid = cred.pid;
            *uid = cred.uid;
            *gid = cred.gid;
            return (long)n;
        }
    }
    return -ENODATA;
}
