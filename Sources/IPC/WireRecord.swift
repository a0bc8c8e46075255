/// Typed, versioned records exchanged between processes (over rings and sockets).
///
/// Every record is an 8-byte `WireHeader` followed by a body, all little-endian at explicit
/// offsets, never a Swift struct's memory image: the layout is a protocol that outlives any
/// compiler's struct layout, and is written down here and in docs. A decoder gets bytes from
/// a process it does not trust, so it checks, in order: a whole header is there, the type is
/// known, the version is the one this build speaks, the declared length is exactly the bytes
/// that follow, the body has every field, reserved fields are zero, values are in range, and
/// nothing is left over. Any failure is a `WireError`; nothing traps.

/// The header every record starts with.
///
/// ```
/// 0 u16 type   2 u16 version (of this type's body layout)   4 u32 length (of the body)
/// ```
public struct WireHeader: Equatable, Sendable {
    public static let size = 8

    public var type: UInt16
    public var version: UInt16
    public var length: UInt32

    public init(type: UInt16, version: UInt16, length: UInt32) {
        self.type = type
        self.version = version
        self.length = length
    }

    /// Reads a header, checking only that 8 bytes are there.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> WireHeader {
        guard bytes.count >= size else { throw .truncatedHeader(available: bytes.count) }
        var r = WireReader(bytes, type: 0)
        return WireHeader(type: try r.u16(), version: try r.u16(), length: try r.u32())
    }

    public func encode(into w: inout WireWriter) {
        w.u16(type)
        w.u16(version)
        w.u32(length)
    }
}

/// The record types this build knows. Numbers are part of the protocol: never reuse one.
public enum WireRecordType: UInt16, Sendable, CaseIterable {
    /// Worker -> supervisor, first message on the control socket.
    case workerHello = 1
    /// Supervisor -> worker, with the region fds attached.
    case regionLayout = 2
    /// Supervisor -> worker, after the region layout: the seccomp filter to install.
    case seccompProgram = 3
    /// Supervisor -> SynIC router, after the region layout: the partition's shape, with the
    /// router's doorbell and reply eventfds attached.
    case synicRouterSetup = 4
    /// Supervisor -> SynIC router: a batch of SINT eventfds (one per (VP, SINT)).
    case sintEventFDs = 5
    /// Monitor -> router ring: a guest HvPostMessage for one of the router's connections.
    case postedMessage = 6
    /// Monitor -> router ring: a guest write to the hyperv-testdev port.
    case testDeviceWrite = 7
    /// Supervisor -> VMBus worker, after the region layout: the partition's shape.
    case vmbusWorkerSetup = 8
    /// Supervisor -> SynIC router, after the SINT eventfds: connections it publishes on behalf
    /// of other workers (VMBus message connections, channel event connections).
    case routerConnections = 9
    /// VMBus worker -> router ring: a host-to-guest message for SINT2 of a VP.
    case hostMessage = 10
    /// Supervisor -> VMBus worker, on its control socket: ask the guest to shut down.
    case guestShutdownRequest = 11
    /// VMBus worker -> device worker: open, close or retarget a channel.
    case channelControl = 12
    /// Device worker -> VMBus worker: a channel opened (with its status) or closed.
    case channelAnswer = 13
    /// Supervisor -> storage worker, after the region layout: the partition's shape, the device
    /// rings' geometry and the disks, with its doorbells and the disk fds attached.
    case storageWorkerSetup = 14
    /// Supervisor -> VMBus worker, after its SINT2 eventfds: a device served by another worker
    /// (the storage controller), the device region's rings, with the doorbells attached.
    case vmbusRemoteDeviceSetup = 15
    /// Device worker -> VMBus worker: offer sub-channels of the device's primary channel.
    case subChannelRequest = 16
    /// Supervisor -> any worker, on its control socket: an operator's fault injection (crash,
    /// hang, slow, forbidden call), handled by WorkerRuntime. (20: 17-19 are left to the
    /// restart-state records being added in parallel.)
    case workerFault = 20
}

