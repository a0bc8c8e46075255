/// Records of the storage worker's setup and of the device region it shares with the VMBus
/// worker (docs/processes.md, docs/storage.md "The worker").

/// The device region (region id 3, `DeviceRegion.regionID`): one sealed memfd the supervisor
/// creates when the guest has VMBus and disks, with two `RecordRing`s:
///
/// ```
///      0  ring 0: VMBus worker -> device worker, `ChannelControlRecord`s
///      R  ring 1: device worker -> VMBus worker, `ChannelAnswerRecord`s   (R = ring bytes rounded up to 4096)
/// ```
///
/// Each side rings the other's doorbell when its push found the ring empty.
public enum DeviceRegion {
    /// The region id in `RegionLayout` (0 guest RAM, 1 SynIC, 2 worker state).
    public static let regionID: UInt32 = 3
    /// 32 records of 2 KiB: a ChannelControlRecord with the largest ring GPADL fits.
    public static let layout = try! RecordRing.Layout(recordSize: 2048, capacity: 32)

    /// Offset of ring `index` (0 controls, 1 answers).
    public static func ringOffset(_ index: Int, layout: RecordRing.Layout) -> Int {
        index * ((layout.byteCount + 4095) / 4096 * 4096)
    }

    public static func byteCount(layout: RecordRing.Layout) -> Int { 2 * ringOffset(1, layout: layout) }

    /// Creates the region and formats both rings (the supervisor).
    public static func create(layout: RecordRing.Layout = layout) throws(IPCError) -> SharedRegion {
        let region = try SharedRegion(name: "synthvm-device-rings", size: byteCount(layout: layout))
        try RecordRing.format(region, at: ringOffset(0, layout: layout), layout: layout)
        try RecordRing.format(region, at: ringOffset(1, layout: layout), layout: layout)
        return region
    }
}

/// Supervisor -> storage worker, right after `RegionLayout` (region 0 guest RAM, 1 the SynIC
/// region, 3 the device region): the partition's shape (every data page is checked against these
/// ranges), the SynIC region's ring geometry (to attach to it), the device rings' geometry, and
/// one entry per disk (LUN 0, 1, ... in command-line order).
/// Attached fds, in order: the storage worker's doorbell (rung by the VMBus worker after it
/// pushed a `ChannelControlRecord`, and by the monitor when the guest signals the controller's
/// channel), the VMBus worker's device doorbell (rung after pushing an answer), then one fd per
/// disk, opened by the monitor (O_RDONLY for a read-only disk, O_DIRECT for `cache=direct`).
/// Then `SINTEventFDs` batches whose index is the VP: that VP's SINT2 eventfd.
///
/// ```
/// body: 0 u32 vp count (1...1024)   4 u32 flags (bit 0: SINT polling mode advertised)
///       8 u32 SynIC ring record size   12 u32 SynIC ring capacity
///      16 u32 device ring record size  20 u32 device ring capacity
///      24 u32 memory range count (1...8)   28 u32 disk count (1...64)
///      then ranges of 24 bytes as in SynICRouterSetup
///      then disks of 80 bytes: 0 u64 size in bytes (> 0, a multiple of 512)
///         8 u32 flags (bit 0 read-only)   12 u32 cache mode (0 writeback, 1 direct, 2 unsafe)
///        16 u8[64] serial (printable ASCII, zero-padded; all zero: none)
///      then u32 the highest vstor protocol version the controller accepts (one of
///         `protocolVersions`; `--disk ...,protocol=`)
///      then u32 the sub-channel limit (0...min(vp count - 1, ChannelControlRecord.maxSubChannels)):
///         QUERY_PROPERTIES' max_channel_cnt (version 3)
/// ```
public struct StorageWorkerSetup: WireRecord, Equatable {
    public static let recordType = WireRecordType.storageWorkerSetup
    public static let version: UInt16 = 3
    public static let maxDisks = 64
    public static let serialBytes = 64
    /// The vstor protocol versions the storage worker accepts, newest first (Storage's
    /// `VStorProtocolVersion.accepted`; a test checks they agree): Win10 6.2, Win8.1 6.0, Win8
    /// 5.1, Win7 4.2, Win6 2.0.
    public static let protocolVersions: [UInt16] = [0x0602, 0x0600, 0x0501, 0x0402, 0x0200]

    public struct Disk: Equatable, Sendable {
        public enum Cache: UInt32, Sendable {
            case writeback = 0
            case direct = 1
            case unsafe = 2
        }
        public var sizeBytes: UInt64
        public var readOnly: Bool
        public var cache: Cache
        public var serial: String

