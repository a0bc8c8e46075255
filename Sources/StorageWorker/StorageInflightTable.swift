import Atomics

/// The storage worker's in-flight table: every request taken from a channel's ring and not yet
/// completed, in memory the supervisor owns (the extra area of the worker's `WorkerStateRegion`),
/// so a restarted worker redoes what its predecessor took and never completes a request twice
/// (docs/storage.md, "Restart state"). Like vhost-user-blk's inflight region, with the ring
/// indices themselves as the commit points:
///
/// - take: the packet is copied into a free entry (state `taking`, mark = the guest-to-host
///   ring's read_index before the batch), then the ring's read_index is published, then the
///   entry becomes `taken`. A successor finding `taking` compares the mark with the ring: equal,
///   the read was never published and the ring still holds the packet (the entry is dropped);
///   different, the packet is gone from the ring and the entry is the request (it is `taken`).
/// - complete: the completion's bytes go into the entry (state `completing`, mark = the
///   host-to-guest ring's write_index before the batch), then into the ring, then the ring's
///   write_index is published, then the entry is freed. A successor finding `completing`
///   compares: equal, the guest never saw it (written again from the entry, no I/O redone);
///   different, published (freed).
/// - `taken` entries are done again from their packet: reads and writes are idempotent at the
///   block level, and the guest does not touch a buffer before its completion.
///
/// The state word is stored last with release ordering (a process killed mid-entry leaves the
/// previous state). Entry layout (host byte order; the successor checks every length):
///
/// ```
///    0 u32 state (0 free, 1 taking, 2 taken, 3 completing)   4 u32 relid
///    8 u64 transaction id
///   16 u32 ring mark                                         20 u16 packet type, u16 payload length (<= 64)
///   24 u32 flags (bit 0 GPA-direct range, bit 1 range refused (problem at 28), bit 2 vstor state after)
///   28 u32 problem (1 no buffer, 2 too many ranges, 3 too short, 4 page outside RAM, 5 bad range list)
///   32 u32 range byte count    36 u32 range byte offset      40 u32 PFN count (<= 257)
///   44 u32 completion length (<= 64)                         48 u64 vstor generation after
///   64 payload (64)   128 completion (64)   192 vstor state after (32)   256 PFNs (u64 each)
/// ```
public struct StorageInflightTable {
    public enum State: UInt32, Sendable {
        case free = 0, taking = 1, taken = 2, completing = 3
    }

    /// PFNs an entry holds: a 1 MiB transfer that does not start on a page boundary.
    public static let maxPFNs = 257
    public static let entrySize = 2368
    static let pfnOffset = 256

    /// One request as the service handles it: the packet's bytes as taken from the ring.
    public struct Request: Sendable {
        public var relID: UInt32
        public var transactionID: UInt64
        public var packetType: UInt16
        public var payload: [UInt8]
        /// The GPA-direct range (nil: in-band, or no range list at all).
        public var range: (byteCount: UInt32, byteOffset: UInt32, pfns: [UInt64])?
        /// The range list the ring packet had was refused while copying it (1...5, as above).
        public var problem: UInt32

        public init(relID: UInt32, transactionID: UInt64, packetType: UInt16, payload: [UInt8],
                    range: (byteCount: UInt32, byteOffset: UInt32, pfns: [UInt64])?, problem: UInt32) {
            self.relID = relID
            self.transactionID = transactionID
            self.packetType = packetType
            self.payload = payload
            self.range = range
            self.problem = problem
        }
    }

    let base: UnsafeMutableRawPointer
    public let capacity: Int

    /// Over `area` (the extra area of the state region); nil when it cannot hold one entry.
    public init?(area: UnsafeMutableRawBufferPointer) {
        guard let b = area.baseAddress, area.count >= Self.entrySize else { return nil }
        base = b
        capacity = area.count / Self.entrySize
    }

    @inline(__always) func entry(_ i: Int) -> UnsafeMutableRawPointer { base + i * Self.entrySize }

    func stateWord(_ i: Int) -> UnsafeAtomic<UInt32> { Self.atomic(entry(i), UInt32.self) }

    static func atomic<T: AtomicValue>(_ p: UnsafeMutableRawPointer, _: T.Type) -> UnsafeAtomic<T>
    where T.AtomicRepresentation.Value == T {
        UnsafeAtomic(at: p.assumingMemoryBound(to: T.AtomicRepresentation.self))
    }

    public func state(_ i: Int) -> State? { State(rawValue: stateWord(i).load(ordering: .acquiring)) }
    public func relID(_ i: Int) -> UInt32 { entry(i).load(fromByteOffset: 4, as: UInt32.self) }
    public func mark(_ i: Int) -> UInt32 { entry(i).load(fromByteOffset: 16, as: UInt32.self) }

    public func setState(_ i: Int, _ s: State) { stateWord(i).store(s.rawValue, ordering: .releasing) }

