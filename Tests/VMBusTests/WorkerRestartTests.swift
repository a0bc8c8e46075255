import HyperV
import IPC
import SynICRouting
import Testing
@testable import VMBus
@testable import VMBusWorker

/// The VMBus worker killed at every step boundary of a Linux-like conversation (connect, offers,
/// GPADLs, the three IC channels opened and negotiated, heartbeats, a shutdown request), with a
/// successor started on the same shared memory each time: the guest must see every reply exactly
/// once, in order, and the IC channels must continue (no second NEGOTIATE, one shutdown request).
///
/// Everything a real worker shares lives in memfds here too: guest RAM (the IC rings on GPADL
/// pages), the SynIC region (the router's two rings; the test plays the router), the state region.
/// A "kill" drops the worker's objects. A kill after a ring effect but before the save that
/// would follow it is made by putting the state region back as it was before that save.
@Suite("VMBus worker: killed at any step, a successor continues exactly once")
struct WorkerRestartTests {
    static let ramSize = 1 << 20
    static let configuration = VMBusServer.Configuration(vpCount: 2, ram: [0..<UInt64(ramSize)])

    /// Where one scenario stands: the shared memory and the guest's side.
    final class World {
        let ram: SharedRegion
        let synic: SynICRegion
        let state: WorkerStateRegion
        let routerIn: RecordRing.Producer
        let routerOut: RecordRing.Consumer
        var guests: [UInt32: FakeLinuxIC] = [:]
        var replies: [VMBusHostMessage] = []
        var now: UInt64 = 1_000_000_000
        var log: [String] = []

        init() throws {
            ram = try SharedRegion(name: "test-ram", size: WorkerRestartTests.ramSize)
            let layout = try RecordRing.Layout(recordSize: 512, capacity: 64)
            synic = try SynICRegion.create(vpCount: 2, ringLayout: layout)
            state = try WorkerStateRegion.create(name: "test-vmbus-state", kind: WorkerKind.vmbus.rawValue, slotSize: 64 << 10)
            routerIn = try RecordRing.Producer(region: synic.region, offset: synic.ringOffset(synic.vmbusInboundRing), layout: layout)
            routerOut = try RecordRing.Consumer(region: synic.region, offset: synic.ringOffset(synic.vmbusOutboundRing), layout: layout)
            for relID: UInt32 in 1...3 {
                // The channels' event connections, as the monitor publishes them for the worker.
                _ = synic.connections.insert(id: 0x2000 + relID, kind: .event, capacity: 0, owner: UInt32(WorkerKind.vmbus.rawValue))
                let base = WorkerRestartTests.firstPage(relID)
                func flat(_ page: UInt64) throws -> VMBusFlatRingMemory {
                    let control = ram.pointer(at: Int(page) * 4096, count: 4 * 4096)!
                    let m = try VMBusFlatRingMemory(control: control, data: control + 4096, dataCount: 3 * 4096)
                    m.setControlU32(64, 1)  // Linux sets feature bit 0 in both rings
                    return m
                }
                let kind: VMBusIntegrationService.Kind = relID == 1 ? .heartbeat : relID == 2 ? .shutdown : .timesync
                guests[relID] = try FakeLinuxIC(kind: kind, hostToGuest: try flat(base + 4), guestToHost: try flat(base))
            }
        }

        func post(_ m: VMBusGuestMessage, conn: UInt32 = 1) {
            let r = PostedMessageRecord(vp: 0, connectionID: conn, entry: 0, generation: 0,
                                        messageType: HvMessageType.vmbus.rawValue, payload: m.encoded())
            #expect(routerIn.tryPush(r.encoded()) != .full)
        }

        /// The router's side: takes what the worker pushed.
        func drain() {
            while case .record = routerOut.tryPop({ bytes in
                guard let r = try? HostMessageRecord.decode(bytes), let m = try? VMBusHostMessage.decode(r.payload) else {
                    Issue.record("undecodable reply")
                    return
                }
                replies.append(m)
            }) {}
        }