public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer than 8 bytes.
    case truncatedHeader(available: Int)
    case unknownType(UInt16)
    /// A known record, but not the one the caller asked to decode.
    case unexpectedType(found: UInt16, expected: UInt16)
    case unsupportedVersion(type: UInt16, version: UInt16)
    /// The header's length is not the number of bytes after the header.
    case lengthMismatch(declared: UInt32, available: Int)
    /// The body ends before a field that must be there.
    case bodyTooShort(type: UInt16, needed: Int, available: Int)
    /// The body has bytes after its last field.
    case trailingBytes(type: UInt16, count: Int)
    case reservedNotZero(type: UInt16, offset: Int)
    case invalidField(type: UInt16, field: String, value: UInt64)
    case tooManyEntries(type: UInt16, count: UInt32, limit: Int)

    public var description: String {
        switch self {
        case .truncatedHeader(let n): return "record of \(n) bytes is shorter than its \(WireHeader.size)-byte header"
        case .unknownType(let t): return "unknown record type \(t)"
        case .unexpectedType(let f, let e): return "record type \(f), expected \(e)"
        case .unsupportedVersion(let t, let v): return "record type \(t): unsupported version \(v)"
        case .lengthMismatch(let d, let a): return "record declares \(d) body bytes, \(a) present"
        case .bodyTooShort(let t, let need, let have): return "record type \(t): body needs \(need) bytes, has \(have)"
        case .trailingBytes(let t, let n): return "record type \(t): \(n) bytes after the last field"
        case .reservedNotZero(let t, let o): return "record type \(t): reserved field at body offset \(o) is not zero"
        case .invalidField(let t, let f, let v): return "record type \(t): invalid \(f) \(v)"
        case .tooManyEntries(let t, let c, let l): return "record type \(t): \(c) entries, at most \(l)"
        }
    }
}

/// Appends little-endian fields.
public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func i32(_ v: Int32) { u32(UInt32(bitPattern: v)) }
    public mutating func raw(_ v: [UInt8]) { bytes += v }
}

/// Reads little-endian fields from a body, in order, bounds-checked.
public struct WireReader {
    let bytes: UnsafeRawBufferPointer
    let type: UInt16
    public private(set) var position = 0

    /// `type` is only used to label errors.
    public init(_ bytes: UnsafeRawBufferPointer, type: UInt16) {
        self.bytes = bytes
        self.type = type
    }

    public var remaining: Int { bytes.count - position }

    mutating func take<T: FixedWidthInteger>(_: T.Type) throws(WireError) -> T {
        let n = MemoryLayout<T>.size
        guard remaining >= n else { throw .bodyTooShort(type: type, needed: position + n, available: bytes.count) }
        defer { position += n }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: T.self))
    }

    public mutating func u16() throws(WireError) -> UInt16 { try take(UInt16.self) }
    public mutating func u32() throws(WireError) -> UInt32 { try take(UInt32.self) }
    public mutating func u64() throws(WireError) -> UInt64 { try take(UInt64.self) }
    public mutating func i32() throws(WireError) -> Int32 { try take(Int32.self) }

    /// Reads `count` raw bytes.
    public mutating func rawBytes(_ count: Int) throws(WireError) -> [UInt8] {
        guard count >= 0, remaining >= count else {
            throw .bodyTooShort(type: type, needed: position + max(count, 0), available: bytes.count)
        }
        defer { position += count }
        return Array(UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)]))
    }

    /// Reads a reserved u16/u32 field, which must be zero (so it can gain a meaning later).
    public mutating func reserved16() throws(WireError) {
        let at = position
        if try u16() != 0 { throw .reservedNotZero(type: type, offset: at) }
    }

    public mutating func reserved32() throws(WireError) {
        let at = position
        if try u32() != 0 { throw .reservedNotZero(type: type, offset: at) }
    }

    /// Everything must have been read.
    public func finish() throws(WireError) {
        if remaining != 0 { throw .trailingBytes(type: type, count: remaining) }
    }
}

/// A record type with a fixed type number, one body layout version, and its codec.
public protocol WireRecord: Equatable, Sendable {
    static var recordType: WireRecordType { get }
    static var version: UInt16 { get }
    /// Appends the body (not the header).
    func encodeBody(into w: inout WireWriter)
    /// Reads the body; `finish()` is checked by the caller.
    static func decodeBody(_ r: inout WireReader) throws(WireError) -> Self
}

extension WireRecord {
    /// Header plus body.
    public func encoded() -> [UInt8] {
        var body = WireWriter()
        encodeBody(into: &body)
        var w = WireWriter()
        WireHeader(type: Self.recordType.rawValue, version: Self.version, length: UInt32(body.bytes.count)).encode(into: &w)
        return w.bytes + body.bytes
    }

