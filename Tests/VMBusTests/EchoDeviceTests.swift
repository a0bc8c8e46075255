import HyperV
import IPC
import SynICRouting
import Testing
@testable import VMBus
@testable import VMBusWorker

/// The test-only echo device (`VMBusEchoDevice`, `--test-echo-device`) in-process: offered,
/// opened through the server, echoing a batch in order with one commit, quiet in floor mode, and
/// cut off (with one log line) by a corrupt guest-to-host ring.
@Suite("VMBus worker core: the test-only echo device")
struct EchoDeviceTests {
    final class Log: @unchecked Sendable { var lines: [String] = [] }

    /// Guest RAM: 8 pages, all of it the ring GPADL (guest-to-host pages 0-3, host-to-guest 4-7).
    struct Fixture {
        let core: VMBusWorkerCore
        let echo: VMBusEchoDevice
        let log = Log()
        let ram: UnsafeMutableRawPointer
        let guestOut: VMBusRingProducer<VMBusFlatRingMemory>
        let guestIn: VMBusRingConsumer<VMBusFlatRingMemory>

        init() throws {
            let state = try WorkerStateRegion.create(name: "test-vmbus", kind: WorkerKind.vmbus.rawValue, slotSize: 64 << 10)
            let synic = try SynICRegion.create(vpCount: 1, ringLayout: try RecordRing.Layout(recordSize: 512, capacity: 8))
            let log = self.log
            let echo = VMBusEchoDevice { log.lines.append($0) }
            let service = VMBusService(state: state, configuration: VMBusServer.Configuration(vpCount: 1, ram: [0..<0x8000]),
                                       offers: VMBusWorkerCore.offers([echo])) { log.lines.append($0) }
            ram = UnsafeMutableRawPointer.allocate(byteCount: 0x8000, alignment: 4096)
            ram.initializeMemory(as: UInt8.self, repeating: 0, count: 0x8000)
            let memory = RegionGuestMemory(region: try SharedRegion(name: "test-ram", size: 4096),
                                           ranges: [.init(base: 0, size: 4096, offset: 0)])
            let signals = VMBusChannelSignals(synic: synic, memory: memory, pollingAvailable: false) { _ in }
            core = VMBusWorkerCore(service: service, devices: [echo], map: VMBusGuestMemoryMap(regions: [.init(gpa: 0..<0x8000, host: ram)]),
                                   signals: signals, now: 0) { log.lines.append($0) }
            self.echo = echo
            guestOut = try VMBusRingProducer(memory: try VMBusFlatRingMemory(control: ram, data: ram + 4096, dataCount: 3 * 4096))
            guestIn = try VMBusRingConsumer(memory: try VMBusFlatRingMemory(control: ram + 4 * 4096, data: ram + 5 * 4096,
                                                                           dataCount: 3 * 4096))
        }

        func send(_ m: VMBusGuestMessage, conn: UInt32 = 1) -> [VMBusHostMessage] {
            ServiceTests.record(m, conn: conn).withUnsafeBytes { core.handle(record: $0, now: 1) }
            var out: [HostMessageRecord] = []
            core.pushOutbound { out.append($0); return true }
            return out.compactMap { try? VMBusHostMessage.decode($0.payload) }
        }

        func open(mode: UInt8) -> VMBusStatus? {
            let m = VMBusGuestMessage.openChannel(VMBusOpenChannel(childRelID: 1, openID: 1, ringBufferGPADLHandle: 9, targetVP: 0,
                                                                   downstreamRingBufferPageOffset: 4, userData: [mode]))
            if case .openChannelResult(let r)? = send(m).first { return r.status }
            return nil
        }

        /// Connect, take the offer, build the ring GPADL.
        func connect() throws {
            #expect(send(ServiceTests.contact(.win10_v5_3), conn: 4).count == 1)
            let offers = send(.requestOffers)
            #expect(offers.count == 2 && offers.last == .allOffersDelivered)
            if case .offerChannel(let o)? = offers.first {
                #expect(o.offer.interfaceType == VMBusEchoDevice.interfaceType && o.childRelID == 1 && o.connectionID == 0x2001)
            } else { Issue.record("expected the echo device's offer, got \(offers)") }
            var replies: [VMBusHostMessage] = []
            for m in ServerFixture.gpadlMessages(relID: 1, gpadl: 9, pfns: (0..<8).map { UInt64($0) }) { replies = send(m) }
            if case .gpadlCreated(let c)? = replies.first { #expect(c.status == .success) } else {
                Issue.record("expected GPADL_CREATED, got \(replies)")
            }
        }
    }

