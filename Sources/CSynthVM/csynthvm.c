#define _GNU_SOURCE
#include "csynthvm.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <signal.h>
#include <ucontext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

const unsigned long svm_KVM_GET_API_VERSION = KVM_GET_API_VERSION;
const unsigned long svm_KVM_CREATE_VM = KVM_CREATE_VM;
const unsigned long svm_KVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
const unsigned long svm_KVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
const unsigned long svm_KVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
const unsigned long svm_KVM_GET_MSR_INDEX_LIST = KVM_GET_MSR_INDEX_LIST;
const unsigned long svm_KVM_CREATE_VCPU = KVM_CREATE_VCPU;
const unsigned long svm_KVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
const unsigned long svm_KVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
const unsigned long svm_KVM_SET_IDENTITY_MAP_ADDR = KVM_SET_IDENTITY_MAP_ADDR;
const unsigned long svm_KVM_CREATE_IRQCHIP = KVM_CREATE_IRQCHIP;
const unsigned long svm_KVM_CREATE_PIT2 = KVM_CREATE_PIT2;
const unsigned long svm_KVM_IRQ_LINE = KVM_IRQ_LINE;
const unsigned long svm_KVM_SIGNAL_MSI = KVM_SIGNAL_MSI;
const unsigned long svm_KVM_IRQFD = KVM_IRQFD;
const unsigned long svm_KVM_SET_GSI_ROUTING = KVM_SET_GSI_ROUTING;
const unsigned long svm_KVM_ENABLE_CAP = KVM_ENABLE_CAP;
const unsigned long svm_KVM_X86_SET_MSR_FILTER = KVM_X86_SET_MSR_FILTER;
const unsigned long svm_KVM_RUN = KVM_RUN;
const unsigned long svm_KVM_GET_REGS = KVM_GET_REGS;
const unsigned long svm_KVM_SET_REGS = KVM_SET_REGS;
const unsigned long svm_KVM_GET_SREGS = KVM_GET_SREGS;
const unsigned long svm_KVM_SET_SREGS = KVM_SET_SREGS;
const unsigned long svm_KVM_GET_MSRS = KVM_GET_MSRS;
const unsigned long svm_KVM_SET_MSRS = KVM_SET_MSRS;
const unsigned long svm_KVM_SET_CPUID2 = KVM_SET_CPUID2;
const unsigned long svm_KVM_GET_LAPIC = KVM_GET_LAPIC;
const unsigned long svm_KVM_SET_LAPIC = KVM_SET_LAPIC;
const unsigned long svm_KVM_GET_FPU = KVM_GET_FPU;
const unsigned long svm_KVM_SET_FPU = KVM_SET_FPU;
const unsigned long svm_KVM_GET_MP_STATE = KVM_GET_MP_STATE;
const unsigned long svm_KVM_SET_MP_STATE = KVM_SET_MP_STATE;
const unsigned long svm_KVM_GET_TSC_KHZ = KVM_GET_TSC_KHZ;
const unsigned long svm_KVM_TRANSLATE = KVM_TRANSLATE;
const unsigned long svm_KVM_GET_VCPU_EVENTS = KVM_GET_VCPU_EVENTS;
const unsigned long svm_KVM_SET_VCPU_EVENTS = KVM_SET_VCPU_EVENTS;

uint64_t svm_rdtsc(void) { return __builtin_ia32_rdtsc(); }

int svm_poll_ns(struct pollfd *fds, unsigned long nfds, int64_t ns) {
    struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };
    int r = ppoll(fds, nfds, ns < 0 ? NULL : &ts, NULL);
    return r < 0 ? -errno : r;
}

uint8_t svm_atomic_fetch_or_u8(uint8_t *p, uint8_t mask) { return __atomic_fetch_or(p, mask, __ATOMIC_SEQ_CST); }

