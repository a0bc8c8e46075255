/// The framing every integration-service (IC) packet shares: the payload of one INBAND packet
/// on a heartbeat, shutdown or timesync channel (Linux include/linux/hyperv.h
/// `struct vmbuspipe_hdr`, `struct icmsg_hdr`, `struct icmsg_negotiate`, drivers/hv/hv_util.c,
/// drivers/hv/channel_mgmt.c `vmbus_prep_negotiate_resp`; OpenVMM hyperv_ic_protocol).
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | pipe header (`VMBusPipeHeader`) |
/// | 8 | 20 | IC header (`VMBusICMessageHeader`) |
/// | 28 | ... | body: negotiate, heartbeat, shutdown or timesync |
///
/// The host sends requests (icflags TRANSACTION | REQUEST = 3); the guest edits the same
/// buffer in place and sends it back with icflags TRANSACTION | RESPONSE (Linux: 5), the
/// request's packet transaction id and the request's length.

/// An IC version as the wire carries it (`struct ic_version`): u16 major, then u16 minor.
/// Not `VMBusVersion`, whose u32 puts the major in the high half.
public struct VMBusICVersion: Equatable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var major: UInt16
    public var minor: UInt16

    public init(_ major: UInt16, _ minor: UInt16) {
        self.major = major
        self.minor = minor
    }

    public static func < (a: Self, b: Self) -> Bool { (a.major, a.minor) < (b.major, b.minor) }
    public var description: String { "\(major).\(minor)" }

    /// Framework versions the host offers, as OpenVMM (`FRAMEWORK_VERSIONS`); Linux prefers 3.0.
    public static let frameworkVersions = [VMBusICVersion(1, 0), VMBusICVersion(3, 0)]
}

/// `icmsgtype`, the u16 at +12. Open: the guest writes any value.
public struct VMBusICMessageType: RawRepresentable, Equatable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// ICMSGTYPE_NEGOTIATE.
    public static let negotiate = Self(rawValue: 0)
    /// ICMSGTYPE_HEARTBEAT.
    public static let heartbeat = Self(rawValue: 1)
    /// ICMSGTYPE_KVPEXCHANGE (not served).
    public static let kvpExchange = Self(rawValue: 2)
    /// ICMSGTYPE_SHUTDOWN.
    public static let shutdown = Self(rawValue: 3)
    /// ICMSGTYPE_TIMESYNC.
    public static let timesync = Self(rawValue: 4)

    public var description: String {
        switch rawValue {
        case 0: return "negotiate"
        case 1: return "heartbeat"
        case 2: return "kvp"
        case 3: return "shutdown"
        case 4: return "timesync"
        default: return "type \(rawValue)"
        }
    }
}

/// `icflags` bits (ICMSGHDRFLAG_*).
public enum VMBusICFlags {
    public static let transaction: UInt8 = 1
    public static let request: UInt8 = 2
    public static let response: UInt8 = 4
    /// What the host sends: a transaction the guest must answer (Windows ignores requests
    /// without TRANSACTION, per OpenVMM).
    public static let hostRequest: UInt8 = transaction | request
}

/// `status` values (HV_S_OK, HV_E_FAIL).
public enum VMBusICStatus {
    public static let ok: UInt32 = 0
    public static let fail: UInt32 = 0x8000_4005
}

/// `struct vmbuspipe_hdr`, 8 bytes at +0: {+0 u32 flags, +4 u32 msgsize}. Linux neither
/// writes nor reads it (it edits the request in place); the host fills it as OpenVMM does:
/// flags 1 (data) and msgsize = the bytes after the pipe header.
public enum VMBusPipeHeader {
    public static let size = 8
    public static let flagsOffset = 0
    public static let messageSizeOffset = 4
    /// 1: a data message (OpenVMM's pipe header for IC messages).
    public static let flagData: UInt32 = 1
}

/// `struct icmsg_hdr`, 20 bytes at +8 of the payload:
///
/// | payload offset | size | field |
/// |---|---|---|
/// | 8 | 4 | icverframe: framework version {u16 major, u16 minor} |
/// | 12 | 2 | icmsgtype (`VMBusICMessageType`) |
/// | 14 | 4 | icvermsg: message version |
/// | 18 | 2 | icmsgsize: body bytes |
/// | 20 | 4 | status |
/// | 24 | 1 | ictransaction_id (the host sends 0 and, as OpenVMM, wants 0 back) |
/// | 25 | 1 | icflags (`VMBusICFlags`) |
/// | 26 | 2 | reserved |
public struct VMBusICMessageHeader: Equatable, Sendable {
    public static let offset = VMBusPipeHeader.size
    public static let size = 20
    /// ICMSG_HDR: pipe header plus IC header, where every body starts. Linux drops a packet
    /// shorter than this.
    public static let bodyOffset = offset + size

