import Atomics
import HyperV
import IPC
import Partition

/// The shared memory between the monitor and the SynIC message router: the SynIC registers the
/// monitor publishes, the per-slot locks both writers of message slots take, the connection table
/// the router publishes, and the rings from the monitor to the router. One sealed memfd, created
/// and formatted by the monitor, mapped read-write by both (docs/processes.md draws it).
///
/// ```
///    0  header: u32 magic "SVSY"  u16 version  u16 reserved  u32 vp count  u32 connection slots
///       64: u64 test-device acknowledgement (router writes the last applied write's sequence)
///      128: the VMBus status block (the VMBus worker writes, the monitor reads: `VMBusStatus`)
/// 4096  one 256-byte block per VP:
///         0 u64 SCONTROL  8 u64 SIMP  16 u64 SIEFP  24 u64 SINT0..15 (128 bytes)
///       152 u32 register sequence (seqlock: odd while the monitor writes)
///       156 u32 router-pending (bit x: the router has messages queued for SINTx)
///       160 u64 EOM count (the monitor adds 1 per EOM write)
///       168 u32 slot lock x (16 of them; 0 free, 1 the monitor, 2 the router)
///    C  connection table (4096-aligned): `ConnectionTable.slots` entries of 64 bytes
///    R  rings (4096-aligned): one per VP (HvPostMessage records from that VP's thread), then
///       one for the test device, then the VMBus worker's two: router -> vmbus (the guest's
///       control messages, `PostedMessageRecord`) and vmbus -> router (`HostMessageRecord`);
///       each `RecordRing.Layout.byteCount` rounded up to 4096
/// ```
///
/// Trust: the router is sandboxed and parses guest bytes, so the monitor treats everything the
/// router can write here as hostile: it reads connection entries under their seqlock with a
/// bounded number of retries, never follows an index it did not bound, and never waits on a lock
/// or an acknowledgement without a deadline. The router treats the register blocks the same way
/// (a compromised monitor is game over anyway, but a torn read must not crash it).
public final class SynICRegion: @unchecked Sendable {
    public static let magic: UInt32 = 0x5953_5653 // "SVSY"
    public static let version: UInt16 = 2
    static let headerSize = 4096
    /// Rings after the VPs' own: the test device's, then the VMBus worker's two.
    static let extraRings = 3
    static let vpBlockSize = 256
    static let testDeviceAckOffset = 64

    /// Who holds a slot lock.
    public enum SlotOwner: UInt32, Sendable {
        case monitor = 1
        case router = 2
    }

    public let region: SharedRegion
    public let vpCount: Int
    public let ringLayout: RecordRing.Layout
    public let connectionsOffset: Int
    let ringsOffset: Int
    let ringStride: Int

    /// Bytes a region for `vpCount` VPs and rings of `ringLayout` needs.
    public static func size(vpCount: Int, ringLayout: RecordRing.Layout) -> Int {
        let (_, rings, stride) = offsets(vpCount: vpCount, ringLayout: ringLayout)
        return rings + stride * (vpCount + Self.extraRings)
    }

    static func offsets(vpCount: Int, ringLayout: RecordRing.Layout) -> (connections: Int, rings: Int, stride: Int) {
        let connections = roundUp(headerSize + vpCount * vpBlockSize)
        let rings = roundUp(connections + ConnectionTable.slots * ConnectionTable.entrySize)
        return (connections, rings, roundUp(ringLayout.byteCount))
    }

    static func roundUp(_ n: Int) -> Int { (n + 4095) & ~4095 }

    /// The monitor's side: a new region, header and rings formatted, every SINT at its reset value.
    public static func create(vpCount: Int, ringLayout: RecordRing.Layout) throws(IPCError) -> SynICRegion {
        guard (1...Int(SynICRouterSetup.maxVPs)).contains(vpCount) else {
            throw .invalidArgument("SynIC region for \(vpCount) VPs")
        }
        let r = try SharedRegion(name: "synthvm-synic", size: size(vpCount: vpCount, ringLayout: ringLayout))
        try r.store(magic, at: 0)
        try r.store(version, at: 4)
        try r.store(UInt32(vpCount), at: 8)
        try r.store(UInt32(ConnectionTable.slots), at: 12)
        let region = try SynICRegion(region: r, vpCount: vpCount, ringLayout: ringLayout)
        for vp in 0..<vpCount { region.publish(vp: UInt32(vp), registers: SynICRegisters()) }
        for i in 0..<(vpCount + Self.extraRings) { try RecordRing.format(r, at: region.ringOffset(i), layout: ringLayout) }
        return region
    }

