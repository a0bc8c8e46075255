/// Records between the monitor, the SynIC router and the VMBus worker (docs/processes.md,
/// docs/vmbus.md).

/// Supervisor -> VMBus worker, right after `RegionLayout` (region 0 guest RAM, region 1 the SynIC
/// region, region 2 its `WorkerStateRegion`): the partition's shape, which
/// `VMBusServer.Configuration` needs (every GPADL page is checked against these ranges), the
/// geometry of the SynIC region's rings (its two rings to and from the router are there), and the
/// partition's reference clock (the time-sync IC stamps its samples with reference time).
/// Attached fds, in order: the worker's doorbell (the router rings it when it forwarded a control
/// message, the monitor when the guest signals one of its channels), then the router's doorbell
/// (rung after the worker pushed host messages). Then the worker receives one `SINTEventFDs`
/// batch after another whose index is the VP: that VP's SINT2 eventfd (a channel's interrupt).
///
/// ```
/// body: 0 u32 vp count (1...1024)   4 u32 flags (bit 0: SINT polling mode advertised; others 0)
///       8 u32 ring record size   12 u32 ring capacity
///      16 u64 TSC frequency (Hz)   24 u64 guest TSC at which reference time is 0
///      32 u64 guest TSC - host TSC (wrapping)
///      40 u32 memory range count (1...8)   44 u32 reserved (0)
///       then count ranges of 24 bytes: 0 u64 guest-physical base   8 u64 size
///       16 u64 offset in the guest-RAM region (as in SynICRouterSetup)
/// ```
public struct VMBusWorkerSetup: WireRecord {
    public static let recordType = WireRecordType.vmbusWorkerSetup
    public static let version: UInt16 = 2

    public struct Flags: OptionSet, Equatable, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// SINTx bit 18 (polling) is meaningful.
        public static let sintPolling = Flags(rawValue: 1 << 0)
        static let known: UInt32 = 0b1
    }

    public var vpCount: UInt32
    public var flags: Flags
    public var ringRecordSize: UInt32
    public var ringCapacity: UInt32
    public var tscFrequencyHz: UInt64
    public var tscAtReferenceZero: UInt64
    public var guestTSCOffset: UInt64
    public var memory: [SynICRouterSetup.MemoryRange]

    public init(vpCount: UInt32, flags: Flags = [], ringRecordSize: UInt32, ringCapacity: UInt32,
                tscFrequencyHz: UInt64 = 0, tscAtReferenceZero: UInt64 = 0, guestTSCOffset: UInt64 = 0,
                memory: [SynICRouterSetup.MemoryRange]) {
        self.vpCount = vpCount
        self.flags = flags
        self.ringRecordSize = ringRecordSize
        self.ringCapacity = ringCapacity
        self.tscFrequencyHz = tscFrequencyHz
        self.tscAtReferenceZero = tscAtReferenceZero
        self.guestTSCOffset = guestTSCOffset
        self.memory = memory
    }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(vpCount)
        w.u32(flags.rawValue)
        w.u32(ringRecordSize)
        w.u32(ringCapacity)
        w.u64(tscFrequencyHz)
        w.u64(tscAtReferenceZero)
        w.u64(guestTSCOffset)
        w.u32(UInt32(memory.count))
        w.u32(0)
        for m in memory {
            w.u64(m.base)
            w.u64(m.size)
            w.u64(m.offset)
        }
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> VMBusWorkerSetup {
        let t = recordType.rawValue
        let vpCount = try r.u32(), flags = try r.u32(), recordSize = try r.u32(), capacity = try r.u32()
        let hz = try r.u64(), zero = try r.u64(), offset = try r.u64()
        let count = try r.u32()
        try r.reserved32()
        guard (1...SynICRouterSetup.maxVPs).contains(vpCount) else {
            throw .invalidField(type: t, field: "vp count", value: UInt64(vpCount))
        }
        guard flags & ~Flags.known == 0 else { throw .invalidField(type: t, field: "flags", value: UInt64(flags)) }
        guard (1...UInt32(SynICRouterSetup.maxRanges)).contains(count) else {
            throw .tooManyEntries(type: t, count: count, limit: SynICRouterSetup.maxRanges)
        }
        var ranges: [SynICRouterSetup.MemoryRange] = []
        for _ in 0..<count {
            let base = try r.u64(), size = try r.u64(), offset = try r.u64()
            guard size > 0, !base.addingReportingOverflow(size).overflow, !offset.addingReportingOverflow(size).overflow
            else { throw .invalidField(type: t, field: "memory range", value: base) }
            ranges.append(.init(base: base, size: size, offset: offset))
        }
        return VMBusWorkerSetup(vpCount: vpCount, flags: Flags(rawValue: flags), ringRecordSize: recordSize,
                                ringCapacity: capacity, tscFrequencyHz: hz, tscAtReferenceZero: zero,
                                guestTSCOffset: offset, memory: ranges)
    }
}

