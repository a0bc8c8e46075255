import HyperV
import IPC
import Partition
@testable import SynICRouting
import Testing

/// Guest RAM as a byte array (GPA 0...), for the router without a VM.
final class ArrayMemory: PartitionMemory, @unchecked Sendable {
    var bytes: [UInt8]
    init(size: Int) { bytes = [UInt8](repeating: 0, count: size) }
    func contains(gpa: UInt64, length: UInt64) -> Bool { gpa <= UInt64(bytes.count) && length <= UInt64(bytes.count) - gpa }
    func read(gpa: UInt64, count: Int) -> [UInt8]? {
        contains(gpa: gpa, length: UInt64(count)) ? Array(bytes[Int(gpa)..<Int(gpa) + count]) : nil
    }
    func write(gpa: UInt64, bytes b: [UInt8]) -> Bool {
        guard contains(gpa: gpa, length: UInt64(b.count)) else { return false }
        bytes.replaceSubrange(Int(gpa)..<Int(gpa) + b.count, with: b)
        return true
    }
}

/// A router over a real shared region (a memfd: no KVM needed) and array memory, with the
/// monitor's side of the conversation done by hand.
final class RouterFixture {
    static let simp: UInt64 = 0x10000, siefp: UInt64 = 0x20000
    let region: SynICRegion
    let memory = ArrayMemory(size: 0x40000)
    var raised: [(UInt32, Int)] = []
    var router: MessageRouter!

    init(vpCount: Int = 2, testDevice: Bool = true) throws {
        region = try SynICRegion.create(vpCount: vpCount, ringLayout: try RecordRing.Layout(recordSize: 512, capacity: 8))
        router = try MessageRouter(region: region, memory: memory, pollingAvailable: true, testDevice: testDevice) {
            [unowned self] vp, sint in self.raised.append((vp, sint))
        }
        for vp in 0..<vpCount { enable(vp: UInt32(vp)) }
    }

    /// SCONTROL, SIMP and SIEFP on (pages per VP), SINTx = 0x50 + x unmasked.
    func enable(vp: UInt32, sints: [UInt64]? = nil) {
        let s = sints ?? (0..<16).map { 0x50 + UInt64($0) }
        region.publish(vp: vp, registers: SynICRegisters(scontrol: 1, simp: Self.simp + UInt64(vp) * 0x1000 | 1,
                                                         siefp: Self.siefp + UInt64(vp) * 0x1000 | 1, sints: s))
    }

    func slot(vp: UInt32, sint: Int) -> HvMessage? {
        let at = Self.simp + UInt64(vp) * 0x1000 + UInt64(sint) * 256
        return HvMessage(decoding: memory.read(gpa: at, count: 256)!)
    }

    /// What the guest does with a message: free the slot and write EOM.
    func consume(vp: UInt32, sint: Int) {
        let at = Int(Self.simp) + Int(vp) * 0x1000 + sint * 256
        for i in 0..<4 { memory.bytes[at + i] = 0 }
        region.addEOM(vp: vp)
        router.service()
    }

    func device(_ control: TestDeviceCommand.Control, conn: UInt32 = 0, vp: UInt32, sint: Int) {
        router.handleTestDevice(value: TestDeviceCommand(control: control, connectionID: conn, vp: vp, sint: sint).value)
    }

    /// The monitor's half of HvPostMessage: look up, reserve, build the record.
    func post(conn: UInt32, from vp: UInt32, type: UInt32 = 0x1234, payload: [UInt8]) -> HvStatus {
        guard let e = region.connections.find(conn), e.kind == .message else { return .invalidConnectionID }
        guard region.connections.reserveBuffer(e) else { return .insufficientBuffers }
        router.handle(PostedMessageRecord(vp: vp, connectionID: conn, entry: UInt32(e.index), generation: e.generation,
                                          messageType: type, payload: payload), fromRing: Int(vp))
        return .success
    }

    func signal(conn: UInt32) -> HvStatus {
        guard let e = region.connections.find(conn), e.kind == .event else { return .invalidConnectionID }
        _ = region.connections.setEventPending(e)
        router.service()
        return .success
    }

    func flag(vp: UInt32, sint: Int, flag: Int) -> Bool {
        let (offset, mask) = HvEventFlagsPage.location(sint: sint, flag: flag)
        return memory.bytes[Int(Self.siefp) + Int(vp) * 0x1000 + offset] & mask != 0
    }
}