        /// Each guest driver answers what it was sent and signals its channel (HvSignalEvent).
        func runGuests() {
            for relID in guests.keys.sorted() where guests[relID]!.run() > 0 {
                if let e = synic.connections.find(0x2000 + relID) { _ = synic.connections.setEventPending(e) }
            }
        }
    }

    /// Ring pages of relid `r`: 8 pages, the first 4 guest-to-host.
    static func firstPage(_ relID: UInt32) -> UInt64 { 16 + UInt64(relID - 1) * 8 }

    /// One worker life: what a restart rebuilds from the same memory.
    final class Worker {
        let inbound: RecordRing.Consumer
        let outbound: RecordRing.Producer
        let devices: VMBusDevices
        let core: VMBusWorkerCore

        init(_ w: World) throws {
            let layout = w.synic.ringLayout
            inbound = try RecordRing.Consumer(region: w.synic.region, offset: w.synic.ringOffset(w.synic.vmbusInboundRing), layout: layout)
            let outbound = try RecordRing.Producer(region: w.synic.region, offset: w.synic.ringOffset(w.synic.vmbusOutboundRing),
                                                   layout: layout)
            self.outbound = outbound
            devices = VMBusDevices.standard(clock: { now in
                VMBusIntegrationService.Clock(monotonic: now, unixNanoseconds: 1_767_225_600_000_000_000 + Int64(now), referenceTime: now / 100)
            }, log: { w.log.append($0) })
            let service = VMBusService(state: w.state, configuration: WorkerRestartTests.configuration,
                                       offers: VMBusWorkerCore.offers(devices.all), outboundIndex: { outbound.nextIndex }) { w.log.append($0) }
            let memory = RegionGuestMemory(region: w.ram, ranges: [.init(base: 0, size: UInt64(WorkerRestartTests.ramSize), offset: 0)])
            let signals = VMBusChannelSignals(synic: w.synic, memory: memory, pollingAvailable: false) { _ in }
            core = VMBusWorkerCore(service: service, devices: devices.all,
                                   map: VMBusGuestMemoryMap(regions: [.init(gpa: 0..<UInt64(WorkerRestartTests.ramSize),
                                                                            host: w.ram.pointer(at: 0, count: WorkerRestartTests.ramSize)!)]),
                                   signals: signals, now: w.now) { w.log.append($0) }
        }
    }

    /// Decides where the worker dies: the crash points are numbered as they are reached.
    final class Killer {
        let at: Set<Int>
        var reached = 0
        var kills = 0
        init(_ at: Set<Int>) { self.at = at }
        /// Reached a crash point: true means "die here".
        func die() -> Bool {
            reached += 1
            if at.contains(reached) { kills += 1; return true }
            return false
        }
    }

    /// One turn of the worker's serve loop (Workers/vmbus/main.swift) with its crash points.
    /// Returns false when the worker died (the caller starts a successor).
    static func turn(_ worker: Worker, _ w: World, _ k: Killer) -> Bool {
        var died = false
        while !died {
            let r = worker.inbound.tryTake { record, index in
                if k.die() { died = true; return .keep }                 // taken, no effect yet
                worker.core.handle(record: record, index: index, now: w.now)
                if k.die() { died = true; return .keep }                 // effect saved, not committed
                return .commit
            }
            guard case .record = r else { break }
        }
        if died { return false }
        worker.core.serveChannels(now: w.now)
        if k.die() { return false }                                      // served, before pushing
        let n = worker.core.outbound.count
        for limit in 1...max(n, 1) where n > 0 {
            // Killed after pushing `limit` records, before the save that records them.
            let before = try! w.state.region.bytes(at: 0, count: w.state.region.size)
            if k.die() {
                var pushed = 0
                worker.core.pushOutbound { rec in
                    guard pushed < limit else { return false }
                    pushed += 1
                    return worker.outbound.tryPush(rec.encoded()) != .full
                }
                try! w.state.region.write(before, at: 0)
                return false
            }
        }
        worker.core.pushOutbound { worker.outbound.tryPush($0.encoded()) != .full }
        return !k.die()                                                  // pushed and saved
    }

    struct Outcome {
        var replies: [VMBusHostMessage]
        var negotiations: [UInt32: Int]
        var heartbeats: Int
        var shutdowns: Int
        /// What the monitor reads in the VMBus status: the request went out (kept across a restart).
        var shutdownSent: Bool
        var kills: Int
        var reached: Int
        var log: [String]
    }

