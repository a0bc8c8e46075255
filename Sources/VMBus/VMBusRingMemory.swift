/// The memory one VMBus ring lives in: a 4096-byte control page (the indices) and a data area
/// addressed by ring offset (Linux include/linux/hyperv.h `struct hv_ring_buffer`; compare
/// OpenVMM vmbus_ring `RingMem`). The ring code reaches memory only through this protocol, so
/// the same code runs over plain memory in the tests and over a GPADL's guest pages in a worker.
///
/// Every pointer here is into memory the peer (the guest) can write at any time: the ring code
/// reads each shared field once into a local before checking it, and never lets a value it
/// read steer an access outside `dataCount`.
public protocol VMBusRingMemory: AnyObject {
    /// The control page: 4096 bytes, 4096-aligned (the indices are accessed atomically).
    var control: UnsafeMutableRawPointer { get }
    /// Bytes in the data area: a multiple of 8, > 0 and < 2^31.
    var dataCount: Int { get }
    /// The contiguous memory from ring offset `offset` (0 <= offset < dataCount) to the end of
    /// its run (a page boundary, a discontinuity, or the end of the data area): at least 1 byte.
    func dataRun(at offset: Int) -> UnsafeMutableRawBufferPointer
}

/// Why ring memory could not be set up.
public enum VMBusRingSetupError: Error, Equatable, Sendable, CustomStringConvertible {
    case badGeometry(String)
    /// The indices already in the ring are not valid (a guest or predecessor left garbage).
    case corrupted(VMBusRingCorruption)

    public var description: String {
        switch self {
        case .badGeometry(let s): return "VMBus ring: \(s)"
        case .corrupted(let c): return "VMBus ring: \(c)"
        }
    }
}

extension VMBusRingMemory {
    static var pageSize: Int { 4096 }

    /// Copies `count` bytes starting at ring offset `offset` into `destination`, wrapping at the
    /// end of the data area. The caller keeps `offset < dataCount` and `count <= dataCount`.
    func copyOut(from offset: Int, count: Int, into destination: UnsafeMutableRawPointer) {
        var at = offset, done = 0
        while done < count {
            let run = dataRun(at: at)
            let n = min(run.count, count - done)
            guard n > 0, let base = run.baseAddress else { return }
            (destination + done).copyMemory(from: base, byteCount: n)
            done += n
            at += n
            if at >= dataCount { at = 0 }
        }
    }

    /// Copies `count` bytes from `source` into the ring at `offset`, wrapping. Same contract.
    func copyIn(to offset: Int, from source: UnsafeRawPointer?, count: Int) {
        var at = offset, done = 0
        while done < count {
            let run = dataRun(at: at)
            let n = min(run.count, count - done)
            guard n > 0, let base = run.baseAddress else { return }
            if let source {
                base.copyMemory(from: source + done, byteCount: n)
            } else {
                base.initializeMemory(as: UInt8.self, repeating: 0, count: n)
            }
            done += n
            at += n
            if at >= dataCount { at = 0 }
        }
    }
}

/// A ring in one contiguous allocation (tests, benchmarks) or in caller-owned memory such as a
/// mapped memfd.
public final class VMBusFlatRingMemory: VMBusRingMemory, @unchecked Sendable {
    public let control: UnsafeMutableRawPointer
    public let dataCount: Int
    let data: UnsafeMutableRawPointer
    private let owned: Bool

    /// A zeroed ring of `dataCount` data bytes, with its control page, owned by this object.
    public init(dataCount: Int) throws(VMBusRingSetupError) {
        try Self.check(dataCount)
        control = UnsafeMutableRawPointer.allocate(byteCount: 4096 + dataCount, alignment: 4096)
        control.initializeMemory(as: UInt8.self, repeating: 0, count: 4096 + dataCount)
        data = control + 4096
        self.dataCount = dataCount
        owned = true
    }

    /// A ring over memory the caller owns and keeps mapped: a 4096-aligned control page and
    /// `dataCount` contiguous data bytes.
    public init(control: UnsafeMutableRawPointer, data: UnsafeMutableRawPointer, dataCount: Int) throws(VMBusRingSetupError) {
        try Self.check(dataCount)
        guard Int(bitPattern: control) % 4096 == 0 else { throw .badGeometry("control page not 4096-aligned") }
        self.control = control
        self.data = data
        self.dataCount = dataCount
        owned = false
    }

