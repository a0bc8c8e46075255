// synthvm-vmbus: the VMBus server worker (docs/processes.md, docs/vmbus.md).
//
// Started by the monitor's supervisor after the router when the guest has the SynIC (VMBus is on
// unless `--no-vmbus`), with exactly one fd: 3, a SEQPACKET control socket. Handshake: it
// announces itself (WorkerHello, kind .vmbus); receives the region layout with the region fds
// (region 0 guest RAM, region 1 the SynIC region, region 2 its WorkerStateRegion) and maps each
// after checking its seals; receives `VMBusWorkerSetup` (VP count, guest-RAM ranges, the rings'
// geometry and the reference clock; with its doorbell and the router's) and each VP's SINT2
// eventfd in `SINTEventFDs` batches; builds its `VMBusServer` (restored from the state region
// when a predecessor saved one, decoded as hostile bytes) with the integration services' offers;
// receives its seccomp filter (Policies/vmbus.policy) and installs it; answers "attached".
//
// Then it serves, filtered: it sleeps in poll() on the control socket and its doorbell (with a
// timeout for the devices' periodic work). The router forwards the guest's control messages
// (connections 1 and 4) into its inbound ring; `VMBusWorkerCore` feeds them to the server, opens
// and closes channels on the devices, and the replies go into the outbound ring for the router
// to deliver to SINT2. The guest's HvSignalEvent on a channel rings the doorbell directly (the
// monitor does it), and the devices interrupt the guest themselves (SIEF bit, SINT2 eventfd).
// A `GuestShutdownRequest` on the control socket asks the guest to shut down through the
// shutdown IC. run() returns when the monitor closes the socket.
//
// Before any of it, the worker enters its jail (`--jail`, Sandbox's Jail.enter: docs/security.md)
// unless the operator said `--no-jail`. Test-only arguments (the supervisor sets argv, the guest
// cannot), as the router's: `--test-forbidden-syscall`, `--test-crash-after-ms N`,
// `--test-print HEX`, `--test-exhaust-memory`, `--test-jail-probes`; and `--test-echo-device`
// (VMBusEchoDevice offered after the standard devices: tests, synthvm-bench vmbus).
import CSynthVM
import Glibc
import HyperV
import IPC
import Partition
import Sandbox
import SynICRouting
import VMBus
import VMBusWorker
import WorkerRuntime

// Command line, parent death, memory-budget reporter, jail (WorkerRuntime); the rest is VMBus's.
let worker = WorkerRuntime.start(name: "synthvm-vmbus")
let controlFD = WorkerRuntime.controlFD
func say(_ message: String) { worker.say(message) }
func fail(_ message: String) -> Never { worker.fail(message) }

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// The setup record and its fds, then every VP's SINT2 eventfd.
func receiveSetup() throws -> (VMBusWorkerSetup, doorbell: Doorbell, router: Doorbell, sint2: [OwnedFileDescriptor]) {
    let m = try FDPassing.receive(from: controlFD, maxPayload: 4096, maxFDs: 2)
    let setup: VMBusWorkerSetup
    do { setup = try VMBusWorkerSetup.decode(m.payload) } catch { fail("bad VMBus setup: \(error)") }
    guard m.fds.count == 2 else { fail("VMBus setup came with \(m.fds.count) fds, expected 2") }
    var sint2: [OwnedFileDescriptor] = []
    while sint2.count < Int(setup.vpCount) {
        let b = try FDPassing.receive(from: controlFD, maxPayload: 64, maxFDs: Int(SINTEventFDs.maxPerMessage))
        let batch: SINTEventFDs
        do { batch = try SINTEventFDs.decode(b.payload) } catch { fail("bad SINT2 eventfd batch: \(error)") }
        guard Int(batch.first) == sint2.count, Int(batch.count) == b.fds.count, sint2.count + b.fds.count <= Int(setup.vpCount)
        else { fail("SINT2 eventfd batch \(batch.first)+\(batch.count) with \(b.fds.count) fds after \(sint2.count)") }
        sint2 += b.fds
    }
    return (setup, Doorbell(adopting: m.fds[0]), Doorbell(adopting: m.fds[1]), sint2)
}