    /// The scripted conversation, with the worker killed at crash points `kills`.
    static func scenario(kills: Set<Int>) throws -> Outcome {
        let w = try World()
        let k = Killer(kills)
        var worker = try Worker(w)
        func step() throws {
            if !turn(worker, w, k) { worker = try Worker(w) }
            w.drain()
        }
        func settle() throws { for _ in 0..<6 { try step(); w.runGuests() } }

        w.post(ServerFixture.contact(.win10_v5_3), conn: 4)
        try step()
        w.post(.requestOffers)
        try step()
        for relID: UInt32 in 1...3 {
            let pfns = (0..<8).map { firstPage(relID) + UInt64($0) }
            for m in ServerFixture.gpadlMessages(relID: relID, gpadl: 0x100 + relID, pfns: pfns) { w.post(m) }
            try step()
            w.post(ServerFixture.open(relID: relID, gpadl: 0x100 + relID, offset: 4))
            try step()
        }
        try settle()
        // Heartbeats and time samples come due.
        for _ in 0..<2 {
            w.now += 6_000_000_000
            try settle()
        }
        // The operator asks for a graceful shutdown (the control socket's GuestShutdownRequest).
        #expect(worker.devices.requestShutdown(now: w.now),
                "\(String(describing: worker.devices.shutdown?.service.phase)) \(String(describing: worker.devices.heartbeat?.service.save())) \(w.log)")
        worker.core.saveIfDevicesChanged()
        if k.die() { worker = try Worker(w) }
        try settle()

        let g = w.guests
        let negotiations = g.mapValues { ic in ic.requests.filter { $0.payload.count >= 28 && $0.payload[12] == 0 && $0.payload[13] == 0 }.count }
        return Outcome(replies: w.replies, negotiations: negotiations,
                       heartbeats: g[1]!.requests.count, shutdowns: g[2]!.shutdownFlags.count,
                       shutdownSent: worker.devices.status.flags & SynICRegion.VMBusStatus.shutdownSent != 0,
                       kills: k.kills, reached: k.reached, log: w.log)
    }

    @Test("without kills: the conversation as a reference")
    func reference() throws {
        let o = try Self.scenario(kills: [])
        #expect(o.replies.count == 11, "\(o.replies)")
        #expect(o.replies.first == .versionResponse(VMBusVersionResponse(versionSupported: true, messageConnectionID: 1)))
        #expect(o.shutdowns == 1)
        #expect(o.heartbeats == 4, "negotiate, one heartbeat at once, then one per period")
        #expect(o.reached > 20)
        #expect(o.negotiations == [1: 1, 2: 1, 3: 1])
    }

    @Test("killed at each crash point in turn: the same replies, once each; the ICs continue")
    func everyCrashPoint() throws {
        let reference = try Self.scenario(kills: [])
        for point in 1...reference.reached {
            let o = try Self.scenario(kills: [point])
            #expect(o.kills == 1)
            #expect(o.replies == reference.replies, "killed at point \(point): \(o.replies.count) replies\n\(o.log.joined(separator: "\n"))")
            #expect(o.shutdowns == 1, "killed at point \(point)\n\(o.log.joined(separator: "\n"))")
            #expect(o.heartbeats == reference.heartbeats, "killed at point \(point): IC requests \(o.heartbeats)")
            #expect(o.negotiations == reference.negotiations, "killed at point \(point): NEGOTIATEs \(o.negotiations)")
            #expect(o.shutdownSent, "killed at point \(point)")
            #expect(o.log.allSatisfy { !$0.contains("does not restore") && !$0.contains("does not decode") }, "\(o.log)")
        }
    }

    @Test("killed again and again (every third crash point): still exactly once")
    func manyKills() throws {
        let reference = try Self.scenario(kills: [])
        let o = try Self.scenario(kills: Set(stride(from: 2, through: 4 * reference.reached, by: 3)))
        #expect(o.kills > 5)
        #expect(o.replies == reference.replies)
        #expect(o.shutdowns == 1)
    }
}
