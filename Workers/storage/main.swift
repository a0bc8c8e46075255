// synthvm-storage: the storage worker, one synthetic SCSI controller (storvsp) on disk fds the
// monitor opened (docs/storage.md, "The worker"; docs/processes.md).
//
// Started by the monitor's supervisor after the VMBus worker when the guest has VMBus and
// `--disk`s, with exactly one fd: 3, a SEQPACKET control socket. Handshake: it announces itself
// (WorkerHello, kind .storage); receives the region layout (region 0 guest RAM, 1 the SynIC
// region, 3 the device region it shares with the VMBus worker) and maps each after checking its
// seals (region 2, when the supervisor gives it, is its `WorkerStateRegion`: the vstor state of
// each channel in its slot and the in-flight table in its extra area, docs/storage.md "Restart
// state"); receives `StorageWorkerSetup` with its doorbell, the VMBus worker's device doorbell and
// one fd per disk, then each VP's SINT2 eventfd in `SINTEventFDs` batches; builds its
// `StorageService` and starts its I/O threads (before the filter: TSYNC puts every thread under
// it, and the policy has no clone); receives its seccomp filter (Policies/storage.policy) and
// installs it; answers "attached".
//
// Then it serves, filtered, sleeping in poll() on the control socket and its doorbell. The VMBus
// worker hands the controller's channel over with `ChannelControlRecord`s (ring 0 of the device
// region) and gets `ChannelAnswerRecord`s back (ring 1, then its device doorbell). The guest's
// HvSignalEvent on the channel rings this worker's doorbell directly (the monitor does it: the
// connection's owner is 3, storage). Requests are served by `StorageService`: the disk I/O goes
// straight between the disk fds and the guest's mapped pages, and the guest is interrupted
// through its SIEF page and the SINT2 eventfd. run() returns when the monitor closes the socket.
//
// Before any of it, the worker enters its jail (`--jail`) unless the operator said `--no-jail`.
// Test-only arguments as the other workers': `--test-forbidden-syscall`, `--test-crash-after-ms N`,
// `--test-print HEX`, `--test-exhaust-memory`, `--test-jail-probes`.
import CSynthVM
import Glibc
import IPC
import Partition
import Sandbox
import Storage
import StorageWorker
import SynICRouting
import VMBus
import VMBusWorker
import WorkerRuntime

let worker = WorkerRuntime.start(name: "synthvm-storage")
let controlFD = WorkerRuntime.controlFD
func say(_ message: String) { worker.say(message) }
func fail(_ message: String) -> Never { worker.fail(message) }

struct Setup {
    var record: StorageWorkerSetup
    var doorbell: Doorbell
    var vmbusDoorbell: Doorbell
    var disks: [OwnedFileDescriptor]
    var sint2: [OwnedFileDescriptor]
}

/// The setup record and its fds, then every VP's SINT2 eventfd.
func receiveSetup() throws -> Setup {
    let m = try FDPassing.receive(from: controlFD, maxPayload: 16384, maxFDs: 2 + StorageWorkerSetup.maxDisks)
    let record: StorageWorkerSetup
    do { record = try StorageWorkerSetup.decode(m.payload) } catch { fail("bad storage setup: \(error)") }
    guard m.fds.count == 2 + record.disks.count else {
        fail("storage setup came with \(m.fds.count) fds, expected \(2 + record.disks.count)")
    }
    var sint2: [OwnedFileDescriptor] = []
    while sint2.count < Int(record.vpCount) {
        let b = try FDPassing.receive(from: controlFD, maxPayload: 64, maxFDs: Int(SINTEventFDs.maxPerMessage))
        let batch: SINTEventFDs
        do { batch = try SINTEventFDs.decode(b.payload) } catch { fail("bad SINT2 eventfd batch: \(error)") }
        guard Int(batch.first) == sint2.count, Int(batch.count) == b.fds.count, sint2.count + b.fds.count <= Int(record.vpCount)
        else { fail("SINT2 eventfd batch \(batch.first)+\(batch.count) with \(b.fds.count) fds after \(sint2.count)") }
        sint2 += b.fds
    }
    return Setup(record: record, doorbell: Doorbell(adopting: m.fds[0]), vmbusDoorbell: Doorbell(adopting: m.fds[1]),
                 disks: Array(m.fds[2...]), sint2: sint2)
}

