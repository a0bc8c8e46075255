import Atomics
import HyperV
import IPC

/// The SynIC router's restart state, in a fixed-layout region the supervisor owns (region 2 of the
/// router's layout): the per-(VP, SINT) message queues, the messages held for the VMBus worker,
/// the test device's SINT routes, and how far each input ring's records are in those queues. A
/// successor attached to the same region (and the same SynIC region) continues with nothing lost
/// and nothing delivered twice (docs/processes.md, "Restart state": each crash point and its
/// recovery).
///
/// Why a fixed layout and not a `WorkerStateRegion` (a whole encoded copy per save): every
/// message enqueue and every delivery changes the state, at the guest's message rate (hundreds of
/// thousands a second in the bench). Re-encoding every queue per message would cost O(state) per
/// message; here an enqueue is one 272-byte entry write and one index store, a delivery one index
/// store, and each step is made safe by its order alone (no copies, no generations).
///
/// ```
///    0  header (supervisor): u32 magic "SVRS", u16 version 2, u16 reserved, u32 vp count,
///       u32 queue depth (entries per (VP, SINT), power of two), u32 held depth (power of two),
///       u32 reserved, u64 region size
///   32  counters (the router, relaxed stores; the monitor's `metrics` reads them, untrusted):
///       u64 guest messages posted (HvPostMessage records the router took: queued for a SIMP
///       slot or held for the VMBus worker), u64 host messages posted (from the VMBus worker or
///       another host source, queued for a SIMP slot), u64 messages delivered (written into a
///       SIMP slot by the router). Version 2 added them (version 1 had zeros here).
///  128  applied marks, one u64 per SynIC-region ring (VPs' rings, test device, VMBus in, VMBus
///       out): records below it are in a queue (or were dropped)
///    Q  queue headers, 32 bytes per (VP, SINT), vp * 16 + sint: u64 head (next to deliver),
///       u64 tail (next free), u64 released (n + 1: entry n's connection buffer is given back),
///       u64 reserved
///    H  held queue header (32 bytes): u64 head, u64 tail, u64 pushing (p + 1: the head is being
///       pushed as record p of the router -> vmbus ring), u64 released
///    S  SINT routes of the test device: one u32 per VP, bit x: route (VP, SINTx) exists
///    V  event journal: one u32 per connection-table entry, 1 while the router hands a signal of
///       that test-device event connection to the guest (a successor sets the flag again)
///    E  queue entries, depth per queue, 272 bytes: u32 buffer entry + 1 (0: none), u32 source
///       ring + 1 (0: none), u64 source record number, u32 reserved, u32 message type, u32 payload
///       size (<= 240), u32 the buffer's connection generation, 240 payload
///    F  held entries, 280 bytes: u32 reserved, u32 source ring + 1, u64 source record number, then
///       a `PostedMessageRecord`'s fields: u32 vp, connection id, entry, generation, message type,
///       payload size (<= 240), 240 payload
/// ```
/// Q, H, S, V, E, F follow each other, each 64-byte aligned; the size is rounded up to 4096.
///
/// Trust: a predecessor parsed guest bytes, so a successor checks what it reads back (indices
/// within depth, buffer entries and payload sizes in range) and reports and drops what is wrong;
/// nothing here can make it trap or access out of bounds.
public final class RouterStateRegion: @unchecked Sendable {
    public static let magic: UInt32 = 0x5352_5653  // "SVRS"
    public static let version: UInt16 = 2
    public static let defaultQueueDepth = 16
    public static let defaultHeldDepth = 128
    static let marksOffset = 128
    static let queueHeaderSize = 32
    static let entrySize = 272
    static let heldEntrySize = 280

    public let region: SharedRegion
    public let vpCount: Int
    public let queueDepth: Int
    public let heldDepth: Int
    let queuesOffset: Int
    let heldOffset: Int
    let routesOffset: Int
    let eventsOffset: Int
    let entriesOffset: Int
    let heldEntriesOffset: Int

    static func align(_ n: Int, _ a: Int) -> Int { (n + a - 1) / a * a }

    struct Offsets {
        var queues = 0, held = 0, routes = 0, events = 0, entries = 0, heldEntries = 0, size = 0
    }

