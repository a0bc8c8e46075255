import CSynthVM
import Glibc

/// Forcing a vCPU thread out of KVM_RUN from another thread (used to stop the VM and to poll
/// halted vCPUs: with the in-kernel LAPIC, HLT never exits to user space).
public enum VCPUKick {
    /// The signal used for kicks. Installed once per process, without SA_RESTART.
    public static let signal: Int32 = SIGUSR1

    public static func install() throws(KVMError) {
        let r = svm_kick_install(signal)
        if r < 0 { throw KVMError("sigaction(SIGUSR1)", errno: -r) }
    }

    /// Call on the vCPU thread before its first KVM_RUN.
    public static func register(_ vcpu: KVMVCPU) { svm_kick_register(vcpu.run) }

    /// Call on the vCPU thread after handling a kick, before re-entering KVM_RUN.
    public static func clear() { svm_kick_clear() }

    public static func currentThread() -> UInt { svm_thread_self() }

    public static func kick(thread: UInt) { _ = svm_kick_thread(thread, signal) }
}
