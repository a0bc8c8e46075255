// synthvm-synic-router: the SynIC message-router worker (docs/processes.md).
//
// Started by the monitor's supervisor with exactly one fd: 3, a SEQPACKET control socket.
// Handshake: it announces itself (WorkerHello); receives the region layout with the region fds
// (region 0 guest RAM, region 1 the SynIC region) and maps each after checking its seals; when
// the guest has a SynIC, receives `SynICRouterSetup` (with its doorbell and the reply eventfd)
// and the SINT eventfds in `SINTEventFDs` batches; receives its seccomp filter (SeccompProgram,
// compiled from Policies/synic-router.policy) and installs it; answers "attached". From then on
// it runs filtered and serves: it sleeps in poll() on the control socket and its doorbell, and
// on a wake-up drains the VPs' rings (guest HvPostMessage for its connections), the test-device
// ring, EOMs and signalled event connections, all through `MessageRouter` (pure, in
// Sources/SynICRouting). It exits when the monitor closes the socket.
//
// Everything it reads from the rings is validated; a ring the monitor scribbles on is cut off
// and reported, never trusted. A call the policy does not allow traps, and the SIGSYS reporter
// names it on stderr before the process dies by SIGSYS.
//
// Before any of it, the worker enters its jail (`--jail`, Sandbox's Jail.enter: docs/security.md)
// unless the operator said `--no-jail`. Test-only arguments (the supervisor sets argv, the guest
// cannot): `--test-forbidden-syscall` makes the worker call socket(AF_INET, SOCK_STREAM, 0) right
// after attaching; `--test-crash-after-ms N` crashes it (SIGSEGV) N ms after attaching;
// `--test-print HEX` writes those bytes to stderr right after attaching (forged monitor lines and
// terminal escapes, for the monitor's output relay); `--test-exhaust-memory` allocates until its
// memory budget is used up; `--test-jail-probes` reports what the jail alone lets it reach; `--bench-wake-mailbox 0xGPA`
// (synthvm-bench) records wake-up times in guest RAM.
import CSynthVM
import Glibc
import HyperV
import IPC
import Partition
import Sandbox
import SynICRouting
import WorkerRuntime

// Command line, parent death, memory-budget reporter, jail (WorkerRuntime); the rest is the router's.
let worker = WorkerRuntime.start(name: "synthvm-synic-router")
let controlFD = WorkerRuntime.controlFD
let benchMailbox = worker.options.benchWakeMailbox
func say(_ message: String) { worker.say(message) }
func fail(_ message: String) -> Never { worker.fail(message) }

/// synthvm-bench's wake-up probe: when the guest has published a new sequence number, add the
/// host TSC at which poll() returned (and count it); the bench subtracts the guest's TSCs.
func benchWake(_ memory: any PartitionMemory, at gpa: UInt64, tsc: UInt64, lastSeq: inout UInt64) {
    func u64(_ o: UInt64) -> UInt64? {
        memory.read(gpa: gpa + o, count: 8).map { $0.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) } }
    }
    func put(_ o: UInt64, _ v: UInt64) { _ = memory.write(gpa: gpa + o, bytes: (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }) }
    guard let seq = u64(0), seq != lastSeq, let t0 = u64(16), let sum = u64(24), let count = u64(32),
          let sumT0 = u64(48) else { return }
    lastSeq = seq
    put(24, sum &+ tsc)
    put(32, count + 1)
    put(48, sumT0 &+ t0)
}

/// What the setup messages gave us.
struct Routing {
    var setup: SynICRouterSetup
    var doorbell: Doorbell
    var reply: Doorbell
    /// Index vp * 16 + sint; kept open for the worker's whole life (it writes them to raise SINTs).
    var sintFDs: [OwnedFileDescriptor]
}

func receiveRouting(first: FDPassing.Message) throws -> Routing {
    let setup: SynICRouterSetup
    do { setup = try SynICRouterSetup.decode(first.payload) } catch { fail("bad router setup: \(error)") }
    guard first.fds.count == 2 else { fail("router setup came with \(first.fds.count) fds, expected 2") }
    var fds = first.fds
    let routing = Routing(setup: setup, doorbell: Doorbell(adopting: fds.removeFirst()),
                          reply: Doorbell(adopting: fds.removeFirst()), sintFDs: [])
    var sints: [OwnedFileDescriptor] = []
    let wanted = Int(setup.vpCount) * HvSynIC.sintCount
    while sints.count < wanted {
        let m = try FDPassing.receive(from: controlFD, maxPayload: 64, maxFDs: Int(SINTEventFDs.maxPerMessage))
        let batch: SINTEventFDs
        do { batch = try SINTEventFDs.decode(m.payload) } catch { fail("bad SINT eventfd batch: \(error)") }
        guard Int(batch.first) == sints.count, Int(batch.count) == m.fds.count, sints.count + m.fds.count <= wanted else {
            fail("SINT eventfd batch \(batch.first)+\(batch.count) with \(m.fds.count) fds after \(sints.count)")
        }
        sints += m.fds
    }
    var r = routing
    r.sintFDs = sints
    return r
}