        public init(sizeBytes: UInt64, readOnly: Bool, cache: Cache, serial: String) {
            self.sizeBytes = sizeBytes
            self.readOnly = readOnly
            self.cache = cache
            self.serial = serial
        }
    }

    public var vpCount: UInt32
    public var sintPolling: Bool
    public var synicRing: (recordSize: UInt32, capacity: UInt32)
    public var deviceRing: (recordSize: UInt32, capacity: UInt32)
    public var memory: [SynICRouterSetup.MemoryRange]
    public var disks: [Disk]
    /// The newest vstor version the controller accepts (newer ones get REVISION_MISMATCH, so the
    /// guest settles on this one or older).
    public var highestProtocolVersion: UInt16
    /// The sub-channels the controller offers (QUERY_PROPERTIES max_channel_cnt).
    public var maxSubChannels: UInt32

    public init(vpCount: UInt32, sintPolling: Bool, synicRing: (recordSize: UInt32, capacity: UInt32),
                deviceRing: (recordSize: UInt32, capacity: UInt32), memory: [SynICRouterSetup.MemoryRange], disks: [Disk],
                highestProtocolVersion: UInt16 = 0x0602, maxSubChannels: UInt32 = 0) {
        self.maxSubChannels = maxSubChannels
        self.vpCount = vpCount
        self.sintPolling = sintPolling
        self.synicRing = synicRing
        self.deviceRing = deviceRing
        self.memory = memory
        self.disks = disks
        self.highestProtocolVersion = highestProtocolVersion
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.vpCount == b.vpCount && a.sintPolling == b.sintPolling && a.synicRing == b.synicRing
            && a.deviceRing == b.deviceRing && a.memory == b.memory && a.disks == b.disks
            && a.highestProtocolVersion == b.highestProtocolVersion && a.maxSubChannels == b.maxSubChannels
    }

    /// A serial the record can carry: printable ASCII, at most 64 bytes.
    public static func isValidSerial(_ s: String) -> Bool {
        s.utf8.count <= serialBytes && s.utf8.allSatisfy { (0x20...0x7E).contains($0) }
    }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(vpCount)
        w.u32(sintPolling ? 1 : 0)
        w.u32(synicRing.recordSize)
        w.u32(synicRing.capacity)
        w.u32(deviceRing.recordSize)
        w.u32(deviceRing.capacity)
        w.u32(UInt32(memory.count))
        w.u32(UInt32(disks.count))
        for m in memory {
            w.u64(m.base)
            w.u64(m.size)
            w.u64(m.offset)
        }
        for d in disks {
            w.u64(d.sizeBytes)
            w.u32(d.readOnly ? 1 : 0)
            w.u32(d.cache.rawValue)
            let serial = Array(d.serial.utf8.prefix(Self.serialBytes))
            w.raw(serial + [UInt8](repeating: 0, count: Self.serialBytes - serial.count))
        }
        w.u32(UInt32(highestProtocolVersion))
        w.u32(maxSubChannels)
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> StorageWorkerSetup {
        let t = recordType.rawValue
        let vpCount = try r.u32(), flags = try r.u32()
        let synicSize = try r.u32(), synicCapacity = try r.u32(), deviceSize = try r.u32(), deviceCapacity = try r.u32()
        let rangeCount = try r.u32(), diskCount = try r.u32()
        guard (1...SynICRouterSetup.maxVPs).contains(vpCount) else {
            throw .invalidField(type: t, field: "vp count", value: UInt64(vpCount))
        }
        guard flags & ~1 == 0 else { throw .invalidField(type: t, field: "flags", value: UInt64(flags)) }
        guard (1...UInt32(SynICRouterSetup.maxRanges)).contains(rangeCount) else {
            throw .tooManyEntries(type: t, count: rangeCount, limit: SynICRouterSetup.maxRanges)
        }
        guard (1...UInt32(maxDisks)).contains(diskCount) else { throw .tooManyEntries(type: t, count: diskCount, limit: maxDisks) }
        var ranges: [SynICRouterSetup.MemoryRange] = []
        for _ in 0..<rangeCount {
            let base = try r.u64(), size = try r.u64(), offset = try r.u64()
            guard size > 0, !base.addingReportingOverflow(size).overflow, !offset.addingReportingOverflow(size).overflow
            else { throw .invalidField(type: t, field: "memory range", value: base) }
            ranges.append(.init(base: base, size: size, offset: offset))
        }
        var disks: [Disk] = []
        for _ in 0..<diskCount {
            let size = try r.u64(), diskFlags = try r.u32(), rawCache = try r.u32()
            let serialRaw = try r.rawBytes(serialBytes)
            guard size > 0, size % 512 == 0 else { throw .invalidField(type: t, field: "disk size", value: size) }
            guard diskFlags & ~1 == 0 else { throw .invalidField(type: t, field: "disk flags", value: UInt64(diskFlags)) }
            guard let cache = Disk.Cache(rawValue: rawCache) else { throw .invalidField(type: t, field: "cache mode", value: UInt64(rawCache)) }
            let length = serialRaw.firstIndex(of: 0) ?? serialBytes
            guard serialRaw[length...].allSatisfy({ $0 == 0 }), serialRaw[..<length].allSatisfy({ (0x20...0x7E).contains($0) }) else {
                throw .invalidField(type: t, field: "serial", value: UInt64(length))
            }
            disks.append(Disk(sizeBytes: size, readOnly: diskFlags & 1 != 0, cache: cache,
                              serial: String(decoding: serialRaw[..<length], as: UTF8.self)))
        }
        let highest = try r.u32()
        guard highest <= 0xFFFF, protocolVersions.contains(UInt16(highest)) else {
            throw .invalidField(type: t, field: "protocol version", value: UInt64(highest))
        }
        let subChannels = try r.u32()
        guard subChannels <= min(vpCount - 1, ChannelControlRecord.maxSubChannels) else {
            throw .invalidField(type: t, field: "sub-channels", value: UInt64(subChannels))
        }
        return StorageWorkerSetup(vpCount: vpCount, sintPolling: flags & 1 != 0, synicRing: (synicSize, synicCapacity),
                                  deviceRing: (deviceSize, deviceCapacity), memory: ranges, disks: disks,
                                  highestProtocolVersion: UInt16(highest), maxSubChannels: subChannels)
    }
}

