import HyperV

/// One hypercall SynthVM implements. The dispatcher does everything common to all calls (the
/// #UD rules, the control-word checks, fetching the input block from RAM or registers) in one
/// place, asking the handler only what differs per call; the handler then sees a well-formed
/// control word and exactly `inputSize` bytes of input.
///
/// The order the dispatcher asks in mirrors KVM's `kvm_hv_hypercall`, which the TLFS leaves open
/// ("the order in which error conditions are detected ... is undefined", except that
/// ACCESS_DENIED should win): access, reserved bits, call class, fast/XMM, then the input.
///
/// No implemented call has output parameters, so there is no output size yet: the output GPA
/// is ignored, as the TLFS says it is for calls without output. A call with output would add
/// `outputSize` here and have the dispatcher validate the output GPA (and its overlap with the
/// input, `HypercallInputBlock.overlaps`) the same way.
protocol HypercallHandler {
    /// The call's TLFS class (simple/rep, variable header) comes from this code.
    static var code: HvCallCode { get }

    /// nil when the partition may make the call; else the status to answer, checked before
    /// anything else (HV_STATUS_ACCESS_DENIED for a missing privilege or hint).
    static func accessStatus(_ context: HypercallContext) -> HvStatus?

    /// nil when the call may use the register-based ("fast") convention; else what a fast
    /// attempt answers.
    static var fastRefusal: HvStatus? { get }

    /// Checks of the control word beyond the TLFS class, before any input is fetched (e.g. a
    /// bound on the variable header size).
    static func validate(_ control: HvHypercallControl) -> HvStatus?

    /// Bytes of input the call reads: the fixed header plus the declared variable header.
    /// Zero means the input is not read (and its GPA not checked).
    static func inputSize(_ control: HvHypercallControl) -> Int

    /// Performs the call.
    static func handle(_ input: HypercallInputBlock, control: HvHypercallControl, context: HypercallContext) -> HvStatus
}

extension HypercallHandler {
    static func accessStatus(_ context: HypercallContext) -> HvStatus? { nil }
    static var fastRefusal: HvStatus? { nil }
    static func validate(_ control: HvHypercallControl) -> HvStatus? { nil }
}