@Suite("The SynIC message router: hyperv-testdev connections, slots, queues, events")
struct MessageRouterTests {
    @Test func messageToOtherVPLandsInItsSlotAndRaisesTheSINT() throws {
        let f = try RouterFixture()
        f.device(.messageConnectionCreate, conn: 7, vp: 1, sint: 3)
        #expect(f.post(conn: 7, from: 0, payload: [1, 2, 3]) == .success)
        let m = try #require(f.slot(vp: 1, sint: 3))
        #expect(m.type.rawValue == 0x1234 && m.payload == [1, 2, 3] && m.flags == 0)
        #expect(f.raised.count == 1 && f.raised[0] == (1, 3))
        #expect(f.slot(vp: 0, sint: 3)?.type == HvMessageType.none)
    }

    @Test func unknownConnectionAndWrongKind() throws {
        let f = try RouterFixture()
        #expect(f.post(conn: 9, from: 0, payload: []) == .invalidConnectionID)
        f.device(.eventConnectionCreate, conn: 9, vp: 0, sint: 1)
        #expect(f.post(conn: 9, from: 0, payload: []) == .invalidConnectionID)
        #expect(f.signal(conn: 10) == .invalidConnectionID)
    }

    @Test func secondMessageWhileStagedGetsInsufficientBuffersThenBusySlotPendingAndEOM() throws {
        let f = try RouterFixture()
        f.device(.messageConnectionCreate, conn: 1, vp: 0, sint: 2)
        #expect(f.post(conn: 1, from: 0, payload: [1]) == .success)   // in the slot
        #expect(f.post(conn: 1, from: 0, payload: [2]) == .success)   // staged: slot busy
        #expect(f.slot(vp: 0, sint: 2)?.flags == HvMessageFlags.pending)
        #expect(f.region.routerPending(vp: 0) == 1 << 2)
        #expect(f.post(conn: 1, from: 0, payload: [3]) == .insufficientBuffers)
        #expect(f.raised.count == 1)
        f.consume(vp: 0, sint: 2)
        #expect(f.slot(vp: 0, sint: 2)?.payload == [2])
        #expect(f.raised.count == 2)
        #expect(f.region.routerPending(vp: 0) == 0)
        #expect(f.post(conn: 1, from: 0, payload: [3]) == .success)
    }

