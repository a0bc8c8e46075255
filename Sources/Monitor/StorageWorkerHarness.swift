import Glibc
import HyperV
import IPC
import Partition
import Sandbox
import SynICRouting

/// The real `synthvm-storage` worker process, jailed and filtered exactly as a VM starts it
/// (`VirtualMachine`: the same regions, setup messages, policy and jail), with no VM around it:
/// the caller plays the guest (rings in `ram`) and the VMBus worker (channel records on the
/// device rings, `storageDoorbell` for the guest's signal). For `synthvm-bench storage`.
public final class StorageWorkerHarness {
    public let ram: SharedRegion
    public let synic: SynICRegion
    public let deviceRings: SharedRegion
    public let state: WorkerStateRegion
    /// The per-disk I/O counters (region 4), handed to every successor like the state region.
    public let metrics: StorageMetricsRegion
    public let storageDoorbell: Doorbell
    public let vmbusDoorbell: Doorbell
    /// VP 0's SINT2 eventfd: the worker writes it to interrupt the guest.
    public let sint2: Doorbell
    public let supervisor: Supervisor
    public private(set) var link: WorkerLink
    let regions: [WorkerLink.Region]
    let setup: [WorkerLink.SetupMessage]
    let filter: SeccompProgram
    let jail: JailConfig?
    let arguments: [String]
    public let controls: RecordRing.Producer
    public let answers: RecordRing.Consumer

    /// One VP; guest RAM is `ramBytes` at GPA 0; one disk on `diskFD` (opened by the caller).
    /// The SIEF page is the last page of RAM, SINT2 unmasked (vector 0x30).
    public init(ramBytes: Int, diskFD: Int32, diskBytes: UInt64, cache: StorageWorkerSetup.Disk.Cache = .writeback,
                policyDirectory: String = MachineConfig.defaultPolicyDirectory, jail: JailConfig? = JailConfig(),
                arguments: [String] = []) throws {
        ram = try SharedRegion(name: "synthvm-guest-ram", size: ramBytes)
        synic = try SynICRegion.create(vpCount: 1, ringLayout: SynICRouterLink.ringLayout)
        deviceRings = try DeviceRegion.create()
        state = try WorkerStateRegion.create(name: "synthvm-storage-state", kind: WorkerKind.storage.rawValue,
                                             slotSize: VirtualMachine.storageStateSlotSize,
                                             extraBytes: VirtualMachine.storageStateExtraBytes)
        metrics = try StorageMetricsRegion.create(disks: 1)
        storageDoorbell = try Doorbell()
        vmbusDoorbell = try Doorbell()
        sint2 = try Doorbell()
        var sints = [UInt64](repeating: HvMSR.Sint.resetValue, count: HvSynIC.sintCount)
        sints[2] = 0x30
        synic.publish(vp: 0, registers: SynICRegisters(scontrol: HvMSR.SControl.enable,
                                                       siefp: UInt64(ramBytes - 4096) | HvMSR.SynICPage.enable, sints: sints))
        let filter = try VirtualMachine.compileWorkerPolicy(name: "storage", directory: policyDirectory, mode: .enforce)
        let record = StorageWorkerSetup(
            vpCount: 1, sintPolling: false,
            synicRing: (UInt32(SynICRouterLink.ringLayout.recordSize), UInt32(SynICRouterLink.ringLayout.capacity)),
            deviceRing: (UInt32(DeviceRegion.layout.recordSize), UInt32(DeviceRegion.layout.capacity)),
            memory: [.init(base: 0, size: UInt64(ramBytes), offset: 0)],
            disks: [.init(sizeBytes: diskBytes, readOnly: false, cache: cache, serial: "bench0")])
        let setup: [WorkerLink.SetupMessage] = [
            .init(bytes: record.encoded(), fds: [storageDoorbell.fd.rawValue, vmbusDoorbell.fd.rawValue, diskFD]),
            .init(bytes: SINTEventFDs(first: 0, count: 1).encoded(), fds: [sint2.fd.rawValue]),
        ]
        var j = jail
        j?.fileSize = diskBytes
        self.jail = j
        self.setup = setup
        self.filter = filter
        self.arguments = arguments
        regions = [.init(id: WorkerLink.guestRAMRegion, fd: ram.fd.rawValue, size: UInt64(ram.size)),
                   .init(id: WorkerLink.workerStateRegion, fd: state.region.fd.rawValue, size: UInt64(state.region.size)),
                   .init(id: WorkerLink.synicRegion, fd: synic.region.fd.rawValue, size: UInt64(synic.region.size)),
                   .init(id: DeviceRegion.regionID, fd: deviceRings.fd.rawValue, size: UInt64(deviceRings.size)),
                   .init(id: StorageMetricsRegion.regionID, fd: metrics.region.fd.rawValue, size: UInt64(metrics.region.size))]
        supervisor = try Supervisor(onExit: { _ in nil })
        link = try WorkerLink(supervisor: supervisor, name: "storage", kind: .storage, regions: regions,
                              setup: setup, filter: filter, jail: j, arguments: arguments)
        controls = try RecordRing.Producer(region: deviceRings, offset: DeviceRegion.ringOffset(0, layout: DeviceRegion.layout),
                                           layout: DeviceRegion.layout)
        answers = try RecordRing.Consumer(region: deviceRings, offset: DeviceRegion.ringOffset(1, layout: DeviceRegion.layout),
                                          layout: DeviceRegion.layout)
    }

    /// Hands the worker a channel (as the VMBus worker does) and waits for its answer.
    public func open(_ record: ChannelControlRecord, timeoutMs: Int32 = 5000) throws -> ChannelAnswerRecord? {
        guard case .pushed = controls.tryPush(record.encoded()) else { return nil }
        try storageDoorbell.ring()
        var answer: ChannelAnswerRecord?
        for _ in 0..<50 where answer == nil {
            _ = try vmbusDoorbell.wait(timeoutMs: timeoutMs / 50)
            _ = answers.tryPop { answer = try? ChannelAnswerRecord.decode($0) }
        }
        return answer
    }

    /// SIGKILLs the worker (wherever it is in a request's life), waits for it, and starts a
    /// successor on the same regions, doorbells, eventfds and disk fd: what a supervisor's
    /// restart does. The caller then hands it the open channels as restored opens (`handOver`).
    public func restart() throws {
        supervisor.expectExits()
        _ = supervisor.kill(worker: "storage")
        _ = supervisor.awaitExit(of: link.process)
        link.close()
        link = try WorkerLink(supervisor: supervisor, name: "storage", kind: .storage, regions: regions,
                              setup: setup, filter: filter, jail: jail, arguments: arguments)
    }

    /// Pushes a channel record the worker answers nothing to (a restored open, a modify).
    public func handOver(_ record: ChannelControlRecord) throws -> Bool {
        guard case .pushed = controls.tryPush(record.encoded()) else { return false }
        try storageDoorbell.ring()
        return true
    }

    /// Closes the control socket (the worker exits on end-of-file) and waits for it.
    public func stop() -> WorkerExit? {
        supervisor.expectExits()
        link.close()
        let exit = supervisor.awaitExit(of: link.process)
        supervisor.stop()
        return exit
    }
}
