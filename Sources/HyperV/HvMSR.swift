/// Synthetic MSR numbers (TLFS "Partition and VP" and Appendix: MSR table; Linux
/// arch/x86/include/asm/hyperv-tlfs.h, HV_X64_MSR_*). The names are the TLFS's, camel-cased:
/// `HV_X64_MSR_GUEST_OS_ID` is `HvMSR.guestOsId`.
///
/// The hypervisor owns the whole 0x40000000...0x400001FF block: an access to a number in it that
/// SynthVM does not implement, or whose privilege is not advertised, must #GP rather than reach
/// KVM (which would either #GP too or, on a host with in-kernel Hyper-V, answer behind our back).
public enum HvMSR {
    /// Every synthetic MSR SynthVM traps to user space (MSR filter deny range).
    public static let syntheticRange: ClosedRange<UInt32> = 0x4000_0000...0x4000_01FF

    /// True if `index` is in the synthetic block the partition answers for.
    @inlinable
    public static func isSynthetic(_ index: UInt32) -> Bool { syntheticRange.contains(index) }

    // MARK: Hypercall interface (AccessHypercallMsrs, AccessVpIndex)

    /// Guest OS identity (partition-wide). Must be non-zero before the hypercall page can be enabled.
    public static let guestOsId: UInt32 = 0x4000_0000
    /// Hypercall page location and enable (partition-wide). Layout: `HvMSR.Hypercall`.
    public static let hypercall: UInt32 = 0x4000_0001
    /// This VP's index (per-VP, read-only).
    public static let vpIndex: UInt32 = 0x4000_0002
    /// Writing bit 0 resets the partition (AccessResetReg). Layout: `HvMSR.Reset`.
    public static let reset: UInt32 = 0x4000_0003

    // MARK: Time (AccessVpRunTimeReg, AccessPartitionReferenceCounter/Tsc, AccessFrequencyRegs)

    /// Host CPU time this VP has used, in 100 ns units (per-VP, read-only).
    public static let vpRuntime: UInt32 = 0x4000_0010
    /// The partition reference counter, 100 ns since partition creation (read-only).
    public static let timeRefCount: UInt32 = 0x4000_0020
    /// Reference TSC page location and enable (partition-wide). Layout: `HvMSR.ReferenceTsc`.
    public static let referenceTsc: UInt32 = 0x4000_0021
    /// Guest TSC frequency in Hz (read-only).
    public static let tscFrequency: UInt32 = 0x4000_0022
    /// Local APIC timer frequency in Hz (read-only).
    public static let apicFrequency: UInt32 = 0x4000_0023

    // MARK: Virtual APIC (AccessIntrCtrlRegs)

    public static let eoi: UInt32 = 0x4000_0070
    public static let icr: UInt32 = 0x4000_0071
    public static let tpr: UInt32 = 0x4000_0072
    /// VP assist page location and enable (per-VP). Layout: `HvMSR.VpAssistPage`.
    public static let vpAssistPage: UInt32 = 0x4000_0073

    // MARK: SynIC (AccessSynicRegs)

    public static let scontrol: UInt32 = 0x4000_0080
    public static let sversion: UInt32 = 0x4000_0081
    public static let siefp: UInt32 = 0x4000_0082
    public static let simp: UInt32 = 0x4000_0083
    public static let eom: UInt32 = 0x4000_0084
    public static let sint0: UInt32 = 0x4000_0090
    public static let sint15: UInt32 = 0x4000_009F
    /// The SINTx registers, x in 0...15.
    public static let sints: ClosedRange<UInt32> = sint0...sint15
    @inlinable
    public static func sint(_ x: Int) -> UInt32 { sint0 + UInt32(x) }

    // MARK: Synthetic timers (AccessSyntheticTimerRegs)

    public static let stimer0Config: UInt32 = 0x4000_00B0
    public static let stimer0Count: UInt32 = 0x4000_00B1
    public static let stimer3Count: UInt32 = 0x4000_00B7
    /// STIMER0_CONFIG...STIMER3_COUNT: config at even numbers, count at odd ones.
    public static let stimers: ClosedRange<UInt32> = stimer0Config...stimer3Count
    @inlinable
    public static func stimerConfig(_ n: Int) -> UInt32 { stimer0Config + 2 * UInt32(n) }
    @inlinable
    public static func stimerCount(_ n: Int) -> UInt32 { stimer0Count + 2 * UInt32(n) }

    // MARK: Idle and debugger

