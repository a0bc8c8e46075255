/// Records between the VMBus worker and a device worker (the storage worker), in the two rings of
/// the device region the supervisor creates for them (docs/vmbus.md, "The channel substrate").
/// The VMBus worker owns the control plane; the device worker serves a channel's rings once
/// told, and answers. Each side treats the other's records as hostile.

/// VMBus worker -> device worker: open, close or retarget one channel.
///
/// ```
/// body: 0 u32 operation (1 open, 2 close, 3 modify)   4 u32 relid (1...2047)
///       8 u32 event connection id   12 u32 target VP   16 u32 downstream page offset
///      20 u32 flags (bit 0: restored: the channel was open before a restart, keep serving it and
///         send no answer)   24 u32 PFN count (open: 4...maxPFNs, else 0)
///      28 u32 sub-channel index (open: 0 for the device's primary channel, 1...maxSubChannels
///         for its sub-channels; else 0)
///      32 PFNs (count u64 each, < 2^52)
/// ```
/// Version 2 added the sub-channel index (a reserved word in version 1).
public struct ChannelControlRecord: WireRecord {
    public static let recordType = WireRecordType.channelControl
    public static let version: UInt16 = 2
    /// The most sub-channels one device may have on the wire (the VM's limit is lower:
    /// `MachineConfig.storageSubChannels`).
    public static let maxSubChannels: UInt32 = 64
    /// A ring GPADL of at most this many pages (Linux storvsc: 2 x 128 KiB rings, 64 pages).
    public static let maxPFNs = 240
    public static let maxEncodedSize = WireHeader.size + 32 + 8 * maxPFNs

    public enum Operation: UInt32, Sendable {
        case open = 1
        case close = 2
        case modify = 3
    }

    public var operation: Operation
    public var relID: UInt32
    public var connectionID: UInt32
    public var targetVP: UInt32
    public var downstreamPageOffset: UInt32
    public var restored: Bool
    /// 0: the device's primary channel; n: its sub-channel n (opens only).
    public var subChannelIndex: UInt32
    public var pfns: [UInt64]

    public init(operation: Operation, relID: UInt32, connectionID: UInt32 = 0, targetVP: UInt32 = 0,
                downstreamPageOffset: UInt32 = 0, restored: Bool = false, subChannelIndex: UInt32 = 0, pfns: [UInt64] = []) {
        self.subChannelIndex = subChannelIndex
        self.operation = operation
        self.relID = relID
        self.connectionID = connectionID
        self.targetVP = targetVP
        self.downstreamPageOffset = downstreamPageOffset
        self.restored = restored
        self.pfns = pfns
    }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(operation.rawValue)
        w.u32(relID)
        w.u32(connectionID)
        w.u32(targetVP)
        w.u32(downstreamPageOffset)
        w.u32(restored ? 1 : 0)
        w.u32(UInt32(pfns.count))
        w.u32(subChannelIndex)
        for p in pfns { w.u64(p) }
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> ChannelControlRecord {
        let t = recordType.rawValue
        let rawOp = try r.u32(), relID = try r.u32(), connection = try r.u32(), vp = try r.u32()
        let offset = try r.u32(), flags = try r.u32(), count = try r.u32(), index = try r.u32()
        guard let op = Operation(rawValue: rawOp) else { throw .invalidField(type: t, field: "operation", value: UInt64(rawOp)) }
        guard (1...2047).contains(relID) else { throw .invalidField(type: t, field: "relid", value: UInt64(relID)) }
        guard flags & ~1 == 0 else { throw .invalidField(type: t, field: "flags", value: UInt64(flags)) }
        let counts: ClosedRange<UInt32> = op == .open ? 4...UInt32(maxPFNs) : 0...0
        guard counts.contains(count) else { throw .tooManyEntries(type: t, count: count, limit: maxPFNs) }
        guard index <= (op == .open ? maxSubChannels : 0) else {
            throw .invalidField(type: t, field: "sub-channel index", value: UInt64(index))
        }
        if op == .open {
            guard offset >= 2, offset <= count - 2 else {
                throw .invalidField(type: t, field: "downstream page offset", value: UInt64(offset))
            }
        }
        var pfns: [UInt64] = []
        pfns.reserveCapacity(Int(count))
        for _ in 0..<count {
            let p = try r.u64()
            guard p < 1 << 52 else { throw .invalidField(type: t, field: "pfn", value: p) }
            pfns.append(p)
        }
        return ChannelControlRecord(operation: op, relID: relID, connectionID: connection, targetVP: vp,
                                    downstreamPageOffset: offset, restored: flags & 1 != 0, subChannelIndex: index, pfns: pfns)
    }
}

