import CSynthVM
import Glibc
import HyperV
import IPC
import Partition
import Synchronization
import SynICRouting

/// The monitor's side of the SynIC message router (docs/processes.md, "SynIC routing"):
///
/// - publishes the partition's SynIC registers into the shared `SynICRegion`, counts EOMs there
///   and rings the router when it has messages waiting for that VP (`PartitionSynICShared`);
/// - answers HvPostMessage and HvSignalEvent (`HypercallConnections`) from the router's
///   connection table, synchronously and without a round trip: a message is copied into the
///   calling VP's ring (one producer per ring: that VP's thread) after taking one of the
///   connection's buffers; an event marks the connection and rings the owner's doorbell;
/// - forwards hyperv-testdev port writes to the router and holds the writing vCPU until the
///   router has applied them.
///
/// Nothing here waits on the router without a deadline: a dead or wedged router costs the guest
/// HV_STATUS_INSUFFICIENT_BUFFERS (buffers never come back) and a test-device write that times out.
final class SynICRouterLink: PartitionSynICShared, HypercallConnections, @unchecked Sendable {
    static let ringLayout = try! RecordRing.Layout(recordSize: 512, capacity: 64)
    /// How long a test-device write waits for the router.
    static let testDeviceTimeoutMs: Int64 = 2000

    let region: SynICRegion
    /// Rung when a ring or an event connection has work for the router.
    let routerDoorbell: Doorbell
    /// Rung by the router after it applied a test-device write.
    let replyDoorbell: Doorbell
    /// The VMBus worker's doorbell (nil unless it runs): rung by the router when it forwards a
    /// control message, and here when the guest signals a channel the worker owns.
    let vmbusDoorbell: Doorbell?
    /// The storage worker's doorbell (nil unless it runs): rung here when the guest signals the
    /// SCSI controller's channel (owner 3), and by the VMBus worker after it pushed a hand-over.
    let storageDoorbell: Doorbell?
    private let rings: [RecordRing.Producer]
    private let testDevice: Mutex<(RecordRing.Producer, UInt64)>
    /// Test-device writes the router did not acknowledge in time (reported once each).
    let testDeviceTimeouts = Atomic<Int>(0)

    init(vpCount: Int, vmbus: Bool, storage: Bool = false) throws(MonitorError) {
        do {
            region = try SynICRegion.create(vpCount: vpCount, ringLayout: Self.ringLayout)
            routerDoorbell = try Doorbell()
            replyDoorbell = try Doorbell()
            vmbusDoorbell = vmbus ? try Doorbell() : nil
            storageDoorbell = storage ? try Doorbell() : nil
            var producers: [RecordRing.Producer] = []
            for vp in 0..<vpCount {
                producers.append(try RecordRing.Producer(region: region.region, offset: region.ringOffset(vp),
                                                         layout: Self.ringLayout))
            }
            rings = producers
            testDevice = Mutex((try RecordRing.Producer(region: region.region, offset: region.ringOffset(region.testDeviceRing),
                                                        layout: Self.ringLayout), 0))
        } catch {
            throw .config("SynIC router region: \(error)")
        }
    }

    private func ringRouter() { try? routerDoorbell.ring() }

    // MARK: PartitionSynICShared

    func publish(vp: UInt32, registers: SynICRegisters) { region.publish(vp: vp, registers: registers) }

    func endOfMessage(vp: UInt32) {
        region.addEOM(vp: vp)
        if region.routerPending(vp: vp) != 0 { ringRouter() }
    }

    func lockMessageSlot(vp: UInt32, sint: Int) -> Bool { region.lockSlot(vp: vp, sint: sint, owner: .monitor) }
    func unlockMessageSlot(vp: UInt32, sint: Int) { region.unlockSlot(vp: vp, sint: sint, owner: .monitor) }

    // MARK: HypercallConnections

    func postMessage(_ message: HvPostMessageInput, fromVP vp: UInt32) -> HvStatus? {
        let table = region.connections
        guard Int(vp) < rings.count, let entry = table.find(message.connectionID), entry.kind == .message else { return nil }
        guard table.reserveBuffer(entry) else { return .insufficientBuffers }
        let record = PostedMessageRecord(vp: vp, connectionID: message.connectionID, entry: UInt32(entry.index),
                                         generation: entry.generation, messageType: message.messageType,
                                         payload: message.payload).encoded()
        switch rings[Int(vp)].tryPush(record) {
        case .pushed(let wasEmpty):
            if wasEmpty { ringRouter() }
            return .success
        case .full, .corrupted, .cutOff:
            table.releaseBuffer(index: entry.index)
            return .insufficientBuffers
        }
    }

    func signalEvent(_ event: HvSignalEventInput, fromVP vp: UInt32) -> HvStatus? {
        let table = region.connections
        guard let entry = table.find(event.connectionID), entry.kind == .event else { return nil }
        // Every event connection has one flag (what Linux's VMBus and the test device use).
        guard event.flagNumber == 0 else { return .invalidParameter }
        if table.setEventPending(entry) {
            // A channel of the VMBus worker or of the storage worker is signalled straight to
            // its owner: no router hop on the data path. The owner comes from the router-written
            // table, so anything but a known owner goes to the router, which ignores it.
            if entry.owner == UInt32(WorkerKind.vmbus.rawValue), let bell = vmbusDoorbell {
                try? bell.ring()
            } else if entry.owner == UInt32(WorkerKind.storage.rawValue), let bell = storageDoorbell {
                try? bell.ring()
            } else {
                ringRouter()
            }
        }
        return .success
    }

    // MARK: The test device

    /// Hands `value` to the router and waits (bounded) until it has been applied.
    func testDeviceWrite(vp: UInt32, value: UInt32) {
        testDevice.withLock { state in
            state.1 += 1
            let seq = state.1
            let record = TestDeviceWriteRecord(vp: vp, value: value, sequence: seq).encoded()
            guard case .pushed = state.0.tryPush(record) else { return }
            ringRouter()
            let deadline = monotonicSeconds() + Double(Self.testDeviceTimeoutMs) / 1000
            while region.testDeviceAck < seq {
                let left = deadline - monotonicSeconds()
                if left <= 0 {
                    if testDeviceTimeouts.add(1, ordering: .relaxed).newValue == 1 {
                        let line = "synthvm: hyperv-testdev: the SynIC router did not apply a write within \(Self.testDeviceTimeoutMs) ms\n"
                        _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
                    }
                    return
                }
                _ = try? replyDoorbell.wait(timeoutMs: Int32(max(1, left * 1000)))
                _ = try? replyDoorbell.drain()
            }
        }
    }
}

/// QEMU's hyperv-testdev port (0x3000, 32-bit, write-only; reads 0), served by the router.
final class TestDevicePort: PortIODevice {
    let link: SynICRouterLink
    init(link: SynICRouterLink) { self.link = link }

    func read(port: UInt16, size: Int) -> UInt32 { 0 }

    func write(port: UInt16, size: Int, value: UInt32) {
        guard size == 4 else { return }
        link.testDeviceWrite(vp: UInt32(clamping: max(svm_current_vcpu(), 0)), value: value)
    }
}