    /// The router's side: checks the header against what the setup record said.
    public init(region: SharedRegion, vpCount: Int, ringLayout: RecordRing.Layout) throws(IPCError) {
        guard region.size >= Self.size(vpCount: vpCount, ringLayout: ringLayout) else {
            throw .invalidArgument("SynIC region of \(region.size) bytes is too small for \(vpCount) VPs")
        }
        guard try region.load(UInt32.self, at: 0) == Self.magic, try region.load(UInt16.self, at: 4) == Self.version,
              try region.load(UInt32.self, at: 8) == UInt32(vpCount),
              try region.load(UInt32.self, at: 12) == UInt32(ConnectionTable.slots)
        else { throw .invalidArgument("SynIC region header does not match the setup") }
        self.region = region
        self.vpCount = vpCount
        self.ringLayout = ringLayout
        (connectionsOffset, ringsOffset, ringStride) = Self.offsets(vpCount: vpCount, ringLayout: ringLayout)
    }

    /// Ring `i`: 0..<vpCount are the VPs' HvPostMessage rings, `vpCount` the test device's,
    /// then `vmbusInboundRing` and `vmbusOutboundRing`.
    public func ringOffset(_ i: Int) -> Int { ringsOffset + i * ringStride }
    public var testDeviceRing: Int { vpCount }
    /// Router -> VMBus worker: the guest's HvPostMessage records for the worker's connections.
    public var vmbusInboundRing: Int { vpCount + 1 }
    /// VMBus worker -> router: `HostMessageRecord`s to deliver.
    public var vmbusOutboundRing: Int { vpCount + 2 }

    // MARK: Per-VP block

    func block(_ vp: UInt32) -> Int { Self.headerSize + Int(vp) * Self.vpBlockSize }

    /// Offsets are computed from `vp < vpCount` (callers check) and constants, so the atomics
    /// below cannot fail; a failure would be a bug in this file, hence `try!`.
    func u64(_ offset: Int) -> UnsafeAtomic<UInt64> { try! region.atomic(UInt64.self, at: offset) }
    func u32(_ offset: Int) -> UnsafeAtomic<UInt32> { try! region.atomic(UInt32.self, at: offset) }

    /// Monitor: publishes VP `vp`'s registers (seqlock; call with that VP's lock held).
    public func publish(vp: UInt32, registers: SynICRegisters) {
        guard Int(vp) < vpCount else { return }
        let b = block(vp)
        let seq = u32(b + 152)
        let s = seq.load(ordering: .relaxed)
        seq.store(s | 1, ordering: .relaxed)
        atomicMemoryFence(ordering: .releasing)
        u64(b).store(registers.scontrol, ordering: .relaxed)
        u64(b + 8).store(registers.simp, ordering: .relaxed)
        u64(b + 16).store(registers.siefp, ordering: .relaxed)
        for x in 0..<HvSynIC.sintCount { u64(b + 24 + 8 * x).store(registers.sint(x), ordering: .relaxed) }
        seq.store((s | 1) &+ 1, ordering: .releasing)
    }

    /// Router: VP `vp`'s registers as last published; nil for an unknown VP or when no
    /// consistent copy could be read (the writer never finishes: treat the VP as disabled).
    public func registers(vp: UInt32) -> SynICRegisters? {
        guard Int(vp) < vpCount else { return nil }
        let b = block(vp)
        let seq = u32(b + 152)
        for _ in 0..<1000 {
            let s1 = seq.load(ordering: .acquiring)
            if s1 & 1 != 0 { continue }
            var r = SynICRegisters(scontrol: u64(b).load(ordering: .relaxed), simp: u64(b + 8).load(ordering: .relaxed),
                                   siefp: u64(b + 16).load(ordering: .relaxed))
            for x in 0..<HvSynIC.sintCount { r.sints[x] = u64(b + 24 + 8 * x).load(ordering: .relaxed) }
            atomicMemoryFence(ordering: .acquiring)
            if seq.load(ordering: .relaxed) == s1 { return r }
        }
        return nil
    }

    /// Monitor: the guest wrote EOM on `vp`. Router: compares against what it saw last.
    public func addEOM(vp: UInt32) { if Int(vp) < vpCount { u64(block(vp) + 160).wrappingIncrement(ordering: .releasing) } }
    public func eomCount(vp: UInt32) -> UInt64 { Int(vp) < vpCount ? u64(block(vp) + 160).load(ordering: .acquiring) : 0 }