/// Device worker -> VMBus worker: the answer to an open (its status becomes OPENCHANNEL_RESULT)
/// or a close (the ring GPADL is free once the device let go).
///
/// ```
/// body: 0 u32 operation (1 opened, 2 closed)   4 u32 relid (1...2047)   8 u32 status (NTSTATUS; 0 for a close)
///      12 u32 reserved (0)
/// ```
public struct ChannelAnswerRecord: WireRecord {
    public static let recordType = WireRecordType.channelAnswer
    public static let version: UInt16 = 1

    public enum Operation: UInt32, Sendable {
        case opened = 1
        case closed = 2
    }

    public var operation: Operation
    public var relID: UInt32
    public var status: UInt32

    public init(operation: Operation, relID: UInt32, status: UInt32 = 0) {
        self.operation = operation
        self.relID = relID
        self.status = status
    }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(operation.rawValue)
        w.u32(relID)
        w.u32(status)
        w.u32(0)
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> ChannelAnswerRecord {
        let t = recordType.rawValue
        let rawOp = try r.u32(), relID = try r.u32(), status = try r.u32()
        try r.reserved32()
        guard let op = Operation(rawValue: rawOp) else { throw .invalidField(type: t, field: "operation", value: UInt64(rawOp)) }
        guard (1...2047).contains(relID) else { throw .invalidField(type: t, field: "relid", value: UInt64(relID)) }
        guard op == .opened || status == 0 else { throw .invalidField(type: t, field: "status", value: UInt64(status)) }
        return ChannelAnswerRecord(operation: op, relID: relID, status: status)
    }
}

/// Device worker -> VMBus worker, in the answer ring: offer sub-channels of the device's primary
/// channel `relID` until it has `total` (storvsc's CREATE_SUB_CHANNELS, pushed only after its
/// reply is in the guest's ring: reference 4.2 step 6). Asking again for the same or a smaller
/// total changes nothing, so a restarted device worker may ask again; the VMBus worker offers
/// at most the VM's limit, and only while the primary is open.
///
/// ```
/// body: 0 u32 primary relid (1...2047)   4 u32 total (0...ChannelControlRecord.maxSubChannels)
///       8 u64 reserved (0)
/// ```
public struct SubChannelRequestRecord: WireRecord {
    public static let recordType = WireRecordType.subChannelRequest
    public static let version: UInt16 = 1

    public var relID: UInt32
    public var total: UInt32

    public init(relID: UInt32, total: UInt32) {
        self.relID = relID
        self.total = total
    }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(relID)
        w.u32(total)
        w.u64(0)
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> SubChannelRequestRecord {
        let t = recordType.rawValue
        let relID = try r.u32(), total = try r.u32()
        try r.reserved32()
        try r.reserved32()
        guard (1...2047).contains(relID) else { throw .invalidField(type: t, field: "relid", value: UInt64(relID)) }
        guard total <= ChannelControlRecord.maxSubChannels else { throw .invalidField(type: t, field: "total", value: UInt64(total)) }
        return SubChannelRequestRecord(relID: relID, total: total)
    }
}
