// synthvm-spawner: starts workers again after the VM process has filtered itself (docs/faults.md,
// "The spawner"; docs/security.md, "The spawner").
//
// The VM process starts it at VM creation, before any of its own threads is filtered, with one
// fd (3: a SEQPACKET socket to the VM process) and a command line that holds everything a
// respawn needs and nothing else (SpawnerLink builds it):
//
//   synthvm-spawner COUNT { KIND JAILED UID GID HOST_UID HOST_GID DENY_SETGROUPS EXECUTABLE ARGC ARG... } x COUNT
//
// It closes every other fd it inherited, receives its seccomp program (Policies/spawner.policy,
// compiled by the VM process) as the first message, installs it, answers "ready", and then
// serves one kind of request, a `struct spawner_request` naming a kind by its index: it makes a
// new control socket pair (SO_PASSCRED on the VM process's end, for the hello's kernel-attested
// sender) and output pipe, clones the worker into its jail exactly as the first start did
// (svm_spawn_worker_jailed_ex, with CLONE_PARENT: the worker is the VM process's child, so the
// supervisor reaps it by pidfd like the first one), and answers a `struct spawner_reply` with
// the worker's pidfd, the VM process's end of the control socket and the read end of the output
// pipe (SCM_RIGHTS). It never sees guest memory, a region, a doorbell or a KVM fd: those are
// handed to the new worker by the supervisor's handshake. It exits when the VM process closes
// the socket (and dies with it: PR_SET_PDEATHSIG).
#define _GNU_SOURCE
#include "csynthvm.h"
#include "csynthvm_jail.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SPAWNER_MAGIC 0x53565350u /* "PSVS" */
#define MAX_KINDS 16

struct spawner_request { uint32_t magic; uint32_t kind; };
struct spawner_reply {
    uint32_t magic;
    int32_t result;  // 0, or -errno
    int32_t pid;     // the worker's pid (also on a failure after the clone: its pidfd comes along)
    char message[244];
};

struct kind {
    int jailed;
    struct svm_jail_ids ids;
    const char *executable;
    char **argv;  // NULL-terminated, argv[0] the executable
};

static struct kind kinds[MAX_KINDS];
static int kind_count;

static void say(const char *text) {
    char line[512];
    int n = snprintf(line, sizeof line, "synthvm-spawner: %s\n", text);
    if (n > 0) (void)!write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static __attribute__((noreturn)) void fail(const char *text) {
    say(text);
    _exit(1);
}

static unsigned parse_u32(const char *s) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > 0xFFFFFFFFul) fail("bad number on the command line");
    return (unsigned)v;
}

static void parse(int argc, char **argv) {
    if (argc < 2) fail("usage: synthvm-spawner COUNT {KIND JAILED UID GID HOST_UID HOST_GID DENY_SETGROUPS EXECUTABLE ARGC ARG...}...");
    int i = 1;
    kind_count = (int)parse_u32(argv[i++]);
    if (kind_count > MAX_KINDS) fail("too many worker kinds");
    for (int k = 0; k < kind_count; k++) {
        if (argc - i < 9) fail("command line ends inside a worker kind");
        unsigned index = parse_u32(argv[i++]);
        if ((int)index != k) fail("worker kinds out of order");
        kinds[k].jailed = (int)parse_u32(argv[i++]);
        kinds[k].ids.uid = parse_u32(argv[i++]);
        kinds[k].ids.gid = parse_u32(argv[i++]);
        kinds[k].ids.host_uid = parse_u32(argv[i++]);
        kinds[k].ids.host_gid = parse_u32(argv[i++]);
        kinds[k].ids.deny_setgroups = (int)parse_u32(argv[i++]);
        kinds[k].executable = argv[i++];
        int n = (int)parse_u32(argv[i++]);
        if (n < 1 || argc - i < n) fail("bad worker argument count");
        kinds[k].argv = calloc((size_t)n + 1, sizeof(char *));
        if (!kinds[k].argv) fail("out of memory");
        for (int a = 0; a < n; a++) kinds[k].argv[a] = argv[i++];
    }
    if (i != argc) fail("trailing command-line arguments");
}

// An unjailed worker (`--no-jail`), also as a sibling (CLONE_PARENT): fds 0-2 and 3 like
// svm_spawn_worker, reported through a close-on-exec pipe.
static int spawn_plain(const struct kind *k, int control, int output, pid_t *pid, char *err, size_t errlen) {
    int result[2];
    *pid = 0;
    if (pipe2(result, O_CLOEXEC) < 0) { snprintf(err, errlen, "pipe2: %s", strerror(errno)); return -errno; }
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) { int e = errno; close(result[0]); close(result[1]); snprintf(err, errlen, "/dev/null: %s", strerror(e)); return -e; }
    char *const envp[] = { "PATH=/usr/bin:/bin", "SWIFT_BACKTRACE=enable=no", NULL };
    long child = syscall(SYS_clone, (unsigned long)(CLONE_PARENT | SIGCHLD), NULL, NULL, NULL, 0);
    if (child == 0) {
        int e = 0;
        if (dup2(output, 1) < 0 || dup2(output, 2) < 0 || dup2(null_fd, 0) < 0 || dup2(control, 3) < 0) e = errno;
        if (!e && syscall(SYS_close_range, 4, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */) < 0) e = errno;
        if (!e) {
            execve(k->executable, k->argv, envp);
            e = errno;
        }
        (void)!write(result[1], &e, sizeof e);
        _exit(127);
    }
    int e = errno;
    close(null_fd);
    close(result[1]);
    if (child < 0) { close(result[0]); snprintf(err, errlen, "clone(CLONE_PARENT): %s", strerror(e)); return -e; }
    *pid = (pid_t)child;
    int child_errno = 0;
    ssize_t n;
    do { n = read(result[0], &child_errno, sizeof child_errno); } while (n < 0 && errno == EINTR);
    close(result[0]);
    if (n == 0) return 0;
    snprintf(err, errlen, "in the child: %s", strerror(child_errno));
    kill((pid_t)child, SIGKILL);
    return -(child_errno ? child_errno : EIO);
}

