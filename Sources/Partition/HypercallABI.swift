import HyperV

/// The vCPU registers a hypercall reads and writes. The monitor fills this from KVM_GET_REGS
/// (and, for XMM fast calls, from the guest's XSAVE area) and writes back whatever
/// `HypercallDispatcher` returns.
///
/// In 32-bit mode only the low halves matter; the dispatcher ignores the high halves on input
/// and writes zero-extended 32-bit values on output, as KVM does.
public struct VPRegisters: Equatable, Sendable {
    public var rax: UInt64
    public var rbx: UInt64
    public var rcx: UInt64
    public var rdx: UInt64
    public var rsi: UInt64
    public var rdi: UInt64
    public var r8: UInt64
    /// XMM0-XMM5 as 12 little-endian quadwords, low half first (xmm[0] = XMM0[63:0],
    /// xmm[1] = XMM0[127:64], ...). Empty when the monitor did not fetch them: it only needs to
    /// when `HypercallDispatcher.needsXMMInput` says so.
    public var xmm: [UInt64]

    public init(
        rax: UInt64 = 0, rbx: UInt64 = 0, rcx: UInt64 = 0, rdx: UInt64 = 0, rsi: UInt64 = 0,
        rdi: UInt64 = 0, r8: UInt64 = 0, xmm: [UInt64] = []
    ) {
        self.rax = rax
        self.rbx = rbx
        self.rcx = rcx
        self.rdx = rdx
        self.rsi = rsi
        self.rdi = rdi
        self.r8 = r8
        self.xmm = xmm
    }
}

/// The processor mode of the calling VP, which picks the register convention (TLFS "Hypercall
/// Inputs": "the caller is assumed to be a 64-bit caller if EFER.LMA and CS.L are both set").
public enum VPExecutionMode: Equatable, Sendable {
    /// EFER.LMA and CS.L: 64-bit mode. RCX / RDX / R8, result in RAX.
    case long64
    /// Protected mode (CR0.PE) that is not 64-bit mode: legacy 32-bit protected mode, and also
    /// compatibility mode (EFER.LMA with CS.L clear). EDX:EAX / EBX:ECX / EDI:ESI, result in
    /// EDX:EAX. KVM decides the same way (`is_64_bit_hypercall` is false, `is_protmode` true).
    case protected32
    /// Real mode and virtual-8086 mode: hypercalls raise #UD (TLFS "Legal Hypercall
    /// Environments"; KVM: `!is_protmode(vcpu)`, and v8086 runs at CPL 3).
    case other
}

/// The three 64-bit hypercall operands, taken from the registers of the calling mode
/// (TLFS "Hypercall Inputs"):
///
/// | operand | x64 | x86 |
/// |---|---|---|
/// | hypercall input value (`control`) | RCX | EDX:EAX |
/// | input GPA, or fast input quadword 1 (`inputValue`) | RDX | EBX:ECX |
/// | output GPA, or fast input quadword 2 (`outputValue`) | R8 | EDI:ESI |
public struct HypercallInput: Equatable, Sendable {
    public var control: HvHypercallControl
    public var inputValue: UInt64
    public var outputValue: UInt64

    public init(control: HvHypercallControl, inputValue: UInt64 = 0, outputValue: UInt64 = 0) {
        self.control = control
        self.inputValue = inputValue
        self.outputValue = outputValue
    }

    /// Reads the operands in `mode`'s convention; nil in a mode where hypercalls are illegal.
    public init?(registers r: VPRegisters, mode: VPExecutionMode) {
        switch mode {
        case .long64:
            self.init(control: HvHypercallControl(rawValue: r.rcx), inputValue: r.rdx, outputValue: r.r8)
        case .protected32:
            self.init(
                control: HvHypercallControl(rawValue: HypercallABI.pair(high: r.rdx, low: r.rax)),
                inputValue: HypercallABI.pair(high: r.rbx, low: r.rcx),
                outputValue: HypercallABI.pair(high: r.rdi, low: r.rsi))
        case .other:
            return nil
        }
    }

    /// Writes the operands into `registers` in `mode`'s convention: what a guest does before
    /// calling the hypercall page. Used by tests and fake guests; `.other` leaves them unchanged.
    public func encode(into registers: VPRegisters, mode: VPExecutionMode) -> VPRegisters {
        var r = registers
        switch mode {
        case .long64:
            r.rcx = control.rawValue
            r.rdx = inputValue
            r.r8 = outputValue
        case .protected32:
            (r.rdx, r.rax) = HypercallABI.split(control.rawValue)
            (r.rbx, r.rcx) = HypercallABI.split(inputValue)
            (r.rdi, r.rsi) = HypercallABI.split(outputValue)
        case .other:
            break
        }
        return r
    }
}

/// Writing a hypercall's result back (TLFS "Hypercall Outputs", "Volatile Registers").
public enum HypercallABI {
    /// The fast-call input block lives in RDX and R8 (16 bytes) ...
    public static let registerInputBytes = 16
    /// ... and, with XMM fast input (CPUID 0x40000003.EDX bit 4), continues into XMM0-XMM5:
    /// 112 bytes in all.
    public static let xmmInputBytes = 112

    /// The registers after a completed hypercall:
    ///
    /// - the result value goes to RAX (x64) or EDX:EAX (x86);
    /// - a rep call that succeeded in 64-bit mode also gets its control word back in RCX with
    ///   the rep start index advanced to the reps completed. The TLFS lists RCX as modified by
    ///   rep calls so that a continued call resumes where it stopped; SynthVM always completes
    ///   every rep before returning (which the TLFS permits and KVM does too), so the update
    ///   only makes RCX what a continuation would have left. A failed call leaves RCX alone
    ///   (nothing to resume). In x86 mode the start index would live in EDX:EAX, which the
    ///   result overwrites on completion, so there is nothing to write.
    /// - nothing else changes: fast input registers are preserved (TLFS), and no call SynthVM
    ///   implements has output, so XMM fast output (CPUID EDX bit 15) never writes RDX, R8 or
    ///   XMM0-5 here. A future call with fast output would return its output quadwords here.
    public static func complete(
        _ registers: VPRegisters, mode: VPExecutionMode, control: HvHypercallControl,
        result: HvHypercallResult
    ) -> VPRegisters {
        var r = registers
        switch mode {
        case .long64:
            r.rax = result.rawValue
            if control.callCode.isRep && result.status == .success {
                r.rcx = control.withRepStartIndex(result.repsCompleted).rawValue
            }
        case .protected32:
            (r.rdx, r.rax) = split(result.rawValue)
        case .other:
            break
        }
        return r
    }

    /// The result value as the guest sees it in `registers` after a call in `mode`.
    public static func result(in registers: VPRegisters, mode: VPExecutionMode) -> HvHypercallResult {
        switch mode {
        case .long64, .other: HvHypercallResult(rawValue: registers.rax)
        case .protected32: HvHypercallResult(rawValue: pair(high: registers.rdx, low: registers.rax))
        }
    }

    /// `high:low` from the low 32 bits of two registers.
    static func pair(high: UInt64, low: UInt64) -> UInt64 {
        (high & 0xFFFF_FFFF) << 32 | (low & 0xFFFF_FFFF)
    }

    /// A 64-bit value as (high, low) zero-extended 32-bit register values.
    static func split(_ value: UInt64) -> (high: UInt64, low: UInt64) {
        (value >> 32, value & 0xFFFF_FFFF)
    }
}
