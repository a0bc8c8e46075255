#define _GNU_SOURCE
#include "cpolicyprobe.h"
#include <errno.h>
#include <linux/filter.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

// The frame rt_sigreturn reads (at the stack pointer; the kernel's struct ucontext is a prefix of
// glibc's ucontext_t on x86-64): 64-bit user CS, RIP 0, no FPU state. Returning to 0 faults.
static ucontext_t sigreturn_frame __attribute__((aligned(64)));

__attribute__((noreturn)) static void rt_sigreturn_to_zero(void) {
    memset(&sigreturn_frame, 0, sizeof sigreturn_frame);
    sigreturn_frame.uc_mcontext.gregs[REG_RIP] = 0;
    sigreturn_frame.uc_mcontext.gregs[REG_CSGSFS] = 0x33 | (0x2bll << 48);  // __USER_CS, __USER_DS
    __asm__ volatile("mov %0, %%rsp\n\tmov %1, %%eax\n\tsyscall\n\tud2"
                     :: "r"(&sigreturn_frame), "i"(SYS_rt_sigreturn) : "memory");
    __builtin_unreachable();
}

int svm_probe_call_under_filter(const void *instructions, unsigned count, long nr, const uint64_t *args,
                                int exit_with_errno) {
    if (count == 0 || count > BPF_MAXINSNS) return -EINVAL;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGSYS, &dfl, NULL);
    sigaction(SIGSEGV, &dfl, NULL);
    struct rlimit nocore = { 0, 0 };
    setrlimit(RLIMIT_CORE, &nocore);
    struct sock_fprog prog = { .len = (unsigned short)count, .filter = (struct sock_filter *)instructions };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return -errno;
    if (syscall(SYS_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, 0, &prog) < 0) return -errno;
    // Filtered from here on: only the probed call and exit_group.
    if (nr == SYS_rt_sigreturn) rt_sigreturn_to_zero();
    long r = syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]);
    int status = exit_with_errno && r == -1 ? errno : 0;
    syscall(SYS_exit_group, status);
    __builtin_unreachable();
}
