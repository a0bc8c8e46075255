/// Little-endian field access for control-message layouts: a writer that builds a message of a
/// fixed size, and a reader that checks the size once and then reads at explicit offsets.

/// Builds one control message: the 8-byte header, then fields at their offsets.
struct MessageWriter {
    private(set) var bytes: [UInt8]

    init(type: VMBusMessageType, size: Int) {
        bytes = [UInt8](repeating: 0, count: size)
        u32(type.rawValue, at: 0)
    }

    mutating func u8(_ v: UInt8, at o: Int) { bytes[o] = v }
    mutating func u16(_ v: UInt16, at o: Int) { store(UInt64(v), at: o, count: 2) }
    mutating func u32(_ v: UInt32, at o: Int) { store(UInt64(v), at: o, count: 4) }
    mutating func u64(_ v: UInt64, at o: Int) { store(v, at: o, count: 8) }

    mutating func raw(_ v: [UInt8], at o: Int, count: Int) {
        for i in 0..<count { bytes[o + i] = i < v.count ? v[i] : 0 }
    }

    mutating func append(_ v: UInt64) {
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    private mutating func store(_ v: UInt64, at o: Int, count: Int) {
        for i in 0..<count { bytes[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
    }
}

/// Reads one control message the guest wrote. `init` checks the order that every decoder
/// shares: at most 240 bytes, a whole header, the expected type, at least `minimumSize`
/// bytes (bytes past the layout are allowed and ignored, as Hyper-V and OpenVMM do). After
/// that every read at an offset below `minimumSize` is in bounds; a read past the end (a
/// layout bug, never guest data) yields 0 rather than a trap.
struct MessageReader {
    let bytes: [UInt8]

    init(_ bytes: [UInt8], type: VMBusMessageType, minimumSize: Int) throws(VMBusMessageError) {
        guard bytes.count <= VMBusMessageHeader.maxMessageSize else { throw .oversized(count: bytes.count) }
        guard bytes.count >= VMBusMessageHeader.size else { throw .truncated(type: nil, needed: VMBusMessageHeader.size, available: bytes.count) }
        let found = VMBusMessageType(rawValue: Self.load(bytes, 0, 4).map { UInt32($0) } ?? 0)
        guard found == type else { throw .unexpectedType(found: found, expected: type) }
        guard bytes.count >= minimumSize else { throw .truncated(type: type, needed: minimumSize, available: bytes.count) }
        self.bytes = bytes
    }

    var count: Int { bytes.count }

    func u8(at o: Int) -> UInt8 { o >= 0 && o < bytes.count ? bytes[o] : 0 }
    func u16(at o: Int) -> UInt16 { UInt16(truncatingIfNeeded: Self.load(bytes, o, 2) ?? 0) }
    func u32(at o: Int) -> UInt32 { UInt32(truncatingIfNeeded: Self.load(bytes, o, 4) ?? 0) }
    func u64(at o: Int) -> UInt64 { Self.load(bytes, o, 8) ?? 0 }

    func raw(at o: Int, count: Int) -> [UInt8] {
        guard o >= 0, count >= 0, o <= bytes.count, count <= bytes.count - o else { return [UInt8](repeating: 0, count: max(count, 0)) }
        return Array(bytes[o..<(o + count)])
    }

    func guid(at o: Int) -> VMBusGUID { VMBusGUID(wireBytes: raw(at: o, count: 16)) ?? .zero }

    /// The whole u64s from `o` to the end of the message (a partial last u64 is not one).
    func u64s(from o: Int, limit: Int) -> [UInt64] {
        guard o <= bytes.count else { return [] }
        let n = min((bytes.count - o) / 8, max(limit, 0))
        return (0..<n).map { u64(at: o + 8 * $0) }
    }

    static func load(_ b: [UInt8], _ o: Int, _ n: Int) -> UInt64? {
        guard o >= 0, o <= b.count, n <= b.count - o else { return nil }
        var v: UInt64 = 0
        for i in 0..<n { v |= UInt64(b[o + i]) << (8 * UInt64(i)) }
        return v
    }
}

/// Why a control message did not decode.
public enum VMBusMessageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// More than the 240 bytes a SynIC message carries.
    case oversized(count: Int)
    /// Shorter than its header (`type` nil) or than its layout.
    case truncated(type: VMBusMessageType?, needed: Int, available: Int)
    /// A type this module has no guest-to-host layout for (host-to-guest types, hv_sock, 0, >= 25).
    case unsupportedType(VMBusMessageType)
    /// Asked to decode one layout, found another type.
    case unexpectedType(found: VMBusMessageType, expected: VMBusMessageType)

    public var description: String {
        switch self {
        case .oversized(let n): return "message of \(n) bytes exceeds \(VMBusMessageHeader.maxMessageSize)"
        case .truncated(let t, let need, let have):
            return "\(t.map { "\($0)" } ?? "message") of \(have) bytes is shorter than \(need)"
        case .unsupportedType(let t): return "unsupported guest message \(t)"
        case .unexpectedType(let f, let e): return "message type \(f), expected \(e)"
        }
    }
}
