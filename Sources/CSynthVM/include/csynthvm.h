// C shims for SynthVM: what Swift cannot express directly.
// - the KVM ioctl request numbers (function-like macros in linux/kvm.h),
// - ioctl() itself (variadic in glibc),
// - memfd_create/eventfd/pidfd_open wrappers, memfd seals,
// - sendmsg/recvmsg with SCM_RIGHTS (the CMSG_* macros are not importable),
// - a per-thread "kick" so another thread can force a vCPU out of KVM_RUN.
#ifndef CSYNTHVM_H
#define CSYNTHVM_H

#include <linux/kvm.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <poll.h>

// ioctl request numbers, exported as constants.
extern const unsigned long svm_KVM_GET_API_VERSION;
extern const unsigned long svm_KVM_CREATE_VM;
extern const unsigned long svm_KVM_CHECK_EXTENSION;
extern const unsigned long svm_KVM_GET_VCPU_MMAP_SIZE;
extern const unsigned long svm_KVM_GET_SUPPORTED_CPUID;
extern const unsigned long svm_KVM_GET_MSR_INDEX_LIST;
extern const unsigned long svm_KVM_CREATE_VCPU;
extern const unsigned long svm_KVM_SET_USER_MEMORY_REGION;
extern const unsigned long svm_KVM_SET_TSS_ADDR;
extern const unsigned long svm_KVM_SET_IDENTITY_MAP_ADDR;
extern const unsigned long svm_KVM_CREATE_IRQCHIP;
extern const unsigned long svm_KVM_CREATE_PIT2;
extern const unsigned long svm_KVM_IRQ_LINE;
extern const unsigned long svm_KVM_SIGNAL_MSI;
extern const unsigned long svm_KVM_IRQFD;
extern const unsigned long svm_KVM_SET_GSI_ROUTING;
extern const unsigned long svm_KVM_ENABLE_CAP;
extern const unsigned long svm_KVM_X86_SET_MSR_FILTER;
extern const unsigned long svm_KVM_RUN;
extern const unsigned long svm_KVM_GET_REGS;
extern const unsigned long svm_KVM_SET_REGS;
extern const unsigned long svm_KVM_GET_SREGS;
extern const unsigned long svm_KVM_SET_SREGS;
extern const unsigned long svm_KVM_GET_MSRS;
extern const unsigned long svm_KVM_SET_MSRS;
extern const unsigned long svm_KVM_SET_CPUID2;
extern const unsigned long svm_KVM_GET_LAPIC;
extern const unsigned long svm_KVM_SET_LAPIC;
extern const unsigned long svm_KVM_GET_FPU;
extern const unsigned long svm_KVM_SET_FPU;
extern const unsigned long svm_KVM_GET_MP_STATE;
extern const unsigned long svm_KVM_SET_MP_STATE;
extern const unsigned long svm_KVM_GET_TSC_KHZ;
extern const unsigned long svm_KVM_TRANSLATE;
extern const unsigned long svm_KVM_GET_VCPU_EVENTS;
extern const unsigned long svm_KVM_SET_VCPU_EVENTS;

// Atomic OR of a byte in shared memory (guest RAM): returns the old value.
uint8_t svm_atomic_fetch_or_u8(uint8_t *p, uint8_t mask);

// poll() with a nanosecond timeout (ppoll); ns < 0 waits forever. Returns poll's result or -errno.
int svm_poll_ns(struct pollfd *fds, unsigned long nfds, int64_t ns);

// The host TSC (rdtsc).
uint64_t svm_rdtsc(void);
// CPU time of a thread (pthread_t as unsigned long), in nanoseconds; 0 if unavailable.
uint64_t svm_thread_cpu_ns(unsigned long thread);

// ioctl wrappers: return the kernel's result, or -errno on failure.
long svm_ioctl_ptr(int fd, unsigned long request, void *arg);
long svm_ioctl_val(int fd, unsigned long request, unsigned long arg);

