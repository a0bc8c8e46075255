/// `HV_VP_SET`, the processor set of the "Ex" hypercalls (TLFS "HV_VP_SET"; Linux
/// `struct hv_vpset { u64 format; u64 valid_bank_mask; u64 bank_contents[]; }`):
///
/// - format 0 (`HV_GENERIC_SET_SPARSE_4K`): VP indices are split into banks of 64 (bank = VP
///   index / 64). Bit b of ValidBanksMask says bank b is present; the present banks follow in
///   ascending bank order, one u64 mask each. A present bank may be all zero.
/// - format 1 (`HV_GENERIC_SET_ALL`): every VP of the partition. Linux sends
///   ValidBanksMask = 0 and no banks.
///
/// The guest controls every byte of it, so parsing is bounds-checked and never traps. The
/// number of bank quadwords the caller supplied comes from outside the set (the hypercall's
/// variable header size), and must equal the number of set bits in ValidBanksMask: that is how
/// KVM (`kvm_hv_send_ipi`, `kvm_hv_flush_tlb`) decides, for both formats.
public struct HvVPSet: Equatable, Hashable, Sendable {
    /// `enum HV_GENERIC_SET_FORMAT`.
    public enum Format: UInt64, Equatable, Hashable, Sendable {
        case sparse4K = 0
        case all = 1
    }

    /// ValidBanksMask is a u64, so at most 64 banks (VP indices 0...4095).
    public static let maxBanks = 64
    /// Bytes before the first bank: Format and ValidBanksMask.
    public static let headerSize = 16

    public var format: Format
    public var validBankMask: UInt64
    /// One mask per set bit of `validBankMask`, in ascending bank order.
    public var bankContents: [UInt64]

    public init(format: Format, validBankMask: UInt64, bankContents: [UInt64]) {
        self.format = format
        self.validBankMask = validBankMask
        self.bankContents = bankContents
    }

    /// The `HV_GENERIC_SET_ALL` set as Linux builds it.
    public static let all = HvVPSet(format: .all, validBankMask: 0, bankContents: [])

    /// A sparse set holding exactly `vps`, with only non-empty banks present (indices >= 4096
    /// cannot be expressed and are dropped). For tests and fake guests.
    public init<S: Sequence>(sparse vps: S) where S.Element == UInt32 {
        var banks = [UInt64](repeating: 0, count: Self.maxBanks)
        for vp in vps where vp < UInt32(Self.maxBanks * 64) {
            banks[Int(vp / 64)] |= 1 << UInt64(vp % 64)
        }
        var mask: UInt64 = 0
        for (bank, bits) in banks.enumerated() where bits != 0 { mask |= 1 << UInt64(bank) }
        self.init(format: .sparse4K, validBankMask: mask, bankContents: banks.filter { $0 != 0 })
    }

    /// Parses a set laid out as quadwords (Format, ValidBanksMask, banks...), as it appears at
    /// the input GPA or in the fast-call registers. `bankCount` is the number of bank quadwords
    /// the caller declared (the variable header size); `quadwords` may hold more (unused XMM
    /// halves), never fewer.
    public static func parse<C: RandomAccessCollection>(
        quadwords: C, bankCount: Int
    ) throws(HvVPSetError) -> HvVPSet where C.Element == UInt64, C.Index == Int {
        guard bankCount >= 0 else { throw .bankCountMismatch(declared: bankCount, validBanks: 0) }
        let needed = 2 + bankCount
        guard quadwords.count >= needed else {
            throw .truncated(neededQuadwords: needed, availableQuadwords: quadwords.count)
        }
        let base = quadwords.startIndex
        let rawFormat = quadwords[base]
        let mask = quadwords[base + 1]
        let validBanks = mask.nonzeroBitCount
        guard validBanks == bankCount else {
            throw .bankCountMismatch(declared: bankCount, validBanks: validBanks)
        }
        guard let format = Format(rawValue: rawFormat) else { throw .unknownFormat(rawFormat) }
        let banks = Array(quadwords[(base + 2)..<(base + needed)])
        return HvVPSet(format: format, validBankMask: mask, bankContents: banks)
    }

