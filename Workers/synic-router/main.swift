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

let controlFD: Int32 = 3
let name = "synthvm-synic-router"

func say(_ message: String) {
    let line = "\(name): \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

func fail(_ message: String) -> Never {
    say(message)
    exit(1)
}

// --jail LIMITS | --no-jail, and the test-only arguments (Sources/Sandbox/WorkerCommandLine.swift).
let options: WorkerCommandLine
do { options = try WorkerCommandLine.parse(Array(CommandLine.arguments.dropFirst())) } catch { fail("\(error)") }
let testForbiddenSyscall = options.testForbiddenSyscall
let benchMailbox = options.benchWakeMailbox

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

/// The SIGSYS reporter's syscall-name table, built before the filter (C strings, never freed).
func installSigsysReporter() {
    let count = Int((SyscallTable.numbers.values.max() ?? 0) + 1)
    let names = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: count)
    names.initialize(repeating: nil, count: count)
    for (n, number) in SyscallTable.numbers { names[Int(number)] = UnsafePointer(strdup(n)) }
    let r = svm_install_sigsys_reporter(strdup(name), names, UInt32(count))
    if r < 0 { fail("cannot install the SIGSYS reporter: \(String(cString: strerror(-r)))") }
}

/// Tests only (`--test-exhaust-memory`): allocates and touches 1 MiB blocks until an allocation
/// fails under RLIMIT_AS, which the memory-budget reporter turns into MemoryBudget.exitStatus.
func exhaustMemory() -> Never {
    var blocks: [UnsafeMutableRawPointer] = []
    while true {
        let block = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
        block.initializeMemory(as: UInt8.self, repeating: 0xA5, count: 1 << 20)
        blocks.append(block)
    }
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

// Die with the monitor rather than linger with guest memory mapped. (A jailed worker had it
// armed before exec already.) If the monitor died before that, its end of the control socket is
// closed: getppid() cannot tell, it is 0 in a PID namespace of our own.
_ = svm_set_parent_death_signal(SIGKILL)
if Jail.peerHasClosed(controlFD) { exit(0) }

// Running out of its memory budget (the jail's RLIMIT_AS) is said as such, not as a bare crash:
// the reporter exits with MemoryBudget.exitStatus and the supervisor names the worker.
let budgetReporter = svm_install_memory_budget_reporter(strdup(name), MemoryBudget.probeBytes, MemoryBudget.exitStatus)
if budgetReporter < 0 { fail("cannot install the memory-budget reporter: \(String(cString: strerror(-budgetReporter)))") }

// The jail, before a region is mapped or a guest byte read; the seccomp filter comes after.
if let limits = options.jail {
    do { try Jail.enter(limits) } catch { fail("cannot enter the jail: \(error)") }
    if let targets = options.jailProbes {
        for (probe, result) in JailProbes.run(targets, executable: CommandLine.arguments[0]) {
            let line = "synthvm-synic-router: jail probe: \(probe): \(result)\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
        }
    }
}

/// The monitor closing the control socket is the order to leave (false); anything else it sends
/// is ignored.
func controlMessage() -> Bool {
    do {
        _ = try FDPassing.receive(from: controlFD, maxPayload: 4096, maxFDs: 0)
        return true
    } catch .peerClosed {
        return false
    } catch {
        fail("control socket: \(error)")
    }
}

func run() throws {
    let hello = WorkerHello(kind: .synicRouter, pid: getpid())
    try FDPassing.send(hello.encoded(), over: controlFD)
    let reply = try FDPassing.receive(from: controlFD, maxPayload: 4096, maxFDs: RegionLayout.maxEntries)
    let layout: RegionLayout
    do { layout = try RegionLayout.decode(reply.payload) } catch { fail("bad region layout: \(error)") }
    guard layout.entries.count == reply.fds.count else {
        fail("region layout names \(layout.entries.count) regions but \(reply.fds.count) fds came")
    }
    var regions: [UInt32: SharedRegion] = [:]
    for (entry, fd) in zip(layout.entries, reply.fds) {
        regions[entry.regionID] = try SharedRegion(adopting: fd, size: Int(entry.size), offset: Int(entry.offset))
    }
    // Setup messages (only when the guest has a SynIC), then the filter.
    var next = try FDPassing.receive(from: controlFD, maxPayload: SeccompProgram.maxEncodedSize, maxFDs: 2)
    var routing: Routing?
    if (try? WireHeader.decode(next.payload.withUnsafeBytes { $0 }))?.type == WireRecordType.synicRouterSetup.rawValue {
        routing = try receiveRouting(first: next)
        next = try FDPassing.receive(from: controlFD, maxPayload: SeccompProgram.maxEncodedSize, maxFDs: 0)
    }
    let program: SeccompProgram
    do { program = try SeccompProgram.decode(next.payload) } catch { fail("bad seccomp program: \(error)") }

    // Everything the serving loop needs is built before the filter goes on.
    var router: MessageRouter?
    var consumers: [RecordRing.Consumer] = []
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
        router = MessageRouter(region: region, memory: RegionGuestMemory(region: ram, ranges: r.setup.memory),
                               pollingAvailable: r.setup.flags.contains(.sintPolling),
                               testDevice: r.setup.flags.contains(.testDevice)) { vp, sint in
            var one: UInt64 = 1
            _ = write(sintFDs[Int(vp) * HvSynIC.sintCount + sint], &one, 8)
        }
    }

    installSigsysReporter()
    let installed = program.instructions.withUnsafeBytes {
        svm_install_seccomp_filter($0.baseAddress, UInt32(program.instructionCount))
    }
    if installed < 0 { fail("cannot install the seccomp filter: \(String(cString: strerror(-installed)))") }
    if installed > 0 { fail("cannot install the seccomp filter on thread \(installed) (TSYNC)") }
    try FDPassing.send(hello.encoded(), over: controlFD)
    if let bytes = options.testPrint { _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) } }
    if testForbiddenSyscall { _ = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0) }
    if let ms = options.testCrashAfterMilliseconds { svm_test_crash_after(ms) }
    if options.testExhaustMemory { exhaustMemory() }

    // Serve.
    var fds = [pollfd(fd: controlFD, events: Int16(POLLIN), revents: 0)]
    if let r = routing { fds.append(pollfd(fd: r.doorbell.fd.rawValue, events: Int16(POLLIN), revents: 0)) }
    var rings = RouterRingService(consumers: consumers, testDeviceRing: synic?.testDeviceRing ?? consumers.count)
    var benchSeq: UInt64 = 0
    router?.retry()
    // The loop ends when the monitor closes the socket, and run() returns: a serve loop whose only
    // way out is exit() is all "dead-end" blocks to the optimiser, where Swift 6.3.1's SILCombine
    // can drop a release (docs/toolchain.md: the leak of issue 11 came from exactly that).
    var serving = true
    while serving {
        for i in fds.indices { fds[i].revents = 0 }
        let timeout: Int32 = router?.needsRetry == true ? 1 : -1
        if poll(&fds, nfds_t(fds.count), timeout) < 0 && errno != EINTR { fail("poll: \(String(cString: strerror(errno)))") }
        if let gpa = benchMailbox, let m = router?.memory { benchWake(m, at: gpa, tsc: svm_rdtsc(), lastSeq: &benchSeq) }
        if fds[0].revents != 0 && !controlMessage() {
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
