import CSynthVM

/// The exit reasons SynthVM distinguishes, decoded from kvm_run.exit_reason.
/// Raw numbers come from linux/kvm.h so a reader can cross-check.
public enum KVMExitReason {
    public static let unknown: UInt32 = UInt32(KVM_EXIT_UNKNOWN)
    public static let exception: UInt32 = UInt32(KVM_EXIT_EXCEPTION)
    public static let io: UInt32 = UInt32(KVM_EXIT_IO)
    public static let hypercall: UInt32 = UInt32(KVM_EXIT_HYPERCALL)
    public static let debug: UInt32 = UInt32(KVM_EXIT_DEBUG)
    public static let hlt: UInt32 = UInt32(KVM_EXIT_HLT)
    public static let mmio: UInt32 = UInt32(KVM_EXIT_MMIO)
    public static let irqWindowOpen: UInt32 = UInt32(KVM_EXIT_IRQ_WINDOW_OPEN)
    public static let shutdown: UInt32 = UInt32(KVM_EXIT_SHUTDOWN)
    public static let failEntry: UInt32 = UInt32(KVM_EXIT_FAIL_ENTRY)
    public static let intr: UInt32 = UInt32(KVM_EXIT_INTR)
    public static let internalError: UInt32 = UInt32(KVM_EXIT_INTERNAL_ERROR)
    public static let systemEvent: UInt32 = UInt32(KVM_EXIT_SYSTEM_EVENT)
    public static let x86RDMSR: UInt32 = UInt32(KVM_EXIT_X86_RDMSR)
    public static let x86WRMSR: UInt32 = UInt32(KVM_EXIT_X86_WRMSR)

    public static func name(_ reason: UInt32) -> String {
        switch reason {
        case unknown: return "KVM_EXIT_UNKNOWN"
        case exception: return "KVM_EXIT_EXCEPTION"
        case io: return "KVM_EXIT_IO"
        case hypercall: return "KVM_EXIT_HYPERCALL"
        case debug: return "KVM_EXIT_DEBUG"
        case hlt: return "KVM_EXIT_HLT"
        case mmio: return "KVM_EXIT_MMIO"
        case irqWindowOpen: return "KVM_EXIT_IRQ_WINDOW_OPEN"
        case shutdown: return "KVM_EXIT_SHUTDOWN"
        case failEntry: return "KVM_EXIT_FAIL_ENTRY"
        case intr: return "KVM_EXIT_INTR"
        case internalError: return "KVM_EXIT_INTERNAL_ERROR"
        case systemEvent: return "KVM_EXIT_SYSTEM_EVENT"
        case x86RDMSR: return "KVM_EXIT_X86_RDMSR"
        case x86WRMSR: return "KVM_EXIT_X86_WRMSR"
        default: return "exit reason \(reason)"
        }
    }

    /// Names of KVM_INTERNAL_ERROR_* suberrors.
    public static func internalErrorName(_ suberror: UInt32) -> String {
        switch Int32(suberror) {
        case KVM_INTERNAL_ERROR_EMULATION: return "emulation failure"
        case KVM_INTERNAL_ERROR_SIMUL_EX: return "simultaneous exceptions"
        case KVM_INTERNAL_ERROR_DELIVERY_EV: return "event delivery failed"
        case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: return "unexpected exit reason"
        default: return "suberror \(suberror)"
        }
    }
}

/// KVM mp_state values (linux/kvm.h).
public enum KVMMPState {
    public static let runnable: UInt32 = UInt32(KVM_MP_STATE_RUNNABLE)
    public static let uninitialized: UInt32 = UInt32(KVM_MP_STATE_UNINITIALIZED)
    public static let initReceived: UInt32 = UInt32(KVM_MP_STATE_INIT_RECEIVED)
    public static let halted: UInt32 = UInt32(KVM_MP_STATE_HALTED)
    public static let sipiReceived: UInt32 = UInt32(KVM_MP_STATE_SIPI_RECEIVED)
}

/// Capabilities SynthVM queries or enables.
public enum KVMCap {
    public static let irqchip = Int32(KVM_CAP_IRQCHIP)
    public static let pit2 = Int32(KVM_CAP_PIT2)
    public static let hyperv = Int32(KVM_CAP_HYPERV)
    public static let x86UserSpaceMSR = Int32(KVM_CAP_X86_USER_SPACE_MSR)
    public static let x86MSRFilter = Int32(KVM_CAP_X86_MSR_FILTER)
    public static let irqfd = Int32(KVM_CAP_IRQFD)
    public static let ioeventfd = Int32(KVM_CAP_IOEVENTFD)
    public static let signalMSI = Int32(KVM_CAP_SIGNAL_MSI)
    public static let maxVCPUs = Int32(KVM_CAP_MAX_VCPUS)
    public static let immediateExit = Int32(KVM_CAP_IMMEDIATE_EXIT)
    public static let getTSCKHz = Int32(KVM_CAP_GET_TSC_KHZ)
    public static let syncRegs = Int32(KVM_CAP_SYNC_REGS)

    /// KVM_SYNC_X86_* fields for kvm_run.kvm_valid_regs / kvm_dirty_regs.
    public static let syncX86Regs = UInt64(KVM_SYNC_X86_REGS)
    public static let syncX86Sregs = UInt64(KVM_SYNC_X86_SREGS)

    /// KVM_MSR_EXIT_REASON_* bits for KVM_CAP_X86_USER_SPACE_MSR.
    public static let msrExitReasonInval = UInt64(KVM_MSR_EXIT_REASON_INVAL)
    public static let msrExitReasonUnknown = UInt64(KVM_MSR_EXIT_REASON_UNKNOWN)
    public static let msrExitReasonFilter = UInt64(KVM_MSR_EXIT_REASON_FILTER)
}
