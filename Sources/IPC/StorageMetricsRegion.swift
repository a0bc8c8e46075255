import Atomics

/// The storage worker's I/O counters per disk, in a sealed memfd the supervisor owns (region id
/// 4 of the storage worker's layout), so the control socket's `metrics` can read them while the
/// worker runs and a restarted worker continues them instead of starting from zero (docs/api.md,
/// "metrics"; docs/storage.md).
///
/// ```
///    0  header (supervisor): u32 magic "SVSM", u16 layout version 1, u16 reserved,
///       u32 disk count (1...64), u32 bucket count, u64 region size
///  256  disk i at 256 + 512 * i, u64 each (the worker's ring thread is the only writer):
///         0 requests: read, 8 write (WRITE and WRITE SAME), 16 flush (SYNCHRONIZE CACHE),
///        24 unmap, 32 other (every other SRB: INQUIRY, TEST UNIT READY, refused CDBs, ...)
///        40 bytes read, 48 bytes written (what the completions say moved)
///        56 errors: requests completed with MEDIUM ERROR (a failed host call, injected or not)
///        64 latency sum in nanoseconds, 72 reserved
///        80 latency buckets, `bucketCount` u64: bucket k < bucketCount - 1 counts requests
///           that took at most 2^k microseconds and more than 2^(k-1); the last counts the rest
/// ```
/// The size is rounded up to 4096.
///
/// A request is counted once, when its completion is written to the guest's ring, with the time
/// from when it was taken from the ring (a request a successor redoes: from when it redid it).
/// The writer stores with relaxed atomics (a plain store: no read-modify-write, no system call);
/// the reader loads with relaxed atomics.
///
/// Trust: the worker parses guest bytes and could be made to write anything here. The monitor
/// never reads the header back (it knows the geometry it created), clamps every value
/// (`Snapshot.sanitized`) and adds with saturation, so garbage is a wrong number, never a trap.
public final class StorageMetricsRegion: @unchecked Sendable {
    public static let regionID: UInt32 = 4
    public static let magic: UInt32 = 0x4D53_5653  // "SVSM"
    public static let layoutVersion: UInt16 = 1
    public static let maxDisks = 64
    /// 2^0 ... 2^24 µs (16.8 s), then the rest.
    public static let bucketCount = 26
    static let disksOffset = 256
    static let diskSize = 512
    static let bucketsOffset = 80
    /// Values above this are clamped by the reader (2^53: a Double holds every integer up to it).
    public static let clamp: UInt64 = 1 << 53

    public enum Op: Int, CaseIterable, Sendable {
        case read = 0, write, flush, unmap, other
        /// The metric label.
        public var label: String {
            switch self {
            case .read: "read"
            case .write: "write"
            case .flush: "flush"
            case .unmap: "unmap"
            case .other: "other"
            }
        }
    }

    public let region: SharedRegion
    public let diskCount: Int
    /// The disks' blocks, mapped (the geometry was checked: every word below is inside).
    let disks: UnsafeMutableRawPointer

    public static func size(disks: Int) -> Int { (disksOffset + disks * diskSize + 4095) / 4096 * 4096 }

    /// Supervisor: a new sealed memfd, every counter 0.
    public static func create(disks: Int, name: String = "synthvm-storage-metrics") throws(IPCError) -> StorageMetricsRegion {
        guard (1...maxDisks).contains(disks) else { throw .invalidArgument("storage metrics for \(disks) disks") }
        let r = try SharedRegion(name: name, size: size(disks: disks))
        try r.store(magic, at: 0)
        try r.store(layoutVersion, at: 4)
        try r.store(UInt32(disks), at: 8)
        try r.store(UInt32(bucketCount), at: 12)
        try r.store(UInt64(r.size), at: 16)
        return StorageMetricsRegion(checked: r, disks: disks)
    }

    /// Worker: checks the header the supervisor wrote against its disk count and the mapping.
    public convenience init(region: SharedRegion, disks: Int) throws(IPCError) {
        guard (1...Self.maxDisks).contains(disks), region.size == Self.size(disks: disks),
              try region.load(UInt32.self, at: 0) == Self.magic, try region.load(UInt16.self, at: 4) == Self.layoutVersion,
              try region.load(UInt32.self, at: 8) == UInt32(disks), try region.load(UInt32.self, at: 12) == UInt32(Self.bucketCount),
              try region.load(UInt64.self, at: 16) == UInt64(region.size)
        else { throw .invalidArgument("storage metrics region header does not match (\(disks) disks, \(region.size) bytes)") }
        self.init(checked: region, disks: disks)
    }

    init(checked region: SharedRegion, disks: Int) {
        self.region = region
        diskCount = disks
        // `size(disks:)` covers every disk's block; a mapping of that size has it.
        self.disks = region.pointer(at: Self.disksOffset, count: disks * Self.diskSize)!
    }