    @Test("echo mode: a batch comes back in order with the same ids and payloads; floor mode leaves the rings alone")
    func echoAndFloor() throws {
        let f = try Fixture()
        defer { f.ram.deallocate() }
        try f.connect()
        #expect(f.open(mode: 0) == .success)
        for i in 0..<5 {
            #expect(f.guestOut.tryWrite(type: .dataInBand, transactionID: UInt64(100 + i), payload: [UInt8](repeating: UInt8(i), count: 8 + 8 * i)) == .written)
        }
        #expect(f.guestOut.commit() == .signal)
        f.echo.serve(now: 2)
        #expect(f.echo.echoed == 5 && f.echo.dropped == 0)
        for i in 0..<5 {
            guard case .packet(let p) = f.guestIn.next() else { Issue.record("echo \(i) missing"); return }
            #expect(p.descriptor.transactionID == UInt64(100 + i) && p.descriptor.type == .dataInBand)
            var bytes = [UInt8](repeating: 0xFF, count: p.payload.count)
            bytes.withUnsafeMutableBytes { _ = p.payload.copyBytes(to: $0) }
            #expect(bytes == [UInt8](repeating: UInt8(i), count: 8 + 8 * i))
        }
        guard case .empty = f.guestIn.next() else { Issue.record("more than five echoes"); return }
        _ = f.guestIn.commit()
        // Floor mode: a signal only interrupts; a packet the guest left stays unread.
        #expect(f.send(.closeChannel(VMBusCloseChannel(childRelID: 1))).isEmpty)
        #expect(f.open(mode: VMBusEchoDevice.floorMode) == .success)
        let guestOut = try VMBusRingProducer(memory: try VMBusFlatRingMemory(control: f.ram, data: f.ram + 4096, dataCount: 3 * 4096))
        #expect(guestOut.tryWrite(type: .dataInBand, transactionID: 7, payload: [1, 2, 3]) == .written)
        _ = guestOut.commit()
        f.echo.serve(now: 3)
        #expect(f.echo.echoed == 5)
        guard case .empty = f.guestIn.next() else { Issue.record("floor mode wrote into the host-to-guest ring"); return }
        #expect(f.log.lines.isEmpty, "\(f.log.lines)")
    }

    /// A successor worker on the fixture's state region, SynIC region and guest RAM (the
    /// predecessor's objects are simply no longer used: a kill).
    static func successor(_ f: Fixture) -> (VMBusWorkerCore, VMBusEchoDevice) {
        let echo = VMBusEchoDevice { f.log.lines.append($0) }
        let service = VMBusService(state: f.core.service.state, configuration: VMBusServer.Configuration(vpCount: 1, ram: [0..<0x8000]),
                                   offers: VMBusWorkerCore.offers([echo])) { f.log.lines.append($0) }
        let core = VMBusWorkerCore(service: service, devices: [echo], map: f.core.map, signals: f.core.signals, now: 5) {
            f.log.lines.append($0)
        }
        return (core, echo)
    }

    @Test("killed at each crash point of a batch (journal saved; echoes published, reads not committed): a successor echoes every packet exactly once, in order",
          arguments: [VMBusEchoDevice.Step.saved, .echoesPublished])
    func echoExactlyOnceAcrossAKill(at step: VMBusEchoDevice.Step) throws {
        let f = try Fixture()
        defer { f.ram.deallocate() }
        _ = try #require(f.core.signals.synic.connections.insert(id: 0x2001, kind: .event, capacity: 0, owner: 2))
        try f.connect()
        #expect(f.open(mode: 0) == .success)
        // A first batch, served whole (so the journal of a finished batch is in the state too).
        #expect(f.guestOut.tryWrite(type: .dataInBand, transactionID: 1, payload: [UInt8](repeating: 1, count: 16)) == .written)
        _ = f.guestOut.commit()
        f.echo.serve(now: 2)
        // The batch the kill interrupts.
        for i in 0..<3 {
            #expect(f.guestOut.tryWrite(type: .dataInBand, transactionID: UInt64(100 + i), payload: [UInt8](repeating: UInt8(i), count: 16)) == .written)
        }
        _ = f.guestOut.commit()
        f.echo.stepHook = { $0 != step }
        f.echo.serve(now: 3)
        let (successor, echo) = Self.successor(f)
        #expect(successor.channels[1] != nil, "\(f.log.lines)")
        successor.serveChannels(now: 6)
        successor.serveChannels(now: 7)
        var ids: [UInt64] = []
        while case .packet(let p) = f.guestIn.next() { ids.append(p.descriptor.transactionID) }
        _ = f.guestIn.commit()
        #expect(ids == [1, 100, 101, 102], "echoes after a kill at \(step): \(ids)")
        #expect(echo.readsFinishedAfterRestart == (step == .echoesPublished ? 1 : 0))
        // The successor goes on: a later packet is echoed once.
        #expect(f.guestOut.tryWrite(type: .dataInBand, transactionID: 200, payload: [UInt8](repeating: 9, count: 16)) == .written)
        _ = f.guestOut.commit()
        echo.serve(now: 8)
        ids = []
        while case .packet(let p) = f.guestIn.next() { ids.append(p.descriptor.transactionID) }
        #expect(ids == [200])
        #expect(f.log.lines.allSatisfy { !$0.contains("echo device") }, "\(f.log.lines)")
    }