/// The device another worker serves, and the device region's rings and doorbells.
final class RemoteDeviceLink {
    let device: VMBusRemoteDevice
    let controls: RecordRing.Producer
    let answers: RecordRing.Consumer
    let deviceDoorbell: Doorbell
    let answerDoorbell: Doorbell
    var reported = false

    init(device: VMBusRemoteDevice, controls: RecordRing.Producer, answers: RecordRing.Consumer,
         deviceDoorbell: Doorbell, answerDoorbell: Doorbell) {
        self.device = device
        self.controls = controls
        self.answers = answers
        self.deviceDoorbell = deviceDoorbell
        self.answerDoorbell = answerDoorbell
    }

    /// The device worker's answers to the core, then the core's hand-overs to the device worker.
    func exchange(core: VMBusWorkerCore, now: UInt64) {
        _ = try? answerDoorbell.drain()
        while true {
            let result = answers.tryPop { bytes in
                // Answers to opens and closes, and requests for sub-channels (docs/vmbus.md, "Sub-channels").
                do {
                    if bytes.count >= 2, UInt16(bytes[0]) | UInt16(bytes[1]) << 8 == WireRecordType.subChannelRequest.rawValue {
                        core.deviceRequestedSubChannels(try SubChannelRequestRecord.decode(bytes), from: device.owner, now: now)
                    } else {
                        core.deviceAnswered(try ChannelAnswerRecord.decode(bytes), from: device.owner, now: now)
                    }
                } catch {
                    say("bad channel answer from \(device.owner): \(error)")
                }
            }
            guard case .record = result else {
                if case .corrupted(let why) = result, !reported {
                    reported = true
                    say("device answer ring cut off: \(why)")
                }
                break
            }
        }
        flush()
    }

    func flush() {
        var wake = false
        device.flush { record in
            guard case .pushed(let wasEmpty) = controls.tryPush(record.encoded()) else { return false }
            wake = wake || wasEmpty
            return true
        }
        if wake { try? deviceDoorbell.ring() }
    }
}

/// `VMBusRemoteDeviceSetup` (with the two doorbells), if that is what `message` is.
func remoteDevice(_ message: FDPassing.Message, regions: [UInt32: SharedRegion]) throws -> RemoteDeviceLink? {
    guard message.payload.count >= WireHeader.size,
          UInt16(message.payload[0]) | UInt16(message.payload[1]) << 8 == WireRecordType.vmbusRemoteDeviceSetup.rawValue
    else { return nil }
    let setup: VMBusRemoteDeviceSetup
    do { setup = try VMBusRemoteDeviceSetup.decode(message.payload) } catch { fail("bad remote device setup: \(error)") }
    guard message.fds.count == 2 else { fail("remote device setup came with \(message.fds.count) fds, expected 2") }
    guard let region = regions[setup.regionID] else { fail("the layout lacks region \(setup.regionID) (device rings)") }
    let layout: RecordRing.Layout
    do { layout = try RecordRing.Layout(recordSize: Int(setup.ringRecordSize), capacity: Int(setup.ringCapacity)) } catch {
        fail("bad device ring layout: \(error)")
    }
    guard layout.maxRecordLength >= ChannelControlRecord.maxEncodedSize else { fail("device ring records too small") }
    // The SCSI controller (class ba6163d9-04a1-4d29-b605-72e2ffb1dc7f; a fixed instance GUID).
    let offer = VMBusOffer(interfaceType: VMBusGUID("ba6163d9-04a1-4d29-b605-72e2ffb1dc7f") ?? .zero,
                           interfaceInstance: VMBusGUID("5356534d-0000-4000-8000-53544f524147") ?? .zero)
    return RemoteDeviceLink(
        device: VMBusRemoteDevice(offer: offer, owner: setup.owner, maxSubChannels: Int(setup.maxSubChannels)),
        controls: try RecordRing.Producer(region: region, offset: DeviceRegion.ringOffset(0, layout: layout), layout: layout),
        answers: try RecordRing.Consumer(region: region, offset: DeviceRegion.ringOffset(1, layout: layout), layout: layout),
        deviceDoorbell: Doorbell(adopting: message.fds[0]), answerDoorbell: Doorbell(adopting: message.fds[1]))
}

