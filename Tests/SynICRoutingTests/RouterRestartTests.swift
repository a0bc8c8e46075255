import HyperV
import IPC
import Partition
@testable import SynICRouting
import Testing

/// The SynIC router killed at every step of enqueue, delivery, EOM, forwarding and event
/// signalling, with a successor started on the same shared memory: every message the guest posts
/// (to the test device's connections and to the VMBus worker's) and every message the VMBus worker
/// sends must arrive exactly once, in order; connection buffers, slot locks and pending masks end
/// where they should.
///
/// A kill is a snapshot: at the chosen step (`MessageRouter.stepHook`) the test copies every byte
/// a worker shares — the SynIC region, the router's state region, guest RAM — lets the doomed
/// router finish its call (whatever it does after the snapshot is what the kill prevented), puts
/// the snapshot back, drops SINT raises made after it, and starts a successor: new ring consumers
/// and a new `MessageRouter` over the same regions, as a restarted worker would.
@Suite("The SynIC router: killed at any step, a successor delivers exactly once")
struct RouterRestartTests {
    static let simp: UInt64 = 0x10000, siefp: UInt64 = 0x20000
    static let layout = try! RecordRing.Layout(recordSize: 512, capacity: 8)

    final class World {
        let region: SynICRegion
        let state: RouterStateRegion
        let memory = ArrayMemory(size: 0x40000)
        let vpRings: [RecordRing.Producer]
        let testRing: RecordRing.Producer
        let vmbusOut: RecordRing.Producer
        let vmbusIn: RecordRing.Consumer
        var raised: [(UInt32, Int)] = []
        var sequence: UInt64 = 0
        /// What the guest took from each (VP, SINT) slot, first payload byte.
        var received: [Int: [UInt8]] = [:]
        /// What the fake VMBus worker took from its ring.
        var forwarded: [UInt8] = []

        init() throws {
            let region = try SynICRegion.create(vpCount: 2, ringLayout: RouterRestartTests.layout)
            self.region = region
            state = try RouterStateRegion.create(vpCount: 2, queueDepth: 4, heldDepth: 4, name: "test-router-state")
            let l = RouterRestartTests.layout
            vpRings = try (0..<2).map { try RecordRing.Producer(region: region.region, offset: region.ringOffset($0), layout: l) }
            testRing = try RecordRing.Producer(region: region.region, offset: region.ringOffset(region.testDeviceRing), layout: l)
            vmbusOut = try RecordRing.Producer(region: region.region, offset: region.ringOffset(region.vmbusOutboundRing), layout: l)
            vmbusIn = try RecordRing.Consumer(region: region.region, offset: region.ringOffset(region.vmbusInboundRing), layout: l)
            for vp: UInt32 in 0..<2 {
                region.publish(vp: vp, registers: SynICRegisters(scontrol: 1, simp: Self.simp + UInt64(vp) * 0x1000 | 1,
                                                                 siefp: Self.siefp + UInt64(vp) * 0x1000 | 1,
                                                                 sints: (0..<16).map { 0x50 + UInt64($0) }))
            }
        }
        static var simp: UInt64 { RouterRestartTests.simp }
        static var siefp: UInt64 { RouterRestartTests.siefp }

        /// The monitor's test-device port write.
        func testDevice(_ control: TestDeviceCommand.Control, conn: UInt32 = 0, vp: UInt32, sint: Int) {
            sequence += 1
            let value = TestDeviceCommand(control: control, connectionID: conn, vp: vp, sint: sint).value
            #expect(testRing.tryPush(TestDeviceWriteRecord(vp: 0, value: value, sequence: sequence).encoded()) != .full)
        }

        /// The monitor's half of HvPostMessage; false for INSUFFICIENT_BUFFERS (the guest tries again).
        func post(conn: UInt32, from vp: UInt32, payload: UInt8) -> Bool {
            guard let e = region.connections.find(conn), e.kind == .message, region.connections.reserveBuffer(e) else { return false }
            let r = PostedMessageRecord(vp: vp, connectionID: conn, entry: UInt32(e.index), generation: e.generation,
                                        messageType: 0x77, payload: [payload])
            guard case .pushed = vpRings[Int(vp)].tryPush(r.encoded()) else {
                region.connections.releaseBuffer(index: e.index)
                return false
            }
            return true
        }

        /// Linux's hv message handling: take the message, free the slot, EOM if it was pending.
        func consume(vp: UInt32, sint: Int) {
            let at = Int(Self.simp) + Int(vp) * 0x1000 + sint * 256
            guard memory.bytes[at..<at + 4].contains(where: { $0 != 0 }) else { return }
            received[Int(vp) * 16 + sint, default: []].append(memory.bytes[at + 16])
            let pending = memory.bytes[at + 5] & HvMessageFlags.pending != 0
            for i in 0..<4 { memory.bytes[at + i] = 0 }
            if pending { region.addEOM(vp: vp) }
        }