/// Supervisor -> VMBus worker, after its SINT2 eventfd batches and before the filter: a device
/// that another worker serves (today the storage worker's SCSI controller). The VMBus worker
/// offers it after its own devices (so its relid follows theirs), hands its channel over with
/// `ChannelControlRecord`s in ring 0 of the device region and reads `ChannelAnswerRecord`s from
/// ring 1. Attached fds: the device worker's doorbell (rung after a push to ring 0), then the
/// VMBus worker's device doorbell (the device worker rings it after a push to ring 1).
///
/// ```
/// body: 0 u32 owner (3 storage)   4 u32 region id (3)   8 u32 ring record size   12 u32 ring capacity
///      16 u32 sub-channel limit (0...ChannelControlRecord.maxSubChannels; version 2): the
///         device's sub-channels get the relids right after its own (primary + 1 ... + limit),
///         whose event connections the router publishes with the device worker as their owner
/// ```
public struct VMBusRemoteDeviceSetup: WireRecord, Equatable {
    public static let recordType = WireRecordType.vmbusRemoteDeviceSetup
    public static let version: UInt16 = 2

    public var owner: WorkerKind
    public var regionID: UInt32
    public var ringRecordSize: UInt32
    public var ringCapacity: UInt32
    public var maxSubChannels: UInt32

    public init(owner: WorkerKind, regionID: UInt32, ringRecordSize: UInt32, ringCapacity: UInt32, maxSubChannels: UInt32 = 0) {
        self.maxSubChannels = maxSubChannels
        self.owner = owner
        self.regionID = regionID
        self.ringRecordSize = ringRecordSize
        self.ringCapacity = ringCapacity
    }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(UInt32(owner.rawValue))
        w.u32(regionID)
        w.u32(ringRecordSize)
        w.u32(ringCapacity)
        w.u32(maxSubChannels)
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> VMBusRemoteDeviceSetup {
        let t = recordType.rawValue
        let owner = try r.u32(), region = try r.u32(), size = try r.u32(), capacity = try r.u32(), sub = try r.u32()
        guard sub <= ChannelControlRecord.maxSubChannels else { throw .invalidField(type: t, field: "sub-channels", value: UInt64(sub)) }
        guard owner == UInt32(WorkerKind.storage.rawValue) else { throw .invalidField(type: t, field: "owner", value: UInt64(owner)) }
        guard region == DeviceRegion.regionID else { throw .invalidField(type: t, field: "region id", value: UInt64(region)) }
        return VMBusRemoteDeviceSetup(owner: .storage, regionID: region, ringRecordSize: size, ringCapacity: capacity,
                                      maxSubChannels: sub)
    }
}