    /// The word at `field` (a byte offset in the disk's block, 8-aligned, below `diskSize`) of
    /// disk `disk` (< diskCount: callers check).
    @inline(__always) func word(_ disk: Int, _ field: Int) -> UnsafeAtomic<UInt64> {
        UnsafeAtomic(at: (disks + disk * Self.diskSize + field).assumingMemoryBound(to: UInt64.AtomicRepresentation.self))
    }

    @inline(__always) func add(_ disk: Int, _ field: Int, _ n: UInt64) {
        let w = word(disk, field)
        w.store(w.load(ordering: .relaxed) &+ n, ordering: .relaxed)
    }

    /// The bucket of a latency: the smallest k with 2^k µs >= it, the last for anything longer.
    public static func bucket(nanoseconds ns: UInt64) -> Int {
        let us = ns / 1000 + (ns % 1000 == 0 ? 0 : 1)
        if us <= 1 { return 0 }
        let k = 64 - (us - 1).leadingZeroBitCount
        return min(k, bucketCount - 1)
    }

    /// The upper bound of bucket k in seconds (nil: +Inf).
    public static func bucketBound(_ k: Int) -> Double? {
        k < bucketCount - 1 ? Double(UInt64(1) << UInt64(k)) / 1_000_000 : nil
    }

    /// Worker (the ring thread only): one completed request. Out-of-range disks are ignored.
    public func record(disk: Int, op: Op, bytes: UInt64, mediumError: Bool, nanoseconds: UInt64) {
        guard disk >= 0, disk < diskCount else { return }
        add(disk, op.rawValue * 8, 1)
        if bytes > 0, op == .read { add(disk, 40, bytes) }
        if bytes > 0, op == .write { add(disk, 48, bytes) }
        if mediumError { add(disk, 56, 1) }
        add(disk, 64, nanoseconds)
        add(disk, Self.bucketsOffset + 8 * Self.bucket(nanoseconds: nanoseconds), 1)
    }

    /// One disk's counters as the monitor reports them.
    public struct Snapshot: Equatable, Sendable {
        /// By `Op.rawValue`.
        public var requests: [UInt64]
        public var bytesRead: UInt64
        public var bytesWritten: UInt64
        public var errors: UInt64
        public var latencyNanoseconds: UInt64
        /// Non-cumulative, `bucketCount` of them.
        public var buckets: [UInt64]

        public init(requests: [UInt64], bytesRead: UInt64, bytesWritten: UInt64, errors: UInt64, latencyNanoseconds: UInt64,
                    buckets: [UInt64]) {
            self.requests = requests
            self.bytesRead = bytesRead
            self.bytesWritten = bytesWritten
            self.errors = errors
            self.latencyNanoseconds = latencyNanoseconds
            self.buckets = buckets
        }

        /// Every value at most `clamp`, the arrays of their sizes: what a hostile writer's bytes
        /// become before anything adds them.
        public var sanitized: Snapshot {
            func c(_ v: UInt64) -> UInt64 { min(v, StorageMetricsRegion.clamp) }
            func fit(_ a: [UInt64], _ n: Int) -> [UInt64] { (0..<n).map { $0 < a.count ? c(a[$0]) : 0 } }
            return Snapshot(requests: fit(requests, Op.allCases.count), bytesRead: c(bytesRead), bytesWritten: c(bytesWritten),
                            errors: c(errors), latencyNanoseconds: c(latencyNanoseconds),
                            buckets: fit(buckets, StorageMetricsRegion.bucketCount))
        }

        /// Requests of every op, saturating.
        public var requestsTotal: UInt64 { requests.reduce(0) { $0.addingSaturating($1) } }

        /// The histogram's cumulative counts (`le` order, the last is +Inf = _count), saturating.
        public var cumulativeBuckets: [UInt64] {
            var sum: UInt64 = 0
            return buckets.map { sum = sum.addingSaturating($0); return sum }
        }
    }

    /// Monitor: disk `disk`'s counters, sanitized (nil for a disk this region does not have).
    public func snapshot(disk: Int) -> Snapshot? {
        guard disk >= 0, disk < diskCount else { return nil }
        func v(_ field: Int) -> UInt64 { word(disk, field).load(ordering: .relaxed) }
        return Snapshot(requests: Op.allCases.map { v($0.rawValue * 8) }, bytesRead: v(40), bytesWritten: v(48), errors: v(56),
                        latencyNanoseconds: v(64), buckets: (0..<Self.bucketCount).map { v(Self.bucketsOffset + 8 * $0) }).sanitized
    }
}

extension UInt64 {
    /// `self + n`, or `UInt64.max` where that overflows.
    public func addingSaturating(_ n: UInt64) -> UInt64 {
        let (r, o) = addingReportingOverflow(n)
        return o ? .max : r
    }
}
