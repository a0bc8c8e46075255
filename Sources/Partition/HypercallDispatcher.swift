import HyperV

/// What the dispatcher needs to know about the calling VP and the partition. The monitor builds
/// one per hypercall exit from the vCPU's segment state and the partition's CPUID profile.
public struct HypercallContext: Sendable {
    /// VP index of the caller (== its APIC ID in SynthVM).
    public var vp: UInt32
    /// VPs in the partition; VP indices 0..<vpCount exist.
    public var vpCount: Int
    /// CPUID 0x40000003.EBX as advertised: hypercall privileges (`HvPrivilegeEBX`).
    public var privilegesEBX: UInt32
    /// CPUID 0x40000003.EDX as advertised: features (`HvFeatureEDX`), here XMM fast input/output.
    public var featuresEDX: UInt32
    /// CPUID 0x40000004.EAX as advertised: recommendations (`HvHintEAX`), here cluster IPIs.
    public var hintsEAX: UInt32
    /// The hypercall page is enabled (HV_X64_MSR_HYPERCALL bit 0), which requires a non-zero
    /// GUEST_OS_ID. When false, the port write is not a hypercall and raises #UD.
    public var interfaceEnabled: Bool
    /// CS.DPL / SS.DPL of the caller.
    public var cpl: UInt8
    public var mode: VPExecutionMode
    public var memory: any PartitionMemory
    public var interrupts: any PartitionInterrupts
    /// Where HvCallPostMessage / HvCallSignalEvent go; none until the SynIC router exists.
    public var connections: any HypercallConnections

    public init(
        vp: UInt32, vpCount: Int, privilegesEBX: UInt32, featuresEDX: UInt32, hintsEAX: UInt32,
        interfaceEnabled: Bool, cpl: UInt8, mode: VPExecutionMode, memory: any PartitionMemory,
        interrupts: any PartitionInterrupts,
        connections: any HypercallConnections = NoHypercallConnections.shared
    ) {
        self.vp = vp
        self.vpCount = vpCount
        self.privilegesEBX = privilegesEBX
        self.featuresEDX = featuresEDX
        self.hintsEAX = hintsEAX
        self.interfaceEnabled = interfaceEnabled
        self.cpl = cpl
        self.mode = mode
        self.memory = memory
        self.interrupts = interrupts
        self.connections = connections
    }
}

/// What the monitor does after a hypercall exit.
public enum HypercallOutcome: Equatable, Sendable {
    /// Write these registers back (KVM_SET_REGS) and resume after the OUT.
    case completed(VPRegisters)
    /// Inject #UD; the registers are unchanged.
    case invalidOpcode
}

/// The HV#1 hypercall dispatcher: decodes a hypercall from the caller's registers, validates it
/// the way the TLFS and KVM do, performs it, and returns the registers to write back. Pure:
/// guest memory, interrupts and connections are reached through the context.
///
/// Order of decisions (KVM `kvm_hv_hypercall` order; the TLFS leaves it open but wants
/// ACCESS_DENIED to win):
///
/// 1. #UD when the interface is off, CPL != 0, or the caller is in real or v8086 mode (TLFS
///    "Legal Hypercall Environments"; KVM: CPL/`is_protmode`, and KVM only routes the call to
///    its Hyper-V code when GUEST_OS_ID is set).
/// 2. ACCESS_DENIED when an implemented call's privilege or hint is not advertised (KVM
///    `hv_check_hypercall_access`).
/// 3. INVALID_HYPERCALL_INPUT for a RsvdZ control bit (KVM tests `HV_HYPERCALL_RSVD_MASK`
///    before the call code, so this wins over an unknown code).
/// 4. INVALID_HYPERCALL_CODE for a call SynthVM does not implement.
/// 5. INVALID_HYPERCALL_INPUT for a rep count/start index on a simple call, a zero rep count or
///    start >= count on a rep call, or a variable header on a call without one (TLFS common
///    status codes), then the call's own control checks.
/// 6. Fast calls: the call's refusal if it has no fast form; #UD when the input needs XMM
///    registers and CPUID does not offer XMM fast input (TLFS "XMM Fast Hypercall Input": "any
///    attempt to use this interface when the hypervisor does not indicate availability will
///    result in a #UD fault"; KVM does the same); INVALID_HYPERCALL_INPUT when it does not fit
///    in 112 bytes or the monitor did not supply the XMM registers.
///    Memory-based calls: INVALID_ALIGNMENT for a misaligned, page-crossing or non-RAM input
///    block (TLFS).
/// 7. The call itself.
///
/// Every call completes synchronously, all reps included (TLFS allows it, KVM does it), so the
/// result always carries reps completed = rep count on success and the guest never sees a
/// continuation.
public enum HypercallDispatcher {
    public static func dispatch(_ regs: VPRegisters, context: HypercallContext) -> HypercallOutcome {
        guard context.interfaceEnabled, context.cpl == 0,
            let input = HypercallInput(registers: regs, mode: context.mode)
        else { return .invalidOpcode }
        guard let result = evaluate(input, xmm: regs.xmm, context: context) else { return .invalidOpcode }
        return .completed(HypercallABI.complete(regs, mode: context.mode, control: input.control, result: result))
    }