    static func offsets(vpCount: Int, queueDepth: Int, heldDepth: Int) -> Offsets {
        var o = Offsets()
        let rings = vpCount + SynICRegion.extraRings
        o.queues = align(marksOffset + 8 * rings, 64)
        o.held = align(o.queues + vpCount * HvSynIC.sintCount * queueHeaderSize, 64)
        o.routes = align(o.held + queueHeaderSize, 64)
        o.events = align(o.routes + 4 * vpCount, 64)
        o.entries = align(o.events + 4 * ConnectionTable.slots, 64)
        o.heldEntries = align(o.entries + vpCount * HvSynIC.sintCount * queueDepth * entrySize, 64)
        o.size = align(o.heldEntries + heldDepth * heldEntrySize, 4096)
        return o
    }

    public static func size(vpCount: Int, queueDepth: Int = defaultQueueDepth, heldDepth: Int = defaultHeldDepth) -> Int {
        offsets(vpCount: vpCount, queueDepth: queueDepth, heldDepth: heldDepth).size
    }

    /// Supervisor: a new sealed memfd, formatted (every queue empty).
    public static func create(vpCount: Int, queueDepth: Int = defaultQueueDepth, heldDepth: Int = defaultHeldDepth,
                              name: String = "synthvm-router-state") throws(IPCError) -> RouterStateRegion {
        guard (1...Int(SynICRouterSetup.maxVPs)).contains(vpCount),
              (1...1024).contains(queueDepth), queueDepth & (queueDepth - 1) == 0,
              (1...4096).contains(heldDepth), heldDepth & (heldDepth - 1) == 0
        else { throw .invalidArgument("router state for \(vpCount) VPs, queue depth \(queueDepth), held depth \(heldDepth)") }
        let r = try SharedRegion(name: name, size: size(vpCount: vpCount, queueDepth: queueDepth, heldDepth: heldDepth))
        try r.store(magic, at: 0)
        try r.store(version, at: 4)
        try r.store(UInt32(vpCount), at: 8)
        try r.store(UInt32(queueDepth), at: 12)
        try r.store(UInt32(heldDepth), at: 16)
        try r.store(UInt64(r.size), at: 24)
        return try RouterStateRegion(region: r, vpCount: vpCount)
    }

    /// Router: checks the header the supervisor wrote against its setup and the mapping.
    public init(region: SharedRegion, vpCount: Int) throws(IPCError) {
        guard region.size >= 4096 else { throw .regionTooSmall(size: region.size, required: 4096) }
        let depth = Int(try region.load(UInt32.self, at: 12)), held = Int(try region.load(UInt32.self, at: 16))
        guard try region.load(UInt32.self, at: 0) == Self.magic, try region.load(UInt16.self, at: 4) == Self.version,
              try region.load(UInt32.self, at: 8) == UInt32(vpCount),
              (1...1024).contains(depth), depth & (depth - 1) == 0, (1...4096).contains(held), held & (held - 1) == 0,
              try region.load(UInt64.self, at: 24) == UInt64(region.size),
              region.size == Self.size(vpCount: vpCount, queueDepth: depth, heldDepth: held)
        else { throw .invalidArgument("router state region header does not match (\(vpCount) VPs, \(region.size) bytes)") }
        self.region = region
        self.vpCount = vpCount
        queueDepth = depth
        heldDepth = held
        let o = Self.offsets(vpCount: vpCount, queueDepth: depth, heldDepth: held)
        queuesOffset = o.queues
        heldOffset = o.held
        routesOffset = o.routes
        eventsOffset = o.events
        entriesOffset = o.entries
        heldEntriesOffset = o.heldEntries
    }

    /// Offsets below come from checked indices and the validated geometry: a failure is a bug here.
    func u64(_ offset: Int) -> UnsafeAtomic<UInt64> { try! region.atomic(UInt64.self, at: offset) }
    func u32(_ offset: Int) -> UnsafeAtomic<UInt32> { try! region.atomic(UInt32.self, at: offset) }

    // MARK: Counters

    static let countersOffset = 32

    /// What the router counted (docs/api.md, "metrics").
    public enum Counter: Int, CaseIterable, Sendable {
        case guestPosted = 0, hostPosted, delivered
    }