    /// Decodes exactly one record of this type filling `bytes`.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> Self {
        let (header, body) = try WireMessage.split(bytes)
        guard header.type == recordType.rawValue else {
            throw .unexpectedType(found: header.type, expected: recordType.rawValue)
        }
        return try decodeChecked(header: header, body: body)
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> Self {
        try bytes.withUnsafeBytes { b in Result { () throws(WireError) in try decode(b) } }.get()
    }

    static func decodeChecked(header: WireHeader, body: UnsafeRawBufferPointer) throws(WireError) -> Self {
        guard header.version == version else { throw .unsupportedVersion(type: header.type, version: header.version) }
        var r = WireReader(body, type: header.type)
        let record = try decodeBody(&r)
        try r.finish()
        return record
    }
}

/// Any record this build knows, for a reader that takes whatever comes.
public enum WireMessage: Equatable, Sendable {
    case workerHello(WorkerHello)
    case regionLayout(RegionLayout)
    case seccompProgram(SeccompProgram)
    case synicRouterSetup(SynICRouterSetup)
    case sintEventFDs(SINTEventFDs)
    case postedMessage(PostedMessageRecord)
    case testDeviceWrite(TestDeviceWriteRecord)
    case vmbusWorkerSetup(VMBusWorkerSetup)
    case routerConnections(RouterConnections)
    case hostMessage(HostMessageRecord)
    case guestShutdownRequest(GuestShutdownRequest)
    case channelControl(ChannelControlRecord)
    case channelAnswer(ChannelAnswerRecord)
    case storageWorkerSetup(StorageWorkerSetup)
    case vmbusRemoteDeviceSetup(VMBusRemoteDeviceSetup)
    case subChannelRequest(SubChannelRequestRecord)
    case workerFault(WorkerFault)

    /// Decodes exactly one record filling `bytes`.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> WireMessage {
        let (header, body) = try split(bytes)
        guard let type = WireRecordType(rawValue: header.type) else { throw .unknownType(header.type) }
        switch type {
        case .workerHello: return .workerHello(try .decodeChecked(header: header, body: body))
        case .regionLayout: return .regionLayout(try .decodeChecked(header: header, body: body))
        case .seccompProgram: return .seccompProgram(try .decodeChecked(header: header, body: body))
        case .synicRouterSetup: return .synicRouterSetup(try .decodeChecked(header: header, body: body))
        case .sintEventFDs: return .sintEventFDs(try .decodeChecked(header: header, body: body))
        case .postedMessage: return .postedMessage(try .decodeChecked(header: header, body: body))
        case .testDeviceWrite: return .testDeviceWrite(try .decodeChecked(header: header, body: body))
        case .vmbusWorkerSetup: return .vmbusWorkerSetup(try .decodeChecked(header: header, body: body))
        case .routerConnections: return .routerConnections(try .decodeChecked(header: header, body: body))
        case .hostMessage: return .hostMessage(try .decodeChecked(header: header, body: body))
        case .guestShutdownRequest: return .guestShutdownRequest(try .decodeChecked(header: header, body: body))
        case .channelControl: return .channelControl(try .decodeChecked(header: header, body: body))
        case .channelAnswer: return .channelAnswer(try .decodeChecked(header: header, body: body))
        case .storageWorkerSetup: return .storageWorkerSetup(try .decodeChecked(header: header, body: body))
        case .vmbusRemoteDeviceSetup: return .vmbusRemoteDeviceSetup(try .decodeChecked(header: header, body: body))
        case .subChannelRequest: return .subChannelRequest(try .decodeChecked(header: header, body: body))
        case .workerFault: return .workerFault(try .decodeChecked(header: header, body: body))
        }
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> WireMessage {
        try bytes.withUnsafeBytes { b in Result { () throws(WireError) in try decode(b) } }.get()
    }

