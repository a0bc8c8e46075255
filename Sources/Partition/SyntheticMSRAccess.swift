import HyperV

/// Which advertised CPUID bit lets a guest touch a synthetic MSR (TLFS Appendix "Partition
/// privilege flags": "an access without the privilege gets #GP"; KVM hv_check_msr_access, which
/// enforces the same table under KVM_CAP_HYPERV_ENFORCE_CPUID).
///
/// The check runs against `Enlightenments.cpuidBits`, the very bits the guest sees in CPUID, so
/// what a guest may touch can never drift from what it was told.
public enum SyntheticMSRAccess: Equatable, Sendable {
    /// Needs this 0x40000003.EAX privilege bit.
    case privilege(UInt32)
    /// Needs this 0x40000003.EDX feature bit.
    case feature(UInt32)
    /// Any enlightened partition (not `off`), whatever its privileges. Only VP_ASSIST_PAGE: see
    /// `SyntheticMSRAccess.of`.
    case enlightened
    /// SynthVM does not implement the MSR (yet): #GP whatever is advertised.
    case unimplemented

    /// The rule for MSR `index`.
    ///
    /// VP_ASSIST_PAGE is the one deliberate exception to the privilege rule. Its privilege is
    /// AccessIntrCtrlRegs (EAX bit 4), which SynthVM never advertises: the EOI/ICR/TPR MSRs and
    /// lazy EOI that come with it have no clean path into KVM's in-kernel LAPIC. But Linux
    /// (hv_cpu_init, 6.1 and later) writes VP_ASSIST_PAGE on every CPU with a plain wrmsrl,
    /// without looking at that bit, and a #GP there is an oops at boot. So the partition accepts
    /// and stores it; with no bit 4 the page carries no protocol and SynthVM never touches it.
    public static func of(_ index: UInt32) -> SyntheticMSRAccess {
        switch index {
        case HvMSR.guestOsId, HvMSR.hypercall: .privilege(HvPrivilegeEAX.accessHypercallMsrs)
        case HvMSR.vpIndex: .privilege(HvPrivilegeEAX.accessVpIndex)
        case HvMSR.reset: .privilege(HvPrivilegeEAX.accessResetReg)
        case HvMSR.vpRuntime: .privilege(HvPrivilegeEAX.accessVpRunTimeReg)
        case HvMSR.timeRefCount: .privilege(HvPrivilegeEAX.accessPartitionReferenceCounter)
        case HvMSR.referenceTsc: .privilege(HvPrivilegeEAX.accessPartitionReferenceTsc)
        case HvMSR.tscFrequency, HvMSR.apicFrequency: .privilege(HvPrivilegeEAX.accessFrequencyRegs)
        case HvMSR.vpAssistPage: .enlightened
        case HvMSR.crashParameters, HvMSR.crashCtl: .feature(HvFeatureEDX.guestCrashMsrs)
        case HvMSR.scontrol, HvMSR.sversion, HvMSR.siefp, HvMSR.simp, HvMSR.eom, HvMSR.sints:
            .privilege(HvPrivilegeEAX.accessSynicRegs)
        case HvMSR.stimers: .privilege(HvPrivilegeEAX.accessSyntheticTimerRegs)
        // Known but not implemented: EOI/ICR/TPR, GUEST_IDLE, SYNDBG, reenlightenment and TSC
        // emulation, TSC invariant control. Everything else in the range is not an MSR at all.
        default: .unimplemented
        }
    }

    /// True if a partition with `enlightenments` lets the guest access the MSR.
    public func allows(_ enlightenments: Enlightenments) -> Bool {
        if enlightenments.isOff { return false }
        switch self {
        case .privilege(let bit): return enlightenments.privilegesEAX & bit == bit
        case .feature(let bit): return enlightenments.featuresEDX & bit == bit
        case .enlightened: return true
        case .unimplemented: return false
        }
    }
}
