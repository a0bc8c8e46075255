/// Records between the monitor and the SynIC message-router worker (docs/processes.md has the
/// whole conversation). Same rules as every wire record: explicit little-endian layouts, one
/// version per body layout, every field checked by the decoder.

/// Supervisor -> router, right after `RegionLayout` (region 0 guest RAM, region 1 the SynIC
/// region): the partition's shape. Attached fds, in order: the router's doorbell (eventfd the
/// monitor rings when a ring or a connection has work), then one reply eventfd per VP (the
/// router rings VP n's after it has applied a test-device write from VP n's ring... see
/// `TestDeviceWriteRecord`).
///
/// ```
/// body: 0 u32 vp count (1...1024)   4 u32 flags (bit 0: hyperv-testdev, bit 1: SINT polling
///       mode advertised; others 0)   8 u32 ring record size   12 u32 ring capacity
///       16 u32 memory range count (1...8)   20 u32 reserved (0)
///       then count ranges of 24 bytes: 0 u64 guest-physical base   8 u64 size
///       16 u64 offset in the guest-RAM region
/// ```
public struct SynICRouterSetup: WireRecord {
    public static let recordType = WireRecordType.synicRouterSetup
    public static let version: UInt16 = 1
    public static let maxVPs: UInt32 = 1024
    public static let maxRanges = 8

    public struct Flags: OptionSet, Equatable, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// Serve the QEMU-compatible hyperv-testdev (port 0x3000).
        public static let testDevice = Flags(rawValue: 1 << 0)
        /// SINTx bit 18 (polling) is meaningful.
        public static let sintPolling = Flags(rawValue: 1 << 1)
        static let known: UInt32 = 0b11
    }

    /// A run of guest RAM: GPA [base, base + size) is bytes [offset, offset + size) of region 0.
    public struct MemoryRange: Equatable, Sendable {
        public var base: UInt64
        public var size: UInt64
        public var offset: UInt64
        public init(base: UInt64, size: UInt64, offset: UInt64) {
            self.base = base
            self.size = size
            self.offset = offset
        }
    }

    public var vpCount: UInt32
    public var flags: Flags
    public var ringRecordSize: UInt32
    public var ringCapacity: UInt32
    public var memory: [MemoryRange]

    public init(vpCount: UInt32, flags: Flags, ringRecordSize: UInt32, ringCapacity: UInt32, memory: [MemoryRange]) {
        self.vpCount = vpCount
        self.flags = flags
        self.ringRecordSize = ringRecordSize
        self.ringCapacity = ringCapacity
        self.memory = memory
    }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(vpCount)
        w.u32(flags.rawValue)
        w.u32(ringRecordSize)
        w.u32(ringCapacity)
        w.u32(UInt32(memory.count))
        w.u32(0)
        for m in memory {
            w.u64(m.base)
            w.u64(m.size)
            w.u64(m.offset)
        }
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> SynICRouterSetup {
        let t = recordType.rawValue
        let vpCount = try r.u32()
        let flags = try r.u32()
        let recordSize = try r.u32()
        let capacity = try r.u32()
        let count = try r.u32()
        try r.reserved32()
        guard (1...maxVPs).contains(vpCount) else { throw .invalidField(type: t, field: "vp count", value: UInt64(vpCount)) }
        guard flags & ~Flags.known == 0 else { throw .invalidField(type: t, field: "flags", value: UInt64(flags)) }
        guard (1...UInt32(maxRanges)).contains(count) else {
            throw .tooManyEntries(type: t, count: count, limit: maxRanges)
        }
        var ranges: [MemoryRange] = []
        for _ in 0..<count {
            let base = try r.u64(), size = try r.u64(), offset = try r.u64()
            guard size > 0, !base.addingReportingOverflow(size).overflow, !offset.addingReportingOverflow(size).overflow
            else { throw .invalidField(type: t, field: "memory range", value: base) }
            ranges.append(MemoryRange(base: base, size: size, offset: offset))
        }
        return SynICRouterSetup(vpCount: vpCount, flags: Flags(rawValue: flags), ringRecordSize: recordSize,
                                ringCapacity: capacity, memory: ranges)
    }
}