uint64_t svm_thread_cpu_ns(unsigned long thread) {
    clockid_t cid;
    struct timespec ts;
    if (pthread_getcpuclockid((pthread_t)thread, &cid) != 0) return 0;
    if (clock_gettime(cid, &ts) != 0) return 0;
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

long svm_ioctl_ptr(int fd, unsigned long request, void *arg) {
    long r = ioctl(fd, request, arg);
    return r < 0 ? -errno : r;
}

long svm_ioctl_val(int fd, unsigned long request, unsigned long arg) {
    long r = ioctl(fd, request, arg);
    return r < 0 ? -errno : r;
}

int svm_memfd_create(const char *name, unsigned int flags) {
    int r = memfd_create(name, flags);
    return r < 0 ? -errno : r;
}

int svm_punch_hole(int fd, uint64_t offset, uint64_t length) {
    // FALLOC_FL_KEEP_SIZE 0x01 | FALLOC_FL_PUNCH_HOLE 0x02 (linux/falloc.h)
    return syscall(SYS_fallocate, fd, 0x03, (off_t)offset, (off_t)length) < 0 ? -errno : 0;
}

long svm_rw_nowait(int fd, const void *iov, int count, uint64_t offset, int write) {
    ssize_t r = write ? pwritev2(fd, (const struct iovec *)iov, count, (off_t)offset, RWF_NOWAIT)
                      : preadv2(fd, (const struct iovec *)iov, count, (off_t)offset, RWF_NOWAIT);
    return r < 0 ? -errno : (long)r;
}

int svm_memfd_create_sealable(const char *name) {
    int r = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    return r < 0 ? -errno : r;
}

int svm_memfd_seal_size(int fd) {
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0 ? -errno : 0;
}

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
const int svm_F_SEAL_SEAL = F_SEAL_SEAL;
const int svm_F_SEAL_SHRINK = F_SEAL_SHRINK;
const int svm_F_SEAL_GROW = F_SEAL_GROW;
const int svm_F_SEAL_WRITE = F_SEAL_WRITE;
const int svm_F_SEAL_FUTURE_WRITE = F_SEAL_FUTURE_WRITE;

int svm_memfd_add_seals(int fd, int seals) {
    return fcntl(fd, F_ADD_SEALS, seals) < 0 ? -errno : 0;
}

int svm_memfd_get_seals(int fd) {
    int r = fcntl(fd, F_GET_SEALS);
    return r < 0 ? -errno : r;
}

int svm_eventfd(unsigned int initval, int flags) {
    int r = eventfd(initval, flags);
    return r < 0 ? -errno : r;
}

int svm_eventfd_nonblocking(void) {
    int r = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return r < 0 ? -errno : r;
}

int svm_pidfd_open(pid_t pid, unsigned int flags) {
    long r = syscall(SYS_pidfd_open, pid, flags);
    return r < 0 ? -errno : (int)r;
}

int svm_errno(void) { return errno; }

const int svm_MSG_TRUNC = MSG_TRUNC;
const int svm_MSG_CTRUNC = MSG_CTRUNC;

int svm_socketpair_seqpacket(int sv[2]) {
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0 ? -errno : 0;
}

// Control buffer for the largest SCM_RIGHTS message, aligned for struct cmsghdr.
union svm_fd_control {
    char buf[CMSG_SPACE(SVM_MAX_PASSED_FDS * sizeof(int))];
    struct cmsghdr align;
};

long svm_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds) {
    if (nfds < 0 || nfds > SVM_MAX_PASSED_FDS) return -EINVAL;
    union svm_fd_control ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = { (void *)buf, len };
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    ssize_t n;
    do { n = sendmsg(sock, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : (long)n;
}

long svm_recv_with_fds(int sock, void *buf, size_t len, int *fds, int fdcap, int *nfds, int *msg_flags) {
    if (fdcap < 0 || fdcap > SVM_MAX_PASSED_FDS) return -EINVAL;
    union svm_fd_control ctl;
    struct iovec iov = { buf, len };
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fdcap > 0) {
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE((size_t)fdcap * sizeof(int));
    }
    ssize_t n;
    do { n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    int count = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0)) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(c);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, data + i * sizeof(int), sizeof fd);
            if (count < fdcap) fds[count] = fd; else close(fd);
            count++;
        }
    }
    *nfds = count;
    *msg_flags = msg.msg_flags;
    return (long)n;
}

