// libseccomp for Swift (Sources/Sandbox/PolicyCompiler.swift). Function-like macros do not
// import into Swift, so the few that are needed are static inline functions here.
#ifndef SYNTHVM_CSECCOMP_SHIM_H
#define SYNTHVM_CSECCOMP_SHIM_H

#include <seccomp.h>
#include <errno.h>
#include <stdint.h>
#include <linux/filter.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline uint32_t svm_scmp_act_kill_process(void) { return SCMP_ACT_KILL_PROCESS; }
static inline uint32_t svm_scmp_act_trap(void) { return SCMP_ACT_TRAP; }
static inline uint32_t svm_scmp_act_log(void) { return SCMP_ACT_LOG; }
static inline uint32_t svm_scmp_act_allow(void) { return SCMP_ACT_ALLOW; }
static inline uint32_t svm_scmp_act_errno(uint16_t e) { return SCMP_ACT_ERRNO(e); }
static inline uint32_t svm_scmp_arch_x86_64(void) { return SCMP_ARCH_X86_64; }

/// A close-on-exec memfd to export a filter into (glibc's memfd_create needs _GNU_SOURCE).
static inline int svm_scmp_memfd(void) {
    return (int)syscall(SYS_memfd_create, "synthvm-seccomp-bpf", 1u /* MFD_CLOEXEC */);
}

/// Installs a classic-BPF seccomp program on the calling thread only: no TSYNC, so the other
/// threads of the process keep their own filters (or none). no_new_privs first (also per thread),
/// as the kernel requires without CAP_SYS_ADMIN. SECCOMP_FILTER_FLAG_LOG: every action but allow
/// reaches the audit log (dmesg type=1326), trap and errno included, which the kernel otherwise
/// logs only for kill. Returns 0 or -errno.
static inline int svm_seccomp_install_on_current_thread(const void *instructions, unsigned count) {
    if (count == 0 || count > BPF_MAXINSNS) return -EINVAL;
    struct sock_fprog prog = { .len = (unsigned short)count, .filter = (struct sock_filter *)instructions };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return -errno;
    if (syscall(SYS_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, 2 /* SECCOMP_FILTER_FLAG_LOG */, &prog) < 0)
        return -errno;
    return 0;
}

#endif