    public static let frameworkVersionOffset = 8
    public static let messageTypeOffset = 12
    public static let messageVersionOffset = 14
    public static let messageSizeOffset = 18
    public static let statusOffset = 20
    public static let transactionIDOffset = 24
    public static let flagsOffset = 25
    public static let reservedOffset = 26

    public var frameworkVersion: VMBusICVersion
    public var messageType: VMBusICMessageType
    public var messageVersion: VMBusICVersion
    public var messageSize: UInt16
    public var status: UInt32
    public var transactionID: UInt8
    public var flags: UInt8

    public init(frameworkVersion: VMBusICVersion, messageType: VMBusICMessageType, messageVersion: VMBusICVersion,
                messageSize: UInt16, status: UInt32 = VMBusICStatus.ok, transactionID: UInt8 = 0,
                flags: UInt8 = VMBusICFlags.hostRequest) {
        self.frameworkVersion = frameworkVersion
        self.messageType = messageType
        self.messageVersion = messageVersion
        self.messageSize = messageSize
        self.status = status
        self.transactionID = transactionID
        self.flags = flags
    }

    /// Reads the header from a payload; throws when the payload is shorter than pipe header
    /// plus IC header.
    public init(decoding payload: UnsafeRawBufferPointer) throws(VMBusICMessageError) {
        let p = VMBusICPayloadReader(payload)
        guard payload.count >= Self.bodyOffset else { throw .truncated(needed: Self.bodyOffset, available: payload.count) }
        frameworkVersion = p.version(at: Self.frameworkVersionOffset)
        messageType = VMBusICMessageType(rawValue: p.u16(at: Self.messageTypeOffset))
        messageVersion = p.version(at: Self.messageVersionOffset)
        messageSize = p.u16(at: Self.messageSizeOffset)
        status = p.u32(at: Self.statusOffset)
        transactionID = p.u8(at: Self.transactionIDOffset)
        flags = p.u8(at: Self.flagsOffset)
    }

    /// A whole message: pipe header, this header (icmsgsize set to the body's length) and the body.
    public func message(body: [UInt8]) -> [UInt8] {
        var w = VMBusICPayloadWriter(size: Self.bodyOffset + body.count)
        w.u32(VMBusPipeHeader.flagData, at: VMBusPipeHeader.flagsOffset)
        w.u32(UInt32(Self.size + body.count), at: VMBusPipeHeader.messageSizeOffset)
        w.version(frameworkVersion, at: Self.frameworkVersionOffset)
        w.u16(messageType.rawValue, at: Self.messageTypeOffset)
        w.version(messageVersion, at: Self.messageVersionOffset)
        w.u16(UInt16(clamping: body.count), at: Self.messageSizeOffset)
        w.u32(status, at: Self.statusOffset)
        w.u8(transactionID, at: Self.transactionIDOffset)
        w.u8(flags, at: Self.flagsOffset)
        w.raw(body, at: Self.bodyOffset)
        return w.bytes
    }
}

/// `struct icmsg_negotiate`, the body of a NEGOTIATE message (at +28):
///
/// | payload offset | size | field |
/// |---|---|---|
/// | 28 | 2 | icframe_vercnt |
/// | 30 | 2 | icmsg_vercnt |
/// | 32 | 4 | reserved |
/// | 36 | 4 each | icversion_data[]: framework versions, then message versions |
///
/// The guest answers in place with counts 1/1 and [0] = framework, [1] = message version
/// (0/0 when nothing matched), icmsgsize 16. Linux refuses counts above 100
/// (IC_VERSION_NEGOTIATION_MAX_VER_COUNT).
public struct VMBusICNegotiate: Equatable, Sendable {
    public static let frameworkCountOffset = 28
    public static let messageCountOffset = 30
    public static let reservedOffset = 32
    public static let versionsOffset = 36
    /// IC_VERSION_NEGOTIATION_MAX_VER_COUNT.
    public static let maxVersionCount = 100
    /// The reply's smallest form: counts, reserved and two versions.
    public static let replyPayloadSize = versionsOffset + 8

    public var frameworkVersions: [VMBusICVersion]
    public var messageVersions: [VMBusICVersion]

