import HyperV
import IPC
import Partition

/// The SynIC message router's state machine (pure: guest memory through `PartitionMemory`, the
/// shared region through `SynICRegion`, SINTs through a closure). The worker process feeds it
/// ring records and doorbell wake-ups; unit tests feed it directly.
///
/// It owns
/// - one FIFO per (VP, SINT) of messages waiting for that SIMP slot (TLFS: a busy slot gets
///   MessagePending, the message waits for EOM; nothing is dropped, order is kept);
/// - the connection table (it is the only writer of `ConnectionTable` ids and kinds);
/// - the hyperv-testdev connections and SINT routes when the test device is enabled.
///
/// Message slots are also written by the monitor (timer messages); every slot access holds the
/// slot's lock in the shared region. A lock the monitor holds for longer than a short spin makes
/// `needsRetry` true and the worker comes back soon.
public final class MessageRouter {
    public struct Queued: Equatable, Sendable {
        public var message: HvMessage
        /// The connection entry whose message buffer this holds (given back on delivery).
        public var bufferOf: Int?
    }

    struct Connection {
        var index: Int
        var kind: ConnectionTable.Kind
        var vp: UInt32
        var sint: Int
        /// 0: the router serves it (the test device); else the worker kind it is published for.
        var owner: UInt32 = 0
    }

    /// The VMBus worker's kind: the owner whose message connections are forwarded.
    public static let vmbusOwner = UInt32(WorkerKind.vmbus.rawValue)
    /// The SINT VMBus uses; the only one the VMBus worker may post to.
    public static let vmbusSINT = 2

    public let region: SynICRegion
    public let memory: any PartitionMemory
    public let pollingAvailable: Bool
    public let testDevice: Bool
    /// Raises SINTx of a VP (an eventfd write in the worker).
    let raiseSINT: (UInt32, Int) -> Void
    public var vpCount: Int { region.vpCount }

    private(set) var queues: [[[Queued]]]
    var connections: [UInt32: Connection] = [:]
    var sintRoutes: Set<Int> = []
    var lastEOM: [UInt64]
    /// A slot lock stayed taken: call `retry()` again soon.
    public private(set) var needsRetry = false
    /// What happened, for the worker's stderr and the tests.
    public private(set) var delivered = 0
    public private(set) var dropped = 0
    public private(set) var eventsSignalled = 0
    public private(set) var forwarded = 0

    /// Hands a guest message for a connection the VMBus worker owns to that worker (a push into
    /// its ring, then its doorbell); false when the ring is full (the message waits in `held`).
    public var forwardToVMBus: ((PostedMessageRecord) -> Bool)?
    /// Messages for the VMBus worker that its ring refused, oldest first. Each still holds its
    /// connection buffer, so a guest that keeps posting meets HV_STATUS_INSUFFICIENT_BUFFERS
    /// instead of losing a message (Linux waits for VMBus replies with no timeout).
    private(set) var held: [PostedMessageRecord] = []
    public var heldCount: Int { held.count }

    public init(region: SynICRegion, memory: any PartitionMemory, pollingAvailable: Bool, testDevice: Bool,
                raiseSINT: @escaping (UInt32, Int) -> Void) {
        self.region = region
        self.memory = memory
        self.pollingAvailable = pollingAvailable
        self.testDevice = testDevice
        self.raiseSINT = raiseSINT
        queues = Array(repeating: Array(repeating: [], count: HvSynIC.sintCount), count: region.vpCount)
        lastEOM = (0..<region.vpCount).map { region.eomCount(vp: UInt32($0)) }
    }

    /// Messages waiting for VP `vp`'s SINTx slot.
    public func queued(vp: UInt32, sint: Int) -> [Queued] {
        Int(vp) < vpCount && (0..<HvSynIC.sintCount).contains(sint) ? queues[Int(vp)][sint] : []
    }

    // MARK: Inputs