        func takeForwarded() {
            _ = vmbusIn.tryPop { bytes in
                if let r = try? PostedMessageRecord.decode(bytes) { forwarded.append(r.payload[0]) }
            }
        }

        func eventFlag(vp: UInt32, sint: Int, flag: Int) -> Bool {
            let (offset, mask) = HvEventFlagsPage.location(sint: sint, flag: flag)
            return memory.bytes[Int(Self.siefp) + Int(vp) * 0x1000 + offset] & mask != 0
        }

        /// Every byte a worker shares.
        struct Snapshot {
            var synic: [UInt8], state: [UInt8], ram: [UInt8], raised: Int
        }

        func snapshot() -> Snapshot {
            Snapshot(synic: try! region.region.bytes(at: 0, count: region.region.size),
                     state: try! state.region.bytes(at: 0, count: state.region.size), ram: memory.bytes, raised: raised.count)
        }

        func restore(_ s: Snapshot) {
            try! region.region.write(s.synic, at: 0)
            try! state.region.write(s.state, at: 0)
            memory.bytes = s.ram
            raised.removeLast(raised.count - s.raised)
        }
    }

    /// One router life: what a restarted worker builds (Workers/synic-router/main.swift).
    final class Router {
        let router: MessageRouter
        var service: RouterRingService

        init(_ w: World, hook: @escaping (String) -> Void) throws {
            router = try MessageRouter(region: w.region, memory: w.memory, pollingAvailable: true, testDevice: true,
                                       state: w.state) { [unowned w] vp, sint in w.raised.append((vp, sint)) }
            router.publish([RouterConnections.Entry(connectionID: 1, kind: .message, owner: MessageRouter.vmbusOwner, buffers: 3)])
            let l = RouterRestartTests.layout
            let inbound = try RecordRing.Producer(region: w.region.region, offset: w.region.ringOffset(w.region.vmbusInboundRing), layout: l)
            router.vmbusInboundIndex = { inbound.nextIndex }
            router.forwardToVMBus = { r in
                if case .pushed = inbound.tryPush(r.encoded()) { return true }
                return false
            }
            service = RouterRingService(
                consumers: try (0...w.region.vpCount).map { try RecordRing.Consumer(region: w.region.region, offset: w.region.ringOffset($0), layout: l) },
                testDeviceRing: w.region.testDeviceRing,
                vmbusOutbound: try RecordRing.Consumer(region: w.region.region, offset: w.region.ringOffset(w.region.vmbusOutboundRing), layout: l))
            router.stepHook = hook
            router.retry()
        }

        func turn(_ w: World) {
            service.serveOnce(router, testDeviceApplied: { w.region.testDeviceAck = $0 }, report: { Issue.record("report: \($0)") })
        }
    }

    struct Outcome: Equatable {
        var received: [Int: [UInt8]]
        var forwarded: [UInt8]
        var eventSeen: Bool
        var steps: Int
        var kills: Int
        var recovered: [String]
    }