    @Test func hostMessagesKeepTheirOrderAndCarryMessagePendingWhileMoreWait() throws {
        let f = try RouterFixture()
        for i in 0..<5 { #expect(f.router.post(HvMessage(type: HvMessageType(rawValue: 0x77), payload: [UInt8(i)]), vp: 1, sint: 4)) }
        var seen: [UInt8] = []
        for _ in 0..<5 {
            let m = try #require(f.slot(vp: 1, sint: 4))
            seen.append(m.payload[0])
            // Everything but the last one announces more.
            #expect((m.flags == HvMessageFlags.pending) == (seen.count < 5))
            f.consume(vp: 1, sint: 4)
        }
        #expect(seen == [0, 1, 2, 3, 4])
        #expect(f.router.queued(vp: 1, sint: 4).isEmpty)
    }

    @Test func slowGuestLosesNothing() throws {
        // The queue (in the router's state region) holds `queueDepth` messages; a post beyond
        // that is refused, not dropped (a ring record stays in its ring until there is room).
        let f = try RouterFixture(vpCount: 1)
        let depth = f.router.state.queueDepth
        var next = 0
        var seen: [UInt8] = []
        while seen.count < 200 {
            while next < 200, f.router.post(HvMessage(type: HvMessageType(rawValue: 1), payload: [UInt8(next & 0xFF)]), vp: 0, sint: 0) {
                next += 1
            }
            #expect(f.router.queued(vp: 0, sint: 0).count == min(depth, 200 - seen.count - 1))
            seen.append(try #require(f.slot(vp: 0, sint: 0)?.payload.first))
            f.consume(vp: 0, sint: 0)
        }
        #expect(seen == (0..<200).map { UInt8($0 & 0xFF) })
        #expect(f.router.delivered == 200)
    }

    @Test func maskedSINTGetsTheMessageButNoInterruptAndPollingNeither() throws {
        let f = try RouterFixture()
        var sints = (0..<16).map { 0x50 + UInt64($0) }
        sints[3] |= HvMSR.Sint.masked
        sints[4] |= HvMSR.Sint.polling
        f.enable(vp: 0, sints: sints)
        f.router.post(HvMessage(type: HvMessageType(rawValue: 5)), vp: 0, sint: 3)
        f.router.post(HvMessage(type: HvMessageType(rawValue: 5)), vp: 0, sint: 4)
        #expect(f.slot(vp: 0, sint: 3)?.type.rawValue == 5 && f.slot(vp: 0, sint: 4)?.type.rawValue == 5)
        #expect(f.raised.isEmpty)
    }

    @Test func disabledMessagePageKeepsMessagesQueuedUntilEnabled() throws {
        let f = try RouterFixture()
        f.region.publish(vp: 0, registers: SynICRegisters())
        f.router.post(HvMessage(type: HvMessageType(rawValue: 5)), vp: 0, sint: 1)
        #expect(f.router.queued(vp: 0, sint: 1).count == 1)
        f.enable(vp: 0)
        f.region.addEOM(vp: 0) // what the monitor does when SIMP is enabled
        f.router.service()
        #expect(f.slot(vp: 0, sint: 1)?.type.rawValue == 5)
    }

    @Test func eventFlagIsTheConnectionIDAndInterruptsOnlyOnZeroToOne() throws {
        let f = try RouterFixture()
        f.device(.eventConnectionCreate, conn: 33, vp: 1, sint: 5)
        #expect(f.signal(conn: 33) == .success)
        #expect(f.flag(vp: 1, sint: 5, flag: 33))
        #expect(f.raised.count == 1 && f.raised[0] == (1, 5))
        #expect(f.signal(conn: 33) == .success) // already set: no interrupt
        #expect(f.raised.count == 1)
        f.memory.bytes[Int(RouterFixture.siefp) + 0x1000 + HvEventFlagsPage.location(sint: 5, flag: 33).0] = 0
        #expect(f.signal(conn: 33) == .success)
        #expect(f.raised.count == 2)
        f.device(.eventConnectionDestroy, conn: 33, vp: 1, sint: 5)
        #expect(f.signal(conn: 33) == .invalidConnectionID)
    }

    @Test func sintRouteAssertRaisesOnlyWhenRoutedAndUnmasked() throws {
        let f = try RouterFixture()
        f.device(.sintRouteSetSint, vp: 0, sint: 6)
        #expect(f.raised.isEmpty)
        f.device(.sintRouteCreate, vp: 0, sint: 6)
        f.device(.sintRouteSetSint, vp: 0, sint: 6)
        #expect(f.raised.count == 1)
        var sints = (0..<16).map { 0x50 + UInt64($0) }
        sints[6] |= HvMSR.Sint.masked
        f.enable(vp: 0, sints: sints)
        f.device(.sintRouteSetSint, vp: 0, sint: 6)
        #expect(f.raised.count == 1)
        f.device(.sintRouteDestroy, vp: 0, sint: 6)
        f.enable(vp: 0)
        f.device(.sintRouteSetSint, vp: 0, sint: 6)
        #expect(f.raised.count == 1)
    }

    @Test func testDeviceIgnoresBadVPsSINTsControlsAndWhenDisabled() throws {
        let f = try RouterFixture()
        f.device(.messageConnectionCreate, conn: 1, vp: 2, sint: 0)   // VP 2 of 2
        f.router.handleTestDevice(value: 1 << 24 | 4 << 16 | 0 << 8 | 16) // SINT 16
        f.router.handleTestDevice(value: 1 << 24 | 9 << 16)             // control 9
        #expect(f.region.connections.find(1) == nil)
        let g = try RouterFixture(testDevice: false)
        g.device(.messageConnectionCreate, conn: 1, vp: 0, sint: 0)
        #expect(g.region.connections.find(1) == nil)
    }

    @Test func destroyedConnectionDropsItsStagedMessageAndStaleRecords() throws {
        let f = try RouterFixture()
        f.device(.messageConnectionCreate, conn: 4, vp: 0, sint: 1)
        let e = try #require(f.region.connections.find(4))
        #expect(f.post(conn: 4, from: 0, payload: [1]) == .success)
        f.device(.messageConnectionDestroy, conn: 4, vp: 0, sint: 1)
        f.device(.messageConnectionCreate, conn: 4, vp: 0, sint: 1)
        // A record accepted under the old generation arrives late: dropped.
        f.router.handle(PostedMessageRecord(vp: 0, connectionID: 4, entry: UInt32(e.index), generation: e.generation,
                                            messageType: 9, payload: []), fromRing: 0)
        #expect(f.router.queued(vp: 0, sint: 1).isEmpty)
        #expect(f.router.dropped == 1)
    }

    @Test func recordClaimingAnotherVPIsReported() throws {
        let f = try RouterFixture()
        f.device(.messageConnectionCreate, conn: 4, vp: 0, sint: 1)
        let problem = f.router.handle(PostedMessageRecord(vp: 1, connectionID: 4, entry: 0, generation: 0,
                                                          messageType: 9, payload: []), fromRing: 0)
        #expect(problem != nil)
    }

    @Test func contendedSlotLockIsRetried() throws {
        let f = try RouterFixture()
        #expect(f.region.lockSlot(vp: 0, sint: 0, owner: .monitor))
        f.router.post(HvMessage(type: HvMessageType(rawValue: 1)), vp: 0, sint: 0)
        #expect(f.router.needsRetry)
        #expect(f.slot(vp: 0, sint: 0)?.type == HvMessageType.none)
        f.region.unlockSlot(vp: 0, sint: 0, owner: .monitor)
        f.router.retry()
        #expect(f.slot(vp: 0, sint: 0)?.type.rawValue == 1)
    }
}

@Suite("The shared SynIC region and connection table")
struct SynICRegionTests {
    @Test func registersRoundTripAndUnknownVPs() throws {
        let f = try RouterFixture()
        let regs = SynICRegisters(scontrol: 1, simp: 0x5001, siefp: 0x6001, sints: (0..<16).map { UInt64($0) << 3 })
        f.region.publish(vp: 1, registers: regs)
        #expect(f.region.registers(vp: 1) == regs)
        #expect(f.region.registers(vp: 2) == nil)
        f.region.publish(vp: 5, registers: regs) // ignored
    }

    @Test func slotLocksExcludeEachOther() throws {
        let f = try RouterFixture()
        #expect(f.region.lockSlot(vp: 1, sint: 15, owner: .router))
        #expect(!f.region.lockSlot(vp: 1, sint: 15, owner: .monitor, spins: 10))
        f.region.unlockSlot(vp: 1, sint: 15, owner: .monitor) // not the holder: no effect
        #expect(!f.region.lockSlot(vp: 1, sint: 15, owner: .monitor, spins: 10))
        f.region.unlockSlot(vp: 1, sint: 15, owner: .router)
        #expect(f.region.lockSlot(vp: 1, sint: 15, owner: .monitor, spins: 10))
        #expect(!f.region.lockSlot(vp: 2, sint: 0, owner: .monitor))
    }

    @Test func probingSurvivesRemovalAndTheTableFills() throws {
        let f = try RouterFixture()
        let t = f.region.connections
        let a = try #require(t.insert(id: 1, kind: .message, capacity: 2))
        let b = try #require(t.insert(id: 257, kind: .event, capacity: 0)) // same home slot
        #expect(a != b)
        t.remove(index: a)
        #expect(t.find(1) == nil)
        #expect(t.find(257)?.kind == .event)
        for id in 2..<257 { _ = t.insert(id: UInt32(id) + 1000, kind: .event, capacity: 0) }
        #expect(t.insert(id: 5000, kind: .event, capacity: 0) == nil)
    }

    @Test func buffersAreBoundedByCapacityAndTheHardLimit() throws {
        let f = try RouterFixture()
        let t = f.region.connections
        _ = t.insert(id: 3, kind: .message, capacity: 1000)
        let e = try #require(t.find(3))
        #expect(e.capacity == ConnectionTable.maxCapacity)
        var n = 0
        while t.reserveBuffer(e) { n += 1 }
        #expect(n == Int(ConnectionTable.maxCapacity))
        t.releaseBuffer(index: e.index)
        #expect(t.reserveBuffer(e))
        t.releaseBuffer(index: 999) // out of range: ignored
    }

    @Test func aScribbledHeaderIsRefusedByTheRouter() throws {
        let layout = try RecordRing.Layout(recordSize: 512, capacity: 8)
        let region = try SynICRegion.create(vpCount: 2, ringLayout: layout)
        #expect(throws: IPCError.self) { try SynICRegion(region: region.region, vpCount: 3, ringLayout: layout) }
        try region.region.store(UInt32(0), at: 0)
        #expect(throws: IPCError.self) { try SynICRegion(region: region.region, vpCount: 2, ringLayout: layout) }
    }
}
