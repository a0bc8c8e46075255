/// Parsing of the `--memory` command-line value.
///
/// Guest RAM is backed by whole host pages and described to the guest in an e820 map, so the
/// accepted syntax is deliberately small and binary: a decimal byte count, or a decimal count
/// followed by `K`, `M` or `G` (any case), optionally spelled `KiB`, `MiB`, `GiB`. All units are
/// powers of 1024. Decimal units such as `MB` and larger units such as `T` are rejected rather
/// than guessed at: a VMM that silently picks the wrong meaning of "MB" hands the guest a memory
/// map that disagrees with what the operator asked for.
public enum MemorySize {
    /// Guest memory is mapped in 4 KiB pages; anything else cannot be backed exactly.
    public static let granularity: UInt64 = 4096

    /// Parses `text` into a byte count.
    ///
    /// The result is non-zero and a multiple of ``granularity``. Whether it is a size the machine
    /// can actually run with is ``GuestMemoryLayout``'s decision, not this parser's.
    public static func parse(_ text: String) throws(MemorySizeError) -> UInt64 {
        let utf8 = Array(text.utf8)
        if utf8.isEmpty { throw .empty }

        var index = 0
        var number: UInt64 = 0
        while index < utf8.count, utf8[index] >= UInt8(ascii: "0"), utf8[index] <= UInt8(ascii: "9") {
            let digit = UInt64(utf8[index] - UInt8(ascii: "0"))
            let (times10, overflow1) = number.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(digit)
            if overflow1 || overflow2 { throw .overflow(text) }
            number = sum
            index += 1
        }
        if index == 0 { throw .invalidSyntax(text) }

        let suffix = utf8[index...]
        let multiplier: UInt64
        switch suffix.count {
        case 0:
            multiplier = 1
        case 1, 3:
            guard let unit = unitMultiplier(suffix[suffix.startIndex]) else {
                throw isLetter(suffix[suffix.startIndex]) ? .unsupportedUnit(text) : .invalidSyntax(text)
            }
            if suffix.count == 3 {
                // Only the binary spelling "iB" (any case) may follow the unit letter.
                let i = suffix[suffix.startIndex + 1] | 0x20
                let b = suffix[suffix.startIndex + 2] | 0x20
                guard i == UInt8(ascii: "i"), b == UInt8(ascii: "b") else {
                    throw .unsupportedUnit(text)
                }
            }
            multiplier = unit
        default:
            throw suffix.allSatisfy(isLetter) ? .unsupportedUnit(text) : .invalidSyntax(text)
        }

        let (bytes, overflow) = number.multipliedReportingOverflow(by: multiplier)
        if overflow { throw .overflow(text) }
        if bytes == 0 { throw .zero(text) }
        if bytes % granularity != 0 { throw .notPageMultiple(text) }
        return bytes
    }

    private static func unitMultiplier(_ byte: UInt8) -> UInt64? {
        switch byte | 0x20 {  // ASCII lower-case; digits and punctuation never map to k/m/g.
        case UInt8(ascii: "k"): return 1 << 10
        case UInt8(ascii: "m"): return 1 << 20
        case UInt8(ascii: "g"): return 1 << 30
        default: return nil
        }
    }

    private static func isLetter(_ byte: UInt8) -> Bool {
        let lower = byte | 0x20
        return lower >= UInt8(ascii: "a") && lower <= UInt8(ascii: "z")
    }
}

/// Why a `--memory` value was refused. Every message names the offending text so the operator
/// can see which argument to fix.
public enum MemorySizeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The value was the empty string.
    case empty
    /// Not a decimal number with an optional unit (e.g. "abc", "-1M", "1.5G").
    case invalidSyntax(String)
    /// A unit other than K, M, G (or KiB, MiB, GiB), e.g. "2T" or "256MB".
    case unsupportedUnit(String)
    /// The value does not fit in 64 bits.
    case overflow(String)
    /// The value is zero bytes.
    case zero(String)
    /// The value is not a whole number of 4 KiB pages.
    case notPageMultiple(String)

    public var description: String {
        switch self {
        case .empty:
            return "memory size is empty (expected e.g. 256M or 1G)"
        case .invalidSyntax(let text):
            return "memory size \"\(text)\" is not a whole number with an optional K, M or G unit"
        case .unsupportedUnit(let text):
            return "memory size \"\(text)\" has an unsupported unit (use K, M or G, or KiB, MiB, GiB)"
        case .overflow(let text):
            return "memory size \"\(text)\" is too large to represent"
        case .zero(let text):
            return "memory size \"\(text)\" is zero"
        case .notPageMultiple(let text):
            return "memory size \"\(text)\" is not a multiple of 4 KiB"
        }
    }
}