struct kvm_cpuid2 *svm_cpuid2_alloc(uint32_t n) {
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
    if (c) c->nent = n;
    return c;
}

struct kvm_msrs *svm_msrs_alloc(uint32_t n) {
    struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(struct kvm_msr_entry));
    if (m) m->nmsrs = n;
    return m;
}

struct kvm_irq_routing *svm_irq_routing_alloc(uint32_t n) {
    struct kvm_irq_routing *r = calloc(1, sizeof(*r) + n * sizeof(struct kvm_irq_routing_entry));
    if (r) r->nr = n;
    return r;
}

void svm_free(void *p) { free(p); }

// The kick: the handler runs on the target vCPU thread and sets immediate_exit in its
// own kvm_run, which closes the window between "check stop flag" and "enter KVM_RUN".
static __thread struct kvm_run *kick_run;

static void kick_handler(int sig) {
    (void)sig;
    struct kvm_run *r = kick_run;
    if (r) r->immediate_exit = 1;
}

int svm_kick_install(int signo) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = kick_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; // no SA_RESTART: KVM_RUN must return EINTR
    return sigaction(signo, &sa, NULL) < 0 ? -errno : 0;
}

void svm_kick_register(struct kvm_run *run) {
    kick_run = run;
    // Threads inherit their creator's mask; a thread pool (e.g. libdispatch's) may block
    // everything, and a blocked kick would leave the vCPU in KVM_RUN forever.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

void svm_kick_clear(void) {
    if (kick_run) kick_run->immediate_exit = 0;
}

int svm_kick_thread(unsigned long thread, int signo) {
    return -pthread_kill((pthread_t)thread, signo);
}

unsigned long svm_thread_self(void) { return (unsigned long)pthread_self(); }

pid_t svm_gettid(void) { return (pid_t)syscall(SYS_gettid); }

int svm_tgkill(long tgid, long tid, long signo) {
    return syscall(SYS_tgkill, tgid, tid, signo) == 0 ? 0 : -errno;
}

int svm_block_signals_for_wait(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    return -pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int svm_wait_stop_signal(int timeout_ms) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    struct timespec ts = { timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L };
    int r = sigtimedwait(&set, NULL, &ts);
    if (r < 0) return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    return r;
}

int svm_stop_signalfd(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

int svm_read_signalfd(int fd) {
    struct signalfd_siginfo si;
    ssize_t n = read(fd, &si, sizeof si);
    if (n < 0) return errno == EAGAIN ? 0 : -errno;
    return n == sizeof si ? (int)si.ssi_signo : 0;
}

int svm_spawn_worker(const char *path, char *const argv[], const int *fds, int nfds, int stderr_fd,
                     pid_t *pid) {
    // Move the handed fds out of the way first (close-on-exec copies above every target number),
    // so dup2 onto 3, 4, ... can never clobber a source that is still needed.
    int high[64];
    if (nfds < 0 || nfds > 64) return -EINVAL;
    for (int i = 0; i < nfds; i++) {
        high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3 + nfds + 64);
        if (high[i] < 0) {
            int e = errno;
            for (int j = 0; j < i; j++) close(high[j]);
            return -e;
        }
    }
    int err_high = -1;
    if (stderr_fd >= 0) {
        err_high = fcntl(stderr_fd, F_DUPFD_CLOEXEC, 3 + nfds + 64);
        if (err_high < 0) {
            int e = errno;
            for (int j = 0; j < nfds; j++) close(high[j]);
            return -e;
        }
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    // The output pipe (the monitor relays it: Supervisor) as stdout and stderr both, so nothing
    // a worker prints reaches the monitor's terminal or log unprefixed.
    if (err_high >= 0) {
        posix_spawn_file_actions_adddup2(&fa, err_high, 1);
        posix_spawn_file_actions_adddup2(&fa, err_high, 2);
    }
    // stdin is /dev/null: the console's input is the guest's, never a worker's.
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    for (int i = 0; i < nfds; i++) posix_spawn_file_actions_adddup2(&fa, high[i], 3 + i);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3 + nfds);
    extern char **environ;
    // Workers get no environment of ours. The Swift runtime's crash backtracer is off: it
    // catches fatal signals, and the supervisor must see the signal that killed a worker.
    char *const envp[] = { "PATH=/usr/bin:/bin", "SWIFT_BACKTRACE=enable=no", NULL };
    (void)environ;
    int r = posix_spawn(pid, path, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < nfds; i++) close(high[i]);
    if (err_high >= 0) close(err_high);
    return -r;
}

int svm_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC) < 0 ? -errno : 0;
}