func run() throws {
    let (hello, regions) = try worker.announceAndMapRegions(kind: .vmbus)
    guard let ram = regions[0], let shared = regions[1], let stateRegion = regions[2] else {
        fail("the layout lacks region 0 (guest RAM), 1 (SynIC) or 2 (state)")
    }
    let state: WorkerStateRegion
    do { state = try WorkerStateRegion(region: stateRegion, kind: WorkerKind.vmbus.rawValue) } catch {
        fail("bad state region: \(error)")
    }
    let (setup, doorbell, routerDoorbell, sint2) = try receiveSetup()
    let ringLayout: RecordRing.Layout
    do { ringLayout = try RecordRing.Layout(recordSize: Int(setup.ringRecordSize), capacity: Int(setup.ringCapacity)) } catch {
        fail("bad ring layout in the VMBus setup: \(error)")
    }
    guard ringLayout.maxRecordLength >= max(PostedMessageRecord.maxEncodedSize, HostMessageRecord.maxEncodedSize) else {
        fail("ring records too small")
    }
    let synic = try SynICRegion(region: shared, vpCount: Int(setup.vpCount), ringLayout: ringLayout)
    let inbound = try RecordRing.Consumer(region: shared, offset: synic.ringOffset(synic.vmbusInboundRing), layout: ringLayout)
    let outbound = try RecordRing.Producer(region: shared, offset: synic.ringOffset(synic.vmbusOutboundRing), layout: ringLayout)
    let memory = RegionGuestMemory(region: ram, ranges: setup.memory)
    var mapRegions: [VMBusGuestMemoryMap.Region] = []
    for r in setup.memory {
        guard r.offset <= UInt64(Int.max), r.size <= UInt64(Int.max),
              let host = ram.pointer(at: Int(r.offset), count: Int(r.size)) else { fail("guest RAM range outside its region") }
        mapRegions.append(.init(gpa: r.base..<(r.base + r.size), host: host))
    }
    let sint2FDs = sint2.map(\.rawValue)
    let signals = VMBusChannelSignals(synic: synic, memory: memory, pollingAvailable: setup.flags.contains(.sintPolling)) { vp in
        guard Int(vp) < sint2FDs.count else { return }
        var one: UInt64 = 1
        _ = write(sint2FDs[Int(vp)], &one, 8)
    }
    var configuration = VMBusServer.Configuration(
        vpCount: Int(setup.vpCount), ram: setup.memory.map { $0.base..<($0.base + $0.size) })
    // The integration services read the host's wall clock (time sync) and the guest's reference
    // time (the partition's clock: guest TSC = host TSC + offset, scaled as the monitor does).
    let reference = ReferenceClock(tscFrequencyHz: setup.tscFrequencyHz, tscAtCreation: setup.tscAtReferenceZero)
    let devices = VMBusDevices.standard(clock: { now in
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let referenceTime = setup.tscFrequencyHz > 0 ? reference.referenceTime(atTSC: svm_rdtsc() &+ setup.guestTSCOffset) : 0
        return VMBusIntegrationService.Clock(monotonic: now, unixNanoseconds: Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec),
                                             referenceTime: referenceTime)
    }, log: { say($0) })
    // The test-only echo device (tests, synthvm-bench vmbus) comes after the standard ones.
    let hosted = devices.all + (worker.options.testEchoDevice ? [VMBusEchoDevice { say($0) }] : [])
    // A device another worker serves (the storage worker's SCSI controller), when the supervisor
    // says so before the filter: offered after the local devices, handed over through the device region.
    var next = try FDPassing.receive(from: controlFD, maxPayload: SeccompProgram.maxEncodedSize, maxFDs: 2)
    let storage = try remoteDevice(next, regions: regions)
    if storage != nil { next = try FDPassing.receive(from: controlFD, maxPayload: SeccompProgram.maxEncodedSize, maxFDs: 0) }
    let remote = storage.map { [$0.device] } ?? []
    configuration.subChannelRelIDs = VMBusWorkerCore.subChannelRelIDs(localCount: hosted.count, remote: remote)
    // The outbound ring's producer index tells the service which saved replies its predecessor
    // pushed after its last save (docs/vmbus.md, "Restart").
    let service = VMBusService(state: state, configuration: configuration, offers: VMBusWorkerCore.offers(hosted, remote: remote),
                               outboundIndex: { outbound.nextIndex }) { say($0) }
    let core = VMBusWorkerCore(service: service, devices: hosted, remote: remote, map: VMBusGuestMemoryMap(regions: mapRegions),
                               signals: signals, now: monotonicNanoseconds()) { say($0) }
    let program = worker.seccompProgram(next)

    try worker.attach(program, hello: hello)

    // Serve. The loop ends when the monitor closes the socket and run() returns (a serve loop
    // left only by exit() is what Swift 6.3.1 miscompiles: docs/toolchain.md).
    var fds = [pollfd(fd: controlFD, events: Int16(POLLIN), revents: 0),
               pollfd(fd: doorbell.fd.rawValue, events: Int16(POLLIN), revents: 0)]
    if let storage { fds.append(pollfd(fd: storage.answerDoorbell.fd.rawValue, events: Int16(POLLIN), revents: 0)) }
    var reported = false
    var serving = true
    while serving {
        let now = monotonicNanoseconds()
        var timeout: Int32 = -1
        if !core.outbound.isEmpty || !(storage?.device.pending.isEmpty ?? true) { timeout = 1 }
        if let d = core.nextDeadline { timeout = d <= now ? 0 : Int32(min((d - now) / 1_000_000 + 1, 60_000)) }
        for i in fds.indices { fds[i].revents = 0 }
        if worker.poll(&fds, timeout: timeout) < 0 && errno != EINTR { fail("poll: \(String(cString: strerror(errno)))") }
        let woke = monotonicNanoseconds()
        if fds[0].revents != 0 {
            let open = worker.controlMessage { m in
                guard (try? GuestShutdownRequest.decode(m.payload)) != nil else { return say("unknown control message") }
                devices.requestShutdown(now: woke)
                core.saveIfDevicesChanged()
            }
            if !open {
                serving = false
                continue
            }
        }
        _ = try? doorbell.drain()
        while true {
            // The slot is freed only after the record's effect is saved with its number: a
            // successor is lent it again and skips it (docs/vmbus.md, "Restart").
            let result = inbound.tryTake { record, index in
                core.handle(record: record, index: index, now: woke)
                return .commit
            }
            guard case .record = result else {
                if case .corrupted(let why) = result, !reported {
                    reported = true
                    say("inbound ring cut off: \(why)")
                }
                break
            }
        }
        if let storage { storage.exchange(core: core, now: woke) }
        core.serveChannels(now: woke)
        var wake = false
        core.pushOutbound { record in
            switch outbound.tryPush(record.encoded()) {
            case .pushed(let wasEmpty):
                wake = wake || wasEmpty
                return true
            case .full, .corrupted, .cutOff:
                return false
            }
        }
        if wake { try? routerDoorbell.ring() }
        devices.publishStatus(to: synic)
    }
    withExtendedLifetime((regions, service, sint2)) {}
}

do { try run() } catch { fail("\(error)") }
exit(0)
