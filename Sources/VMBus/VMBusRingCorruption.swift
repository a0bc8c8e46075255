/// What a ring side found wrong with the peer's writes. The first one is reported once; then
/// the ring is cut off and touches memory no more (the `RecordRing` rule).
public enum VMBusRingCorruption: Error, Equatable, Sendable, CustomStringConvertible {
    /// An index at or past the data size, or not a multiple of 8.
    case indexOutOfRange(field: String, value: UInt32, dataCount: Int)
    /// The peer wrote this side's index.
    case ownIndexOverwritten(field: String, expected: UInt32, found: UInt32)
    /// The peer's index moved somewhere it cannot: a writer taking back published data or
    /// running over unread data, a reader passing the write index.
    case peerIndexMovedBack(field: String, from: UInt32, to: UInt32)
    /// Fewer bytes published than a descriptor and a trailer.
    case truncatedPacket(available: Int)
    /// offset8 below 2 (inside the descriptor) or past len8.
    case badPayloadOffset(offset8: UInt16, len8: UInt16)
    /// len8 * 8 plus the trailer runs past the published bytes.
    case packetPastWriteIndex(length: Int, available: Int)
    /// The trailer is not `start << 32`.
    case badTrailer(found: UInt64, expected: UInt64)

    public var description: String {
        switch self {
        case .indexOutOfRange(let f, let v, let n): return "\(f) \(v) is not an 8-aligned offset below \(n)"
        case .ownIndexOverwritten(let f, let e, let v): return "\(f) overwritten by the peer: \(v), expected \(e)"
        case .peerIndexMovedBack(let f, let from, let to): return "\(f) moved from \(from) to \(to)"
        case .truncatedPacket(let n): return "\(n) bytes published: less than a packet"
        case .badPayloadOffset(let o, let l): return "offset8 \(o) with len8 \(l)"
        case .packetPastWriteIndex(let l, let a): return "packet of \(l) bytes with \(a) published"
        case .badTrailer(let f, let e): return "trailer 0x\(String(f, radix: 16)), expected 0x\(String(e, radix: 16))"
        }
    }
}