    /// Reading it idles the VP until an interrupt (AccessGuestIdleReg).
    public static let guestIdle: UInt32 = 0x4000_00F0
    /// Synthetic debugger transport (not in the TLFS; KVM hyperv.h). Feature EDX bit 11.
    public static let syndbgControl: UInt32 = 0x4000_00F1
    public static let syndbgStatus: UInt32 = 0x4000_00F2
    public static let syndbgSendBuffer: UInt32 = 0x4000_00F3
    public static let syndbgRecvBuffer: UInt32 = 0x4000_00F4
    public static let syndbgPendingBuffer: UInt32 = 0x4000_00F5
    public static let syndbgOptions: UInt32 = 0x4000_00FF

    // MARK: Guest crash (feature EDX bit 10, GuestCrashMsrs)

    public static let crashP0: UInt32 = 0x4000_0100
    public static let crashP4: UInt32 = 0x4000_0104
    /// CRASH_P0...CRASH_P4, the five crash parameters.
    public static let crashParameters: ClosedRange<UInt32> = crashP0...crashP4
    public static let crashParameterCount = 5
    @inlinable
    public static func crashP(_ n: Int) -> UInt32 { crashP0 + UInt32(n) }
    /// Crash control: read = capabilities, write = notify. Layout: `HvMSR.CrashCtl`.
    public static let crashCtl: UInt32 = 0x4000_0105

    // MARK: Reenlightenment and TSC emulation (AccessReenlightenmentControls)

    public static let reenlightenmentControl: UInt32 = 0x4000_0106
    public static let tscEmulationControl: UInt32 = 0x4000_0107
    public static let tscEmulationStatus: UInt32 = 0x4000_0108

    /// Exposes invariant TSC to the guest (Linux-only privilege EAX bit 15, HV_ACCESS_TSC_INVARIANT).
    public static let tscInvariantControl: UInt32 = 0x4000_0118

    // MARK: Field layouts

    /// The GPA page number field shared by every "page location" MSR: bits 63:12.
    public static let pageAddressMask: UInt64 = ~0xFFF

    /// HV_X64_MSR_HYPERCALL (TLFS "Establishing the Hypercall Interface").
    public enum Hypercall {
        /// Bit 0: the hypercall page is enabled. Stays 0 while GUEST_OS_ID is 0.
        public static let enable: UInt64 = 1 << 0
        /// Bit 1: the MSR is immutable until the partition is reset (feature EDX bit 18).
        public static let locked: UInt64 = 1 << 1
        /// Bits 11:2 RsvdP: "ignored on reads and preserved on writes" by the guest. The
        /// hypervisor neither faults on them nor interprets them.
        public static let reservedP: UInt64 = 0xFFC
        /// Bits 63:12: the hypercall page's GPA page number.
        public static let pageAddressMask: UInt64 = HvMSR.pageAddressMask
    }

    /// HV_X64_MSR_REFERENCE_TSC (TLFS "Partition Reference TSC Mechanism").
    public enum ReferenceTsc {
        /// Bit 0: the reference TSC page is enabled.
        public static let enable: UInt64 = 1 << 0
        /// Bits 11:1 RsvdP.
        public static let reservedP: UInt64 = 0xFFE
        /// Bits 63:12: the page's GPA page number.
        public static let pageAddressMask: UInt64 = HvMSR.pageAddressMask
    }

    /// HV_X64_MSR_VP_ASSIST_PAGE (TLFS "Virtual Processor Assist Page").
    public enum VpAssistPage {
        /// Bit 0: the VP assist page is enabled.
        public static let enable: UInt64 = 1 << 0
        /// Bits 11:1 RsvdP.
        public static let reservedP: UInt64 = 0xFFE
        /// Bits 63:12: the page's GPA page number.
        public static let pageAddressMask: UInt64 = HvMSR.pageAddressMask
    }

    /// HV_X64_MSR_RESET.
    public enum Reset {
        /// Bit 0: writing 1 resets the partition. The other bits are reserved and ignored.
        public static let reset: UInt64 = 1 << 0
    }

    /// HV_X64_MSR_CRASH_CTL (TLFS HV_CRASH_CTL_REG_CONTENTS).
    public enum CrashCtl {
        /// Bit 63 CrashNotify: "log the contents of the crash parameters" (P0...P4).
        public static let crashNotify: UInt64 = 1 << 63
        /// Bit 62 CrashMessage: P3 is the GPA of a message, P4 its length in bytes.
        public static let crashMessage: UInt64 = 1 << 62
        /// The longest crash message a guest may point at (Linux's hv_kmsg_dump uses one page).
        public static let maxMessageLength = 4096
    }
}
