import Atomics
import HyperV
import IPC
import Partition

/// The SynIC message router's state machine (pure: guest memory through `PartitionMemory`, the
/// shared regions through `SynICRegion` and `RouterStateRegion`, SINTs through a closure). The
/// worker process feeds it ring records and doorbell wake-ups; unit tests feed it directly.
///
/// It owns
/// - one FIFO per (VP, SINT) of messages waiting for that SIMP slot (TLFS: a busy slot gets
///   MessagePending, the message waits for EOM; nothing is dropped, order is kept);
/// - the connection table (it is the only writer of `ConnectionTable` ids and kinds);
/// - the hyperv-testdev connections and SINT routes when the test device is enabled;
/// - the guest's messages for the VMBus worker that its ring has not taken yet ("held").
///
/// None of it lives in this object: the queues, the held messages, the SINT routes and the input
/// rings' applied marks are in the `RouterStateRegion`, the connections (with the test device's
/// VP and SINT) in the SynIC region's connection table, both owned by the supervisor. A router
/// built over regions a killed predecessor used continues its work: `init` recovers (a slot write
/// cut short, a message pushed to the VMBus worker but not yet popped, marks not yet stored), and
/// every step below is ordered so each crash point has one safe recovery (docs/processes.md,
/// "Restart state").
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
    public let state: RouterStateRegion
    public let memory: any PartitionMemory
    public let pollingAvailable: Bool
    public let testDevice: Bool
    /// Raises SINTx of a VP (an eventfd write in the worker).
    let raiseSINT: (UInt32, Int) -> Void
    public var vpCount: Int { region.vpCount }

    var connections: [UInt32: Connection] = [:]
    var lastEOM: [UInt64]
    /// A slot lock stayed taken or a queue was full: call `retry()` again soon.
    public private(set) var needsRetry = false
    /// What happened, for the worker's stderr and the tests.
    public private(set) var delivered = 0
    public private(set) var dropped = 0
    public private(set) var eventsSignalled = 0
    public private(set) var forwarded = 0
    /// What `init` found and finished of a predecessor's work, one line each.
    public private(set) var recovered: [String] = []
    /// Tests only: called at every step boundary of enqueue, delivery, forwarding and event
    /// signalling with the step's name, so a test can stop the world there (a kill) and start a
    /// successor on what the shared memory holds at that instant.
    public var stepHook: ((String) -> Void)?
    @inline(__always) func step(_ name: String) { stepHook?(name) }

    /// Hands a guest message for a connection the VMBus worker owns to that worker (a push into
    /// its ring, then its doorbell); false when the ring is full (the message stays held).
    public var forwardToVMBus: ((PostedMessageRecord) -> Bool)?
    /// The router -> vmbus ring's producer index (the number its next push gets), so a successor
    /// can tell whether the held message a predecessor was pushing went in.
    public var vmbusInboundIndex: (() -> UInt64)?
    /// Messages for the VMBus worker that its ring refused, oldest first. Each still holds its
    /// connection buffer, so a guest that keeps posting meets HV_STATUS_INSUFFICIENT_BUFFERS
    /// instead of losing a message (Linux waits for VMBus replies with no timeout).
    public var heldCount: Int {
        let h = state.held
        return Int(h.tail.load(ordering: .relaxed) &- h.head.load(ordering: .relaxed))
    }

    /// `state`: the restart state (the supervisor's region; a predecessor's work in it is
    /// recovered). Without one the router keeps it in a private memfd (tests, fuzzing).
    public init(region: SynICRegion, memory: any PartitionMemory, pollingAvailable: Bool, testDevice: Bool,
                state: RouterStateRegion? = nil, raiseSINT: @escaping (UInt32, Int) -> Void) throws(IPCError) {
        self.region = region
        self.memory = memory
        self.pollingAvailable = pollingAvailable
        self.testDevice = testDevice
        self.raiseSINT = raiseSINT
        if let state { self.state = state } else {
            self.state = try RouterStateRegion.create(vpCount: region.vpCount, name: "synthvm-router-state-private")
        }
        guard self.state.vpCount == region.vpCount else {
            throw .invalidArgument("router state for \(self.state.vpCount) VPs, SynIC region for \(region.vpCount)")
        }
        lastEOM = (0..<region.vpCount).map { region.eomCount(vp: UInt32($0)) }
        recover()
    }

    /// Messages waiting for VP `vp`'s SINTx slot (those whose connection went away left out).
    public func queued(vp: UInt32, sint: Int) -> [Queued] {
        guard Int(vp) < vpCount, (0..<HvSynIC.sintCount).contains(sint) else { return [] }
        let q = state.queue(vp: vp, sint: sint)
        let head = q.head.load(ordering: .relaxed), tail = q.tail.load(ordering: .relaxed)
        var out: [Queued] = []
        var n = head
        while n != tail {
            if let e = state.readEntry(at: state.entryOffset(vp: vp, sint: sint, n)), !stale(e) {
                out.append(Queued(message: e.message, bufferOf: e.bufferOf))
            }
            n &+= 1
        }
        return out
    }

    // MARK: Inputs

    /// What the ring service does with the record it was lent.
    public struct Outcome: Equatable, Sendable {
        /// No room for its effect yet (a full queue): leave it in the ring, come back later.
        public var keep = false
        /// A record that is not what its writer may send (reported by the worker; dropped).
        public var problem: String?
    }

    /// A guest HvPostMessage the monitor accepted (from ring `ring`, which is VP `ring`'s).
    /// Returns a problem description for a record that is not what the monitor writes (the
    /// worker reports it); such records and records for a connection that has changed since
    /// are dropped.
    @discardableResult
    public func handle(_ record: PostedMessageRecord, fromRing ring: Int) -> String? {
        take(record, fromRing: ring, index: nil).problem
    }

    /// `handle` for a record lent by `RecordRing.Consumer.tryTake` as record `index` of ring
    /// `ring`: a record a predecessor already queued is not queued again, and the ring's applied
    /// mark is stored with the effect.
    public func take(_ record: PostedMessageRecord, fromRing ring: Int, index: UInt64?) -> Outcome {
        if let index, index < state.applied(ring: ring) { return Outcome() }
        guard Int(record.vp) == ring else {
            dropped += 1
            return Outcome(problem: "posted message claims VP \(record.vp) in VP \(ring)'s ring")
        }
        guard let c = connections[record.connectionID], c.index == Int(record.entry), c.kind == .message,
              region.connections.generation(index: c.index) == record.generation else {
            // Removed or re-created since the monitor accepted it: its buffer went with the entry.
            dropped += 1
            return Outcome()
        }
        let source = index.map { (ring: ring, index: $0) }
        if c.owner != 0 {
            guard hold(record, source: source) else {
                needsRetry = true
                return Outcome(keep: true)
            }
            state.count(.guestPosted)
            forwardHeld()
            return Outcome()
        }
        let message = HvMessage(type: HvMessageType(rawValue: record.messageType), payload: record.payload)
        let entry = RouterStateRegion.Entry(message: message, bufferOf: c.index, generation: record.generation, source: source)
        guard enqueue(entry, vp: c.vp, sint: c.sint) else {
            needsRetry = true
            return Outcome(keep: true)
        }
        state.count(.guestPosted)
        return Outcome()
    }

    /// A host message the VMBus worker pushed into its ring. Returns a problem description when
    /// the record is not what that worker may send (another SINT, an unknown VP, a message type
    /// the guest could not tell from a bare slot); such records are dropped.
    @discardableResult
    public func handleFromVMBus(_ record: HostMessageRecord) -> String? {
        takeFromVMBus(record, index: nil).problem
    }

    /// `handleFromVMBus` for record `index` of the vmbus -> router ring, lent by `tryTake`.
    public func takeFromVMBus(_ record: HostMessageRecord, index: UInt64?) -> Outcome {
        let ring = region.vmbusOutboundRing
        if let index, index < state.applied(ring: ring) { return Outcome() }
        guard Int(record.sint) == Self.vmbusSINT else {
            dropped += 1
            return Outcome(problem: "VMBus worker message for SINT\(record.sint)")
        }
        let message = HvMessage(type: HvMessageType(rawValue: record.messageType), payload: record.payload)
        guard Int(record.vp) < vpCount, message.isDeliverable else {
            dropped += 1
            return Outcome(problem: "VMBus worker message for VP \(record.vp) of type 0x\(String(record.messageType, radix: 16))")
        }
        let entry = RouterStateRegion.Entry(message: message, bufferOf: nil, source: index.map { (ring: ring, index: $0) })
        guard enqueue(entry, vp: record.vp, sint: Self.vmbusSINT) else {
            needsRetry = true
            return Outcome(keep: true)
        }
        state.count(.hostPosted)
        return Outcome()
    }

    /// Connections published for other workers (`RouterConnections`), once, before serving.
    /// Returns the ids that could not be published (a duplicate, or a full table). A connection a
    /// predecessor already published as asked is left as it is.
    @discardableResult
    public func publish(_ entries: [RouterConnections.Entry]) -> [UInt32] {
        var failed: [UInt32] = []
        for e in entries {
            let kind: ConnectionTable.Kind = e.kind == .message ? .message : .event
            if let c = connections[e.connectionID] {
                if c.kind != kind || c.owner != e.owner { failed.append(e.connectionID) }
                continue
            }
            guard let index = region.connections.insert(id: e.connectionID, kind: kind, capacity: e.buffers, owner: e.owner)
            else {
                failed.append(e.connectionID)
                continue
            }
            connections[e.connectionID] = Connection(index: index, kind: kind, vp: 0, sint: Self.vmbusSINT, owner: e.owner)
        }
        return failed
    }

    /// A host-to-guest message from a worker: queued for VP `vp`'s SINTx and delivered when the
    /// slot is free. False for an unknown VP or SINT, or a full queue.
    @discardableResult
    public func post(_ message: HvMessage, vp: UInt32, sint: Int) -> Bool {
        guard Int(vp) < vpCount, (0..<HvSynIC.sintCount).contains(sint), message.isDeliverable else { return false }
        guard enqueue(RouterStateRegion.Entry(message: message, bufferOf: nil), vp: vp, sint: sint) else { return false }
        state.count(.hostPosted)
        return true
    }

    /// A hyperv-testdev port write (ignored unless the test device is enabled). Applying one
    /// twice (a successor is lent a write its predecessor applied but had not acknowledged)
    /// changes nothing but a second raise for `sintRouteSetSint`.
    public func handleTestDevice(value: UInt32) {
        guard testDevice, let cmd = TestDeviceCommand(value: value), Int(cmd.vp) < vpCount,
              (0..<HvSynIC.sintCount).contains(cmd.sint) else { return }
        switch cmd.control {
        case .sintRouteCreate:
            state.setRoute(vp: cmd.vp, sint: cmd.sint, true)
        case .sintRouteDestroy:
            state.setRoute(vp: cmd.vp, sint: cmd.sint, false)
        case .sintRouteSetSint:
            if state.routes(vp: cmd.vp) & (1 << UInt32(cmd.sint)) != 0 { raiseIfUnmasked(vp: cmd.vp, sint: cmd.sint) }
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
        for (id, c) in connections where c.kind == .event && c.owner == 0 {
            // The journal first: a successor finds it set and sets the flag again (at worst a
            // second interrupt for one signal; never a lost one).
            let journal = state.eventJournal(index: c.index)
            journal.store(1, ordering: .sequentiallyConsistent)
            step("event: journal set")
            if region.connections.takeEventPending(index: c.index) {
                step("event: pending taken")
                signal(id, c)
                step("event: flag set")
            }
            journal.store(0, ordering: .releasing)
            step("event: journal cleared")
        }
    }

    /// hyperv-testdev: the flag is the connection id (QEMU's event_conn_handler).
    func signal(_ id: UInt32, _ c: Connection) {
        let regs = region.registers(vp: c.vp) ?? SynICRegisters()
        let (_, interrupt) = SynICDelivery.setEventFlag(sint: c.sint, flag: Int(id), registers: regs,
                                                      pollingAvailable: pollingAvailable, memory: memory)
        eventsSignalled += 1
        if interrupt != nil { raiseSINT(c.vp, c.sint) }
    }

    /// Tries every queue of every VP (after a contended lock, or when the worker starts).
    public func retry() {
        needsRetry = false
        forwardHeld()
        for vp in 0..<vpCount { rescan(vp: UInt32(vp)) }
    }

    // MARK: Connections

    func addConnection(_ id: UInt32, kind: ConnectionTable.Kind, capacity: UInt32, vp: UInt32, sint: Int) {
        guard connections[id] == nil,
              let index = region.connections.insert(id: id, kind: kind, capacity: capacity,
                                                    routerData: Self.routerData(vp: vp, sint: sint))
        else { return }
        connections[id] = Connection(index: index, kind: kind, vp: vp, sint: sint)
    }

    /// The test device's target in the connection entry's router word (bit 31: present).
    static func routerData(vp: UInt32, sint: Int) -> UInt32 { 1 << 31 | (vp & 0xFFFF) << 8 | UInt32(sint) }

    func removeConnection(_ id: UInt32, kind: ConnectionTable.Kind) {
        // The test device may remove only its own connections.
        guard let c = connections[id], c.kind == kind, c.owner == 0 else { return }
        region.connections.remove(index: c.index)
        connections[id] = nil
        // Messages it still had queued go with it (QEMU drops the staged message too): the entry's
        // generation changed, so each is dropped when it reaches its queue's head.
        for vp in 0..<vpCount { rescan(vp: UInt32(vp)) }
    }

    // MARK: Queues

    /// A queued message whose connection was removed (or re-created) since it was accepted.
    func stale(_ e: RouterStateRegion.Entry) -> Bool {
        guard let b = e.bufferOf else { return false }
        return region.connections.generation(index: b) != e.generation
    }

    /// Writes the entry past the tail, publishes it, then stores the source ring's applied mark.
    /// A kill between the two stores leaves an entry whose source is past the mark: `recover`
    /// raises the mark from the entries. False when the queue is full (nothing written).
    func enqueue(_ entry: RouterStateRegion.Entry, vp: UInt32, sint: Int) -> Bool {
        let q = state.queue(vp: vp, sint: sint)
        let head = q.head.load(ordering: .relaxed), tail = q.tail.load(ordering: .relaxed)
        guard tail &- head < UInt64(state.queueDepth) else { return false }
        state.writeEntry(entry, at: state.entryOffset(vp: vp, sint: sint, tail))
        step("enqueue: entry written")
        q.tail.store(tail &+ 1, ordering: .releasing)
        step("enqueue: tail published")
        if let s = entry.source {
            state.setApplied(ring: s.ring, s.index &+ 1)
            step("enqueue: applied mark stored")
        }
        deliverHead(vp: vp, sint: sint)
        return true
    }

    /// Holds a message for the VMBus worker (same order of stores as `enqueue`).
    func hold(_ record: PostedMessageRecord, source: (ring: Int, index: UInt64)?) -> Bool {
        let h = state.held
        let head = h.head.load(ordering: .relaxed), tail = h.tail.load(ordering: .relaxed)
        guard tail &- head < UInt64(state.heldDepth) else { return false }
        state.writeHeld(record, source: source, at: state.heldEntryOffset(tail))
        step("hold: entry written")
        h.tail.store(tail &+ 1, ordering: .releasing)
        step("hold: tail published")
        if let s = source {
            state.setApplied(ring: s.ring, s.index &+ 1)
            step("hold: applied mark stored")
        }
        return true
    }

    /// Pushes held messages to the VMBus worker, in order, until its ring refuses one.
    ///
    /// Per message: store `pushing` = the ring's producer index + 1, push (the push's index store
    /// is the commit), give the connection buffer back and store `released`, pop, clear
    /// `pushing`. A successor finding `pushing` set compares it with the ring's producer index:
    /// reached, the push happened (finish from the buffer on); not reached, it did not (push
    /// again).
    func forwardHeld() {
        let h = state.held
        finishInterruptedPush()
        while true {
            let head = h.head.load(ordering: .relaxed)
            guard head != h.tail.load(ordering: .relaxed) else { return }
            guard let (record, _) = state.readHeld(at: state.heldEntryOffset(head)) else {
                recovered.append("held message \(head) does not read back; dropped")
                dropped += 1
                h.head.store(head &+ 1, ordering: .releasing)
                continue
            }
            guard let forward = forwardToVMBus else {
                needsRetry = true
                return
            }
            if let p = vmbusInboundIndex?() { h.extra.store(p &+ 1, ordering: .sequentiallyConsistent) }
            step("forward: pushing stored")
            guard forward(record) else {
                h.extra.store(0, ordering: .releasing)
                needsRetry = true
                return
            }
            step("forward: pushed")
            finishHeld(head, record)
        }
    }

    func finishHeld(_ head: UInt64, _ record: PostedMessageRecord) {
        let h = state.held
        if h.released.load(ordering: .relaxed) != head &+ 1 {
            region.connections.releaseBuffer(index: Int(record.entry))
            step("forward: buffer given back")
            h.released.store(head &+ 1, ordering: .releasing)
            step("forward: released stored")
        }
        h.head.store(head &+ 1, ordering: .releasing)
        step("forward: popped")
        h.extra.store(0, ordering: .releasing)
        step("forward: pushing cleared")
        forwarded += 1
    }

    func finishInterruptedPush() {
        let h = state.held
        let pushing = h.extra.load(ordering: .acquiring)
        guard pushing != 0, let now = vmbusInboundIndex?() else { return }
        let head = h.head.load(ordering: .relaxed)
        if now >= pushing, head != h.tail.load(ordering: .relaxed),
           let (record, _) = state.readHeld(at: state.heldEntryOffset(head)) {
            recovered.append("held message \(head) was pushed to the VMBus worker before the kill; popped")
            finishHeld(head, record)
        } else {
            recovered.append("held message \(head) was not pushed before the kill; pushing it again")
        }
        h.extra.store(0, ordering: .releasing)
    }

    // MARK: Delivery

    func rescan(vp: UInt32) {
        for sint in 0..<HvSynIC.sintCount { deliverHead(vp: vp, sint: sint) }
        publishPending(vp: vp)
    }

    /// The tag of queue entry `n` in a slot's reserved header bytes (6...7): never 0, which the
    /// monitor's messages carry; successive entries of one queue differ.
    static func tag(_ n: UInt64) -> UInt16 { UInt16(truncatingIfNeeded: n & 0x7FFF) | 0x8000 }

    /// Offers the head of VP `vp`'s SINTx queue to the slot (one message: once it is in, the slot
    /// is busy until the guest frees it and writes EOM).
    ///
    /// The steps, and where a kill leaves a successor (`recoverSlot`):
    /// 1. publish the pending mask; take the slot lock (owner 2, the router);
    /// 2. a busy slot gets MessagePending; unlock; stop (a kill: lock held, slot not ours: unlock);
    /// 3. write bytes 4...255 with the tag bytes zero (a kill: type still 0, the guest ignores the
    ///    slot; the successor unlocks and writes it again);
    /// 4. one 8-byte store of type, size, flags and the entry's tag: the message is the guest's
    ///    (a kill from here on: the tag is in the slot even if the guest already cleared the type,
    ///    so the successor finishes steps 5-7 instead of delivering again);
    /// 5. give the connection buffer back, store `released` = n + 1 (a successor skips the buffer
    ///    when `released` says it went back);
    /// 6. pop (head = n + 1); 7. unlock; raise the SINT.
    func deliverHead(vp: UInt32, sint: Int) {
        let q = state.queue(vp: vp, sint: sint)
        // Empty: nothing to offer (`rescan` publishes the mask once for all SINTs).
        if q.head.load(ordering: .relaxed) == q.tail.load(ordering: .relaxed) { return }
        let (head, tail, live) = dropDeadHead(vp: vp, sint: sint)
        guard let entry = live else {
            publishPending(vp: vp)
            return
        }
        // Announce first, then touch the slot: a guest that sees MessagePending and writes EOM
        // must find the bit set, or the monitor would not wake us.
        publishPending(vp: vp)
        guard let regs = region.registers(vp: vp), regs.messagePageEnabled else { return }
        guard region.lockSlot(vp: vp, sint: sint, owner: .router) else {
            needsRetry = true
            return
        }
        step("deliver: slot locked")
        let result = writeSlot(entry.message, sint: sint, registers: regs, morePending: tail &- head > 1, tag: Self.tag(head))
        guard result == .delivered else {
            region.unlockSlot(vp: vp, sint: sint, owner: .router)
            step("deliver: busy slot unlocked")
            return
        }
        finishDelivery(vp: vp, sint: sint, head: head, entry: entry, registers: regs)
    }

    /// Pops entries at the head of (vp, sint)'s queue whose connection went away (their buffer
    /// with it) or that do not read back; returns the head, the tail and the first live entry.
    /// Called wherever the head moves, so a queue never holds only dead entries (the pending mask
    /// says "something to deliver").
    @discardableResult
    func dropDeadHead(vp: UInt32, sint: Int) -> (UInt64, UInt64, RouterStateRegion.Entry?) {
        let q = state.queue(vp: vp, sint: sint)
        var head = q.head.load(ordering: .relaxed)
        let tail = q.tail.load(ordering: .relaxed)
        while head != tail {
            if let e = state.readEntry(at: state.entryOffset(vp: vp, sint: sint, head)), !stale(e) { return (head, tail, e) }
            dropped += 1
            head &+= 1
            q.head.store(head, ordering: .releasing)
            step("deliver: dead entry popped")
        }
        return (head, tail, nil)
    }

    /// Steps 5-7 of `deliverHead`.
    func finishDelivery(vp: UInt32, sint: Int, head: UInt64, entry: RouterStateRegion.Entry, registers regs: SynICRegisters) {
        let q = state.queue(vp: vp, sint: sint)
        if let index = entry.bufferOf, q.released.load(ordering: .relaxed) != head &+ 1 {
            region.connections.releaseBuffer(index: index)
            step("deliver: buffer given back")
        }
        q.released.store(head &+ 1, ordering: .releasing)
        step("deliver: released stored")
        q.head.store(head &+ 1, ordering: .releasing)
        step("deliver: popped")
        region.unlockSlot(vp: vp, sint: sint, owner: .router)
        step("deliver: unlocked")
        dropDeadHead(vp: vp, sint: sint)
        delivered += 1
        state.count(.delivered)
        publishPending(vp: vp)
        if regs.interrupt(for: sint, pollingAvailable: pollingAvailable) != nil { raiseSINT(vp, sint) }
        step("deliver: SINT raised")
    }

    /// `SynICDelivery.deliver` with the commit as one 8-byte store that also carries the tag.
    func writeSlot(_ message: HvMessage, sint: Int, registers: SynICRegisters, morePending: Bool, tag: UInt16) -> SynICSlotDelivery {
        let slot = registers.messagePage + UInt64(HvMessagePage.slotOffset(sint: sint))
        guard let type = memory.read(gpa: slot, count: 4) else { return .unreachable }
        if type.contains(where: { $0 != 0 }) {
            _ = memory.fetchOr(gpa: slot + UInt64(HvMessage.flagsOffset), mask: HvMessageFlags.pending)
            step("deliver: MessagePending set")
            guard let again = memory.read(gpa: slot, count: 4), !again.contains(where: { $0 != 0 }) else { return .busy }
        }
        var m = message
        m.flags = morePending ? HvMessageFlags.pending : 0
        var bytes = m.encoded()
        bytes[6] = 0
        bytes[7] = 0
        guard memory.write(gpa: slot + 4, bytes: Array(bytes[4...])) else { return .unreachable }
        step("deliver: body written")
        var word: UInt64 = 0
        for i in 0..<6 { word |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        word |= UInt64(tag) << 48
        guard storeWord(word, gpa: slot) else { return .unreachable }
        step("deliver: type and tag stored")
        return .delivered
    }

    /// One 8-byte store (the slot is 256-byte aligned): the guest sees the type and the tag
    /// together or neither.
    func storeWord(_ word: UInt64, gpa: UInt64) -> Bool {
        if let ram = memory as? RegionGuestMemory {
            guard let o = ram.offset(gpa: gpa, length: 8), o % 8 == 0, let a = try? ram.region.atomic(UInt64.self, at: o)
            else { return false }
            a.store(word, ordering: .releasing)
            return true
        }
        return memory.write(gpa: gpa, bytes: (0..<8).map { UInt8(truncatingIfNeeded: word >> (8 * UInt64($0))) })
    }

    /// The tag in a slot's header, nil when the slot is not RAM.
    func slotTag(vp: UInt32, sint: Int, registers: SynICRegisters) -> UInt16? {
        let slot = registers.messagePage + UInt64(HvMessagePage.slotOffset(sint: sint))
        guard let b = memory.read(gpa: slot + 6, count: 2) else { return nil }
        return UInt16(b[0]) | UInt16(b[1]) << 8
    }

    func raiseIfUnmasked(vp: UInt32, sint: Int) {
        guard let regs = region.registers(vp: vp), regs.interrupt(for: sint, pollingAvailable: pollingAvailable) != nil
        else { return }
        raiseSINT(vp, sint)
    }

    func publishPending(vp: UInt32) {
        var mask: UInt32 = 0
        for sint in 0..<HvSynIC.sintCount {
            let q = state.queue(vp: vp, sint: sint)
            if q.head.load(ordering: .relaxed) != q.tail.load(ordering: .relaxed) { mask |= 1 << UInt32(sint) }
        }
        if region.routerPending(vp: vp) != mask { region.setRouterPending(vp: vp, mask: mask) }
    }

    // MARK: Restart

    /// A successor's first step (also harmless on a fresh region): rebuild the connection map
    /// from the table, check every queue, raise the applied marks to what the queues hold, finish
    /// or undo a slot write cut short, set again an event a predecessor was signalling, and
    /// publish the pending masks. What it does is in `recovered`.
    func recover() {
        for (e, data) in region.connections.liveEntries() {
            if e.owner != 0 {
                connections[e.connectionID] = Connection(index: e.index, kind: e.kind, vp: 0, sint: Self.vmbusSINT, owner: e.owner)
                continue
            }
            let vp = (data >> 8) & 0xFFFF, sint = Int(data & 0xFF)
            guard data & (1 << 31) != 0, Int(vp) < vpCount, sint < HvSynIC.sintCount, connections[e.connectionID] == nil else {
                recovered.append("connection 0x\(String(e.connectionID, radix: 16)) has no valid route (0x\(String(data, radix: 16))); removed")
                region.connections.remove(index: e.index)
                continue
            }
            connections[e.connectionID] = Connection(index: e.index, kind: e.kind, vp: vp, sint: sint)
        }
        if !connections.isEmpty { recovered.append("\(connections.count) connections restored") }
        var marks = (0..<(vpCount + SynICRegion.extraRings)).map { state.applied(ring: $0) }
        func saw(_ source: (ring: Int, index: UInt64)?) {
            if let s = source, s.ring < marks.count, s.index >= marks[s.ring] { marks[s.ring] = s.index &+ 1 }
        }
        for vp in 0..<UInt32(vpCount) {
            for sint in 0..<HvSynIC.sintCount {
                let q = state.queue(vp: vp, sint: sint)
                let head = q.head.load(ordering: .relaxed), tail = q.tail.load(ordering: .relaxed)
                guard tail &- head <= UInt64(state.queueDepth) else {
                    recovered.append("queue (\(vp), \(sint)): head \(head), tail \(tail); emptied")
                    q.head.store(tail, ordering: .releasing)
                    continue
                }
                var n = head
                while n != tail {
                    saw(state.readEntry(at: state.entryOffset(vp: vp, sint: sint, n))?.source)
                    n &+= 1
                }
            }
        }
        let h = state.held
        let head = h.head.load(ordering: .relaxed), tail = h.tail.load(ordering: .relaxed)
        if tail &- head > UInt64(state.heldDepth) {
            recovered.append("held queue: head \(head), tail \(tail); emptied")
            h.head.store(tail, ordering: .releasing)
        } else {
            var n = head
            while n != tail {
                saw(state.readHeld(at: state.heldEntryOffset(n))?.source)
                n &+= 1
            }
        }
        for (ring, mark) in marks.enumerated() where mark != state.applied(ring: ring) {
            recovered.append("ring \(ring): records below \(mark) were queued before the kill")
            state.setApplied(ring: ring, mark)
        }
        for vp in 0..<UInt32(vpCount) {
            for sint in 0..<HvSynIC.sintCount where region.slotLockOwner(vp: vp, sint: sint) == SynICRegion.SlotOwner.router.rawValue {
                recoverSlot(vp: vp, sint: sint)
            }
        }
        for (id, c) in connections where c.kind == .event && c.owner == 0 {
            let journal = state.eventJournal(index: c.index)
            if journal.load(ordering: .acquiring) != 0 {
                recovered.append("event connection 0x\(String(id, radix: 16)) was being signalled; signalled again")
                signal(id, c)
                journal.store(0, ordering: .releasing)
            }
        }
        for vp in 0..<UInt32(vpCount) {
            for sint in 0..<HvSynIC.sintCount { dropDeadHead(vp: vp, sint: sint) }
            publishPending(vp: vp)
        }
    }

    /// The dead router held (vp, sint)'s slot lock: its write of the queue's head was cut short
    /// somewhere in `deliverHead`. The tag tells whether step 4 happened.
    func recoverSlot(vp: UInt32, sint: Int) {
        let q = state.queue(vp: vp, sint: sint)
        let head = q.head.load(ordering: .relaxed)
        if head != q.tail.load(ordering: .relaxed), let regs = region.registers(vp: vp), regs.messagePageEnabled,
           slotTag(vp: vp, sint: sint, registers: regs) == Self.tag(head),
           let entry = state.readEntry(at: state.entryOffset(vp: vp, sint: sint, head)) {
            recovered.append("slot (\(vp), \(sint)): message \(head) was in the slot; its delivery finished")
            finishDelivery(vp: vp, sint: sint, head: head, entry: entry, registers: regs)
        } else {
            recovered.append("slot (\(vp), \(sint)): locked by the dead router, nothing of ours in it; unlocked")
            region.unlockSlot(vp: vp, sint: sint, owner: .router)
        }
    }
}
