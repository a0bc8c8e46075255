// C shims for the worker jail (Sources/Sandbox, docs/security.md): the monitor's clone() into new
// namespaces, the worker's switch to an empty root, and kernel-attested peer credentials. Plain
// syscalls only; capabilities go through libcap (the CCap module) in Swift.
#ifndef CSYNTHVM_JAIL_H
#define CSYNTHVM_JAIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

// The ids a jailed worker runs as: `uid`/`gid` inside its user namespace, mapped (one id each) to
// `host_uid`/`host_gid` outside.
struct svm_jail_ids {
    uint32_t uid;
    uint32_t gid;
    uint32_t host_uid;
    uint32_t host_gid;
    // 1: write "deny" to /proc/<pid>/setgroups before gid_map (required when the monitor lacks
    // CAP_SETGID: an unprivileged monitor); the worker then keeps the monitor's supplementary
    // groups. 0: the child drops every supplementary group with setgroups(0, NULL).
    int deny_setgroups;
};

// Spawns `path` like svm_spawn_worker (exactly `fds` as 3, 4, ...; `stderr_fd` >= 0 becomes fd 1 and 2;
// the same two-variable environment), but with clone() into new user, PID, mount, network, IPC
// and UTS namespaces. The parent writes the child's uid_map/gid_map (one line each: uid -> host
// uid), then releases it through a pipe; the child drops its supplementary groups, becomes
// uid/gid, keeps CAP_SYS_ADMIN, CAP_SETPCAP and CAP_SYS_RESOURCE of its own user namespace as
// ambient capabilities (what Sandbox's Jail.enter needs after exec, and drops), arms
// PR_SET_PDEATHSIG(SIGKILL), and execs. Returns 0 and the pid (as the caller sees it) once the
// exec has succeeded, or -errno with a one-line description of the failed step in `err`; the
// child is then killed and reaped.
int svm_spawn_worker_jailed(const char *path, char *const argv[], const int *fds, int nfds, int stderr_fd,
                            const struct svm_jail_ids *ids, pid_t *pid, char *err, size_t errlen);
// The same; with `clone_parent` != 0 the child is cloned with CLONE_PARENT, so it is a child of
// the caller's parent (the spawner's VM process, which reaps it through a pidfd). On a failure
// after the clone the child is killed but not reaped, and *pid names it (0 if none was made).
int svm_spawn_worker_jailed_ex(const char *path, char *const argv[], const int *fds, int nfds, int stderr_fd,
                               const struct svm_jail_ids *ids, int clone_parent, pid_t *pid, char *err, size_t errlen);

// The worker's side, in its own mount namespace with CAP_SYS_ADMIN there: makes every mount
// private (nothing propagates to or from the host), creates an empty read-only tmpfs, mounts it
// over "/", and pivot_root()s into it with the old root detached (MNT_DETACH); the cwd is the new
// "/". Returns 0, or -errno with the failed step in *step.
int svm_jail_pivot_to_empty_root(const char **step);

// prctl(PR_SET_NO_NEW_PRIVS, 1) / PR_GET_NO_NEW_PRIVS: 0 / the flag, or -errno.
int svm_set_no_new_privs(void);
int svm_get_no_new_privs(void);

// setrlimit(resource, {value, value}): soft and hard. 0 or -errno. Swift does not import
// RLIMIT_NPROC (a BSD extension in glibc's headers), hence the constant.
int svm_setrlimit(int resource, uint64_t value);
extern const int svm_RLIMIT_NPROC;

// unshare(flags) (glibc declares it only under _GNU_SOURCE): 0 or -errno. For the jail probes.
int svm_unshare(int flags);
extern const int svm_CLONE_NEWUSER;

// The worker's memory-budget reporter (docs/security.md, "Memory budget"). A worker's RLIMIT_AS
// is its regions plus a budget of its own; when an allocation fails under it, the Swift runtime
// prints "failed to allocate" and the process dies by a fatal signal, which alone says nothing.
// This installs a handler (SA_RESETHAND, on an alternate stack, so a stack overflow reaches it
// too) for SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE and SIGABRT that decides whether the budget
// is used up: errno is ENOMEM at the fatal signal (the failed allocation's), or a probe mapping
// of `probe_bytes` (PROT_NONE, which still counts against RLIMIT_AS) fails with ENOMEM. Then it
// writes "<prefix>: out of memory: its memory budget (RLIMIT_AS) is used up" and _exit()s with
// `exit_status`, which the supervisor reports by name. Otherwise it returns with the signal's
// default action back: a fault runs again and kills as before; abort() raises again itself.
// Only mmap, munmap, write and exit_group: calls every worker policy allows. 0 or -errno.
int svm_install_memory_budget_reporter(const char *prefix, size_t probe_bytes, int exit_status);

// Tests only (`--test-crash-after-ms`): sleeps `ms` milliseconds, then crashes the caller with a
// real fault (a store to an unmapped address: SIGSEGV, which kills even a PID namespace's init).
void svm_test_crash_after(unsigned ms);

// SO_PASSCRED on a Unix socket (on != 0 turns it on): then every message a peer sends carries
// its pid, uid and gid as the kernel sees them, translated into our namespaces. 0 or -errno.
int svm_set_passcred(int sock, int on);
// recvmsg() of one message without fds, with its SCM_CREDENTIALS (needs SO_PASSCRED on `sock`
// before the peer sent it). Returns the payload bytes (0: peer closed) and the sender's pid,
// uid, gid, or -errno; -ENODATA if the message came without credentials. Retries EINTR.
long svm_recv_with_credentials(int sock, void *buf, size_t len, pid_t *pid, uint32_t *uid, uint32_t *gid);

#endif
