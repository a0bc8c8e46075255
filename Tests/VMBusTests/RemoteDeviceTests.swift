import HyperV
import IPC
import SynICRouting
import Testing
@testable import VMBus
@testable import VMBusWorker

/// The hand-over of a channel to a device in another worker process (`VMBusRemoteDevice`):
/// `VMBusWorkerCore` carries out the server's `.openChannel` as a `ChannelControlRecord` and turns
/// the device worker's `ChannelAnswerRecord` into OPENCHANNEL_RESULT; closes and retargets
/// likewise; answers from the wrong worker or for the wrong relid change nothing.
@Suite("VMBus worker core: channels handed to a device worker")
struct RemoteDeviceTests {
    final class Log: @unchecked Sendable { var lines: [String] = [] }

    static let scsi = VMBusOffer(interfaceType: VMBusGUID("ba6163d9-04a1-4d29-b605-72e2ffb1dc7f") ?? .zero,
                                 interfaceInstance: VMBusGUID("f8b3781b-1e82-4818-a1c3-63d806ec15bb") ?? .zero)

    struct Fixture {
        let core: VMBusWorkerCore
        let device: VMBusRemoteDevice
        let log = Log()
        var pushed: [HostMessageRecord] = []

        init() throws {
            let state = try WorkerStateRegion.create(name: "test-vmbus", kind: WorkerKind.vmbus.rawValue, slotSize: 64 << 10)
            let synic = try SynICRegion.create(vpCount: 2, ringLayout: try RecordRing.Layout(recordSize: 512, capacity: 8))
            let device = VMBusRemoteDevice(offer: RemoteDeviceTests.scsi, owner: .storage)
            let log = self.log
            let service = VMBusService(state: state, configuration: ServiceTests.configuration,
                                       offers: VMBusWorkerCore.offers([], remote: [device])) { log.lines.append($0) }
            let ram = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
            let memory = RegionGuestMemory(region: try SharedRegion(name: "test-ram", size: 4096),
                                           ranges: [.init(base: 0, size: 4096, offset: 0)])
            let signals = VMBusChannelSignals(synic: synic, memory: memory, pollingAvailable: false) { _ in }
            core = VMBusWorkerCore(service: service, devices: [], remote: [device],
                                   map: VMBusGuestMemoryMap(regions: [.init(gpa: 0..<4096, host: ram)]), signals: signals,
                                   now: 0) { log.lines.append($0) }
            self.device = device
        }

        /// Sends a guest message, pushes the replies, returns them decoded.
        mutating func send(_ m: VMBusGuestMessage, conn: UInt32 = 1) -> [VMBusHostMessage] {
            ServiceTests.record(m, conn: conn).withUnsafeBytes { core.handle(record: $0, now: 1) }
            return flushReplies()
        }

        mutating func flushReplies() -> [VMBusHostMessage] {
            var out: [HostMessageRecord] = []
            core.pushOutbound { out.append($0); return true }
            pushed += out
            return out.compactMap { try? VMBusHostMessage.decode($0.payload) }
        }
    }

    @Test("open goes to the device worker with the ring's PFNs; its answer is OPENCHANNEL_RESULT; close waits for its answer too")
    func openAndClose() throws {
        var f = try Fixture()
        #expect(f.send(ServiceTests.contact(.win10_v5_3), conn: 4).count == 1)
        let offers = f.send(.requestOffers)
        #expect(offers.count == 2 && offers.last == .allOffersDelivered)
        let pfns = (0..<64).map { 0x100 + UInt64($0) }
        var replies: [VMBusHostMessage] = []
        for m in ServerFixture.gpadlMessages(relID: 1, gpadl: 0xE1E10, pfns: pfns) { replies = f.send(m) }
        #expect(replies.count == 1)
        #expect(f.send(ServerFixture.open(relID: 1, gpadl: 0xE1E10, vp: 1, offset: 32)).isEmpty)
        // Handed over, not answered yet.
        var records: [ChannelControlRecord] = []
        f.device.flush { records.append($0); return true }
        #expect(records == [ChannelControlRecord(operation: .open, relID: 1, connectionID: 0x2001, targetVP: 1,
                                                  downstreamPageOffset: 32, pfns: pfns)])
        // The record survives the wire (the device worker decodes it as hostile bytes).
        #expect(try ChannelControlRecord.decode(records[0].encoded()) == records[0])
        // An answer from the wrong worker kind changes nothing.
        f.core.deviceAnswered(ChannelAnswerRecord(operation: .opened, relID: 1), from: .vmbus, now: 2)
        #expect(f.flushReplies().isEmpty && f.log.lines.contains { $0.contains("does not serve") })
        f.core.deviceAnswered(ChannelAnswerRecord(operation: .opened, relID: 1, status: 0), from: .storage, now: 2)
        let result = f.flushReplies()
        #expect(result.count == 1)
        if case .openChannelResult(let r)? = result.first { #expect(r.status == .success && r.childRelID == 1) } else {
            Issue.record("expected OPENCHANNEL_RESULT, got \(result)")
        }
        // MODIFYCHANNEL and CLOSECHANNEL are handed over too; the GPADL is held until the device let go.
        #expect(f.send(.closeChannel(VMBusCloseChannel(childRelID: 1))).isEmpty)
        records = []
        f.device.flush { records.append($0); return true }
        #expect(records.map(\.operation) == [.close])
        #expect(f.send(.gpadlTeardown(VMBusGPADLTeardown(childRelID: 1, gpadl: 0xE1E10))).isEmpty)
        f.core.deviceAnswered(ChannelAnswerRecord(operation: .closed, relID: 1), from: .storage, now: 3)
        #expect(f.flushReplies() == [.gpadlTorndown(VMBusGPADLTorndown(gpadl: 0xE1E10))])
    }

    @Test("a full ring keeps records in order until they go")
    func fullRingKeepsOrder() throws {
        var f = try Fixture()
        _ = f.send(ServiceTests.contact(.win10_v5_3), conn: 4)
        _ = f.send(.requestOffers)
        for m in ServerFixture.gpadlMessages(relID: 1, gpadl: 7, pfns: (0..<8).map { UInt64($0) + 1 }) { _ = f.send(m) }
        _ = f.send(ServerFixture.open(relID: 1, gpadl: 7, offset: 4))
        _ = f.send(.closeChannel(VMBusCloseChannel(childRelID: 1)))
        #expect(f.device.flush { _ in false } == 0 && f.device.pending.count == 2)
        var ops: [ChannelControlRecord.Operation] = []
        #expect(f.device.flush { ops.append($0.operation); return true } == 2)
        #expect(ops == [.open, .close] && f.device.pending.isEmpty)
    }
}