    /// Router: one more (a relaxed load and store: the router's serve thread is the only writer,
    /// and a successor continues from what its predecessor left).
    public func count(_ c: Counter) {
        let a = u64(Self.countersOffset + 8 * c.rawValue)
        a.store(a.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
    }

    /// The router's counters and the messages its queues hold now, as the monitor reports them:
    /// read from memory the router writes, so every value is clamped (a counter to 2^53, each
    /// queue's length to its depth) and nothing here can trap whatever the router wrote.
    public struct Metrics: Equatable, Sendable {
        public var guestPosted: UInt64
        public var hostPosted: UInt64
        public var delivered: UInt64
        /// Messages waiting in the per-(VP, SINT) queues for their SIMP slot.
        public var queued: UInt64
        /// Guest messages held for the VMBus worker (its ring was full).
        public var held: UInt64
    }

    public func metrics() -> Metrics {
        func c(_ k: Counter) -> UInt64 { min(u64(Self.countersOffset + 8 * k.rawValue).load(ordering: .relaxed), 1 << 53) }
        var queued: UInt64 = 0
        for vp in 0..<vpCount {
            for sint in 0..<HvSynIC.sintCount {
                let q = queue(vp: UInt32(vp), sint: sint)
                queued += min(q.tail.load(ordering: .relaxed) &- q.head.load(ordering: .relaxed), UInt64(queueDepth))
            }
        }
        let h = held
        let heldCount = min(h.tail.load(ordering: .relaxed) &- h.head.load(ordering: .relaxed), UInt64(heldDepth))
        return Metrics(guestPosted: c(.guestPosted), hostPosted: c(.hostPosted), delivered: c(.delivered),
                       queued: queued, held: heldCount)
    }

    // MARK: Applied marks

    /// Records of SynIC-region ring `ring` numbered below this are already in a queue (or were
    /// dropped): a successor lent one of them again frees it without acting.
    func applied(ring: Int) -> UInt64 {
        (0..<(vpCount + SynICRegion.extraRings)).contains(ring) ? u64(Self.marksOffset + 8 * ring).load(ordering: .acquiring) : 0
    }

    func setApplied(ring: Int, _ value: UInt64) {
        guard (0..<(vpCount + SynICRegion.extraRings)).contains(ring) else { return }
        u64(Self.marksOffset + 8 * ring).store(value, ordering: .releasing)
    }

    // MARK: Queues

    /// The header of queue (vp, sint): head, tail, released (callers check vp and sint).
    struct QueueHeader {
        let head: UnsafeAtomic<UInt64>
        let tail: UnsafeAtomic<UInt64>
        let released: UnsafeAtomic<UInt64>
        let extra: UnsafeAtomic<UInt64>
    }

    func queue(vp: UInt32, sint: Int) -> QueueHeader {
        let o = queuesOffset + (Int(vp) * HvSynIC.sintCount + sint) * Self.queueHeaderSize
        return QueueHeader(head: u64(o), tail: u64(o + 8), released: u64(o + 16), extra: u64(o + 24))
    }

    var held: QueueHeader {
        QueueHeader(head: u64(heldOffset), tail: u64(heldOffset + 8), released: u64(heldOffset + 24), extra: u64(heldOffset + 16))
    }

    func entryOffset(vp: UInt32, sint: Int, _ n: UInt64) -> Int {
        entriesOffset + ((Int(vp) * HvSynIC.sintCount + sint) * queueDepth + Int(n & UInt64(queueDepth - 1))) * Self.entrySize
    }

    func heldEntryOffset(_ n: UInt64) -> Int { heldEntriesOffset + Int(n & UInt64(heldDepth - 1)) * Self.heldEntrySize }

    /// One queue entry as stored.
    struct Entry: Equatable {
        var message: HvMessage
        /// The connection-table entry whose message buffer it holds.
        var bufferOf: Int?
        /// That connection entry's generation when the message was accepted: a message whose
        /// connection was removed (and perhaps re-created) since is dropped, not delivered.
        var generation: UInt32 = 0
        /// The ring record it came from (ring, number).
        var source: (ring: Int, index: UInt64)?

        static func == (a: Entry, b: Entry) -> Bool {
            a.message == b.message && a.bufferOf == b.bufferOf && a.generation == b.generation
                && a.source?.ring == b.source?.ring && a.source?.index == b.source?.index
        }
    }

    func writeEntry(_ e: Entry, at o: Int) {
        try! region.store(UInt32(e.bufferOf.map { $0 + 1 } ?? 0), at: o)
        try! region.store(UInt32(e.source.map { $0.ring + 1 } ?? 0), at: o + 4)
        try! region.store(e.source?.index ?? 0, at: o + 8)
        try! region.store(UInt32(0), at: o + 16)
        try! region.store(e.message.type.rawValue, at: o + 20)
        try! region.store(UInt32(e.message.payload.count), at: o + 24)
        try! region.store(e.generation, at: o + 28)
        try! region.write(e.message.payload, at: o + 32)
    }

    /// Reads an entry back as hostile bytes: nil when a field is out of range.
    func readEntry(at o: Int) -> Entry? {
        let buffer = try! region.load(UInt32.self, at: o), ring = try! region.load(UInt32.self, at: o + 4)
        let size = try! region.load(UInt32.self, at: o + 24)
        guard buffer <= UInt32(ConnectionTable.slots), ring <= UInt32(vpCount + SynICRegion.extraRings),
              size <= UInt32(HvMessage.maxPayloadSize) else { return nil }
        let type = HvMessageType(rawValue: try! region.load(UInt32.self, at: o + 20))
        let message = HvMessage(type: type, payload: try! region.bytes(at: o + 32, count: Int(size)))
        guard message.isDeliverable else { return nil }
        return Entry(message: message, bufferOf: buffer == 0 ? nil : Int(buffer) - 1,
                     generation: try! region.load(UInt32.self, at: o + 28),
                     source: ring == 0 ? nil : (Int(ring) - 1, try! region.load(UInt64.self, at: o + 8)))
    }

    /// A held message (for the VMBus worker) as stored.
    func writeHeld(_ r: PostedMessageRecord, source: (ring: Int, index: UInt64)?, at o: Int) {
        try! region.store(UInt32(0), at: o)
        try! region.store(UInt32(source.map { $0.ring + 1 } ?? 0), at: o + 4)
        try! region.store(source?.index ?? 0, at: o + 8)
        for (i, v) in [r.vp, r.connectionID, r.entry, r.generation, r.messageType, UInt32(r.payload.count)].enumerated() {
            try! region.store(v, at: o + 16 + 4 * i)
        }
        try! region.write(r.payload, at: o + 40)
    }

    func readHeld(at o: Int) -> (PostedMessageRecord, source: (ring: Int, index: UInt64)?)? {
        let ring = try! region.load(UInt32.self, at: o + 4)
        let f = (0..<6).map { try! region.load(UInt32.self, at: o + 16 + 4 * $0) }
        guard ring <= UInt32(vpCount + SynICRegion.extraRings), f[5] <= UInt32(HvMessage.maxPayloadSize),
              f[2] < UInt32(ConnectionTable.slots), f[4] != 0 else { return nil }
        let r = PostedMessageRecord(vp: f[0], connectionID: f[1], entry: f[2], generation: f[3], messageType: f[4],
                                    payload: try! region.bytes(at: o + 40, count: Int(f[5])))
        return (r, ring == 0 ? nil : (Int(ring) - 1, try! region.load(UInt64.self, at: o + 8)))
    }

    // MARK: Event journal

    func eventJournal(index: Int) -> UnsafeAtomic<UInt32> { u32(eventsOffset + 4 * index) }

    // MARK: SINT routes

    func routes(vp: UInt32) -> UInt32 { Int(vp) < vpCount ? u32(routesOffset + 4 * Int(vp)).load(ordering: .acquiring) : 0 }

    func setRoute(vp: UInt32, sint: Int, _ on: Bool) {
        guard Int(vp) < vpCount, (0..<HvSynIC.sintCount).contains(sint) else { return }
        let a = u32(routesOffset + 4 * Int(vp)), bit = UInt32(1) << UInt32(sint)
        if on { _ = a.loadThenBitwiseOr(with: bit, ordering: .acquiringAndReleasing) } else {
            _ = a.loadThenBitwiseAnd(with: ~bit, ordering: .acquiringAndReleasing)
        }
    }
}