int svm_install_seccomp_filter(const void *instructions, unsigned count) {
    if (count == 0 || count > BPF_MAXINSNS) return -EINVAL;
    struct sock_fprog prog = { .len = (unsigned short)count, .filter = (struct sock_filter *)instructions };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return -errno;
    long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
    if (r < 0) return -errno;
    return (int)r;  // 0, or the thread TSYNC could not move onto the filter
}

static const char *sigsys_prefix;
static const char *const *sigsys_names;
static unsigned sigsys_count;

static size_t sigsys_strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

static void sigsys_reporter(int sig, siginfo_t *info, void *ucontext) {
    (void)sig;
    char line[256];
    size_t n = 0;
#define PUT(s) do { const char *p_ = (s); size_t l_ = sigsys_strlen(p_); \
        if (l_ > sizeof line - 1 - n) l_ = sizeof line - 1 - n; \
        memcpy(line + n, p_, l_); n += l_; } while (0)
    PUT(sigsys_prefix ? sigsys_prefix : "worker");
    PUT(": seccomp violation: syscall ");
    int nr = info->si_syscall;
    char digits[16];
    int d = 0;
    unsigned v = nr < 0 ? (unsigned)-nr : (unsigned)nr;
    do { digits[d++] = (char)('0' + v % 10); v /= 10; } while (v && d < 15);
    if (nr < 0) PUT("-");
    while (d > 0) { char c[2] = { digits[--d], 0 }; PUT(c); }
    PUT(" (");
    const char *name = (nr >= 0 && (unsigned)nr < sigsys_count) ? sigsys_names[nr] : NULL;
    PUT(name ? name : "unknown");
    PUT(")\n");
#undef PUT
    (void)!write(2, line, n);
    // SA_RESETHAND made SIGSYS SIG_DFL on entry and SA_NODEFER left it unblocked: this kills
    // the process (with a core dump where enabled), so the supervisor sees SIGSYS.
    syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), SIGSYS);
    // Still here: we are pid 1 of our own PID namespace (a jailed worker), where the kernel
    // drops signals a process sends itself with the default action. Make the same call again:
    // the filter traps it again, and a seccomp trap with SIGSYS at SIG_DFL kills even a
    // namespace's init (force_sig_seccomp). The arguments are the refused call's own.
    const greg_t *r = ((const ucontext_t *)ucontext)->uc_mcontext.gregs;
    syscall(nr, r[REG_RDI], r[REG_RSI], r[REG_RDX], r[REG_R10], r[REG_R8], r[REG_R9]);
    _exit(128 + SIGSYS);  // not reached: a filter traps the same call the same way
}

int svm_install_sigsys_reporter(const char *prefix, const char *const *names, unsigned count) {
    sigsys_prefix = prefix;
    sigsys_names = names;
    sigsys_count = count;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = sigsys_reporter;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGSYS, &sa, NULL) < 0 ? -errno : 0;
}

int svm_pidfd_reap(int pidfd, int *code, int *status) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid((idtype_t)3 /* P_PIDFD */, (id_t)pidfd, &info, WEXITED) < 0) return -errno;
    *code = info.si_code;
    *status = info.si_status;
    return 0;
}

int svm_pidfd_send_signal(int pidfd, int sig) {
    long r = syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
    return r < 0 ? -errno : 0;
}

int svm_set_parent_death_signal(int sig) {
    return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) < 0 ? -errno : 0;
}

