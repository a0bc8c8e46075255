import HyperV

/// The input parameter block of one hypercall, as little-endian bytes, wherever it came from:
/// guest RAM at the input GPA (memory-based call) or the registers (fast call). Handlers parse
/// this one shape, so the slow and fast forms of a call cannot drift apart.
///
/// The block holds exactly the bytes the call's fixed header and declared variable header
/// cover, so a handler reading inside its own layout never runs off the end.
public struct HypercallInputBlock: Equatable, Sendable {
    public var bytes: [UInt8]

    public init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    public static let pageSize: UInt64 = 4096
    /// TLFS "Alignment Requirements": GPA pointers must be 8-byte aligned.
    public static let gpaAlignment: UInt64 = 8

    /// Checks a memory-based parameter block of `size` bytes at `gpa` (TLFS "Alignment
    /// Requirements" and "Common Hypercall Status Codes"). nil if usable, else
    /// HV_STATUS_INVALID_ALIGNMENT when the GPA is not 8-byte aligned, the block spans a page
    /// boundary, or it is not entirely guest RAM ("not within the bounds of the GPA space").
    ///
    /// KVM answers a failed read of the IPI input with INVALID_HYPERCALL_INPUT but a failed
    /// read of the HvSignalEvent input with INVALID_ALIGNMENT; we follow the TLFS's single
    /// answer for all three cases. A zero-size block is never checked: the TLFS says the
    /// hypervisor ignores the GPA of a call without input (or output) parameters.
    public static func validate(gpa: UInt64, size: Int, memory: any PartitionMemory) -> HvStatus? {
        guard size > 0 else { return nil }
        guard gpa % gpaAlignment == 0 else { return .invalidAlignment }
        guard (gpa % pageSize) + UInt64(size) <= pageSize else { return .invalidAlignment }
        guard memory.contains(gpa: gpa, length: UInt64(size)) else { return .invalidAlignment }
        return nil
    }

    /// Whether the input block [inputGPA, +inputSize) and output block [outputGPA, +outputSize)
    /// overlap, which the TLFS forbids. Empty blocks overlap nothing. Both blocks have already
    /// passed `validate` (each inside one page), so the additions cannot overflow.
    public static func overlaps(inputGPA: UInt64, inputSize: Int, outputGPA: UInt64, outputSize: Int) -> Bool {
        guard inputSize > 0, outputSize > 0 else { return false }
        return inputGPA < outputGPA + UInt64(outputSize) && outputGPA < inputGPA + UInt64(inputSize)
    }

    /// Reads a memory-based block after `validate`: the block, or the status to answer.
    public static func read(gpa: UInt64, size: Int, memory: any PartitionMemory) -> Result<HypercallInputBlock, HvStatus> {
        if let status = validate(gpa: gpa, size: size, memory: memory) { return .failure(status) }
        guard size > 0 else { return .success(HypercallInputBlock(bytes: [])) }
        // Another VP may unmap or shrink RAM between the check and the read; a nil read is the
        // same "not guest RAM" answer.
        guard let bytes = memory.read(gpa: gpa, count: size), bytes.count == size else {
            return .failure(.invalidAlignment)
        }
        return .success(HypercallInputBlock(bytes: bytes))
    }

    /// The first `size` bytes of the fast-call register block: RDX, R8, then XMM0-XMM5 (low
    /// half first). nil when the block needs XMM quadwords that `xmm` does not hold, or when
    /// `size` exceeds the 112 bytes the registers can carry.
    public static func fromRegisters(inputValue: UInt64, outputValue: UInt64, xmm: [UInt64], size: Int) -> HypercallInputBlock? {
        guard size >= 0, size <= HypercallABI.xmmInputBytes else { return nil }
        let quadwordsNeeded = (size + 7) / 8
        let registers = [inputValue, outputValue]
        let xmmNeeded = max(0, quadwordsNeeded - registers.count)
        guard xmm.count >= xmmNeeded else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(quadwordsNeeded * 8)
        for quadword in (registers + xmm.prefix(xmmNeeded)).prefix(quadwordsNeeded) {
            for shift in stride(from: 0, to: 64, by: 8) {
                bytes.append(UInt8(truncatingIfNeeded: quadword >> UInt64(shift)))
            }
        }
        return HypercallInputBlock(bytes: Array(bytes.prefix(size)))
    }

    // MARK: Little-endian fields. Out-of-range reads (a handler bug, never guest-controlled:
    // the block size is fixed by the handler) read as zero rather than trap the monitor.

    public func u16(at offset: Int) -> UInt16 { UInt16(truncatingIfNeeded: field(offset, 2)) }
    public func u32(at offset: Int) -> UInt32 { UInt32(truncatingIfNeeded: field(offset, 4)) }
    public func u64(at offset: Int) -> UInt64 { field(offset, 8) }

    /// `count` quadwords starting at byte `offset`.
    public func quadwords(from offset: Int, count: Int) -> [UInt64] {
        (0..<max(count, 0)).map { u64(at: offset + 8 * $0) }
    }

    private func field(_ offset: Int, _ width: Int) -> UInt64 {
        guard offset >= 0, width <= 8, offset <= bytes.count - width else {
            assertionFailure("hypercall input read at \(offset)+\(width) beyond \(bytes.count) bytes")
            return 0
        }
        var value: UInt64 = 0
        for index in 0..<width {
            value |= UInt64(bytes[offset + index]) << UInt64(8 * index)
        }
        return value
    }
}
