// C shims for SynthVM: what Swift cannot express directly.
// - the KVM ioctl request numbers (function-like macros in linux/kvm.h),
// - ioctl() itself (variadic in glibc),
// - memfd_create/eventfd/pidfd_open wrappers,
// - a per-thread "kick" so another thread can force a vCPU out of KVM_RUN.
#ifndef CSYNTHVM_H
#define CSYNTHVM_H

#include <linux/kvm.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

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
int svm_eventfd(unsigned int initval, int flags);
// eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK).
int svm_eventfd_nonblocking(void);
int svm_pidfd_open(pid_t pid, unsigned int flags);
int svm_errno(void);

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

// Signals delivered synchronously to one waiting thread (SIGINT/SIGTERM).
int svm_block_signals_for_wait(void);      // block SIGINT/SIGTERM in this thread (inherited)
int svm_wait_stop_signal(int timeout_ms);  // returns signo, 0 on timeout, -errno on error

// A signalfd for SIGINT/SIGTERM (which the caller has blocked); -errno on failure.
int svm_stop_signalfd(void);
// Reads one signalfd_siginfo; returns the signal number, 0 if none, -errno on error.
int svm_read_signalfd(int fd);

#endif
