import Atomics
import IPC
import Partition

/// Guest RAM as a worker sees it: the guest-RAM memfd mapped as a `SharedRegion`, and the runs
/// of guest-physical addresses it backs (from `SynICRouterSetup`). Every access is bounds-checked
/// against both; a hostile GPA (the guest chose SIMP and SIEFP) gives nil/false, never a trap.
public final class RegionGuestMemory: PartitionMemory, @unchecked Sendable {
    public let region: SharedRegion
    public let ranges: [SynICRouterSetup.MemoryRange]

    public init(region: SharedRegion, ranges: [SynICRouterSetup.MemoryRange]) {
        self.region = region
        self.ranges = ranges
    }

    /// The region offset of [gpa, gpa + length), if one range holds all of it.
    func offset(gpa: UInt64, length: UInt64) -> Int? {
        for r in ranges where gpa >= r.base && gpa - r.base <= r.size && length <= r.size - (gpa - r.base) {
            let (o, overflow) = r.offset.addingReportingOverflow(gpa - r.base)
            guard !overflow, o <= UInt64(Int.max), region.contains(offset: Int(o), count: Int(length)) else { return nil }
            return Int(o)
        }
        return nil
    }

    public func contains(gpa: UInt64, length: UInt64) -> Bool {
        length <= UInt64(Int.max) && offset(gpa: gpa, length: length) != nil
    }

    public func read(gpa: UInt64, count: Int) -> [UInt8]? {
        guard count >= 0, let o = offset(gpa: gpa, length: UInt64(count)) else { return nil }
        return try? region.bytes(at: o, count: count)
    }

    public func write(gpa: UInt64, bytes: [UInt8]) -> Bool {
        guard let o = offset(gpa: gpa, length: UInt64(bytes.count)) else { return false }
        return (try? region.write(bytes, at: o)) != nil
    }

    /// A locked OR on the shared mapping: the guest (another vCPU) may be clearing neighbouring
    /// flags at the same moment.
    public func fetchOr(gpa: UInt64, mask: UInt8) -> UInt8? {
        guard let o = offset(gpa: gpa, length: 1), let a = try? region.atomic(UInt8.self, at: o) else { return nil }
        return a.loadThenBitwiseOr(with: mask, ordering: .acquiringAndReleasing)
    }
}
