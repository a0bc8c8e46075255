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

        init(maxSubChannels: Int = 0) throws {
            let state = try WorkerStateRegion.create(name: "test-vmbus", kind: WorkerKind.vmbus.rawValue, slotSize: 64 << 10)
            let synic = try SynICRegion.create(vpCount: 2, ringLayout: try RecordRing.Layout(recordSize: 512, capacity: 8))
            let device = VMBusRemoteDevice(offer: RemoteDeviceTests.scsi, owner: .storage, maxSubChannels: maxSubChannels)
            let log = self.log
            var configuration = ServiceTests.configuration
            configuration.subChannelRelIDs = VMBusWorkerCore.subChannelRelIDs(localCount: 0, remote: [device])
            let service = VMBusService(state: state, configuration: configuration,
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

    @Test("sub-channels: the device worker asks, the offers follow; a sub-channel's open goes to the same worker with its index")
    func subChannels() throws {
        var f = try Fixture(maxSubChannels: 2)
        #expect(f.device.relID == 1 && f.device.subChannelRelIDs == [2, 3])
        _ = f.send(ServiceTests.contact(.win10_v5_3), conn: 4)
        _ = f.send(.requestOffers)
        // Before the primary is open: nothing offered.
        f.core.deviceRequestedSubChannels(SubChannelRequestRecord(relID: 1, total: 1), from: .storage, now: 1)
        #expect(f.flushReplies().isEmpty)
        let pfns = (0..<64).map { 0x100 + UInt64($0) }
        for m in ServerFixture.gpadlMessages(relID: 1, gpadl: 0xE1E10, pfns: pfns) { _ = f.send(m) }
        _ = f.send(ServerFixture.open(relID: 1, gpadl: 0xE1E10, vp: 0, offset: 32))
        f.core.deviceAnswered(ChannelAnswerRecord(operation: .opened, relID: 1), from: .storage, now: 2)
        _ = f.flushReplies()
        // From the wrong worker, or for a relid that is not its primary: dropped.
        f.core.deviceRequestedSubChannels(SubChannelRequestRecord(relID: 1, total: 1), from: .vmbus, now: 3)
        f.core.deviceRequestedSubChannels(SubChannelRequestRecord(relID: 2, total: 1), from: .storage, now: 3)
        #expect(f.flushReplies().isEmpty)
        // 64 asked, 2 offered (the limit), at relids 2 and 3, index 1 and 2.
        f.core.deviceRequestedSubChannels(SubChannelRequestRecord(relID: 1, total: 64), from: .storage, now: 4)
        let offers = f.flushReplies().compactMap { if case .offerChannel(let o) = $0 { o } else { nil } }
        #expect(offers.map(\.childRelID) == [2, 3] && offers.map(\.offer.subChannelIndex) == [1, 2])
        #expect(offers.allSatisfy { $0.offer.interfaceInstance == RemoteDeviceTests.scsi.interfaceInstance })
        #expect(f.log.lines.contains("relid 1: storage asked for 64 sub-channel(s); offered: 2/1 3/2"))
        // The guest opens sub-channel 2 on VP 1: handed to the storage worker with its index.
        for m in ServerFixture.gpadlMessages(relID: 3, gpadl: 0x33, pfns: Array(pfns.prefix(8))) { _ = f.send(m) }
        _ = f.send(ServerFixture.open(relID: 3, gpadl: 0x33, vp: 1, offset: 4))
        var records: [ChannelControlRecord] = []
        f.device.flush { records.append($0); return true }
        #expect(records.last == ChannelControlRecord(operation: .open, relID: 3, connectionID: 0x2003, targetVP: 1,
                                                      downstreamPageOffset: 4, subChannelIndex: 2, pfns: Array(pfns.prefix(8))))
        f.core.deviceAnswered(ChannelAnswerRecord(operation: .opened, relID: 3), from: .storage, now: 5)
        #expect(f.flushReplies().contains { if case .openChannelResult(let r) = $0 { r.childRelID == 3 && r.status == .success } else { false } })
        #expect(f.log.lines.contains("relid 3: sub-channel 2 of relid 1 opened, interrupts to VP 1"))
        // Asking again changes nothing.
        f.core.deviceRequestedSubChannels(SubChannelRequestRecord(relID: 1, total: 2), from: .storage, now: 6)
        #expect(f.flushReplies().isEmpty)
    }
}