    static func check(_ dataCount: Int) throws(VMBusRingSetupError) {
        guard dataCount > 0, dataCount % 8 == 0, dataCount < 1 << 31 else {
            throw .badGeometry("data area of \(dataCount) bytes")
        }
    }

    deinit {
        if owned { control.deallocate() }
    }

    public func dataRun(at offset: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: data + offset, count: dataCount - offset)
    }
}

/// Guest RAM as the worker maps it: GPA ranges and where each is mapped.
public struct VMBusGuestMemoryMap: @unchecked Sendable {
    public struct Region {
        /// Page-aligned GPA range.
        public var gpa: Range<UInt64>
        /// Where `gpa.lowerBound` is mapped.
        public var host: UnsafeMutableRawPointer

        public init(gpa: Range<UInt64>, host: UnsafeMutableRawPointer) {
            self.gpa = gpa
            self.host = host
        }
    }

    public let regions: [Region]

    public init(regions: [Region]) {
        self.regions = regions
    }

    /// The mapped page `pfn`, when it lies wholly inside one region.
    public func page(pfn: UInt64) -> UnsafeMutableRawPointer? {
        guard pfn < 1 << 52 else { return nil }
        let gpa = pfn * 4096
        for r in regions where r.gpa.lowerBound <= gpa && gpa < r.gpa.upperBound && r.gpa.upperBound - gpa >= 4096 {
            return r.host + Int(gpa - r.gpa.lowerBound)
        }
        return nil
    }
}

/// A ring over guest pages named by a GPADL: the first page is the control page, the rest the
/// data area, in GPADL order (pages need not be contiguous; runs of pages that are contiguous
/// in the mapping are used as one, so most packets are one run).
public final class VMBusPagedRingMemory: VMBusRingMemory, @unchecked Sendable {
    public let control: UnsafeMutableRawPointer
    public let dataCount: Int
    private let pages: [UnsafeMutableRawPointer]
    /// For each data page, bytes contiguous in the mapping from its start.
    private let runBytes: [Int]

    /// Resolves every PFN through `map`; throws when one is outside guest RAM or there is no
    /// data page.
    public init(map: VMBusGuestMemoryMap, pfns: ArraySlice<UInt64>) throws(VMBusRingSetupError) {
        guard pfns.count >= 2, pfns.count - 1 < (1 << 31) / 4096 else {
            throw .badGeometry("\(pfns.count) pages: a ring needs a control page and 1...524287 data pages")
        }
        var resolved: [UnsafeMutableRawPointer] = []
        for pfn in pfns {
            guard let p = map.page(pfn: pfn) else { throw .badGeometry("page 0x\(String(pfn, radix: 16)) is not guest RAM") }
            resolved.append(p)
        }
        guard Int(bitPattern: resolved[0]) % 4096 == 0 else { throw .badGeometry("control page not 4096-aligned in the mapping") }
        control = resolved[0]
        pages = Array(resolved.dropFirst())
        dataCount = pages.count * 4096
        var runs = [Int](repeating: 4096, count: pages.count)
        for i in stride(from: pages.count - 2, through: 0, by: -1) where pages[i] + 4096 == pages[i + 1] {
            runs[i] = 4096 + runs[i + 1]
        }
        runBytes = runs
    }

    public func dataRun(at offset: Int) -> UnsafeMutableRawBufferPointer {
        let page = offset / 4096, within = offset % 4096
        return UnsafeMutableRawBufferPointer(start: pages[page] + within, count: runBytes[page] - within)
    }
}

/// How a channel's ring GPADL splits into its two rings (Linux drivers/hv/channel.c
/// `__vmbus_open`): pages [0, downstream) are the guest-to-host ring (Linux "outbound"), pages
/// [downstream, N) the host-to-guest ring ("inbound"); each starts with its control page.
public enum VMBusChannelRings {
    public static func split(pfns: [UInt64], downstreamPageOffset: UInt32)
        -> (guestToHost: ArraySlice<UInt64>, hostToGuest: ArraySlice<UInt64>)? {
        let off = Int(downstreamPageOffset)
        guard off >= 2, pfns.count >= 4, off <= pfns.count - 2 else { return nil }
        return (pfns[0..<off], pfns[off...])
    }
}