    public func encoded() -> [UInt8] {
        switch self {
        case .workerHello(let r): return r.encoded()
        case .regionLayout(let r): return r.encoded()
        case .seccompProgram(let r): return r.encoded()
        case .synicRouterSetup(let r): return r.encoded()
        case .sintEventFDs(let r): return r.encoded()
        case .postedMessage(let r): return r.encoded()
        case .testDeviceWrite(let r): return r.encoded()
        case .vmbusWorkerSetup(let r): return r.encoded()
        case .routerConnections(let r): return r.encoded()
        case .hostMessage(let r): return r.encoded()
        case .guestShutdownRequest(let r): return r.encoded()
        case .channelControl(let r): return r.encoded()
        case .channelAnswer(let r): return r.encoded()
        case .storageWorkerSetup(let r): return r.encoded()
        case .vmbusRemoteDeviceSetup(let r): return r.encoded()
        case .subChannelRequest(let r): return r.encoded()
        case .workerFault(let r): return r.encoded()
        }
    }

    /// Header, then the body it declares, which must be exactly the rest of `bytes`. The type
    /// is checked before the length so an unknown type reads as such.
    static func split(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> (WireHeader, UnsafeRawBufferPointer) {
        let header = try WireHeader.decode(bytes)
        guard WireRecordType(rawValue: header.type) != nil else { throw .unknownType(header.type) }
        let available = bytes.count - WireHeader.size
        guard UInt64(header.length) == UInt64(available) else {
            throw .lengthMismatch(declared: header.length, available: available)
        }
        return (header, UnsafeRawBufferPointer(rebasing: bytes[WireHeader.size...]))
    }
}

// MARK: - The handshake

/// The kinds of worker process. Numbers are part of the protocol.
public enum WorkerKind: UInt16, Sendable, CaseIterable {
    case synicRouter = 1
    case vmbus = 2
    case storage = 3
}

/// A worker's first message on its control socket: "I speak this protocol, I am this kind
/// of worker, this is my pid, and I am ready for my regions." A restarted worker sends the
/// same thing; the supervisor answers with the `RegionLayout` of the existing shared state,
/// so attaching anew and attaching after a restart are the same path.
///
/// ```
/// body (12 bytes): 0 u32 protocol version   4 u16 worker kind   6 u16 reserved (0)   8 i32 pid
/// ```
public struct WorkerHello: WireRecord {
    public static let recordType = WireRecordType.workerHello
    public static let version: UInt16 = 1
    /// The handshake protocol this build speaks. The supervisor refuses a worker that
    /// announces another (decoding does not: the number is data, the policy is the caller's).
    public static let currentProtocolVersion: UInt32 = 1

    public var protocolVersion: UInt32
    public var kind: WorkerKind
    /// The worker's pid as it sees itself (in its own pid namespace this may differ from the
    /// supervisor's view; the supervisor trusts its pidfd, this is for logs and checks).
    public var pid: Int32

    public init(protocolVersion: UInt32 = WorkerHello.currentProtocolVersion, kind: WorkerKind, pid: Int32) {
        self.protocolVersion = protocolVersion
        self.kind = kind
        self.pid = pid
    }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(protocolVersion)
        w.u16(kind.rawValue)
        w.u16(0)
        w.i32(pid)
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> WorkerHello {
        let protocolVersion = try r.u32()
        let rawKind = try r.u16()
        try r.reserved16()
        let pid = try r.i32()
        guard let kind = WorkerKind(rawValue: rawKind) else {
            throw .invalidField(type: recordType.rawValue, field: "worker kind", value: UInt64(rawKind))
        }
        guard pid > 0 else {
            throw .invalidField(type: recordType.rawValue, field: "pid", value: UInt64(UInt32(bitPattern: pid)))
        }
        return WorkerHello(protocolVersion: protocolVersion, kind: kind, pid: pid)
    }
}

/// The supervisor's answer to `WorkerHello`: which shared regions the worker gets. Sent with
/// one fd per entry attached (SCM_RIGHTS), in entry order: entry i describes fd i. The worker
/// maps each with `SharedRegion(adopting: fds[i], size: entry.size, offset: entry.offset)`,
/// which checks the seals and size itself.
///
/// ```
/// body: 0 u32 count   4 u32 reserved (0)   then count entries of 24 bytes:
///       0 u32 region id   4 u32 reserved (0)   8 u64 size   16 u64 offset (in the fd)
/// ```
public struct RegionLayout: WireRecord {
    public static let recordType = WireRecordType.regionLayout
    public static let version: UInt16 = 1
    /// At most this many regions per layout (well under the 253 fds one message carries).
    public static let maxEntries = 64

