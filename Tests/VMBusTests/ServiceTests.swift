import HyperV
import IPC
import Testing
import VMBus
import VMBusWorker

/// `VMBusService` in-process: the guest's records as the router would forward them, the state in
/// a real `WorkerStateRegion`, and a successor attaching to the same region (a worker restart).
@Suite("VMBus worker service: records in, messages out, state kept across a restart")
struct ServiceTests {
    static let configuration = VMBusServer.Configuration(vpCount: 2, ram: [0..<0x100_0000])

    final class Log { var lines: [String] = [] }

    static func record(_ m: VMBusGuestMessage, conn: UInt32, vp: UInt32 = 0) -> [UInt8] {
        PostedMessageRecord(vp: vp, connectionID: conn, entry: 0, generation: 0, messageType: HvMessageType.vmbus.rawValue,
                            payload: m.encoded()).encoded()
    }

    static func contact(_ v: VMBusVersion) -> VMBusGuestMessage {
        .initiateContact(VMBusInitiateContact(versionRequested: v, targetVCPU: 0, interruptPageOrMessageSINT: 2,
                                              monitorPage1: 0x8000, monitorPage2: 0x9000))
    }

    static func send(_ s: VMBusService, _ bytes: [UInt8], log: Log) -> [VMBusHostMessage] {
        posts(bytes.withUnsafeBytes { b in s.handle(record: b) { log.lines.append($0) } })
            .compactMap { try? VMBusHostMessage.decode($0.bytes) }
    }

    static func posts(_ actions: [VMBusServerAction]) -> [VMBusOutboundMessage] {
        actions.compactMap { if case .post(let m) = $0 { m } else { nil } }
    }

    @Test("5.3 on connection 4 is accepted, REQUESTOFFERS gets ALLOFFERS_DELIVERED, and each step is saved")
    func connectAndSave() throws {
        let state = try WorkerStateRegion.create(name: "test-vmbus", kind: WorkerKind.vmbus.rawValue, slotSize: 64 << 10)
        let log = Log()
        let s = VMBusService(state: state, configuration: Self.configuration) { log.lines.append($0) }
        #expect(state.currentGeneration == 1 && log.lines.isEmpty)
        #expect(Self.send(s, Self.record(Self.contact(.win10_v5_3), conn: 4), log: log)
            == [.versionResponse(VMBusVersionResponse(versionSupported: true, messageConnectionID: 1))])
        #expect(Self.send(s, Self.record(.requestOffers, conn: 1), log: log) == [.allOffersDelivered])
        #expect(state.currentGeneration == 3)
    }

    @Test("a successor on the same region continues the connection and re-posts what was not acknowledged")
    func restartContinues() throws {
        let state = try WorkerStateRegion.create(name: "test-vmbus", kind: WorkerKind.vmbus.rawValue, slotSize: 64 << 10)
        let log = Log()
        let first = VMBusService(state: state, configuration: Self.configuration) { log.lines.append($0) }
        let reply = Self.posts(Self.record(Self.contact(.win10_v5_3), conn: 4).withUnsafeBytes { b in
            first.handle(record: b) { log.lines.append($0) }
        })
        #expect(reply.count == 1)
        // The predecessor dies before handing its reply to the router.
        let second = VMBusService(state: state, configuration: Self.configuration) { log.lines.append($0) }
        #expect(log.lines == ["restored the VMBus state of generation 2"])
        guard case .connected(let c) = second.server.connection else {
            Issue.record("not connected after the restart: \(second.server.connection)")
            return
        }
        #expect(c.version == .win10_v5_3)
        #expect(second.pendingAfterRestore == reply.map { .post($0) })
        second.posted(through: reply[0].sequence) { log.lines.append($0) }
        #expect(second.server.save().outbound.isEmpty)
        #expect(Self.send(second, Self.record(.requestOffers, conn: 1), log: log) == [.allOffersDelivered])
    }

    @Test("a scribbled state region is reported and the server starts afresh; a bad record is reported and changes nothing")
    func hostileBytes() throws {
        let state = try WorkerStateRegion.create(name: "test-vmbus", kind: WorkerKind.vmbus.rawValue, slotSize: 4096)
        _ = try state.save([1, 2, 3, 4, 5, 6, 7, 8])
        let log = Log()
        let s = VMBusService(state: state, configuration: Self.configuration) { log.lines.append($0) }
        #expect(log.lines.count == 1 && log.lines[0].hasPrefix("the saved VMBus state of generation 1 does not restore"))
        #expect(s.server.connection == .disconnected && state.currentGeneration == 2)
        log.lines = []
        let good = Self.record(Self.contact(.win10_v5_3), conn: 4)
        for bad in [Array(good.prefix(10)), good + [0], [UInt8](repeating: 0xFF, count: 40)] {
            #expect(Self.send(s, bad, log: log).isEmpty)
        }
        #expect(log.lines.count == 3 && log.lines.allSatisfy { $0.hasPrefix("bad record: ") }, "\(log.lines)")
        #expect(state.currentGeneration == 2)
        #expect(Self.send(s, good, log: log).count == 1)
    }
}