    /// Parses a set from little-endian bytes starting at `offset`.
    public static func parse(bytes: [UInt8], offset: Int = 0, bankCount: Int) throws(HvVPSetError) -> HvVPSet {
        guard offset >= 0, offset <= bytes.count else {
            throw .truncated(neededQuadwords: 2 + max(bankCount, 0), availableQuadwords: 0)
        }
        let available = (bytes.count - offset) / 8
        var quadwords: [UInt64] = []
        let wanted = min(available, 2 + max(bankCount, 0))
        quadwords.reserveCapacity(wanted)
        for index in 0..<wanted {
            var value: UInt64 = 0
            let start = offset + index * 8
            for byte in 0..<8 {
                value |= UInt64(bytes[start + byte]) << UInt64(8 * byte)
            }
            quadwords.append(value)
        }
        return try parse(quadwords: quadwords, bankCount: bankCount)
    }

    /// The set as quadwords, as a guest would write it.
    public var quadwords: [UInt64] {
        [format.rawValue, validBankMask] + bankContents
    }

    /// Whether VP `vp` is in the set. For a sparse set, a bank present in ValidBanksMask but
    /// missing from `bankContents` (only possible for a hand-built value) counts as empty.
    public func contains(_ vp: UInt32) -> Bool {
        switch format {
        case .all:
            return true
        case .sparse4K:
            let bank = Int(vp / 64)
            guard bank < Self.maxBanks, validBankMask & (1 << UInt64(bank)) != 0 else { return false }
            let position = (validBankMask & ((1 << UInt64(bank)) - 1)).nonzeroBitCount
            guard position < bankContents.count else { return false }
            return bankContents[position] & (1 << UInt64(vp % 64)) != 0
        }
    }

    /// The members of the set among VP indices 0..<vpCount, ascending. Indices at or beyond
    /// `vpCount` are dropped silently, as KVM's `sparse_set_to_vcpu_mask` drops them.
    public func vpIndices(vpCount: Int) -> [UInt32] {
        let limit = min(max(vpCount, 0), Self.maxBanks * 64)
        switch format {
        case .all:
            return (0..<limit).map { UInt32($0) }
        case .sparse4K:
            var result: [UInt32] = []
            var position = 0
            for bank in 0..<Self.maxBanks where validBankMask & (1 << UInt64(bank)) != 0 {
                defer { position += 1 }
                guard position < bankContents.count else { break }
                var bits = bankContents[position]
                while bits != 0 {
                    let bit = bits.trailingZeroBitCount
                    bits &= bits - 1
                    let vp = bank * 64 + bit
                    if vp < limit { result.append(UInt32(vp)) }
                }
            }
            return result
        }
    }
}

/// Why an `HV_VP_SET` from the guest was refused.
public enum HvVPSetError: Error, Equatable, Hashable, Sendable {
    /// Fewer quadwords than Format + ValidBanksMask + the declared banks.
    case truncated(neededQuadwords: Int, availableQuadwords: Int)
    /// The declared bank count (variable header size) is not the number of set bits in
    /// ValidBanksMask.
    case bankCountMismatch(declared: Int, validBanks: Int)
    /// Format is neither SPARSE_4K (0) nor ALL (1).
    case unknownFormat(UInt64)

    /// The hypercall status to answer.
    ///
    /// - truncated, bankCountMismatch: HV_STATUS_INVALID_HYPERCALL_INPUT, as KVM answers both
    ///   (`hc->var_cnt != hweight64(valid_bank_mask)`; a fast call whose banks do not fit in the
    ///   XMM registers). Both are disagreements between the control word and the input block.
    /// - unknownFormat: HV_STATUS_INVALID_PARAMETER. KVM does not check the format (it treats
    ///   anything but ALL as sparse); the TLFS names no status. A bad value inside the input
    ///   block is what the TLFS reports as INVALID_PARAMETER elsewhere (e.g. HvCallPostMessage's
    ///   message type), so we refuse the value instead of guessing what the guest meant.
    public var status: HvStatus {
        switch self {
        case .truncated, .bankCountMismatch: .invalidHypercallInput
        case .unknownFormat: .invalidParameter
        }
    }
}
