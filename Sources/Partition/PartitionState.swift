import HyperV

/// The guest-writable synthetic registers of a partition, at their reset values by construction.
/// `Partition` keeps one behind its lock; `Partition.reset()` puts a fresh one back.
struct PartitionState: Sendable {
    /// HV_X64_MSR_GUEST_OS_ID (partition-wide; reset 0).
    var guestOsId: UInt64 = 0
    /// HV_X64_MSR_HYPERCALL as last accepted (partition-wide; reset 0).
    var hypercall: UInt64 = 0
    /// HV_X64_MSR_REFERENCE_TSC as last accepted (partition-wide; reset 0).
    var referenceTsc: UInt64 = 0
    /// CRASH_P0...P4 (partition-wide; reset 0).
    var crashParameters = [UInt64](repeating: 0, count: HvMSR.crashParameterCount)
    /// HV_X64_MSR_VP_ASSIST_PAGE per VP (reset 0).
    var vpAssistPage: [UInt64]
    /// The last TSC page sequence published. Survives reset: a page re-enabled after a reboot
    /// gets a sequence the guest has not seen before.
    var tscSequence: UInt32 = HvReferenceTSCPage.invalidSequence

    init(vpCount: Int, tscSequence: UInt32 = HvReferenceTSCPage.invalidSequence) {
        vpAssistPage = [UInt64](repeating: 0, count: max(vpCount, 0))
        self.tscSequence = tscSequence
    }

    /// True when the guest may call the hypercall page: it is enabled and the guest has said who
    /// it is (a GUEST_OS_ID of 0 disables the interface, TLFS "Reporting the Guest OS Identity").
    var hypercallInterfaceEnabled: Bool {
        hypercall & HvMSR.Hypercall.enable != 0 && guestOsId != 0
    }
}
