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