    @Test("a worker killed after taking the guest's signal, before serving it: the successor serves the restored channel anyway (a lost wake-up found while writing the soak)")
    func restoredChannelServedWithoutASignal() throws {
        let f = try Fixture()
        defer { f.ram.deallocate() }
        // The channel's event connection, as the monitor publishes it for the worker.
        let entry = try #require(f.core.signals.synic.connections.insert(id: 0x2001, kind: .event, capacity: 0, owner: 2))
        try f.connect()
        #expect(f.open(mode: 0) == .success)
        #expect(f.guestOut.tryWrite(type: .dataInBand, transactionID: 41, payload: [UInt8](repeating: 4, count: 16)) == .written)
        #expect(f.guestOut.commit() == .signal)
        _ = f.core.signals.synic.connections.setEventPending(try #require(f.core.signals.synic.connections.find(0x2001)))
        // The predecessor takes the signal, then dies before its device serves the channel.
        #expect(f.core.channels[1]?.takeSignal() == true)
        #expect(f.core.signals.synic.connections.takeEventPending(index: entry) == false)
        let (successor, echo) = Self.successor(f)
        #expect(successor.channels[1] != nil, "the echo channel was not restored: \(f.log.lines)")
        successor.serveChannels(now: 6)
        guard case .packet(let p) = f.guestIn.next() else {
            Issue.record("the guest's packet was never echoed: the successor waits for a signal that will not come")
            return
        }
        #expect(p.descriptor.transactionID == 41)
        guard case .empty = f.guestIn.next() else { Issue.record("echoed more than once"); return }
        // Served once: the next pass without a signal leaves the device alone.
        successor.serveChannels(now: 7)
        #expect(echo.echoed == 1)
    }

    @Test("a packet the guest publishes while the device has echoed but not yet committed its reads is served without a signal (the guest saw a ring not yet empty and did not signal)")
    func packetBetweenEchoAndReadCommitIsServed() throws {
        let f = try Fixture()
        defer { f.ram.deallocate() }
        try f.connect()
        #expect(f.open(mode: 0) == .success)
        #expect(f.guestOut.tryWrite(type: .dataInBand, transactionID: 1, payload: [UInt8](repeating: 1, count: 16)) == .written)
        #expect(f.guestOut.commit() == .signal)
        var guestSignalled: Bool?
        f.echo.stepHook = { step in
            // The guest takes echo 1 as soon as it is published and sends the next packet before
            // the device commits its read of packet 1: by the ring rules (read_index still behind
            // the old write_index) it does not signal.
            if step == .echoesPublished, guestSignalled == nil {
                _ = f.guestIn.next()
                _ = f.guestIn.commit()
                _ = f.guestOut.tryWrite(type: .dataInBand, transactionID: 2, payload: [UInt8](repeating: 2, count: 16))
                guestSignalled = f.guestOut.commit() == .signal
            }
            return true
        }
        f.echo.serve(now: 2)
        #expect(guestSignalled == false)
        // No signal will come for packet 2: this serve must have echoed it.
        guard case .packet(let p) = f.guestIn.next() else {
            Issue.record("packet 2 was not echoed: the device waits for a signal the guest will not send")
            return
        }
        #expect(p.descriptor.transactionID == 2)
        #expect(f.echo.echoed == 2)
        #expect(f.echo.deadline == nil)
        // A guest that never stops writing: 64 passes, then the device is due again at once
        // (served on the worker's next pass without a signal) rather than holding the loop.
        _ = f.guestIn.commit()
        var written = 2
        f.echo.stepHook = { step in
            if step == .echoesPublished {
                while case .packet = f.guestIn.next() {}
                _ = f.guestIn.commit()
                written += 1
                _ = f.guestOut.tryWrite(type: .dataInBand, transactionID: UInt64(written), payload: [UInt8](repeating: 3, count: 16))
                _ = f.guestOut.commit()
            }
            return true
        }
        _ = f.guestOut.tryWrite(type: .dataInBand, transactionID: 3, payload: [UInt8](repeating: 3, count: 16))
        written = 3
        _ = f.guestOut.commit()
        f.echo.serve(now: 3)
        #expect(f.echo.echoed == 2 + 64, "\(f.echo.echoed)")
        #expect(f.echo.deadline == 0)
        f.echo.stepHook = nil
        f.echo.serve(now: 4)
        #expect(f.echo.echoed == written && f.echo.deadline == nil, "\(f.echo.echoed) of \(written)")
    }

    @Test("a corrupt guest-to-host ring cuts the channel off with one line; the control path still answers")
    func corruption() throws {
        let f = try Fixture()
        defer { f.ram.deallocate() }
        try f.connect()
        #expect(f.open(mode: 0) == .success)
        // write_index past the data area.
        f.ram.storeBytes(of: UInt32(5 * 4096), toByteOffset: 0, as: UInt32.self)
        f.echo.serve(now: 2)
        f.echo.serve(now: 3)
        #expect(f.echo.corruption != nil)
        #expect(f.log.lines.filter { $0.contains("echo device: relid 1: ring cut off") }.count == 1, "\(f.log.lines)")
        #expect(f.send(.gpadlHeader(VMBusGPADLHeader(childRelID: 1, gpadl: 10, rangeBufferLength: 16, rangeCount: 1,
                                                     words: [4096, 0]))).count == 1)
    }
}