    /// The conversation, with the router killed at the steps numbered in `kills`.
    static func scenario(kills: Set<Int>) throws -> Outcome {
        let w = try World()
        var steps = 0, done = 0
        var snapshot: World.Snapshot?
        let hook: (String) -> Void = { _ in
            steps += 1
            if snapshot == nil, kills.contains(steps) { snapshot = w.snapshot() }
        }
        var r = try Router(w, hook: hook)
        var recovered: [String] = []
        /// A call into the router; a kill inside it is made real afterwards.
        func call(_ body: () -> Void) throws {
            body()
            // A kill inside the successor's own start (its recovery and first retry) is handled
            // the same way, so loop.
            while let s = snapshot {
                w.restore(s)
                snapshot = nil
                done += 1
                r = try Router(w, hook: hook)
                recovered += r.router.recovered
            }
        }

        w.testDevice(.messageConnectionCreate, conn: 7, vp: 1, sint: 3)
        w.testDevice(.messageConnectionCreate, conn: 8, vp: 0, sint: 5)
        w.testDevice(.eventConnectionCreate, conn: 9, vp: 0, sint: 6)
        try call { r.turn(w) }
        var next7: UInt8 = 1, next8: UInt8 = 1, next1: UInt8 = 50, nextHost: UInt8 = 100
        var signalled = false
        for round in 0..<200 {
            if next7 <= 6, w.post(conn: 7, from: 0, payload: next7) { next7 += 1 }
            if next8 <= 4, w.post(conn: 8, from: 1, payload: next8) { next8 += 1 }
            // Even payloads from VP 0, odd from VP 1: each VP's order is kept, the two interleave.
            if next1 <= 56, w.post(conn: 1, from: UInt32(next1 % 2), payload: next1) { next1 += 1 }
            if nextHost <= 110,
               case .pushed = w.vmbusOut.tryPush(HostMessageRecord(vp: 0, sint: 2, messageType: 1, payload: [nextHost]).encoded()) {
                nextHost += 1
            }
            if !signalled, round >= 5, let e = w.region.connections.find(9) {
                _ = w.region.connections.setEventPending(e)
                signalled = true
            }
            try call { r.turn(w) }
            // The guest is slower than the router: slots fill, MessagePending and EOM come into play.
            if round % 3 == 0 {
                w.consume(vp: 1, sint: 3)
                w.consume(vp: 0, sint: 5)
                w.consume(vp: 0, sint: 2)
                try call { r.router.service() }
            }
            if round % 2 == 0 { w.takeForwarded() }
        }
        // Nothing left anywhere.
        for vp: UInt32 in 0..<2 {
            #expect(w.region.routerPending(vp: vp) == 0)
            for sint in 0..<16 { #expect(w.region.slotLockOwner(vp: vp, sint: sint) == 0) }
        }
        for id: UInt32 in [1, 7, 8] {
            let e = try #require(w.region.connections.find(id))
            #expect(w.region.connections.u32(e.index, 24).load(ordering: .relaxed) == 0, "buffers in flight on 0x\(String(id, radix: 16))")
        }
        return Outcome(received: w.received, forwarded: w.forwarded, eventSeen: signalled && w.eventFlag(vp: 0, sint: 6, flag: 9),
                       steps: steps, kills: done, recovered: recovered)
    }

    /// Every forwarded message once; each VP's (payload parity) in its order.
    static func sameForwarding(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.sorted() == b.sorted() && a.filter { $0 % 2 == 0 } == b.filter { $0 % 2 == 0 } && a.filter { $0 % 2 == 1 } == b.filter { $0 % 2 == 1 }
    }

    @Test("without kills: the reference conversation")
    func reference() throws {
        let o = try Self.scenario(kills: [])
        #expect(o.received[1 * 16 + 3] == Array(1...6))
        #expect(o.received[0 * 16 + 5] == Array(1...4))
        #expect(o.received[0 * 16 + 2] == Array(100...110))
        #expect(o.forwarded == Array(50...56))
        #expect(o.eventSeen)
        #expect(o.steps > 100)
    }

    @Test("killed at each step in turn: every message exactly once, in order")
    func everyStep() throws {
        let reference = try Self.scenario(kills: [])
        for k in 1...reference.steps {
            let o = try Self.scenario(kills: [k])
            #expect(o.kills == 1)
            #expect(o.received == reference.received, "killed at step \(k): \(o.received) \(o.recovered)")
            #expect(Self.sameForwarding(o.forwarded, reference.forwarded), "killed at step \(k): \(o.forwarded) \(o.recovered)")
            #expect(o.eventSeen, "killed at step \(k)")
        }
    }

    @Test("killed again and again: still exactly once")
    func manyKills() throws {
        let reference = try Self.scenario(kills: [])
        // A delivery is about ten steps: kill often, but not so often that no step ever completes.
        for stride_ in [11, 17, 29] {
            let o = try Self.scenario(kills: Set(stride(from: 1, through: 3 * reference.steps, by: stride_)))
            #expect(o.kills > 10)
            #expect(o.received == reference.received, "every \(stride_)th step: \(o.received)")
            #expect(Self.sameForwarding(o.forwarded, reference.forwarded), "every \(stride_)th step: \(o.forwarded)")
            #expect(o.eventSeen)
        }
    }

    @Test("a slot lock the dead router held is recovered; the tag tells a visible message from an unwritten one")
    func slotLockRecovery() throws {
        let w = try World()
        var r = try Router(w) { _ in }
        #expect(r.router.post(HvMessage(type: HvMessageType(rawValue: 5), payload: [42]), vp: 0, sint: 4))
        w.consume(vp: 0, sint: 4)
        #expect(w.received[4] == [42])
        // A kill with the lock held and nothing written: the successor unlocks and delivers.
        #expect(w.region.lockSlot(vp: 0, sint: 4, owner: .router))
        #expect(r.router.post(HvMessage(type: HvMessageType(rawValue: 5), payload: [43]), vp: 0, sint: 4) == true)
        #expect(w.received[4] == [42])
        r = try Router(w) { _ in }
        #expect(r.router.recovered.contains { $0.contains("unlocked") })
        w.consume(vp: 0, sint: 4)
        #expect(w.received[4] == [42, 43])
        #expect(w.region.slotLockOwner(vp: 0, sint: 4) == 0)
    }
}