    /// Writes the request, then the state (`taking` with the read mark).
    public func recordTake(_ i: Int, _ r: Request, mark: UInt32) {
        let e = entry(i)
        e.storeBytes(of: r.relID, toByteOffset: 4, as: UInt32.self)
        e.storeBytes(of: r.transactionID, toByteOffset: 8, as: UInt64.self)
        e.storeBytes(of: mark, toByteOffset: 16, as: UInt32.self)
        e.storeBytes(of: r.packetType, toByteOffset: 20, as: UInt16.self)
        let n = min(r.payload.count, 64)
        e.storeBytes(of: UInt16(n), toByteOffset: 22, as: UInt16.self)
        var flags: UInt32 = 0
        if let range = r.range {
            flags |= 1
            let k = min(range.pfns.count, Self.maxPFNs)
            e.storeBytes(of: range.byteCount, toByteOffset: 32, as: UInt32.self)
            e.storeBytes(of: range.byteOffset, toByteOffset: 36, as: UInt32.self)
            e.storeBytes(of: UInt32(k), toByteOffset: 40, as: UInt32.self)
            range.pfns.withUnsafeBytes { (e + Self.pfnOffset).copyMemory(from: $0.baseAddress!, byteCount: k * 8) }
        }
        if r.problem != 0 { flags |= 2 }
        e.storeBytes(of: flags, toByteOffset: 24, as: UInt32.self)
        e.storeBytes(of: r.problem, toByteOffset: 28, as: UInt32.self)
        r.payload.withUnsafeBytes { (e + 64).copyMemory(from: $0.baseAddress!, byteCount: n) }
        setState(i, .taking)
    }

    /// The request in entry `i`, or nil when its lengths are out of range (a scribbled entry).
    public func request(_ i: Int) -> Request? {
        let e = entry(i)
        let n = Int(e.load(fromByteOffset: 22, as: UInt16.self))
        let flags = e.load(fromByteOffset: 24, as: UInt32.self)
        guard n <= 64, flags & ~7 == 0 else { return nil }
        var range: (UInt32, UInt32, [UInt64])?
        if flags & 1 != 0 {
            let k = Int(e.load(fromByteOffset: 40, as: UInt32.self))
            guard k <= Self.maxPFNs else { return nil }
            let pfns = (0..<k).map { (e + Self.pfnOffset).load(fromByteOffset: $0 * 8, as: UInt64.self) }
            range = (e.load(fromByteOffset: 32, as: UInt32.self), e.load(fromByteOffset: 36, as: UInt32.self), pfns)
        }
        let problem = flags & 2 != 0 ? e.load(fromByteOffset: 28, as: UInt32.self) : 0
        guard problem <= 5 else { return nil }
        return Request(relID: relID(i), transactionID: e.load(fromByteOffset: 8, as: UInt64.self),
                       packetType: e.load(fromByteOffset: 20, as: UInt16.self),
                       payload: Array(UnsafeRawBufferPointer(start: e + 64, count: n)), range: range, problem: problem)
    }

    /// Writes the completion (and the vstor state it leads to, if it changed one), then the
    /// state (`completing` with the write mark).
    public func recordCompletion(_ i: Int, _ bytes: UnsafeRawBufferPointer, mark: UInt32, vstorAfter: (UInt64, [UInt8])?) {
        let e = entry(i)
        let n = min(bytes.count, 64)
        e.storeBytes(of: UInt32(n), toByteOffset: 44, as: UInt32.self)
        (e + 128).copyMemory(from: bytes.baseAddress!, byteCount: n)
        var flags = e.load(fromByteOffset: 24, as: UInt32.self) & 3
        if let (generation, saved) = vstorAfter, saved.count == 32 {
            flags |= 4
            e.storeBytes(of: generation, toByteOffset: 48, as: UInt64.self)
            saved.withUnsafeBytes { (e + 192).copyMemory(from: $0.baseAddress!, byteCount: 32) }
        }
        e.storeBytes(of: flags, toByteOffset: 24, as: UInt32.self)
        e.storeBytes(of: mark, toByteOffset: 16, as: UInt32.self)
        setState(i, .completing)
    }

    /// The completion recorded in entry `i` (nil: a length out of range).
    public func completion(_ i: Int) -> [UInt8]? {
        let n = Int(entry(i).load(fromByteOffset: 44, as: UInt32.self))
        guard n >= 12, n <= 64 else { return nil }
        return Array(UnsafeRawBufferPointer(start: entry(i) + 128, count: n))
    }

    public func transactionID(_ i: Int) -> UInt64 { entry(i).load(fromByteOffset: 8, as: UInt64.self) }

    /// The vstor state a completing entry's packet led to, with its generation.
    public func vstorAfter(_ i: Int) -> (UInt64, [UInt8])? {
        let e = entry(i)
        guard e.load(fromByteOffset: 24, as: UInt32.self) & 4 != 0 else { return nil }
        return (e.load(fromByteOffset: 48, as: UInt64.self), Array(UnsafeRawBufferPointer(start: e + 192, count: 32)))
    }
}