    /// Router: which SINTs of `vp` have messages queued (published *before* it sets
    /// MessagePending in a slot, so an EOM that follows a guest seeing the flag sees the bit).
    public func setRouterPending(vp: UInt32, mask: UInt32) {
        if Int(vp) < vpCount { u32(block(vp) + 156).store(mask, ordering: .sequentiallyConsistent) }
    }
    public func routerPending(vp: UInt32) -> UInt32 {
        Int(vp) < vpCount ? u32(block(vp) + 156).load(ordering: .sequentiallyConsistent) : 0
    }

    /// Takes the lock of SINTx's message slot of `vp`, spinning at most `spins` times (the
    /// holder's critical section is one 256-byte copy). False if it stayed taken.
    public func lockSlot(vp: UInt32, sint: Int, owner: SlotOwner, spins: Int = 20_000) -> Bool {
        guard Int(vp) < vpCount, (0..<HvSynIC.sintCount).contains(sint) else { return false }
        let lock = u32(block(vp) + 168 + 4 * sint)
        for _ in 0..<spins {
            if lock.compareExchange(expected: 0, desired: owner.rawValue, ordering: .acquiring).exchanged { return true }
        }
        return false
    }

    /// Who holds SINTx's slot lock of `vp` (0: free). A restarted router looks for its own.
    public func slotLockOwner(vp: UInt32, sint: Int) -> UInt32 {
        guard Int(vp) < vpCount, (0..<HvSynIC.sintCount).contains(sint) else { return 0 }
        return u32(block(vp) + 168 + 4 * sint).load(ordering: .acquiring)
    }

    public func unlockSlot(vp: UInt32, sint: Int, owner: SlotOwner) {
        guard Int(vp) < vpCount, (0..<HvSynIC.sintCount).contains(sint) else { return }
        _ = u32(block(vp) + 168 + 4 * sint).compareExchange(expected: owner.rawValue, desired: 0, ordering: .releasing)
    }

    /// Router: the sequence of the last test-device write it applied. Monitor: waits for it.
    public var testDeviceAck: UInt64 {
        get { u64(Self.testDeviceAckOffset).load(ordering: .acquiring) }
        set { u64(Self.testDeviceAckOffset).store(newValue, ordering: .releasing) }
    }

    // MARK: VMBus status

    /// What the VMBus worker publishes for the monitor (the control socket's status, graceful
    /// shutdown). Plain words the worker stores and the monitor loads; a hostile worker can only
    /// make them lie, which costs a graceful shutdown its grace, nothing more.
    ///
    /// ```
    /// 128 u32 flags (bit 0: the guest negotiated the shutdown IC; bit 1: a shutdown request was
    ///     sent; bit 2: the guest answered it S_OK; bit 3: the guest refused it)
    /// 136 u64 heartbeats the guest answered   144 u64 its last sequence number
    /// 152 u64 CLOCK_MONOTONIC ns of the last answer (the worker's clock is the host's)
    /// ```
    public struct VMBusStatus: Equatable, Sendable {
        public var flags: UInt32 = 0
        public var heartbeats: UInt64 = 0
        public var heartbeatSequence: UInt64 = 0
        public var heartbeatMonotonicNs: UInt64 = 0
        public init() {}
        public static let shutdownNegotiated: UInt32 = 1 << 0
        public static let shutdownSent: UInt32 = 1 << 1
        public static let shutdownAccepted: UInt32 = 1 << 2
        public static let shutdownRefused: UInt32 = 1 << 3
    }
    static let vmbusStatusOffset = 128

    public var vmbusStatus: VMBusStatus {
        get {
            var s = VMBusStatus()
            s.flags = u32(Self.vmbusStatusOffset).load(ordering: .acquiring)
            s.heartbeats = u64(Self.vmbusStatusOffset + 8).load(ordering: .relaxed)
            s.heartbeatSequence = u64(Self.vmbusStatusOffset + 16).load(ordering: .relaxed)
            s.heartbeatMonotonicNs = u64(Self.vmbusStatusOffset + 24).load(ordering: .relaxed)
            return s
        }
        set {
            u64(Self.vmbusStatusOffset + 8).store(newValue.heartbeats, ordering: .relaxed)
            u64(Self.vmbusStatusOffset + 16).store(newValue.heartbeatSequence, ordering: .relaxed)
            u64(Self.vmbusStatusOffset + 24).store(newValue.heartbeatMonotonicNs, ordering: .relaxed)
            u32(Self.vmbusStatusOffset).store(newValue.flags, ordering: .releasing)
        }
    }

    // MARK: Connection table

    public var connections: ConnectionTable { ConnectionTable(region: self) }
}
