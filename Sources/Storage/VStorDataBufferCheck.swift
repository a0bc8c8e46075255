import VMBus

/// The check of an EXECUTE_SRB's data buffer, described by the GPA-direct packet's range list
/// (read by `VMBusGPADirectRanges`), before the worker maps a page of it. Pure.
///
/// storvsc sends one range whose length is the transfer length (`storvsc_queuecommand`, one
/// `vmbus_packet_mpb_array` range; `virt_boundary_mask` 4095 so the pages have no gaps), or an
/// in-band packet with no buffer. The rules:
/// - no buffer: fine when `data_transfer_length` is 0 (any ranges are ignored);
/// - otherwise exactly one range (OpenVMM `Range::new` refuses more), at least
///   `data_transfer_length` bytes long;
/// - every PFN of the range inside guest RAM.
///
/// A refusal is completed to the guest at once with `VStorDataBufferCheck.completion`:
/// SRB_STATUS_INVALID_REQUEST | AUTOSENSE_VALID, CHECK CONDITION, ILLEGAL REQUEST / INVALID
/// FIELD IN CDB, nothing transferred; Linux fails the command without retrying. (OpenVMM ends
/// the channel's worker with "Invalid data transfer length" or an access error instead, which
/// leaves the guest's request hanging for ever: storvsc's timeout handler always re-arms.)
public enum VStorDataBufferCheck {
    public enum Problem: Error, Hashable, Sendable {
        /// data_transfer_length > 0 and the packet has no range list (in-band).
        case noBuffer
        /// More than one range.
        case tooManyRanges(count: UInt32)
        /// The range is shorter than data_transfer_length.
        case tooShort(have: UInt32, need: UInt32)
        /// A PFN outside guest RAM.
        case pageOutsideRAM(pfn: UInt64)
        /// The range list itself is malformed (`VMBusGPADirectRanges.Problem`).
        case badRangeList
    }

    /// One range as the caller read it.
    public struct PageRange: Hashable, Sendable {
        public var byteCount: UInt32
        public var byteOffset: UInt32
        public var pfns: [UInt64]
        public init(byteCount: UInt32, byteOffset: UInt32, pfns: [UInt64]) {
            self.byteCount = byteCount
            self.byteOffset = byteOffset
            self.pfns = pfns
        }
    }

    /// True when page `pfn` lies wholly inside one of `ram` (guest-physical byte ranges).
    public static func pageInRAM(_ pfn: UInt64, ram: [Range<UInt64>]) -> Bool {
        guard pfn <= (UInt64.max >> 12) - 1 else { return false }
        let start = pfn << 12
        return ram.contains { $0.lowerBound <= start && start + 4096 <= $0.upperBound }
    }

    /// Checks a range list given as values (nil: an in-band packet).
    public static func check(ranges: [PageRange]?, dataTransferLength: UInt32, ram: [Range<UInt64>]) -> Problem? {
        guard dataTransferLength > 0 else { return nil }
        guard let ranges, let first = ranges.first else { return .noBuffer }
        guard ranges.count == 1 else { return .tooManyRanges(count: UInt32(ranges.count)) }
        guard first.byteCount >= dataTransferLength else { return .tooShort(have: first.byteCount, need: dataTransferLength) }
        for pfn in first.pfns where !pageInRAM(pfn, ram: ram) { return .pageOutsideRAM(pfn: pfn) }
        return nil
    }

    /// Checks the range list of a GPA-direct packet straight from the ring (no copy of the PFNs);
    /// `packet` nil: an in-band packet. On success, the range (nil when there is no buffer).
    public static func check<Memory>(packet: VMBusRingPacket<Memory>?, dataTransferLength: UInt32,
                                     ram: [Range<UInt64>]) -> Result<VMBusGPADirectRanges<Memory>.Range?, Problem> {
        guard dataTransferLength > 0 else { return .success(nil) }
        guard let packet else { return .failure(.noBuffer) }
        do throws(VMBusGPADirectRanges<Memory>.Problem) {
            var list = try VMBusGPADirectRanges(packet: packet)
            guard list.rangeCount == 1 else { return .failure(.tooManyRanges(count: list.rangeCount)) }
            guard let range = try list.next() else { return .failure(.noBuffer) }
            guard range.byteCount >= dataTransferLength else {
                return .failure(.tooShort(have: range.byteCount, need: dataTransferLength))
            }
            for i in 0..<range.pageCount {
                guard let pfn = range.pfn(i) else { return .failure(.badRangeList) }
                if !pageInRAM(pfn, ram: ram) { return .failure(.pageOutsideRAM(pfn: pfn)) }
            }
            return .success(range)
        } catch {
            return .failure(.badRangeList)
        }
    }

    /// What the guest is told about a refused buffer.
    public static let refusal = SCSICompletion.checkCondition(.illegalRequest(.invalidFieldInCDB), srbStatus: .invalidRequest)

    /// The COMPLETE_IO for an SRB whose buffer was refused.
    public static func completion(for srb: VStorSRB, problem: Problem) -> VStorReply {
        VStorProtocol.completion(for: srb, result: refusal)
    }
}