    /// Whether the monitor must fetch XMM0-XMM5 (from the guest's XSAVE area) into
    /// `VPRegisters.xmm` before dispatching this call: a fast call to an implemented call whose
    /// input is larger than RDX and R8, with XMM fast input advertised. Fetching is costly, so
    /// the monitor asks first; in every other case the XMM registers are never read.
    public static func needsXMMInput(_ input: HypercallInput, featuresEDX: UInt32) -> Bool {
        let control = input.control
        guard control.isFast, featuresEDX & HvFeatureEDX.xmmHypercallInput != 0,
            let handler = handler(for: control.callCode), handler.fastRefusal == nil
        else { return false }
        let size = handler.inputSize(control)
        return size > HypercallABI.registerInputBytes && size <= HypercallABI.xmmInputBytes
    }

    /// The implemented calls.
    ///
    /// Not here, so they answer INVALID_HYPERCALL_CODE like any unknown code: the TLB-flush
    /// calls (HvCallFlushVirtualAddressSpace/List and their Ex forms). A flush must not return
    /// until every target VP has dropped the stale translations, and from user space we cannot
    /// flush another vCPU's TLB synchronously: that needs every target to exit and re-enter
    /// (KVM's in-kernel implementation uses KVM_REQ_TLB_FLUSH, which user space cannot raise).
    /// So SynthVM never advertises the remote-TLB-flush hints (0x40000004.EAX bits 1 and 2)
    /// and guests use IPIs plus INVLPG instead. KVM would answer ACCESS_DENIED for the
    /// unadvertised calls; we answer as for a call that does not exist, because here it does not.
    static func handler(for code: HvCallCode) -> (any HypercallHandler.Type)? {
        switch code {
        case .notifyLongSpinWait: HypercallNotifyLongSpinWait.self
        case .sendSyntheticClusterIpi: HypercallSendSyntheticClusterIpi.self
        case .sendSyntheticClusterIpiEx: HypercallSendSyntheticClusterIpiEx.self
        case .postMessage: HypercallPostMessage.self
        case .signalEvent: HypercallSignalEvent.self
        default: nil
        }
    }

    /// The result of a legal call, or nil for #UD (XMM fast input used without the feature).
    static func evaluate(_ input: HypercallInput, xmm: [UInt64], context: HypercallContext) -> HvHypercallResult? {
        let control = input.control
        let handler = handler(for: control.callCode)

        if let handler, let denied = handler.accessStatus(context) { return fail(denied) }
        if control.hasReservedBits { return fail(.invalidHypercallInput) }
        guard let handler else { return fail(.invalidHypercallCode) }
        if let status = control.validate() ?? handler.validate(control) { return fail(status) }

        let size = handler.inputSize(control)
        let block: HypercallInputBlock
        if control.isFast {
            if let refusal = handler.fastRefusal { return fail(refusal) }
            if size > HypercallABI.registerInputBytes {
                guard context.featuresEDX & HvFeatureEDX.xmmHypercallInput != 0 else { return nil }
            }
            guard let fromRegisters = HypercallInputBlock.fromRegisters(
                inputValue: input.inputValue, outputValue: input.outputValue, xmm: xmm, size: size)
            else { return fail(.invalidHypercallInput) }
            block = fromRegisters
        } else {
            switch HypercallInputBlock.read(gpa: input.inputValue, size: size, memory: context.memory) {
            case .success(let fromMemory): block = fromMemory
            case .failure(let status): return fail(status)
            }
        }

        let status = handler.handle(block, control: control, context: context)
        // Simple calls report zero reps; a rep call that succeeds has done every rep.
        let reps = status == .success && control.callCode.isRep ? control.repCount : 0
        return HvHypercallResult(status: status, repsCompleted: reps)
    }

    private static func fail(_ status: HvStatus) -> HvHypercallResult {
        HvHypercallResult(status: status, repsCompleted: 0)
    }
}