static void serve_one(int sock, uint32_t index) {
    struct spawner_reply reply;
    memset(&reply, 0, sizeof reply);
    reply.magic = SPAWNER_MAGIC;
    int pair[2] = { -1, -1 }, out[2] = { -1, -1 }, pidfd = -1;
    pid_t pid = 0;
    int r;
    if (index >= (uint32_t)kind_count) {
        r = -EINVAL;
        snprintf(reply.message, sizeof reply.message, "no worker kind %u", index);
        goto answer;
    }
    const struct kind *k = &kinds[index];
    if ((r = svm_socketpair_seqpacket(pair)) < 0) { snprintf(reply.message, sizeof reply.message, "socketpair: %s", strerror(-r)); goto answer; }
    // The kernel names the hello's sender, before the worker exists (WorkerLink).
    if ((r = svm_set_passcred(pair[0], 1)) < 0) { snprintf(reply.message, sizeof reply.message, "SO_PASSCRED: %s", strerror(-r)); goto answer; }
    if ((r = svm_pipe_cloexec(out)) < 0) { snprintf(reply.message, sizeof reply.message, "pipe2: %s", strerror(-r)); goto answer; }
    // The supervisor's end never blocks the relay thread.
    if (fcntl(out[0], F_SETFL, O_NONBLOCK) < 0) { r = -errno; snprintf(reply.message, sizeof reply.message, "O_NONBLOCK: %s", strerror(errno)); goto answer; }
    if (k->jailed) {
        r = svm_spawn_worker_jailed_ex(k->executable, k->argv, &pair[1], 1, out[1], &k->ids, 1, &pid,
                                       reply.message, sizeof reply.message);
    } else {
        r = spawn_plain(k, pair[1], out[1], &pid, reply.message, sizeof reply.message);
    }
    // Only the worker holds its ends now: its death is end of file on both.
    close(pair[1]);
    pair[1] = -1;
    close(out[1]);
    out[1] = -1;
    if (pid > 0) {
        pidfd = svm_pidfd_open(pid, 0);
        if (pidfd < 0 && r == 0) {
            r = pidfd;
            snprintf(reply.message, sizeof reply.message, "pidfd_open: %s", strerror(-pidfd));
            kill(pid, SIGKILL);
        }
    }
answer:
    reply.result = r;
    reply.pid = (int32_t)pid;
    int fds[3];
    int nfds = 0;
    if (pidfd >= 0) fds[nfds++] = pidfd;
    if (r == 0) {
        fds[nfds++] = pair[0];
        fds[nfds++] = out[0];
    }
    if (svm_send_with_fds(sock, &reply, sizeof reply, fds, nfds) < 0) fail("cannot answer the VM process");
    if (pidfd >= 0) close(pidfd);
    for (int i = 0; i < 2; i++) {
        if (pair[i] >= 0) close(pair[i]);
        if (out[i] >= 0) close(out[i]);
    }
}

int main(int argc, char **argv) {
    // Die with the VM process; if it is already gone, its end of the socket is closed.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail("PR_SET_PDEATHSIG failed");
    parse(argc, argv);
    // Nothing of the VM process's but the socket and stdio.
    if (syscall(SYS_close_range, 4, ~0u, 0) < 0) fail("close_range failed");
    // The filter first: up to 4096 instructions of 8 bytes.
    static unsigned char program[4096 * 8];
    int nfds = 0, flags = 0;
    long n = svm_recv_with_fds(3, program, sizeof program, NULL, 0, &nfds, &flags);
    if (n == 0) _exit(0);
    if (n < 0 || n % 8 != 0 || nfds != 0) fail("bad seccomp program");
    int installed = svm_install_seccomp_filter(program, (unsigned)(n / 8));
    if (installed != 0) fail("cannot install its seccomp filter");
    static const char ready[] = "ready";
    if (svm_send_with_fds(3, ready, sizeof ready, NULL, 0) < 0) fail("cannot say ready");
    for (;;) {
        struct spawner_request req;
        n = svm_recv_with_fds(3, &req, sizeof req, NULL, 0, &nfds, &flags);
        if (n == 0) break;
        if (n != (long)sizeof req || req.magic != SPAWNER_MAGIC || nfds != 0) fail("bad request");
        serve_one(3, req.kind);
    }
    return 0;
}
