import Atomics
import IPC

/// The SynIC connection table in the shared region: connection id -> kind and owner. The router
/// owns it (creates and removes connections); the monitor reads it on every HvPostMessage and
/// HvSignalEvent to answer synchronously (HV_STATUS_INVALID_CONNECTION_ID,
/// HV_STATUS_INSUFFICIENT_BUFFERS) without a round trip to the router.
///
/// An open-addressed hash table of `slots` entries; connection id c starts probing at
/// c mod slots. Entry (64 bytes):
///
/// ```
///  0 u32 sequence (seqlock: odd while the router writes the entry)
///  4 u32 connection id   8 u32 kind (0 never used, 1 message, 2 event, 3 removed)
/// 12 u32 message buffers (capacity)   16 u32 owner (0: the router)
/// 20 u32 router data (the monitor ignores it): for the test device's connections, bit 31 set,
///    the target VP in bits 8-23 and the SINT in bits 0-7 (a restarted router reads its routes here)
/// 24 u32 buffers in flight (monitor +1 per accepted message, router -1 when it is done with it)
/// 28 u32 event pending (monitor sets 1 on HvSignalEvent, the owner swaps it back to 0)
/// ```
///
/// A probe stops at a never-used entry; removed entries keep the chain intact. The sequence
/// doubles as the entry's generation: a posted message carries the one it was accepted under,
/// so a message for a connection that was removed (and perhaps re-created) meanwhile is dropped.
public struct ConnectionTable: Sendable {
    public static let slots = 256
    public static let entrySize = 64
    /// Message buffers one connection may have in flight, at most (a bound on what a hostile
    /// router can make the monitor believe).
    public static let maxCapacity: UInt32 = 64

    public enum Kind: UInt32, Sendable {
        case message = 1
        case event = 2
    }

    static let neverUsed: UInt32 = 0
    static let removed: UInt32 = 3

    /// A consistent copy of a live entry.
    public struct Entry: Equatable, Sendable {
        public var index: Int
        public var generation: UInt32
        public var connectionID: UInt32
        public var kind: Kind
        public var capacity: UInt32
        public var owner: UInt32
    }

    let region: SynICRegion

    func offset(_ index: Int) -> Int { region.connectionsOffset + index * Self.entrySize }
    func u32(_ index: Int, _ field: Int) -> UnsafeAtomic<UInt32> { region.u32(offset(index) + field) }

    static func home(_ id: UInt32) -> Int { Int(id % UInt32(slots)) }

    /// Reads entry `index` under its seqlock: (sequence, id, raw kind, capacity, owner), or nil
    /// when no consistent copy came within a bounded number of tries.
    func read(_ index: Int) -> (UInt32, UInt32, UInt32, UInt32, UInt32)? {
        let seq = u32(index, 0)
        for _ in 0..<64 {
            let s1 = seq.load(ordering: .acquiring)
            if s1 & 1 != 0 { continue }
            let id = u32(index, 4).load(ordering: .relaxed)
            let kind = u32(index, 8).load(ordering: .relaxed)
            let capacity = u32(index, 12).load(ordering: .relaxed)
            let owner = u32(index, 16).load(ordering: .relaxed)
            atomicMemoryFence(ordering: .acquiring)
            if seq.load(ordering: .relaxed) == s1 { return (s1, id, kind, capacity, owner) }
        }
        return nil
    }

    /// Monitor: the live connection `id`, if the router has published one.
    public func find(_ id: UInt32) -> Entry? {
        var i = Self.home(id)
        for _ in 0..<Self.slots {
            guard let (seq, eid, rawKind, capacity, owner) = read(i) else { return nil }
            if rawKind == Self.neverUsed { return nil }
            if eid == id, let kind = Kind(rawValue: rawKind) {
                return Entry(index: i, generation: seq, connectionID: id, kind: kind,
                             capacity: min(capacity, Self.maxCapacity), owner: owner)
            }
            i = (i + 1) % Self.slots
        }
        return nil
    }

