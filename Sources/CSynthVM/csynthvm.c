#define _GNU_SOURCE
#include "csynthvm.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
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

int svm_memfd_create_sealable(const char *name) {
    int r = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    return r < 0 ? -errno : r;
}

int svm_memfd_seal_size(int fd) {
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0 ? -errno : 0;
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