// Other syscalls: return the result, or -errno on failure.
int svm_memfd_create(const char *name, unsigned int flags);
// memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING).
int svm_memfd_create_sealable(const char *name);
// Seals a memfd's size (F_SEAL_SHRINK | F_SEAL_GROW) so a peer cannot resize it under us.
int svm_memfd_seal_size(int fd);
// fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length): the storage
// worker's UNMAP (glibc declares fallocate only under _GNU_SOURCE). 0, or -errno.
int svm_punch_hole(int fd, uint64_t offset, uint64_t length);
// preadv2 / pwritev2 (write != 0) with RWF_NOWAIT on `count` struct iovecs at `offset`: the
// storage worker's non-blocking attempt on its ring thread (glibc declares them only under
// _GNU_SOURCE). The bytes moved, or -errno (-EAGAIN: it would block).
long svm_rw_nowait(int fd, const void *iov, int count, uint64_t offset, int write);
// The memfd seal bits (fcntl.h only defines them under _GNU_SOURCE).
extern const int svm_F_SEAL_SEAL;
extern const int svm_F_SEAL_SHRINK;
extern const int svm_F_SEAL_GROW;
extern const int svm_F_SEAL_WRITE;
extern const int svm_F_SEAL_FUTURE_WRITE;
// fcntl(F_ADD_SEALS, seals): 0 or -errno.
int svm_memfd_add_seals(int fd, int seals);
// fcntl(F_GET_SEALS): the seal bits, or -errno (EINVAL: the fd cannot carry seals).
int svm_memfd_get_seals(int fd);
int svm_eventfd(unsigned int initval, int flags);
// eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK).
int svm_eventfd_nonblocking(void);
int svm_pidfd_open(pid_t pid, unsigned int flags);
int svm_errno(void);

// Unix sockets with fd passing. At most SVM_MAX_PASSED_FDS fds per message (the kernel's
// SCM_MAX_FD).
#define SVM_MAX_PASSED_FDS 253
extern const int svm_MSG_TRUNC;
extern const int svm_MSG_CTRUNC;
// socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC): message boundaries kept. 0 or -errno.
int svm_socketpair_seqpacket(int sv[2]);
// sendmsg(MSG_NOSIGNAL) of buf plus nfds fds as one SCM_RIGHTS message; retries EINTR.
// Returns the bytes sent, or -errno (-EINVAL for nfds outside 0...SVM_MAX_PASSED_FDS).
long svm_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds);
// recvmsg(MSG_CMSG_CLOEXEC) with room for fdcap fds (rounded up by CMSG_SPACE, so one more
// may fit); retries EINTR. Every SCM_RIGHTS fd that arrived is counted in *nfds; the first
// fdcap are stored in fds, the rest are closed here. *msg_flags gets msg_flags (MSG_TRUNC,
// MSG_CTRUNC). Returns the payload bytes received, or -errno. Policy is the caller's.
long svm_recv_with_fds(int sock, void *buf, size_t len, int *fds, int fdcap, int *nfds, int *msg_flags);

// Flexible-array structs, allocated zeroed with room for n entries. Free with free().
struct kvm_cpuid2 *svm_cpuid2_alloc(uint32_t n);
struct kvm_msrs *svm_msrs_alloc(uint32_t n);
struct kvm_irq_routing *svm_irq_routing_alloc(uint32_t n);
void svm_free(void *p);

// vCPU kick. A vCPU thread registers its kvm_run; svm_kick(thread) from any other
// thread sets immediate_exit for that run and signals the thread, so KVM_RUN
// returns (EINTR) even if the signal lands just before the thread enters it.
int svm_kick_install(int signo);
void svm_kick_register(struct kvm_run *run);  // also unblocks the kick signal in this thread
void svm_kick_clear(void);
int svm_kick_thread(unsigned long thread, int signo);
unsigned long svm_thread_self(void);
/// The calling thread's kernel id (gettid; Swift's Glibc module lacks it).
pid_t svm_gettid(void);
/// tgkill(2) exactly as given (Swift's Glibc module lacks it): 0 or -errno. For tests of the
/// monitor's tgkill rule (arg0 == $SELF_PID); the monitor itself signals through pthread_kill.
int svm_tgkill(long tgid, long tid, long signo);

