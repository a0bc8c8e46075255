import Atomics

/// A worker's restart state in memory the supervisor owns (STYLE.md, "Restart state"): the
/// supervisor creates and formats it, hands it to the worker in the handshake, and hands the same
/// region to a successor after a restart. The worker writes its state as opaque bytes (for VMBus,
/// `VMBusServer.Saved.encoded()`) into the idle slot, then publishes it by adding 1 to the
/// generation with a release store, so a worker that dies mid-write leaves the last whole copy.
///
/// ```
///    0  header (supervisor): u32 magic "SVWS", u16 layout version, u16 worker kind,
///       u64 region size, u32 slot size, u32 extra bytes (0: none)
///   64  u64 generation (worker; 0: nothing saved yet; slot = generation % 2)
/// 4096  slot 0 | slot 1, slotSize bytes each: u32 length, u32 reserved (0), then length bytes
///  ...  the extra area, at the next 4096-byte boundary after the slots, extra bytes (zeros
///       from the supervisor; the worker's own layout: the storage worker's in-flight table)
/// ```
///
/// The extra area is for state written in place, request by request, where a whole-state copy
/// per change would cost too much (the storage worker's in-flight table: docs/storage.md).
///
/// The reader treats everything after the header as hostile (its writer parsed guest bytes): a
/// length past the slot is an error, never a trap, and the bytes are for the caller to decode as
/// untrusted input.
public final class WorkerStateRegion: @unchecked Sendable {
    public static let magic: UInt32 = 0x5357_5653  // "SVWS"
    public static let layoutVersion: UInt16 = 1
    static let generationOffset = 64
    static let slotsOffset = 4096
    static let slotHeader = 8

    public let region: SharedRegion
    public let kind: UInt16
    public let slotSize: Int
    /// Bytes of the extra area (0: none) and where it starts.
    public let extraBytes: Int
    public let extraOffset: Int
    let generation: UnsafeAtomic<UInt64>

    /// The region size for slots of `slotSize` bytes and an extra area of `extraBytes`.
    public static func size(slotSize: Int, extraBytes: Int = 0) -> Int {
        extraBytes == 0 ? slotsOffset + 2 * slotSize : extraStart(slotSize: slotSize) + extraBytes
    }

    static func extraStart(slotSize: Int) -> Int { (slotsOffset + 2 * slotSize + 4095) / 4096 * 4096 }

    /// Supervisor: a new sealed memfd named `name`, formatted, generation 0, the extra area zero.
    public static func create(name: String, kind: UInt16, slotSize: Int, extraBytes: Int = 0) throws(IPCError) -> WorkerStateRegion {
        guard slotSize > slotHeader, slotSize % 8 == 0, slotSize <= 1 << 24 else {
            throw .invalidArgument("worker state slot of \(slotSize) bytes")
        }
        guard extraBytes >= 0, extraBytes % 4096 == 0, extraBytes <= 1 << 26 else {
            throw .invalidArgument("worker state extra area of \(extraBytes) bytes")
        }
        let r = try SharedRegion(name: name, size: size(slotSize: slotSize, extraBytes: extraBytes))
        try r.store(magic, at: 0)
        try r.store(layoutVersion, at: 4)
        try r.store(kind, at: 6)
        try r.store(UInt64(r.size), at: 8)
        try r.store(UInt32(slotSize), at: 16)
        try r.store(UInt32(extraBytes), at: 20)
        return try WorkerStateRegion(region: r, kind: kind)
    }

    /// Either side: checks the header the supervisor wrote against the worker kind and the mapping.
    public init(region: SharedRegion, kind: UInt16) throws(IPCError) {
        guard region.size >= Self.slotsOffset else {
            throw .regionTooSmall(size: region.size, required: Self.slotsOffset)
        }
        let slot = Int(try region.load(UInt32.self, at: 16))
        let extra = Int(try region.load(UInt32.self, at: 20))
        guard try region.load(UInt32.self, at: 0) == Self.magic, try region.load(UInt16.self, at: 4) == Self.layoutVersion,
              try region.load(UInt16.self, at: 6) == kind,
              try region.load(UInt64.self, at: 8) == UInt64(region.size),
              slot > Self.slotHeader, slot <= 1 << 24, extra <= 1 << 26, region.size == Self.size(slotSize: slot, extraBytes: extra)
        else { throw .invalidArgument("worker state region header does not match (kind \(kind), \(region.size) bytes)") }
        self.region = region
        self.kind = kind
        slotSize = slot
        extraBytes = extra
        extraOffset = extra == 0 ? region.size : Self.extraStart(slotSize: slot)
        generation = try region.atomic(UInt64.self, at: Self.generationOffset)
    }

    /// The extra area, mapped (nil when there is none). Its bytes are the worker's to lay out and
    /// as hostile to a successor as the slots.
    public var extra: UnsafeMutableRawBufferPointer? {
        guard extraBytes > 0, let p = region.pointer(at: extraOffset, count: extraBytes) else { return nil }
        return UnsafeMutableRawBufferPointer(start: p, count: extraBytes)
    }

    /// The largest state a slot holds.
    public var capacity: Int { slotSize - Self.slotHeader }

    /// The generation last published (0: nothing saved yet).
    public var currentGeneration: UInt64 { generation.load(ordering: .acquiring) }

    /// Worker: writes `bytes` into the idle slot, then publishes it. Returns the new generation.
    @discardableResult
    public func save(_ bytes: UnsafeRawBufferPointer) throws(IPCError) -> UInt64 {
        guard bytes.count <= capacity else {
            throw .invalidArgument("worker state of \(bytes.count) bytes exceeds its slot (\(capacity))")
        }
        let next = generation.load(ordering: .relaxed) &+ 1
        let slot = Self.slotsOffset + Int(next % 2) * slotSize
        try region.store(UInt32(bytes.count), at: slot)
        try region.store(UInt32(0), at: slot + 4)
        try region.write(bytes, at: slot + Self.slotHeader)
        generation.store(next, ordering: .releasing)
        return next
    }

    @discardableResult
    public func save(_ bytes: [UInt8]) throws(IPCError) -> UInt64 {
        try bytes.withUnsafeBytes { b in Result { () throws(IPCError) in try save(b) } }.get()
    }

    /// The last published state, or nil if none was ever saved. A slot header a previous writer
    /// scribbled on is an error, not a trap.
    public func load() throws(IPCError) -> (generation: UInt64, bytes: [UInt8])? {
        let g = generation.load(ordering: .acquiring)
        guard g != 0 else { return nil }
        let slot = Self.slotsOffset + Int(g % 2) * slotSize
        let length = Int(try region.load(UInt32.self, at: slot))
        guard length <= capacity, try region.load(UInt32.self, at: slot + 4) == 0 else {
            throw .invalidArgument("worker state slot \(g % 2): length \(length) of at most \(capacity), or a reserved word set")
        }
        return (g, try region.bytes(at: slot + Self.slotHeader, count: length))
    }
}
