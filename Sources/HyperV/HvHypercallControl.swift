/// The 64-bit hypercall input value ("control word") a guest passes in RCX (x64) or EDX:EAX
/// (x86) (TLFS "Hypercall Inputs"; Linux `HV_HYPERCALL_*` masks):
///
/// | bits  | field |
/// |-------|-------|
/// | 15:0  | call code |
/// | 16    | fast (register-based input) |
/// | 26:17 | variable header size, in 8-byte units |
/// | 31:27 | RsvdZ |
/// | 43:32 | rep count |
/// | 47:44 | RsvdZ |
/// | 59:48 | rep start index |
/// | 63:60 | RsvdZ |
///
/// Bit 26: TLFS v6.0b narrows the variable header to 25:17 and calls bit 26 "IsNested"; TLFS
/// v5.0C and the current markdown TLFS draw 26:17, Linux masks `GENMASK_ULL(26, 17)` and KVM
/// decodes `var_cnt` the same way. We decide like Linux/KVM: bit 26 is the top bit of the
/// variable header size. (Linux's later nested-root flag is bit 31, which is reserved here; a
/// guest of SynthVM is never a nested root, so bit 31 set is a reserved-bit violation, as KVM
/// answers.) No call accepts a header anywhere near 2^9 quadwords, so either reading rejects
/// the same inputs.
public struct HvHypercallControl: RawRepresentable, Equatable, Hashable, Sendable {
    public var rawValue: UInt64

    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    public static let callCodeMask: UInt64 = 0xFFFF
    public static let fastBit: UInt64 = 1 << 16
    public static let variableHeaderShift: UInt64 = 17
    /// Bits 26:17 (10 bits).
    public static let variableHeaderMask: UInt64 = 0x3FF << 17
    public static let repCountShift: UInt64 = 32
    /// Bits 43:32 (12 bits).
    public static let repCountMask: UInt64 = 0xFFF << 32
    public static let repStartShift: UInt64 = 48
    /// Bits 59:48 (12 bits).
    public static let repStartMask: UInt64 = 0xFFF << 48
    /// RsvdZ bits 31:27, 47:44 and 63:60 (Linux `HV_HYPERCALL_RSVD_MASK`, which KVM tests
    /// before looking at the call code).
    public static let reservedMask: UInt64 = (0x1F << 27) | (0xF << 44) | (0xF << 60)

    /// The largest rep count or start index the 12-bit fields can carry.
    public static let maxRepCount: UInt16 = 0xFFF
    /// The largest variable header size (in quadwords) the 10-bit field can carry.
    public static let maxVariableHeaderSize: UInt16 = 0x3FF

    /// Builds a control word. Values wider than their field are truncated to it, as hardware
    /// registers would; a caller that needs to test reserved bits sets `rawValue` directly.
    public init(
        callCode: HvCallCode, fast: Bool = false, variableHeaderSize: UInt16 = 0,
        repCount: UInt16 = 0, repStartIndex: UInt16 = 0
    ) {
        var value = UInt64(callCode.rawValue)
        if fast { value |= Self.fastBit }
        value |= (UInt64(variableHeaderSize) << Self.variableHeaderShift) & Self.variableHeaderMask
        value |= (UInt64(repCount) << Self.repCountShift) & Self.repCountMask
        value |= (UInt64(repStartIndex) << Self.repStartShift) & Self.repStartMask
        self.rawValue = value
    }

    public var callCode: HvCallCode {
        HvCallCode(rawValue: UInt16(truncatingIfNeeded: rawValue & Self.callCodeMask))
    }

    /// Register-based ("fast") calling convention: the input block is in RDX/R8 (and, with XMM
    /// fast input, XMM0-5) instead of at the input GPA.
    public var isFast: Bool {
        rawValue & Self.fastBit != 0
    }

    /// Size of the variable input header in quadwords (bits 26:17).
    public var variableHeaderSize: UInt16 {
        UInt16(truncatingIfNeeded: (rawValue & Self.variableHeaderMask) >> Self.variableHeaderShift)
    }

    public var repCount: UInt16 {
        UInt16(truncatingIfNeeded: (rawValue & Self.repCountMask) >> Self.repCountShift)
    }

    public var repStartIndex: UInt16 {
        UInt16(truncatingIfNeeded: (rawValue & Self.repStartMask) >> Self.repStartShift)
    }

    /// The RsvdZ bits that are set; zero in a valid control word.
    public var reservedBits: UInt64 {
        rawValue & Self.reservedMask
    }

    public var hasReservedBits: Bool {
        reservedBits != 0
    }

    /// The same control word with a new rep start index: what a rep call leaves in RCX (x64)
    /// so that re-executing it continues where it stopped (TLFS "Hypercall Continuation").
    public func withRepStartIndex(_ index: UInt16) -> HvHypercallControl {
        var copy = self
        copy.rawValue &= ~Self.repStartMask
        copy.rawValue |= (UInt64(index) << Self.repStartShift) & Self.repStartMask
        return copy
    }

    /// The checks the TLFS makes common to every hypercall ("Common Hypercall Status Codes"),
    /// against what the TLFS says of `callCode`: nil if the control word is well formed, else
    /// HV_STATUS_INVALID_HYPERCALL_INPUT when
    /// - a RsvdZ bit is set;
    /// - a simple call carries a rep count or a rep start index (KVM: `rep_cnt || rep_idx`);
    /// - a rep call carries a rep count of zero, or a start index not below the count;
    /// - a call that takes no variable header carries a non-zero variable header size.
    public func validate(isRep: Bool, acceptsVariableHeader: Bool) -> HvStatus? {
        if hasReservedBits { return .invalidHypercallInput }
        if isRep {
            if repCount == 0 || repStartIndex >= repCount { return .invalidHypercallInput }
        } else if repCount != 0 || repStartIndex != 0 {
            return .invalidHypercallInput
        }
        if !acceptsVariableHeader && variableHeaderSize != 0 { return .invalidHypercallInput }
        return nil
    }

    /// `validate(isRep:acceptsVariableHeader:)` with the TLFS class of this word's own call code.
    public func validate() -> HvStatus? {
        validate(isRep: callCode.isRep, acceptsVariableHeader: callCode.acceptsVariableHeader)
    }
}

/// The 64-bit hypercall result value returned in RAX (x64) or EDX:EAX (x86) (TLFS "Hypercall
/// Outputs"): status in bits 15:0, reps completed in bits 43:32; everything else is zero
/// when written (callers must ignore it when read).
///
/// Reps completed is absolute, not relative to the start index: a call started at index 5
/// with count 10 that finishes reports 10.
public struct HvHypercallResult: Equatable, Hashable, Sendable {
    public var status: HvStatus
    public var repsCompleted: UInt16

    public init(status: HvStatus, repsCompleted: UInt16 = 0) {
        self.status = status
        self.repsCompleted = repsCompleted
    }

    /// Decodes a result value, ignoring the bits callers must ignore.
    public init(rawValue: UInt64) {
        self.status = HvStatus(rawValue: UInt16(truncatingIfNeeded: rawValue))
        self.repsCompleted = UInt16(
            truncatingIfNeeded: (rawValue & HvHypercallControl.repCountMask) >> HvHypercallControl.repCountShift)
    }

    /// The value to write back; reps completed is truncated to its 12-bit field.
    public var rawValue: UInt64 {
        UInt64(status.rawValue)
            | ((UInt64(repsCompleted) << HvHypercallControl.repCountShift) & HvHypercallControl.repCountMask)
    }
}
