/// The GPADL ("guest physical address descriptor list") messages (Linux include/linux/hyperv.h
/// `struct vmbus_channel_gpadl_header`, `_body`, `_created`, `_teardown`, `_torndown`,
/// `struct gpa_range`; drivers/hv/channel.c `create_gpadl_header`).
///
/// A GPADL names guest pages for the host: `rangecount` ranges packed into `range_buflen`
/// bytes of u64 words, each range {u32 byte_count; u32 byte_offset; u64 pfn[]} with
/// ceil((byte_offset + byte_count) / 4096) PFNs. The words start in GPADL_HEADER (up to 26
/// PFNs of Linux's one range fit after the range header) and continue in GPADL_BODY messages.

/// CHANNELMSG_GPADL_HEADER (8), guest to host, 20 + 8n bytes:
///
/// | offset | size | field |
/// |---|---|---|
/// | 8 | 4 | child_relid |
/// | 12 | 4 | gpadl (the guest's handle; Linux counts from 0xE1E10) |
/// | 16 | 2 | range_buflen: bytes of range words in the whole GPADL |
/// | 18 | 2 | rangecount |
/// | 20 | 8n | the first range words (`struct gpa_range` headers and PFNs) |
public struct VMBusGPADLHeader: Equatable, Sendable {
    public static let type = VMBusMessageType.gpadlHeader
    /// The fixed part; the words follow.
    public static let size = 20
    /// Words that fit after the fixed part in one 240-byte message.
    public static let maxWordsInMessage = (VMBusMessageHeader.maxMessageSize - size) / 8

    public var childRelID: UInt32
    public var gpadl: UInt32
    public var rangeBufferLength: UInt16
    public var rangeCount: UInt16
    /// The words this message carries, at most what `rangeBufferLength` asks for (a longer
    /// message is trimmed, as OpenVMM does for UEFI's full-size messages).
    public var words: [UInt64]

    public init(childRelID: UInt32, gpadl: UInt32, rangeBufferLength: UInt16, rangeCount: UInt16, words: [UInt64]) {
        self.childRelID = childRelID
        self.gpadl = gpadl
        self.rangeBufferLength = rangeBufferLength
        self.rangeCount = rangeCount
        self.words = words
    }

    /// u64 words the whole GPADL holds.
    public var totalWords: Int { Int(rangeBufferLength) / 8 }

    public init(decoding bytes: [UInt8]) throws(VMBusMessageError) {
        let r = try MessageReader(bytes, type: Self.type, minimumSize: Self.size)
        childRelID = r.u32(at: 8)
        gpadl = r.u32(at: 12)
        rangeBufferLength = r.u16(at: 16)
        rangeCount = r.u16(at: 18)
        words = r.u64s(from: Self.size, limit: Int(rangeBufferLength) / 8)
    }

    public func encoded() -> [UInt8] {
        var w = MessageWriter(type: Self.type, size: Self.size)
        w.u32(childRelID, at: 8)
        w.u32(gpadl, at: 12)
        w.u16(rangeBufferLength, at: 16)
        w.u16(rangeCount, at: 18)
        for word in words.prefix(Self.maxWordsInMessage) { w.append(word) }
        return w.bytes
    }
}

/// CHANNELMSG_GPADL_BODY (9), guest to host, 16 + 8n bytes:
/// {+8 u32 msgnumber (Linux leaves 0; ignored); +12 u32 gpadl; +16 u64 words[]}. Bodies carry
/// no relid: they are matched on the gpadl handle.
public struct VMBusGPADLBody: Equatable, Sendable {
    public static let type = VMBusMessageType.gpadlBody
    public static let size = 16
    public static let maxWordsInMessage = (VMBusMessageHeader.maxMessageSize - size) / 8

    public var messageNumber: UInt32
    public var gpadl: UInt32
    /// Every whole u64 in the message; the server takes only what the GPADL still needs.
    public var words: [UInt64]

    public init(messageNumber: UInt32 = 0, gpadl: UInt32, words: [UInt64]) {
        self.messageNumber = messageNumber
        self.gpadl = gpadl
        self.words = words
    }

    public init(decoding bytes: [UInt8]) throws(VMBusMessageError) {
        let r = try MessageReader(bytes, type: Self.type, minimumSize: Self.size)
        messageNumber = r.u32(at: 8)
        gpadl = r.u32(at: 12)
        words = r.u64s(from: Self.size, limit: Self.maxWordsInMessage)
    }

    public func encoded() -> [UInt8] {
        var w = MessageWriter(type: Self.type, size: Self.size)
        w.u32(messageNumber, at: 8)
        w.u32(gpadl, at: 12)
        for word in words.prefix(Self.maxWordsInMessage) { w.append(word) }
        return w.bytes
    }
}

/// CHANNELMSG_GPADL_CREATED (10), host to guest, 20 bytes: {+8 child_relid; +12 gpadl;
/// +16 creation_status}. Linux matches it on (relid, gpadl); a non-zero status fails the open.
public struct VMBusGPADLCreated: Equatable, Sendable {
    public static let type = VMBusMessageType.gpadlCreated
    public static let size = 20
    public var childRelID: UInt32
    public var gpadl: UInt32
    public var status: VMBusStatus
    public init(childRelID: UInt32, gpadl: UInt32, status: VMBusStatus) {
        self.childRelID = childRelID
        self.gpadl = gpadl
        self.status = status
    }
    public init(decoding bytes: [UInt8]) throws(VMBusMessageError) {
        let r = try MessageReader(bytes, type: Self.type, minimumSize: Self.size)
        childRelID = r.u32(at: 8)
        gpadl = r.u32(at: 12)
        status = VMBusStatus(rawValue: r.u32(at: 16))
    }
    public func encoded() -> [UInt8] {
        var w = MessageWriter(type: Self.type, size: Self.size)
        w.u32(childRelID, at: 8)
        w.u32(gpadl, at: 12)
        w.u32(status.rawValue, at: 16)
        return w.bytes
    }
}