// Signals delivered synchronously to one waiting thread (SIGINT/SIGTERM).
int svm_block_signals_for_wait(void);      // block SIGINT/SIGTERM in this thread (inherited)
int svm_wait_stop_signal(int timeout_ms);  // returns signo, 0 on timeout, -errno on error

// A signalfd for SIGINT/SIGTERM (which the caller has blocked); -errno on failure.
int svm_stop_signalfd(void);
// Reads one signalfd_siginfo; returns the signal number, 0 if none, -errno on error.
int svm_read_signalfd(int fd);

// Worker processes. Spawns `path` with argv, handing it exactly `fds` as fds 3, 4, ...
// (stdin is inherited; `stderr_fd` >= 0 becomes its fd 1 and fd 2, the write end of the pipe the
// supervisor relays; < 0 inherits stdout and stderr; every other fd is closed in the child).
// Returns 0 and the pid, or -errno.
int svm_spawn_worker(const char *path, char *const argv[], const int *fds, int nfds, int stderr_fd,
                     pid_t *pid);
// pipe2(O_CLOEXEC) (glibc declares pipe2 only under _GNU_SOURCE): 0 or -errno. A worker's output
// pipe: both ends close-on-exec, so neither leaks into another child; the spawn dup2()s the
// write end onto the worker's 1 and 2.
int svm_pipe_cloexec(int fds[2]);
// Reaps the process behind a pidfd that has become readable: *code is CLD_EXITED, CLD_KILLED or
// CLD_DUMPED, *status the exit status or signal. Returns 0, or -errno.
int svm_pidfd_reap(int pidfd, int *code, int *status);
// Installs a seccomp filter on the calling process: prctl(PR_SET_NO_NEW_PRIVS, 1), then
// seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC) with `count` struct sock_filter
// instructions. Returns 0, -errno, or the id of a thread TSYNC could not synchronize (> 0).
int svm_install_seccomp_filter(const void *instructions, unsigned count);
// A SIGSYS handler for seccomp traps (SA_NODEFER | SA_RESETHAND) that writes
// "<prefix>: seccomp violation: syscall <n> (<name>)\n" to fd 2 with write(2) only, then raises
// SIGSYS again (now SIG_DFL) with tgkill so the process dies by SIGSYS; as pid 1 of a PID
// namespace, which ignores that, it repeats the refused call, which traps again and kills it by
// SIGSYS all the same. `names[n]` (may be NULL)
// names syscall n, for n < count; the table and strings must outlive the process. Returns 0 or
// -errno.
int svm_install_sigsys_reporter(const char *prefix, const char *const *names, unsigned count);
// Sends a signal through a pidfd.
int svm_pidfd_send_signal(int pidfd, int sig);
// prctl(PR_SET_PDEATHSIG, sig): the calling process gets sig when its parent dies.
int svm_set_parent_death_signal(int sig);

// The console terminal. svm_terminal_raw puts the terminal on fd into raw mode (cfmakeraw,
// but with output processing kept so a guest's "\n" still starts a new line) after saving its
// mode, and arranges for that mode to be restored at exit() and on every signal that ends the
// process (the handler restores, then chains to the previous handler or the default action).
// Returns 0 or -errno. svm_terminal_restore restores it now; both are idempotent.
int svm_terminal_raw(int fd);
void svm_terminal_restore(void);

// The launcher of `synthvm run` (launcher.c): one VM process per VM life.
// svm_launcher_forward_signals: from now on SIGINT and SIGTERM to this process are passed on to
// the current VM process (and remembered: svm_launcher_stop_signal). Returns 0 or -errno.
int svm_launcher_forward_signals(void);
// Starts the VM process: fork, then execve(path, argv, environ) with config_fd as fd 3 and
// report_fd (the crash-report pipe; -1: none) as fd 4, api_fd (the control socket's listening
// socket, `--api-socket`; -1: none) as fd 5, stdio as it is and every other fd closed.
// SIGINT and SIGTERM stay blocked across the exec (the VM takes them from its signalfd) with their
// default actions back, and the child gets SIGKILL when the launcher dies (PR_SET_PDEATHSIG,
// checked against the race with the launcher's exit). Returns the child's pid once the exec has
// succeeded, or -errno (of fork, or of the child's failed exec, the child reaped).
// api_fd (the control socket; -1: none) becomes fd 5, and extra_fds (extra_count of them, at
// most 64: the disks) fds 6, 7, ... of the child.
int svm_launcher_spawn(const char *path, char *const argv[], int config_fd, int report_fd, int api_fd,
                       const int *extra_fds, int extra_count);