/// Supervisor -> SynIC router, after the SINT eventfds and before the filter: connections the
/// router publishes in its table on behalf of other workers, for the VM's whole life.
///
/// - A message connection whose owner is the VMBus worker (VMBus message connections 1 and 4):
///   the router forwards every accepted HvPostMessage for it, as the `PostedMessageRecord` the
///   monitor wrote, into the VMBus worker's ring, and rings the attached doorbell.
/// - An event connection of another owner (a VMBus channel's): only published; the monitor rings
///   the owner's doorbell itself on HvSignalEvent, and the owner takes the pending flag.
///
/// Attached fds: the VMBus worker's doorbell when an entry is a message connection it owns, else
/// none.
///
/// ```
/// body: 0 u32 count (1...256)   4 u32 reserved (0)
///       then count entries of 16 bytes: 0 u32 connection id (non-zero, < 2^24)
///       4 u32 kind (1 message, 2 event)   8 u32 owner (2 vmbus, 3 storage)
///       12 u32 message buffers (1...64 for a message connection, 0 for an event connection)
/// ```
public struct RouterConnections: WireRecord {
    public static let recordType = WireRecordType.routerConnections
    public static let version: UInt16 = 1
    public static let maxEntries = 256

    /// The worker kinds that may own a connection (`WorkerKind` raw values); never the router.
    public static let owners: ClosedRange<UInt32> = 2...3

    public struct Entry: Equatable, Sendable {
        public enum Kind: UInt32, Sendable {
            case message = 1
            case event = 2
        }
        public var connectionID: UInt32
        public var kind: Kind
        public var owner: UInt32
        public var buffers: UInt32
        public init(connectionID: UInt32, kind: Kind, owner: UInt32, buffers: UInt32) {
            self.connectionID = connectionID
            self.kind = kind
            self.owner = owner
            self.buffers = buffers
        }
    }

    public var entries: [Entry]
    public init(entries: [Entry]) { self.entries = entries }