static __thread int svm_current_vcpu_index = -1;

void svm_set_current_vcpu(int index) { svm_current_vcpu_index = index; }

int svm_current_vcpu(void) { return svm_current_vcpu_index; }

int svm_bench_eventfd_wake(int rounds, int gap_us, unsigned long long *sum_ticks)
{
    int go = eventfd(0, EFD_CLOEXEC), ack = eventfd(0, EFD_CLOEXEC);
    unsigned long long *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (go < 0 || ack < 0 || shared == MAP_FAILED) {
        int e = errno;
        if (go >= 0) close(go);
        if (ack >= 0) close(ack);
        return -e;
    }
    pid_t child = fork();
    if (child < 0) {
        int e = errno;
        close(go);
        close(ack);
        munmap(shared, 4096);
        return -e;
    }
    if (child == 0) {
        uint64_t v, one = 1;
        for (int i = 0; i < rounds; i++) {
            struct pollfd p = { .fd = go, .events = POLLIN };
            while (poll(&p, 1, -1) < 0) {}
            shared[0] = svm_rdtsc();
            if (read(go, &v, 8) != 8 || write(ack, &one, 8) != 8)
                _exit(1);
        }
        _exit(0);
    }
    unsigned long long sum = 0;
    uint64_t v, one = 1;
    int r = 0;
    for (int i = 0; i < rounds && r == 0; i++) {
        struct timespec ts = { 0, (long)gap_us * 1000 };
        nanosleep(&ts, NULL);
        unsigned long long t0 = svm_rdtsc();
        if (write(go, &one, 8) != 8 || read(ack, &v, 8) != 8)
            r = -EIO;
        else
            sum += shared[0] - t0;
    }
    int status;
    waitpid(child, &status, 0);
    close(go);
    close(ack);
    munmap(shared, 4096);
    *sum_ticks = sum;
    return r;
}

// ---- console terminal -------------------------------------------------------------------

static struct termios terminal_saved;
static volatile sig_atomic_t terminal_fd = -1;

// Signals whose default action ends the process. SIGQUIT is left alone: the Swift runtime's
// backtracer takes it to print a backtrace and carry on, and a raw terminal never sends it.
static const int terminal_signals[] = { SIGHUP, SIGINT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV,
                                        SIGPIPE, SIGALRM, SIGTERM, SIGXCPU, SIGXFSZ, SIGSYS, SIGUSR2 };
static struct sigaction terminal_previous[65];

static void terminal_restore_now(void) {
    int fd = terminal_fd;
    if (fd >= 0) tcsetattr(fd, TCSANOW, &terminal_saved);  // async-signal-safe
}

void svm_terminal_restore(void) {
    terminal_restore_now();
    terminal_fd = -1;
}

// Restores the terminal, then does what would have happened without us: the previous handler
// (the Swift runtime's crash backtracer, say) is called as it would have been, and the default
// action is taken again by re-raising with it (the signal is blocked in here, so it lands as soon
// as this returns; a fault simply happens again).
static void terminal_signal(int sig, siginfo_t *info, void *context) {
    terminal_restore_now();
    struct sigaction *previous = &terminal_previous[sig];
    if (previous->sa_flags & SA_SIGINFO) {
        previous->sa_sigaction(sig, info, context);
    } else if (previous->sa_handler == SIG_DFL) {
        signal(sig, SIG_DFL);
        raise(sig);
    } else if (previous->sa_handler != SIG_IGN) {
        previous->sa_handler(sig);
    }
}