func run() throws {
    let (hello, regions) = try worker.announceAndMapRegions(kind: .synicRouter)
    // Setup messages (only when the guest has a SynIC), then the filter.
    var next = try FDPassing.receive(from: controlFD, maxPayload: SeccompProgram.maxEncodedSize, maxFDs: 2)
    var routing: Routing?
    func nextType() -> UInt16? { (try? WireHeader.decode(next.payload.withUnsafeBytes { $0 }))?.type }
    if nextType() == WireRecordType.synicRouterSetup.rawValue {
        routing = try receiveRouting(first: next)
        next = try FDPassing.receive(from: controlFD, maxPayload: SeccompProgram.maxEncodedSize, maxFDs: 1)
    }
    // Connections for other workers (the VMBus worker's), with its doorbell.
    var published: RouterConnections?
    var vmbusDoorbell: Doorbell?
    if routing != nil, nextType() == WireRecordType.routerConnections.rawValue {
        do { published = try RouterConnections.decode(next.payload) } catch { fail("bad router connections: \(error)") }
        let wanted = published?.forwardsToVMBus == true ? 1 : 0
        guard next.fds.count == wanted else { fail("router connections came with \(next.fds.count) fds, expected \(wanted)") }
        vmbusDoorbell = next.fds.first.map { Doorbell(adopting: $0) }
        next = try FDPassing.receive(from: controlFD, maxPayload: SeccompProgram.maxEncodedSize, maxFDs: 0)
    }
    let program = worker.seccompProgram(next)

    // Everything the serving loop needs is built before the filter goes on.
    var router: MessageRouter?
    var consumers: [RecordRing.Consumer] = []
    var vmbusOutbound: RecordRing.Consumer?
    var synic: SynICRegion?
    if let r = routing {
        guard let ram = regions[0], let shared = regions[1] else { fail("router setup without regions 0 and 1") }
        let ringLayout: RecordRing.Layout
        do { ringLayout = try RecordRing.Layout(recordSize: Int(r.setup.ringRecordSize), capacity: Int(r.setup.ringCapacity)) } catch {
            fail("bad ring layout in the router setup: \(error)")
        }
        guard ringLayout.maxRecordLength >= PostedMessageRecord.maxEncodedSize else { fail("ring records too small") }
        let region = try SynICRegion(region: shared, vpCount: Int(r.setup.vpCount), ringLayout: ringLayout)
        synic = region
        for i in 0...region.vpCount {
            consumers.append(try RecordRing.Consumer(region: shared, offset: region.ringOffset(i), layout: ringLayout))
        }
        let sintFDs = r.sintFDs.map(\.rawValue)
        // Region 2: the restart state the supervisor keeps (queues, held messages, routes). A
        // predecessor's work in it is recovered here; without it (an older monitor) the state is
        // private and dies with this process.
        var state: RouterStateRegion?
        if let s = regions[2] {
            do { state = try RouterStateRegion(region: s, vpCount: region.vpCount) } catch { fail("bad router state region: \(error)") }
        }
        let built = try MessageRouter(region: region, memory: RegionGuestMemory(region: ram, ranges: r.setup.memory),
                                      pollingAvailable: r.setup.flags.contains(.sintPolling),
                                      testDevice: r.setup.flags.contains(.testDevice), state: state) { vp, sint in
            var one: UInt64 = 1
            _ = write(sintFDs[Int(vp) * HvSynIC.sintCount + sint], &one, 8)
        }
        for line in built.recovered { say("restart: \(line)") }
        router = built
        if let published, let router {
            for id in router.publish(published.entries) { say("cannot publish connection 0x\(String(id, radix: 16))") }
            if let bell = vmbusDoorbell {
                let inbound = try RecordRing.Producer(region: shared, offset: region.ringOffset(region.vmbusInboundRing),
                                                      layout: ringLayout)
                vmbusOutbound = try RecordRing.Consumer(region: shared, offset: region.ringOffset(region.vmbusOutboundRing),
                                                        layout: ringLayout)
                router.vmbusInboundIndex = { inbound.nextIndex }
                router.forwardToVMBus = { record in
                    switch inbound.tryPush(record.encoded()) {
                    case .pushed(let wasEmpty):
                        if wasEmpty { try? bell.ring() }
                        return true
                    case .full, .corrupted, .cutOff:
                        return false
                    }
                }
            }
        }
    }

    try worker.attach(program, hello: hello)

    // Serve.
    var fds = [pollfd(fd: controlFD, events: Int16(POLLIN), revents: 0)]
    if let r = routing { fds.append(pollfd(fd: r.doorbell.fd.rawValue, events: Int16(POLLIN), revents: 0)) }
    var rings = RouterRingService(consumers: consumers, testDeviceRing: synic?.testDeviceRing ?? consumers.count,
                                  vmbusOutbound: vmbusOutbound)
    var benchSeq: UInt64 = 0
    router?.retry()
    // The loop ends when the monitor closes the socket, and run() returns: a serve loop whose only
    // way out is exit() is all "dead-end" blocks to the optimiser, where Swift 6.3.1's SILCombine
    // can drop a release (docs/toolchain.md: the leak of issue 11 came from exactly that).
    var serving = true
    while serving {
        for i in fds.indices { fds[i].revents = 0 }
        let timeout: Int32 = router?.needsRetry == true ? 1 : -1
        if worker.poll(&fds, timeout: timeout) < 0 && errno != EINTR { fail("poll: \(String(cString: strerror(errno)))") }
        if let gpa = benchMailbox, let m = router?.memory { benchWake(m, at: gpa, tsc: svm_rdtsc(), lastSeq: &benchSeq) }
        if fds[0].revents != 0 && !worker.controlMessage() {
            serving = false
            continue
        }
        guard let router, let synic, let routing else { continue }
        _ = try? routing.doorbell.drain()
        rings.serveOnce(router, testDeviceApplied: { sequence in
            synic.testDeviceAck = sequence
            try? routing.reply.ring()
        }, report: say)
    }
}

do { try run() } catch { fail("\(error)") }
exit(0)
