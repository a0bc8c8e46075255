/// The page-range list of a VM_PKT_DATA_USING_GPA_DIRECT packet (Linux include/linux/hyperv.h
/// `struct vmdata_gpa_direct`, `struct vmbus_packet_mpb_array`, `struct hv_mpb_array`;
/// drivers/hv/channel.c `vmbus_sendpacket_mpb_desc`): in the packet's header extension, after
/// the 16-byte descriptor,
///
/// | offset in packet | size | field |
/// |---|---|---|
/// | 16 | 4 | reserved (Linux leaves garbage: ignored) |
/// | 20 | 4 | rangecount (>= 1) |
/// | 24 | ... | ranges: {u32 len; u32 offset (< 4096); u64 pfn[ceil((offset + len) / 4096)]} |
///
/// The list is read straight from the ring, range by range, without a copy of the whole: each
/// range is checked (offset in its page, length > 0, PFNs inside the header extension, and so
/// offset8 >= 3) as `next()` reaches it, on values read once. The PFNs are views; the device
/// checks each page against guest RAM when it maps it.
public struct VMBusGPADirectRanges<Memory: VMBusRingMemory> {
    public enum Problem: Error, Equatable, Sendable {
        /// offset8 < 3: no room for the reserved word and the range count (OpenVMM #3692).
        case noRangeHeader
        case noRanges
        case offsetNotInPage(index: Int, offset: UInt32)
        case emptyRange(index: Int)
        /// The range's header or PFNs run past the header extension.
        case rangePastExtension(index: Int)
    }

    /// One range of the list.
    public struct Range {
        public let byteCount: UInt32
        public let byteOffset: UInt32
        /// ceil((byteOffset + byteCount) / 4096) u64 PFNs.
        public let pfns: VMBusRingBytes<Memory>

        public var pageCount: Int { pfns.count / 8 }
        /// PFN `i`; nil past the end.
        public func pfn(_ i: Int) -> UInt64? { pfns.load(UInt64.self, at: i * 8) }
    }

    let list: VMBusRingBytes<Memory>
    public let rangeCount: UInt32
    private var index = 0
    private var at = 8

    /// Reads the range count; throws when the packet has no room for it or it is 0.
    public init(packet: VMBusRingPacket<Memory>) throws(Problem) {
        list = packet.headerExtension
        guard let count = list.load(UInt32.self, at: 4) else { throw .noRangeHeader }
        guard count >= 1 else { throw .noRanges }
        rangeCount = count
    }

    /// The next range, checked; nil after the last.
    public mutating func next() throws(Problem) -> Range? {
        guard index < Int(rangeCount) else { return nil }
        guard let len = list.load(UInt32.self, at: at), let offset = list.load(UInt32.self, at: at + 4) else {
            throw .rangePastExtension(index: index)
        }
        guard offset < 4096 else { throw .offsetNotInPage(index: index, offset: offset) }
        guard len > 0 else { throw .emptyRange(index: index) }
        let pages = Int((UInt64(offset) + UInt64(len) + 4095) / 4096)
        guard let pfns = list.slice(from: at + 8, count: pages * 8) else { throw .rangePastExtension(index: index) }
        at += 8 + pages * 8
        index += 1
        return Range(byteCount: len, byteOffset: offset, pfns: pfns)
    }
}