/// Supervisor -> router: SINT eventfds `first ..< first + count` (index = vp * 16 + sint),
/// attached in order. Writing one raises that SINT through its KVM irqfd (or, for an AutoEOI
/// SINT, through the monitor's relay); sent in batches because one message carries at most
/// 253 fds.
///
/// ```
/// body: 0 u32 first index   4 u32 count (1...240)
/// ```
public struct SINTEventFDs: WireRecord {
    public static let recordType = WireRecordType.sintEventFDs
    public static let version: UInt16 = 1
    public static let maxPerMessage: UInt32 = 240

    public var first: UInt32
    public var count: UInt32

    public init(first: UInt32, count: UInt32) {
        self.first = first
        self.count = count
    }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(first)
        w.u32(count)
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> SINTEventFDs {
        let first = try r.u32(), count = try r.u32()
        guard (1...maxPerMessage).contains(count) else {
            throw .invalidField(type: recordType.rawValue, field: "count", value: UInt64(count))
        }
        guard !first.addingReportingOverflow(count).overflow else {
            throw .invalidField(type: recordType.rawValue, field: "first", value: UInt64(first))
        }
        return SINTEventFDs(first: first, count: count)
    }
}

/// Monitor -> router, in the calling VP's ring: a guest HvPostMessage the monitor validated and
/// accepted for connection `connectionID` (which the router published at table entry `entry`
/// with sequence `generation`; a record whose entry has changed since is dropped and its buffer
/// given back).
///
/// ```
/// body: 0 u32 vp   4 u32 connection id   8 u32 entry   12 u32 generation
///       16 u32 message type   20 u32 payload size (0...240)   24 payload (payload size bytes)
/// ```
public struct PostedMessageRecord: WireRecord {
    public static let recordType = WireRecordType.postedMessage
    public static let version: UInt16 = 1
    public static let maxPayload = 240
    /// Header + the largest body: the ring record size must hold this (plus the slot header).
    public static let maxEncodedSize = WireHeader.size + 24 + maxPayload

    public var vp: UInt32
    public var connectionID: UInt32
    public var entry: UInt32
    public var generation: UInt32
    public var messageType: UInt32
    public var payload: [UInt8]

    public init(vp: UInt32, connectionID: UInt32, entry: UInt32, generation: UInt32, messageType: UInt32,
                payload: [UInt8]) {
        self.vp = vp
        self.connectionID = connectionID
        self.entry = entry
        self.generation = generation
        self.messageType = messageType
        self.payload = payload
    }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(vp)
        w.u32(connectionID)
        w.u32(entry)
        w.u32(generation)
        w.u32(messageType)
        w.u32(UInt32(payload.count))
        w.raw(payload)
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> PostedMessageRecord {
        let t = recordType.rawValue
        let vp = try r.u32(), connection = try r.u32(), entry = try r.u32(), generation = try r.u32()
        let type = try r.u32(), size = try r.u32()
        guard size <= UInt32(maxPayload) else { throw .invalidField(type: t, field: "payload size", value: UInt64(size)) }
        guard type != 0 else { throw .invalidField(type: t, field: "message type", value: 0) }
        return PostedMessageRecord(vp: vp, connectionID: connection, entry: entry, generation: generation,
                                   messageType: type, payload: try r.rawBytes(Int(size)))
    }
}

/// Monitor -> router: the guest wrote `value` (32 bits) to the hyperv-testdev port. The monitor
/// holds the writing vCPU until the router rings the reply doorbell (so that a connection the
/// write created exists before the guest's next hypercall), or a timeout passes.
///
/// ```
/// body: 0 u32 vp (the writer)   4 u32 value   8 u64 sequence (echoed in the reply word)
/// ```
public struct TestDeviceWriteRecord: WireRecord {
    public static let recordType = WireRecordType.testDeviceWrite
    public static let version: UInt16 = 1

    public var vp: UInt32
    public var value: UInt32
    public var sequence: UInt64

    public init(vp: UInt32, value: UInt32, sequence: UInt64) {
        self.vp = vp
        self.value = value
        self.sequence = sequence
    }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(vp)
        w.u32(value)
        w.u64(sequence)
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> TestDeviceWriteRecord {
        TestDeviceWriteRecord(vp: try r.u32(), value: try r.u32(), sequence: try r.u64())
    }
}