int svm_terminal_raw(int fd) {
    if (terminal_fd >= 0) return 0;
    struct termios t;
    if (tcgetattr(fd, &t) < 0) return -errno;
    terminal_saved = t;
    cfmakeraw(&t);
    t.c_oflag |= OPOST;  // keep ONLCR & co. as the terminal had them
    static int registered;
    if (!registered) {
        registered = 1;
        atexit(terminal_restore_now);
        for (size_t i = 0; i < sizeof terminal_signals / sizeof terminal_signals[0]; i++) {
            int sig = terminal_signals[i];
            struct sigaction *previous = &terminal_previous[sig];
            if (sigaction(sig, NULL, previous) < 0) continue;
            if (!(previous->sa_flags & SA_SIGINFO) && previous->sa_handler == SIG_IGN) continue;  // stays ignored
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = terminal_signal;
            sa.sa_mask = previous->sa_mask;
            sa.sa_flags = (previous->sa_flags & (SA_ONSTACK | SA_RESTART)) | SA_SIGINFO;
            sigaction(sig, &sa, NULL);
        }
    }
    terminal_fd = fd;
    if (tcsetattr(fd, TCSANOW, &t) < 0) {
        int e = errno;
        terminal_fd = -1;
        return -e;
    }
    return 0;
}

int svm_bench_waker_start(int *go_fd, volatile unsigned long long **shared_out)
{
    int go = eventfd(0, EFD_CLOEXEC);
    if (go < 0)
        return -errno;
    volatile unsigned long long *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        int e = errno;
        close(go);
        return -e;
    }
    shared[0] = shared[1] = shared[2] = 0;
    pid_t child = fork();
    if (child < 0) {
        int e = errno;
        close(go);
        munmap((void *)shared, 4096);
        return -e;
    }
    if (child == 0) {
        uint64_t v;
        for (;;) {
            struct pollfd p = { .fd = go, .events = POLLIN };
            if (poll(&p, 1, -1) < 0)
                continue;
            unsigned long long t = svm_rdtsc();
            shared[0] += t;
            shared[2] = t;
            __atomic_store_n(&shared[1], shared[1] + 1, __ATOMIC_RELEASE);
            if (read(go, &v, 8) != 8)
                _exit(1);
        }
    }
    *go_fd = go;
    *shared_out = shared;
    return child;
}

void svm_bench_waker_stop(int pid, int go_fd, volatile unsigned long long *shared)
{
    int status;
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    close(go_fd);
    munmap((void *)shared, 4096);
}

unsigned long long svm_load_acquire_u64(volatile unsigned long long *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

void svm_host_cpuid(unsigned leaf, unsigned subleaf, unsigned *regs)
{
    __asm__ volatile("cpuid" : "=a"(regs[0]), "=b"(regs[1]), "=c"(regs[2]), "=d"(regs[3]) : "a"(leaf), "c"(subleaf));
}

#include <malloc.h>

int svm_set_malloc_arena_max(int n) { return mallopt(M_ARENA_MAX, n); }

/* ---- The control socket (docs/api.md) ---- */
#include <sys/stat.h>
#include <sys/un.h>

int svm_api_accept(int listen_fd) {
    int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int svm_api_peer(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid) {
    struct ucred c;
    socklen_t len = sizeof c;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) < 0) return -errno;
    *pid = c.pid;
    *uid = c.uid;
    *gid = c.gid;
    return 0;
}

long svm_api_send(int fd, const void *buf, size_t len) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    return n < 0 ? -errno : n;
}

static int svm_api_address(const char *path, struct sockaddr_un *a) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof a->sun_path) return -ENAMETOOLONG;
    strcpy(a->sun_path, path);
    return 0;
}

int svm_api_listen(const char *path, int backlog) {
    struct sockaddr_un a;
    int r = svm_api_address(path, &a);
    if (r < 0) return r;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    /* The file bind creates gets 0777 & ~umask: 0600 from the start, no window at a wider mode. */
    mode_t old = umask(0177);
    r = bind(fd, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    umask(old);
    if (r < 0) {
        close(fd);
        return -e;
    }
    if (chmod(path, 0600) < 0 || listen(fd, backlog) < 0) {
        e = errno;
        unlink(path);
        close(fd);
        return -e;
    }
    return fd;
}

int svm_api_connect(const char *path) {
    struct sockaddr_un a;
    int r = svm_api_address(path, &a);
    if (r < 0) return r;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int svm_api_probe(const char *path) {
    int fd = svm_api_connect(path);
    if (fd < 0) return fd;
    close(fd);
    return 0;
}