    /// A guest HvPostMessage the monitor accepted (from ring `ring`, which is VP `ring`'s).
    /// Returns a problem description for a record that is not what the monitor writes (the
    /// worker reports it); such records and records for a connection that has changed since
    /// are dropped.
    @discardableResult
    public func handle(_ record: PostedMessageRecord, fromRing ring: Int) -> String? {
        guard Int(record.vp) == ring else {
            dropped += 1
            return "posted message claims VP \(record.vp) in VP \(ring)'s ring"
        }
        guard let c = connections[record.connectionID], c.index == Int(record.entry), c.kind == .message,
              region.connections.generation(index: c.index) == record.generation else {
            // Removed or re-created since the monitor accepted it: its buffer went with the entry.
            dropped += 1
            return nil
        }
        if c.owner != 0 {
            held.append(record)
            forwardHeld()
            return nil
        }
        let message = HvMessage(type: HvMessageType(rawValue: record.messageType), payload: record.payload)
        enqueue(Queued(message: message, bufferOf: c.index), vp: c.vp, sint: c.sint)
        return nil
    }

    /// A host message the VMBus worker pushed into its ring. Returns a problem description when
    /// the record is not what that worker may send (another SINT, an unknown VP, a message type
    /// the guest could not tell from a bare slot); such records are dropped.
    @discardableResult
    public func handleFromVMBus(_ record: HostMessageRecord) -> String? {
        guard Int(record.sint) == Self.vmbusSINT else {
            dropped += 1
            return "VMBus worker message for SINT\(record.sint)"
        }
        guard post(HvMessage(type: HvMessageType(rawValue: record.messageType), payload: record.payload),
                   vp: record.vp, sint: Self.vmbusSINT) else {
            dropped += 1
            return "VMBus worker message for VP \(record.vp) of type 0x\(String(record.messageType, radix: 16))"
        }
        return nil
    }

    /// Connections published for other workers (`RouterConnections`), once, before serving.
    /// Returns the ids that could not be published (a duplicate, or a full table).
    @discardableResult
    public func publish(_ entries: [RouterConnections.Entry]) -> [UInt32] {
        var failed: [UInt32] = []
        for e in entries {
            let kind: ConnectionTable.Kind = e.kind == .message ? .message : .event
            guard connections[e.connectionID] == nil,
                  let index = region.connections.insert(id: e.connectionID, kind: kind, capacity: e.buffers, owner: e.owner)
            else {
                failed.append(e.connectionID)
                continue
            }
            connections[e.connectionID] = Connection(index: index, kind: kind, vp: 0, sint: Self.vmbusSINT, owner: e.owner)
        }
        return failed
    }

    /// Pushes held messages to the VMBus worker, in order, until its ring refuses one.
    func forwardHeld() {
        while let first = held.first {
            guard let forward = forwardToVMBus, forward(first) else {
                needsRetry = true
                return
            }
            held.removeFirst()
            forwarded += 1
            region.connections.releaseBuffer(index: Int(first.entry))
        }
    }

    /// A host-to-guest message from a worker: queued for VP `vp`'s SINTx and delivered when the
    /// slot is free. False for an unknown VP or SINT.
    @discardableResult
    public func post(_ message: HvMessage, vp: UInt32, sint: Int) -> Bool {
        guard Int(vp) < vpCount, (0..<HvSynIC.sintCount).contains(sint), message.isDeliverable else { return false }
        enqueue(Queued(message: message, bufferOf: nil), vp: vp, sint: sint)
        return true
    }

    /// A hyperv-testdev port write (ignored unless the test device is enabled).
    public func handleTestDevice(value: UInt32) {
        guard testDevice, let cmd = TestDeviceCommand(value: value), Int(cmd.vp) < vpCount,
              (0..<HvSynIC.sintCount).contains(cmd.sint) else { return }
        let key = Int(cmd.vp) * HvSynIC.sintCount + cmd.sint
        switch cmd.control {
        case .sintRouteCreate:
            sintRoutes.insert(key)
        case .sintRouteDestroy:
            sintRoutes.remove(key)
        case .sintRouteSetSint:
            if sintRoutes.contains(key) { raiseIfUnmasked(vp: cmd.vp, sint: cmd.sint) }
        case .messageConnectionCreate:
            addConnection(cmd.connectionID, kind: .message, capacity: 1, vp: cmd.vp, sint: cmd.sint)
        case .eventConnectionCreate:
            addConnection(cmd.connectionID, kind: .event, capacity: 0, vp: cmd.vp, sint: cmd.sint)
        case .messageConnectionDestroy:
            removeConnection(cmd.connectionID, kind: .message)
        case .eventConnectionDestroy:
            removeConnection(cmd.connectionID, kind: .event)
        }
    }