func run() throws {
    let (hello, regions) = try worker.announceAndMapRegions(kind: .storage)
    guard let ram = regions[0], let shared = regions[1], let deviceRegion = regions[DeviceRegion.regionID] else {
        fail("the layout lacks region 0 (guest RAM), 1 (SynIC) or 3 (device rings)")
    }
    let setup = try receiveSetup()
    let record = setup.record
    let synicLayout: RecordRing.Layout, deviceLayout: RecordRing.Layout
    do {
        synicLayout = try RecordRing.Layout(recordSize: Int(record.synicRing.recordSize), capacity: Int(record.synicRing.capacity))
        deviceLayout = try RecordRing.Layout(recordSize: Int(record.deviceRing.recordSize), capacity: Int(record.deviceRing.capacity))
    } catch { fail("bad ring layout in the storage setup: \(error)") }
    guard deviceLayout.maxRecordLength >= ChannelControlRecord.maxEncodedSize else { fail("device ring records too small") }
    let synic = try SynICRegion(region: shared, vpCount: Int(record.vpCount), ringLayout: synicLayout)
    let controls = try RecordRing.Consumer(region: deviceRegion, offset: DeviceRegion.ringOffset(0, layout: deviceLayout), layout: deviceLayout)
    let answers = try RecordRing.Producer(region: deviceRegion, offset: DeviceRegion.ringOffset(1, layout: deviceLayout), layout: deviceLayout)
    let memory = RegionGuestMemory(region: ram, ranges: record.memory)
    var mapRegions: [VMBusGuestMemoryMap.Region] = []
    for r in record.memory {
        guard r.offset <= UInt64(Int.max), r.size <= UInt64(Int.max),
              let host = ram.pointer(at: Int(r.offset), count: Int(r.size)) else { fail("guest RAM range outside its region") }
        mapRegions.append(.init(gpa: r.base..<(r.base + r.size), host: host))
    }
    let sint2FDs = setup.sint2.map(\.rawValue)
    let signals = VMBusChannelSignals(synic: synic, memory: memory, pollingAvailable: record.sintPolling) { vp in
        guard Int(vp) < sint2FDs.count else { return }
        var one: UInt64 = 1
        _ = write(sint2FDs[Int(vp)], &one, 8)
    }
    var disks: [(SCSIDisk.Configuration, any DiskBackend)] = []
    for (i, (d, fd)) in zip(record.disks, setup.disks).enumerated() {
        let cache: SCSIDisk.CacheMode = switch d.cache {
        case .writeback: .writeback
        case .direct: .direct
        case .unsafe: .unsafe
        }
        let serial = d.serial.isEmpty ? "synthvm-disk\(i)" : d.serial
        disks.append((SCSIDisk.Configuration(capacityBlocks: d.sizeBytes / 512, readOnly: d.readOnly, serial: serial, cacheMode: cache),
                      FileDiskBackend(fd: fd.rawValue, byteCount: d.sizeBytes, name: "LUN \(i)", log: { say($0) })))
    }
    var state: WorkerStateRegion?
    if let r = regions[StorageService.stateRegionID] {
        do { state = try WorkerStateRegion(region: r, kind: WorkerKind.storage.rawValue) } catch { fail("state region: \(error)") }
    }
    let service: StorageService
    // The I/O threads wake the ring thread through this worker's own doorbell.
    let doorbellFD = setup.doorbell.fd.rawValue
    do {
        let vstor = VStorProtocol.Configuration(highestVersion: VStorProtocolVersion(rawValue: record.highestProtocolVersion),
                                                maxSubChannels: UInt16(record.maxSubChannels))
        service = try StorageService(disks: disks, vstor: vstor, map: VMBusGuestMemoryMap(regions: mapRegions),
                                     ram: record.memory.map { $0.base..<($0.base + $0.size) }, signals: signals,
                                     state: state, options: .init(ioThreads: StorageService.defaultIOThreads,
                                                    inlineNonBlocking: !worker.options.benchStoragePoolOnly),
                                     wake: { var one: UInt64 = 1; _ = write(doorbellFD, &one, 8) }) { say($0) }
    } catch { fail("\(error)") }
    // The per-disk I/O counters (region 4, the supervisor's: a restarted worker continues them).
    if let r = regions[StorageMetricsRegion.regionID] {
        do { service.attachMetrics(try StorageMetricsRegion(region: r, disks: disks.count)) } catch { fail("metrics region: \(error)") }
    }
    // A torn write (fault injection) leaves the rest of its request to the successor: exit at once,
    // no completion, no cleanup (the in-flight table says what to redo).
    service.afterTornWrite = { _exit(StorageFaultState.tornExitStatus) }
    guard service.start() else { fail("cannot start the I/O threads") }
    let next = try FDPassing.receive(from: controlFD, maxPayload: SeccompProgram.maxEncodedSize, maxFDs: 0)
    let program = worker.seccompProgram(next)

    try worker.attach(program, hello: hello)

    // Serve until the monitor closes the socket (run() returns: docs/toolchain.md).
    var fds = [pollfd(fd: controlFD, events: Int16(POLLIN), revents: 0),
               pollfd(fd: setup.doorbell.fd.rawValue, events: Int16(POLLIN), revents: 0)]
    // Answers and sub-channel requests, in the order they were decided (ring 1).
    var unsent: [[UInt8]] = []
    /// Pushes the answers, then any sub-channel requests (their answers are in the guest's ring
    /// already), in order; what does not fit waits for the next round.
    func flush() {
        unsent += service.takeSubChannelRequests().map { $0.encoded() }
        var wake = false
        while let a = unsent.first {
            guard case .pushed(let wasEmpty) = answers.tryPush(a) else { break }
            wake = wake || wasEmpty
            unsent.removeFirst()
        }
        if wake { try? setup.vmbusDoorbell.ring() }
    }
    var reported = false
    var serving = true
    while serving {
        let timeout: Int32 = unsent.isEmpty && !service.hasPendingCompletions ? -1 : 1
        for i in fds.indices { fds[i].revents = 0 }
        if worker.poll(&fds, timeout: timeout) < 0 && errno != EINTR { fail("poll: \(String(cString: strerror(errno)))") }
        if fds[0].revents != 0 {
            if !worker.controlMessage({ _ in say("unknown control message") }, faults: { service.inject($0) }) {
                serving = false
                continue
            }
        }
        _ = try? setup.doorbell.drain()
        while true {
            let result = controls.tryPop { bytes in
                do { if let a = service.handle(try ChannelControlRecord.decode(bytes)) { unsent.append(a.encoded()) } } catch {
                    say("bad channel control record: \(error)")
                }
            }
            guard case .record = result else {
                if case .corrupted(let why) = result, !reported {
                    reported = true
                    say("control ring cut off: \(why)")
                }
                break
            }
        }
        flush()
        service.serve()
        // A CREATE_SUB_CHANNELS answer written in this round: its request goes out now.
        flush()
    }
    if !service.srbsByRelID.isEmpty { say("requests served: \(service.srbCounts)") }
    withExtendedLifetime((regions, setup, service)) {}
}

do { try run() } catch { fail("\(error)") }
exit(0)