    public struct Entry: Equatable, Sendable {
        /// Which region this is; numbers are assigned by the supervisor and are part of the
        /// protocol between it and the worker kind. Unique within a layout.
        public var regionID: UInt32
        /// Bytes, > 0.
        public var size: UInt64
        /// Where the region starts in its fd: page-aligned (4096), and offset + size must not
        /// overflow.
        public var offset: UInt64

        public init(regionID: UInt32, size: UInt64, offset: UInt64 = 0) {
            self.regionID = regionID
            self.size = size
            self.offset = offset
        }
    }

    public var entries: [Entry]

    public init(entries: [Entry]) {
        self.entries = entries
    }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(UInt32(entries.count))
        w.u32(0)
        for e in entries {
            w.u32(e.regionID)
            w.u32(0)
            w.u64(e.size)
            w.u64(e.offset)
        }
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> RegionLayout {
        let t = recordType.rawValue
        let count = try r.u32()
        try r.reserved32()
        // The count is checked before it sizes anything.
        guard count <= UInt32(maxEntries) else { throw .tooManyEntries(type: t, count: count, limit: maxEntries) }
        var entries: [Entry] = []
        entries.reserveCapacity(Int(count))
        for _ in 0..<count {
            let id = try r.u32()
            try r.reserved32()
            let size = try r.u64()
            let offset = try r.u64()
            guard size > 0 else { throw .invalidField(type: t, field: "region size", value: size) }
            guard offset % 4096 == 0 else { throw .invalidField(type: t, field: "region offset", value: offset) }
            guard !offset.addingReportingOverflow(size).overflow else {
                throw .invalidField(type: t, field: "region offset + size", value: offset)
            }
            guard !entries.contains(where: { $0.regionID == id }) else {
                throw .invalidField(type: t, field: "duplicate region id", value: UInt64(id))
            }
            entries.append(Entry(regionID: id, size: size, offset: offset))
        }
        return RegionLayout(entries: entries)
    }
}

/// The supervisor's second message: the worker's seccomp filter, compiled from
/// `Policies/<name>.policy` at spawn time. The worker installs it (no_new_privs, then
/// seccomp(SECCOMP_SET_MODE_FILTER, TSYNC)) before it answers "attached"; a worker that cannot
/// install it exits instead. The instructions are `struct sock_filter` (u16 code, u8 jt, u8 jf,
/// u32 k) in the host's byte order, exactly as the kernel takes them.
///
/// ```
/// body: 0 u32 instruction count (1...4096)   4 u32 reserved (0)   then count * 8 bytes
/// ```
public struct SeccompProgram: WireRecord {
    public static let recordType = WireRecordType.seccompProgram
    public static let version: UInt16 = 1
    /// The kernel's BPF_MAXINSNS.
    public static let maxInstructions = 4096
    public static let instructionSize = 8
    /// Header + body of the largest program: what a receiver must be ready for.
    public static let maxEncodedSize = WireHeader.size + 8 + maxInstructions * instructionSize

    /// `instructionCount * 8` bytes.
    public var instructions: [UInt8]

    public var instructionCount: Int { instructions.count / Self.instructionSize }

    /// `instructions` must be 1...4096 whole instructions (checked again by the decoder).
    public init(instructions: [UInt8]) {
        precondition(instructions.count % Self.instructionSize == 0
            && (1...Self.maxInstructions).contains(instructions.count / Self.instructionSize),
            "a seccomp program is 1...4096 instructions of 8 bytes")
        self.instructions = instructions
    }

    public func encodeBody(into w: inout WireWriter) {
        w.u32(UInt32(instructionCount))
        w.u32(0)
        w.raw(instructions)
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> SeccompProgram {
        let t = recordType.rawValue
        let count = try r.u32()
        try r.reserved32()
        guard (1...UInt32(maxInstructions)).contains(count) else {
            throw .invalidField(type: t, field: "instruction count", value: UInt64(count))
        }
        let needed = Int(count) * instructionSize
        guard r.remaining == needed else {
            if r.remaining < needed { throw .bodyTooShort(type: t, needed: r.position + needed, available: r.position + r.remaining) }
            throw .trailingBytes(type: t, count: r.remaining - needed)
        }
        return SeccompProgram(instructions: try r.rawBytes(needed))
    }
}