    /// Whether a message connection is forwarded to the VMBus worker (then its doorbell comes along).
    public var forwardsToVMBus: Bool { entries.contains { $0.kind == .message && $0.owner == UInt32(WorkerKind.vmbus.rawValue) } }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(UInt32(entries.count))
        w.u32(0)
        for e in entries {
            w.u32(e.connectionID)
            w.u32(e.kind.rawValue)
            w.u32(e.owner)
            w.u32(e.buffers)
        }
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> RouterConnections {
        let t = recordType.rawValue
        let count = try r.u32()
        try r.reserved32()
        guard (1...UInt32(maxEntries)).contains(count) else { throw .tooManyEntries(type: t, count: count, limit: maxEntries) }
        var entries: [Entry] = []
        var seen = Set<UInt32>()
        for _ in 0..<count {
            let id = try r.u32(), rawKind = try r.u32(), owner = try r.u32(), buffers = try r.u32()
            guard id != 0, id < 1 << 24, seen.insert(id).inserted else {
                throw .invalidField(type: t, field: "connection id", value: UInt64(id))
            }
            guard let kind = Entry.Kind(rawValue: rawKind) else { throw .invalidField(type: t, field: "kind", value: UInt64(rawKind)) }
            // Only the VMBus worker has message connections (the router forwards them to its ring).
            guard owners.contains(owner), kind == .event || owner == UInt32(WorkerKind.vmbus.rawValue) else {
                throw .invalidField(type: t, field: "owner", value: UInt64(owner))
            }
            let range: ClosedRange<UInt32> = kind == .message ? 1...64 : 0...0
            guard range.contains(buffers) else { throw .invalidField(type: t, field: "buffers", value: UInt64(buffers)) }
            entries.append(Entry(connectionID: id, kind: kind, owner: owner, buffers: buffers))
        }
        return RouterConnections(entries: entries)
    }
}

/// VMBus worker -> router, in the VMBus worker's outbound ring: a host-to-guest SynIC message for
/// SINTx of VP `vp`. The router queues it like its own (MessagePending/EOM, order kept) and gives
/// no answer: the worker counts a message delivered once the push succeeded. The router accepts
/// only SINT2 from the VMBus worker (VMBus's SINT), and checks the VP.
///
/// ```
/// body: 0 u32 vp   4 u32 sint   8 u32 message type (non-zero)   12 u32 payload size (0...240)
///       16 payload (payload size bytes)
/// ```
public struct HostMessageRecord: WireRecord {
    public static let recordType = WireRecordType.hostMessage
    public static let version: UInt16 = 1
    public static let maxPayload = 240
    public static let maxEncodedSize = WireHeader.size + 16 + maxPayload

    public var vp: UInt32
    public var sint: UInt32
    public var messageType: UInt32
    public var payload: [UInt8]

    public init(vp: UInt32, sint: UInt32, messageType: UInt32, payload: [UInt8]) {
        self.vp = vp
        self.sint = sint
        self.messageType = messageType
        self.payload = payload
    }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(vp)
        w.u32(sint)
        w.u32(messageType)
        w.u32(UInt32(payload.count))
        w.raw(payload)
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> HostMessageRecord {
        let t = recordType.rawValue
        let vp = try r.u32(), sint = try r.u32(), type = try r.u32(), size = try r.u32()
        guard sint < 16 else { throw .invalidField(type: t, field: "sint", value: UInt64(sint)) }
        guard type != 0 else { throw .invalidField(type: t, field: "message type", value: 0) }
        guard size <= UInt32(maxPayload) else { throw .invalidField(type: t, field: "payload size", value: UInt64(size)) }
        return HostMessageRecord(vp: vp, sint: sint, messageType: type, payload: try r.rawBytes(Int(size)))
    }
}

/// Supervisor -> VMBus worker, on its control socket: the operator asked for a graceful shutdown
/// (SIGTERM, or the control socket's `shutdown`). The worker sends the shutdown IC's request to
/// the guest if the guest has negotiated that channel; either way it says what it did in the
/// SynIC region's VMBus status block (`SynICRegion.vmbusStatus`), which the monitor reads.
///
/// ```
/// body: 0 u32 kind (0 shut down; others reserved)   4 u32 reserved (0)
/// ```
public struct GuestShutdownRequest: WireRecord {
    public static let recordType = WireRecordType.guestShutdownRequest
    public static let version: UInt16 = 1

    public var kind: UInt32
    public init(kind: UInt32 = 0) { self.kind = kind }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(kind)
        w.u32(0)
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> GuestShutdownRequest {
        let kind = try r.u32()
        try r.reserved32()
        guard kind == 0 else { throw .invalidField(type: recordType.rawValue, field: "kind", value: UInt64(kind)) }
        return GuestShutdownRequest(kind: kind)
    }
}