// Waits for the VM process `pid`: its exit status (0-255), or -signal if a signal ended it, or
// -1000 - errno if waiting failed.
int svm_launcher_wait(int pid);
// The last SIGINT/SIGTERM the launcher received (0: none).
int svm_launcher_stop_signal(void);
// Ends the launcher by `sig`, as its VM process ended: the terminal restored, no core file.
void svm_launcher_die_by(int sig) __attribute__((noreturn));

#endif

/* The vCPU index of the calling thread (-1 on threads that are not vCPUs): set once by each vCPU
 * thread, read by devices that need to know who is writing (a __thread variable; Swift has none). */
void svm_set_current_vcpu(int index);
int svm_current_vcpu(void);

/* synthvm-bench's floor for a cross-process wake-up: forks a child that sleeps in poll() on an
 * eventfd; `rounds` times, waits `gap_us` (so the child is asleep), reads the TSC and writes the
 * eventfd; the child reads the TSC as soon as poll() returns and acknowledges. Returns 0 and the
 * sum of (child TSC - parent TSC) in *sum_ticks, or -errno. The child only makes async-signal-safe
 * calls, so forking a multi-threaded process is fine. */
int svm_bench_eventfd_wake(int rounds, int gap_us, unsigned long long *sum_ticks);

/* synthvm-bench's floor for HvSignalEvent -> worker wake-up: a forked child that sleeps in poll()
 * on *go_fd and, at each wake-up, adds the TSC at which poll() returned to shared[0], stores it in
 * shared[2] and counts it in shared[1] (release) (shared is a MAP_SHARED page the caller unmaps). Returns the child's pid or
 * -errno. svm_bench_waker_stop kills and reaps it. Async-signal-safe calls only in the child. */
int svm_bench_waker_start(int *go_fd, volatile unsigned long long **shared);
void svm_bench_waker_stop(int pid, int go_fd, volatile unsigned long long *shared);

/* An acquire load of a u64 another process writes (the bench's shared page). */
unsigned long long svm_load_acquire_u64(volatile unsigned long long *p);

/* CPUID on the host (regs: EAX, EBX, ECX, EDX). */
void svm_host_cpuid(unsigned leaf, unsigned subleaf, unsigned *regs);

/* mallopt(M_ARENA_MAX, n) (malloc.h is not in Swift's Glibc module). Returns mallopt's result. */
int svm_set_malloc_arena_max(int n);

/* The control socket (docs/api.md; Sources/Monitor/API). Each returns -errno on failure.
 * svm_api_accept: accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC): a new fd.
 * svm_api_peer: SO_PEERCRED of a connected Unix socket.
 * svm_api_send: send(fd, buf, len, MSG_NOSIGNAL): a peer that went away is EPIPE, never SIGPIPE.
 * svm_api_listen: a new Unix stream socket at `path`, mode 0600 (umask 0177 around bind, then
 *   chmod before listen), close-on-exec, listening with `backlog`. */
int svm_api_accept(int listen_fd);
int svm_api_peer(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid);
long svm_api_send(int fd, const void *buf, size_t len);
int svm_api_listen(const char *path, int backlog);
/* connect() to the Unix stream socket at `path`: 0 if something accepts, or -errno
 * (-ECONNREFUSED: a socket file nobody listens on). */
int svm_api_probe(const char *path);
/* A new Unix stream socket connected to `path` (close-on-exec, blocking), or -errno. */
int svm_api_connect(const char *path);
