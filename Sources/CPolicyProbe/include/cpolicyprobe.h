// synthvm-policy-probe's last steps, in C so that nothing but the one probed system call and
// the final exit_group runs under the filter (no Swift runtime, no allocation, no stdio).
#ifndef SYNTHVM_CPOLICYPROBE_H
#define SYNTHVM_CPOLICYPROBE_H

#include <stdint.h>

/// Resets SIGSYS and SIGSEGV to their default actions, disables core dumps, installs the
/// filter (`count` struct sock_filter instructions) on this single-threaded process, makes
/// system call `nr` with `args`, and exits with status 0 if it returned (or, with
/// `exit_with_errno`, with the call's errno, 0 on success). Returns only if the filter could not
/// be installed: -errno. rt_sigreturn is made on a frame that returns to address 0, so an
/// allowed call ends in SIGSEGV (a refused one in SIGSYS).
int svm_probe_call_under_filter(const void *instructions, unsigned count, long nr, const uint64_t *args,
                                int exit_with_errno);

#endif