    public init(frameworkVersions: [VMBusICVersion], messageVersions: [VMBusICVersion]) {
        self.frameworkVersions = frameworkVersions
        self.messageVersions = messageVersions
    }

    /// The host's request. The header carries the lowest versions (what Hyper-V puts there
    /// before anything is agreed; Linux does not read them).
    public func request() -> [UInt8] {
        var body = VMBusICPayloadWriter(size: 8 + 4 * (frameworkVersions.count + messageVersions.count))
        body.u16(UInt16(clamping: frameworkVersions.count), at: 0)
        body.u16(UInt16(clamping: messageVersions.count), at: 2)
        for (i, v) in (frameworkVersions + messageVersions).enumerated() { body.version(v, at: 8 + 4 * i) }
        let header = VMBusICMessageHeader(frameworkVersion: frameworkVersions.first ?? VMBusICVersion(1, 0), messageType: .negotiate,
                                          messageVersion: messageVersions.first ?? VMBusICVersion(1, 0), messageSize: 0)
        return header.message(body: body.bytes)
    }

    /// The guest's answer, as read from a reply payload.
    public enum Reply: Equatable, Sendable {
        /// Counts 1/1: what the guest chose.
        case chosen(framework: VMBusICVersion, message: VMBusICVersion)
        /// Counts 0/0: the guest found no common version.
        case noCommonVersion
    }

    /// Reads the counts and the two chosen versions. Counts other than 1/1 and 0/0 are an error.
    public static func reply(decoding payload: UnsafeRawBufferPointer) throws(VMBusICMessageError) -> Reply {
        guard payload.count >= replyPayloadSize else { throw .truncated(needed: replyPayloadSize, available: payload.count) }
        let p = VMBusICPayloadReader(payload)
        let fw = p.u16(at: frameworkCountOffset), msg = p.u16(at: messageCountOffset)
        switch (fw, msg) {
        case (1, 1): return .chosen(framework: p.version(at: versionsOffset), message: p.version(at: versionsOffset + 4))
        case (0, 0): return .noCommonVersion
        default: throw .badVersionCounts(framework: fw, message: msg)
        }
    }
}

/// Why an IC payload was not accepted.
public enum VMBusICMessageError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(needed: Int, available: Int)
    case badVersionCounts(framework: UInt16, message: UInt16)

    public var description: String {
        switch self {
        case .truncated(let n, let a): return "IC payload of \(a) bytes, needs \(n)"
        case .badVersionCounts(let f, let m): return "negotiate reply with version counts \(f)/\(m)"
        }
    }
}

/// Bounds-checked little-endian reads from a payload copy: a read past the end gives 0 (the
/// callers check the length first; this only keeps a trap out of reach).
struct VMBusICPayloadReader {
    let bytes: UnsafeRawBufferPointer
    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    func load<T: FixedWidthInteger>(_: T.Type, at o: Int) -> T {
        guard o >= 0, o <= bytes.count, MemoryLayout<T>.size <= bytes.count - o else { return 0 }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: T.self))
    }

    func u8(at o: Int) -> UInt8 { load(UInt8.self, at: o) }
    func u16(at o: Int) -> UInt16 { load(UInt16.self, at: o) }
    func u32(at o: Int) -> UInt32 { load(UInt32.self, at: o) }
    func u64(at o: Int) -> UInt64 { load(UInt64.self, at: o) }
    func version(at o: Int) -> VMBusICVersion { VMBusICVersion(u16(at: o), u16(at: o + 2)) }
}

/// Builds a payload of a fixed size, fields at offsets.
struct VMBusICPayloadWriter {
    private(set) var bytes: [UInt8]
    init(size: Int) { bytes = [UInt8](repeating: 0, count: size) }

    mutating func u8(_ v: UInt8, at o: Int) { store(UInt64(v), at: o, count: 1) }
    mutating func u16(_ v: UInt16, at o: Int) { store(UInt64(v), at: o, count: 2) }
    mutating func u32(_ v: UInt32, at o: Int) { store(UInt64(v), at: o, count: 4) }
    mutating func u64(_ v: UInt64, at o: Int) { store(v, at: o, count: 8) }
    mutating func version(_ v: VMBusICVersion, at o: Int) {
        u16(v.major, at: o)
        u16(v.minor, at: o + 2)
    }
    mutating func raw(_ v: [UInt8], at o: Int) {
        for (i, b) in v.enumerated() where o + i < bytes.count { bytes[o + i] = b }
    }

    private mutating func store(_ v: UInt64, at o: Int, count: Int) {
        for i in 0..<count where o + i < bytes.count { bytes[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
    }
}
