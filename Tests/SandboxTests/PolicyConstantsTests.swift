import Testing

@testable import Sandbox

@Suite struct PolicyConstantsTests {
    @Test func kvmIoctlsFromTheBrief() {
        let expected: [String: UInt64] = [
            "KVM_RUN": 0xAE80, "KVM_GET_REGS": 0x8090_AE81, "KVM_SET_REGS": 0x4090_AE82,
            "KVM_GET_SREGS": 0x8138_AE83, "KVM_SET_SREGS": 0x4138_AE84,
            "KVM_SIGNAL_MSI": 0x4020_AEA5, "KVM_IRQFD": 0x4020_AE76,
            "KVM_SET_GSI_ROUTING": 0x4008_AE6A,
            // The rest of the vCPU threads' calls (Policies/vcpu.policy), from their _IOR/_IOW
            // encodings: struct kvm_fpu is 416 bytes, kvm_vcpu_events 64, kvm_mp_state 4.
            "KVM_GET_FPU": 0x81A0_AE8C, "KVM_GET_VCPU_EVENTS": 0x8040_AE9F,
            "KVM_SET_VCPU_EVENTS": 0x4040_AEA0, "KVM_GET_MP_STATE": 0x8004_AE98,
        ]
        for (name, value) in expected { #expect(PolicyConstants.value(of: name) == value, "\(name)") }
        #expect(PolicyConstants.value(of: "KVM_NOPE") == nil)
    }

    /// Constants that are enum values in the C headers (no #ifdef possible) or newer than the
    /// host's headers (checked by hand against the kernel's uapi headers).
    static let notMacros: Set<String> = [
        "P_ALL", "P_PID", "P_PGID", "P_PIDFD", "MEMBARRIER_CMD_QUERY", "MEMBARRIER_CMD_GLOBAL",
        "MEMBARRIER_CMD_GLOBAL_EXPEDITED", "MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED",
        "MEMBARRIER_CMD_PRIVATE_EXPEDITED", "MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED",
    ]
    static let newerThanHeaders: Set<String> = [
        "MADV_COLLAPSE", "MADV_GUARD_INSTALL", "MADV_GUARD_REMOVE", "MFD_NOEXEC_SEAL", "MFD_EXEC",
    ]

    /// Every constant is compared with the value the host's C headers give (a gcc-compiled
    /// program prints them): KVM ioctls from their _IOR/_IOW encodings, flags, options.
    @Test(.enabled(if: gccAvailable)) func agreeWithCHeaders() throws {
        var c = """
            #define _GNU_SOURCE
            #include <stdio.h>
            #include <sys/mman.h>
            #include <linux/kvm.h>
            #include <linux/futex.h>
            #include <sys/prctl.h>
            #include <asm/prctl.h>
            #include <sys/socket.h>
            #include <fcntl.h>
            #include <sys/eventfd.h>
            #include <sys/timerfd.h>
            #include <sys/epoll.h>
            #include <sched.h>
            #include <linux/sched.h>
            #include <signal.h>
            #include <time.h>
            #include <sys/random.h>
            #include <linux/membarrier.h>
            #include <sys/wait.h>
            #include <sys/ioctl.h>
            #include <errno.h>
            int main(void) {

            """
        for name in PolicyConstants.allNames {
            let p = "printf(\"\(name) %llu\\n\", (unsigned long long)(\(name)));\n"
            if Self.notMacros.contains(name) { c += p } else { c += "#ifdef \(name)\n\(p)#endif\n" }
        }
        c += "return 0; }\n"
        let real = try #require(runC(c))
        for name in PolicyConstants.allNames where !Self.newerThanHeaders.contains(name) {
            #expect(real[name] != nil, "\(name) not in the C headers")
        }
        for (name, value) in real {
            #expect(PolicyConstants.value(of: name) == value, "\(name): header says 0x\(String(value, radix: 16))")
        }
        #expect(real.count > 250)
    }
}