    /// The doorbell rang or a retry is due: EOMs, signalled events, contended slots.
    public func service() {
        needsRetry = false
        forwardHeld()
        for vp in 0..<vpCount {
            let eom = region.eomCount(vp: UInt32(vp))
            if eom != lastEOM[vp] {
                lastEOM[vp] = eom
                rescan(vp: UInt32(vp))
            }
        }
        // Events of connections published for other workers are theirs to take.
        for (id, c) in connections where c.kind == .event && c.owner == 0 && region.connections.takeEventPending(index: c.index) {
            // hyperv-testdev: the flag is the connection id (QEMU's event_conn_handler).
            let regs = region.registers(vp: c.vp) ?? SynICRegisters()
            let (_, interrupt) = SynICDelivery.setEventFlag(sint: c.sint, flag: Int(id), registers: regs,
                                                          pollingAvailable: pollingAvailable, memory: memory)
            eventsSignalled += 1
            if interrupt != nil { raiseSINT(c.vp, c.sint) }
        }
    }

    /// Tries every queue of every VP (after a contended lock, or when the worker starts).
    public func retry() {
        needsRetry = false
        forwardHeld()
        for vp in 0..<vpCount { rescan(vp: UInt32(vp)) }
    }

    // MARK: Connections

    func addConnection(_ id: UInt32, kind: ConnectionTable.Kind, capacity: UInt32, vp: UInt32, sint: Int) {
        guard connections[id] == nil, let index = region.connections.insert(id: id, kind: kind, capacity: capacity)
        else { return }
        connections[id] = Connection(index: index, kind: kind, vp: vp, sint: sint)
    }

    func removeConnection(_ id: UInt32, kind: ConnectionTable.Kind) {
        // The test device may remove only its own connections.
        guard let c = connections[id], c.kind == kind, c.owner == 0 else { return }
        region.connections.remove(index: c.index)
        connections[id] = nil
        // Messages it still had queued go with it (QEMU drops the staged message too).
        for vp in 0..<vpCount {
            for sint in 0..<HvSynIC.sintCount {
                let before = queues[vp][sint].count
                queues[vp][sint].removeAll { $0.bufferOf == c.index }
                dropped += before - queues[vp][sint].count
            }
            publishPending(vp: UInt32(vp))
        }
    }

    // MARK: Delivery

    func enqueue(_ q: Queued, vp: UInt32, sint: Int) {
        queues[Int(vp)][sint].append(q)
        deliverHead(vp: vp, sint: sint)
    }

    func rescan(vp: UInt32) {
        for sint in 0..<HvSynIC.sintCount where !queues[Int(vp)][sint].isEmpty { deliverHead(vp: vp, sint: sint) }
    }

    /// Offers the head of VP `vp`'s SINTx queue to the slot (one message: once it is in, the slot
    /// is busy until the guest frees it and writes EOM).
    func deliverHead(vp: UInt32, sint: Int) {
        guard let head = queues[Int(vp)][sint].first else { return }
        // Announce first, then touch the slot: a guest that sees MessagePending and writes EOM
        // must find the bit set, or the monitor would not wake us.
        publishPending(vp: vp)
        guard let regs = region.registers(vp: vp), regs.messagePageEnabled else { return }
        guard region.lockSlot(vp: vp, sint: sint, owner: .router) else {
            needsRetry = true
            return
        }
        let result = SynICDelivery.deliver(head.message, sint: sint, registers: regs,
                                           morePending: queues[Int(vp)][sint].count > 1, memory: memory)
        region.unlockSlot(vp: vp, sint: sint, owner: .router)
        guard result == .delivered else { return }
        queues[Int(vp)][sint].removeFirst()
        delivered += 1
        if let index = head.bufferOf { region.connections.releaseBuffer(index: index) }
        publishPending(vp: vp)
        if regs.interrupt(for: sint, pollingAvailable: pollingAvailable) != nil { raiseSINT(vp, sint) }
    }

    func raiseIfUnmasked(vp: UInt32, sint: Int) {
        guard let regs = region.registers(vp: vp), regs.interrupt(for: sint, pollingAvailable: pollingAvailable) != nil
        else { return }
        raiseSINT(vp, sint)
    }

    func publishPending(vp: UInt32) {
        var mask: UInt32 = 0
        for (sint, q) in queues[Int(vp)].enumerated() where !q.isEmpty { mask |= 1 << UInt32(sint) }
        if region.routerPending(vp: vp) != mask { region.setRouterPending(vp: vp, mask: mask) }
    }
}
