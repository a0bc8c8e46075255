/// Records between the monitor and the VMBus worker (docs/processes.md, docs/vmbus.md).

/// Supervisor -> VMBus worker, right after `RegionLayout` (region 0 guest RAM, region 2 its
/// `WorkerStateRegion`): the partition's shape, which `VMBusServer.Configuration` needs (every
/// GPADL page is checked against these ranges). No fds.
///
/// ```
/// body: 0 u32 vp count (1...1024)   4 u32 memory range count (1...8)
///       then count ranges of 24 bytes: 0 u64 guest-physical base   8 u64 size
///       16 u64 offset in the guest-RAM region (as in SynICRouterSetup)
/// ```
public struct VMBusWorkerSetup: WireRecord {
    public static let recordType = WireRecordType.vmbusWorkerSetup
    public static let version: UInt16 = 1

    public var vpCount: UInt32
    public var memory: [SynICRouterSetup.MemoryRange]

    public init(vpCount: UInt32, memory: [SynICRouterSetup.MemoryRange]) {
        self.vpCount = vpCount
        self.memory = memory
    }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(vpCount)
        w.u32(UInt32(memory.count))
        for m in memory {
            w.u64(m.base)
            w.u64(m.size)
            w.u64(m.offset)
        }
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> VMBusWorkerSetup {
        let t = recordType.rawValue
        let vpCount = try r.u32()
        let count = try r.u32()
        guard (1...SynICRouterSetup.maxVPs).contains(vpCount) else {
            throw .invalidField(type: t, field: "vp count", value: UInt64(vpCount))
        }
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
        return VMBusWorkerSetup(vpCount: vpCount, memory: ranges)
    }
}