/// CHANNELMSG_GPADL_TEARDOWN (11), guest to host, 16 bytes: {+8 child_relid; +12 gpadl}.
/// The guest waits for GPADL_TORNDOWN without a timeout.
public struct VMBusGPADLTeardown: Equatable, Sendable {
    public static let type = VMBusMessageType.gpadlTeardown
    public static let size = 16
    public var childRelID: UInt32
    public var gpadl: UInt32
    public init(childRelID: UInt32, gpadl: UInt32) {
        self.childRelID = childRelID
        self.gpadl = gpadl
    }
    public init(decoding bytes: [UInt8]) throws(VMBusMessageError) {
        let r = try MessageReader(bytes, type: Self.type, minimumSize: Self.size)
        childRelID = r.u32(at: 8)
        gpadl = r.u32(at: 12)
    }
    public func encoded() -> [UInt8] {
        var w = MessageWriter(type: Self.type, size: Self.size)
        w.u32(childRelID, at: 8)
        w.u32(gpadl, at: 12)
        return w.bytes
    }
}

/// CHANNELMSG_GPADL_TORNDOWN (12), host to guest, 12 bytes: {+8 gpadl}. Matched on gpadl only.
public struct VMBusGPADLTorndown: Equatable, Sendable {
    public static let type = VMBusMessageType.gpadlTorndown
    public static let size = 12
    public var gpadl: UInt32
    public init(gpadl: UInt32) { self.gpadl = gpadl }
    public init(decoding bytes: [UInt8]) throws(VMBusMessageError) {
        gpadl = try MessageReader(bytes, type: Self.type, minimumSize: Self.size).u32(at: 8)
    }
    public func encoded() -> [UInt8] {
        var w = MessageWriter(type: Self.type, size: Self.size)
        w.u32(gpadl, at: 8)
        return w.bytes
    }
}

/// One `struct gpa_range` of a complete GPADL, validated.
public struct VMBusGPARange: Equatable, Sendable {
    public static let pageSize: UInt64 = 4096

    public var byteCount: UInt32
    /// Offset of the first byte in the first page: < 4096.
    public var byteOffset: UInt32
    /// ceil((byteOffset + byteCount) / 4096) page frame numbers.
    public var pfns: [UInt64]

    public init(byteCount: UInt32, byteOffset: UInt32, pfns: [UInt64]) {
        self.byteCount = byteCount
        self.byteOffset = byteOffset
        self.pfns = pfns
    }

    /// The words of this range as the guest sends them.
    public var words: [UInt64] { [UInt64(byteCount) | UInt64(byteOffset) << 32] + pfns }

    /// Why a GPADL's words are not a valid range list.
    public enum Problem: Error, Equatable, Sendable {
        case noRanges
        case emptyRange(index: Int)
        case offsetNotInPage(index: Int, offset: UInt32)
        /// The words end inside range `index`.
        case rangeTruncated(index: Int)
        /// Words left after the last declared range.
        case trailingWords(count: Int)
        /// A PFN outside guest RAM (or past the 52-bit physical address space).
        case pfnOutsideRAM(UInt64)
    }

    /// Splits `words` into exactly `rangeCount` ranges and checks every PFN against guest RAM
    /// (`ram`: GPA ranges, each page must lie wholly inside one). All arithmetic is on
    /// UInt64 from u32 fields, so no guest value can overflow it.
    public static func parse(words: [UInt64], rangeCount: Int, ram: [Range<UInt64>]) -> Result<[VMBusGPARange], Problem> {
        guard rangeCount > 0 else { return .failure(.noRanges) }
        var ranges: [VMBusGPARange] = []
        var at = 0
        for index in 0..<rangeCount {
            guard at < words.count else { return .failure(.rangeTruncated(index: index)) }
            let byteCount = UInt32(truncatingIfNeeded: words[at])
            let byteOffset = UInt32(truncatingIfNeeded: words[at] >> 32)
            guard byteCount > 0 else { return .failure(.emptyRange(index: index)) }
            guard UInt64(byteOffset) < pageSize else { return .failure(.offsetNotInPage(index: index, offset: byteOffset)) }
            let pages = Int((UInt64(byteOffset) + UInt64(byteCount) + pageSize - 1) / pageSize)
            guard pages <= words.count - at - 1 else { return .failure(.rangeTruncated(index: index)) }
            let pfns = Array(words[(at + 1)..<(at + 1 + pages)])
            for pfn in pfns where !contains(ram, pfn: pfn) { return .failure(.pfnOutsideRAM(pfn)) }
            ranges.append(VMBusGPARange(byteCount: byteCount, byteOffset: byteOffset, pfns: pfns))
            at += 1 + pages
        }
        guard at == words.count else { return .failure(.trailingWords(count: words.count - at)) }
        return .success(ranges)
    }

    /// True when page `pfn` lies wholly inside one of `ram`'s GPA ranges.
    public static func contains(_ ram: [Range<UInt64>], pfn: UInt64) -> Bool {
        guard pfn < 1 << 52 else { return false }
        let start = pfn * pageSize
        return ram.contains { $0.lowerBound <= start && start < $0.upperBound && $0.upperBound - start >= pageSize }
    }
}