    /// Monitor: takes one of the connection's message buffers; false when all are in flight.
    public func reserveBuffer(_ entry: Entry) -> Bool {
        let inFlight = u32(entry.index, 24)
        var v = inFlight.load(ordering: .relaxed)
        while v < entry.capacity {
            let (done, now) = inFlight.weakCompareExchange(expected: v, desired: v + 1, ordering: .acquiringAndReleasing)
            if done { return true }
            v = now
        }
        return false
    }

    /// Router (or the monitor, when the ring refused the message): gives a buffer back.
    public func releaseBuffer(index: Int) {
        guard (0..<Self.slots).contains(index) else { return }
        let inFlight = u32(index, 24)
        var v = inFlight.load(ordering: .relaxed)
        while v > 0 {
            let (done, now) = inFlight.weakCompareExchange(expected: v, desired: v - 1, ordering: .acquiringAndReleasing)
            if done { return }
            v = now
        }
    }

    /// Monitor: marks the event connection signalled. True on 0->1 (ring the owner's doorbell).
    public func setEventPending(_ entry: Entry) -> Bool {
        u32(entry.index, 28).exchange(1, ordering: .acquiringAndReleasing) == 0
    }

    /// Owner: takes entry `index`'s pending signal (true if there was one).
    public func takeEventPending(index: Int) -> Bool {
        guard (0..<Self.slots).contains(index) else { return false }
        return u32(index, 28).exchange(0, ordering: .acquiringAndReleasing) != 0
    }

    // MARK: The router's side (the only writer of ids, kinds and sequences)

    /// Writes entry `index` under its seqlock; buffers in flight and the pending flag start at 0.
    func write(_ index: Int, id: UInt32, kind: UInt32, capacity: UInt32, owner: UInt32, routerData: UInt32 = 0) {
        let seq = u32(index, 0)
        let s = seq.load(ordering: .relaxed)
        seq.store(s | 1, ordering: .relaxed)
        atomicMemoryFence(ordering: .releasing)
        u32(index, 4).store(id, ordering: .relaxed)
        u32(index, 8).store(kind, ordering: .relaxed)
        u32(index, 12).store(capacity, ordering: .relaxed)
        u32(index, 16).store(owner, ordering: .relaxed)
        u32(index, 20).store(routerData, ordering: .relaxed)
        u32(index, 24).store(0, ordering: .relaxed)
        u32(index, 28).store(0, ordering: .relaxed)
        seq.store((s | 1) &+ 1, ordering: .releasing)
    }

    /// Router: publishes connection `id` and returns its entry index, or nil when the table is
    /// full. The caller knows `id` is not live (it keeps its own map).
    public func insert(id: UInt32, kind: Kind, capacity: UInt32, owner: UInt32 = 0, routerData: UInt32 = 0) -> Int? {
        var i = Self.home(id)
        for _ in 0..<Self.slots {
            let k = u32(i, 8).load(ordering: .relaxed)
            if k == Self.neverUsed || k == Self.removed {
                write(i, id: id, kind: kind.rawValue, capacity: min(capacity, Self.maxCapacity), owner: owner,
                      routerData: routerData)
                return i
            }
            i = (i + 1) % Self.slots
        }
        return nil
    }

    /// Router: removes the connection at `index` (it becomes a tombstone).
    public func remove(index: Int) {
        guard (0..<Self.slots).contains(index) else { return }
        write(index, id: 0, kind: Self.removed, capacity: 0, owner: 0)
    }

    /// Router, after a restart: every live entry with its router data (the table is the router's
    /// own connection map; a predecessor wrote it, so callers check what they use).
    public func liveEntries() -> [(entry: Entry, routerData: UInt32)] {
        var out: [(Entry, UInt32)] = []
        for i in 0..<Self.slots {
            guard let (seq, id, rawKind, capacity, owner) = read(i), let kind = Kind(rawValue: rawKind) else { continue }
            out.append((Entry(index: i, generation: seq, connectionID: id, kind: kind, capacity: min(capacity, Self.maxCapacity),
                              owner: owner), u32(i, 20).load(ordering: .acquiring)))
        }
        return out
    }

    /// Router: the entry's current generation (to check a posted message against).
    public func generation(index: Int) -> UInt32? {
        guard (0..<Self.slots).contains(index) else { return nil }
        return read(index)?.0
    }
}
