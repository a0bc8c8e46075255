// libcap (libcap-dev) for Swift: Sources/Sandbox/Capabilities.swift drops every capability of a
// jailed worker. The securebits are function-like macros, which do not import into Swift.
#ifndef SYNTHVM_CCAP_SHIM_H
#define SYNTHVM_CCAP_SHIM_H

#include <linux/securebits.h>
#include <sys/capability.h>

/// Securebits for a process that must never regain a capability: uid 0 confers none (NOROOT),
/// uid changes do not adjust the sets (NO_SETUID_FIXUP), no ambient raise, KEEP_CAPS off; each
/// locked, so not even a process holding CAP_SETPCAP could undo them.
static inline unsigned svm_secbits_locked_down(void) {
    return SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED
        | SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
}

#endif
