// libseccomp for Swift (Sources/Sandbox/PolicyCompiler.swift). Function-like macros do not
// import into Swift, so the few that are needed are static inline functions here.
#ifndef SYNTHVM_CSECCOMP_SHIM_H
#define SYNTHVM_CSECCOMP_SHIM_H

#include <seccomp.h>
#include <stdint.h>
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

#endif
