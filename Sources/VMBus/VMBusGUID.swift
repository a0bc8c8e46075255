/// A GUID as VMBus carries it (`guid_t`): 16 bytes in Microsoft wire order, the first three
/// fields little-endian. Kept as the bytes themselves, so a round trip is exact.
public struct VMBusGUID: Equatable, Hashable, Sendable, CustomStringConvertible {
    public static let size = 16

    /// The wire bytes; always 16.
    public private(set) var bytes: [UInt8]

    public static let zero = VMBusGUID(wireBytes: [UInt8](repeating: 0, count: 16))!

    /// Nil unless exactly 16 bytes.
    public init?(wireBytes: [UInt8]) {
        guard wireBytes.count == Self.size else { return nil }
        bytes = wireBytes
    }

    /// From the canonical text form "aabbccdd-eeff-gghh-iijj-kkllmmnnoopp"; nil when malformed.
    public init?(_ text: String) {
        let hex = Array(text.utf8).filter { $0 != UInt8(ascii: "-") }
        guard text.utf8.count == 36, hex.count == 32 else { return nil }
        var raw: [UInt8] = []
        for i in stride(from: 0, to: 32, by: 2) {
            guard let hi = Self.nibble(hex[i]), let lo = Self.nibble(hex[i + 1]) else { return nil }
            raw.append(hi << 4 | lo)
        }
        // Data1 (4), Data2 (2) and Data3 (2) are little-endian on the wire.
        bytes = [raw[3], raw[2], raw[1], raw[0], raw[5], raw[4], raw[7], raw[6]] + raw[8...]
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    public var description: String {
        let order = [3, 2, 1, 0, -1, 5, 4, -1, 7, 6, -1, 8, 9, -1, 10, 11, 12, 13, 14, 15]
        let digits = Array("0123456789abcdef")
        var s = ""
        for i in order {
            if i < 0 { s.append("-"); continue }
            s.append(digits[Int(bytes[i] >> 4)])
            s.append(digits[Int(bytes[i] & 0xF)])
        }
        return s
    }
}
