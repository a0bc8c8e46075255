// synthvm-vmbus: the VMBus server worker (docs/processes.md, docs/vmbus.md).
//
// Started by the monitor's supervisor when the guest has the SynIC and the operator asked for
// VMBus (`synthvm run --vmbus`), with exactly one fd: 3, a SEQPACKET control socket.
// Handshake: it announces itself (WorkerHello, kind .vmbus); receives the region layout with the
// region fds (region 0 guest RAM, region 2 its WorkerStateRegion) and maps each after checking its
// seals; receives `VMBusWorkerSetup` (VP count, guest-RAM ranges: `VMBusServer.Configuration`);
// builds its `VMBusServer`, restored from the state region when a predecessor saved one (decoded
// as hostile bytes: a state that does not decode is reported and the server starts afresh), and
// saves its state there; receives its seccomp filter (SeccompProgram, compiled from
// Policies/vmbus.policy) and installs it; answers "attached". From then on it runs filtered and
// sleeps in poll() on the control socket; run() returns when the monitor closes it.
//
// What it does not do yet (issue 12, item 3): the router does not forward the guest's VMBus
// control messages (connections 1 and 4) to it, so `VMBusServer` (Sources/VMBus, pure) is not
// fed yet; see docs/vmbus.md, "What is not done".
//
// Before any of it, the worker enters its jail (`--jail`, Sandbox's Jail.enter: docs/security.md)
// unless the operator said `--no-jail`. Test-only arguments (the supervisor sets argv, the guest
// cannot), as the router's: `--test-forbidden-syscall`, `--test-crash-after-ms N`,
// `--test-print HEX`, `--test-exhaust-memory`, `--test-jail-probes`.
import CSynthVM
import Glibc
import IPC
import Sandbox
import VMBus
import VMBusWorker

let controlFD: Int32 = 3
let name = "synthvm-vmbus"

func say(_ message: String) {
    let line = "\(name): \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

func fail(_ message: String) -> Never {
    say(message)
    exit(1)
}

let options: WorkerCommandLine
do { options = try WorkerCommandLine.parse(Array(CommandLine.arguments.dropFirst())) } catch { fail("\(error)") }

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

// Die with the monitor rather than linger with guest memory mapped; if it is already gone, leave.
_ = svm_set_parent_death_signal(SIGKILL)
if Jail.peerHasClosed(controlFD) { exit(0) }

let budgetReporter = svm_install_memory_budget_reporter(strdup(name), MemoryBudget.probeBytes, MemoryBudget.exitStatus)
if budgetReporter < 0 { fail("cannot install the memory-budget reporter: \(String(cString: strerror(-budgetReporter)))") }

// The jail, before a region is mapped or a guest byte read; the seccomp filter comes after.
if let limits = options.jail {
    do { try Jail.enter(limits) } catch { fail("cannot enter the jail: \(error)") }
    if let targets = options.jailProbes {
        for (probe, result) in JailProbes.run(targets, executable: CommandLine.arguments[0]) {
            say("jail probe: \(probe): \(result)")
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
    let hello = WorkerHello(kind: .vmbus, pid: getpid())
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
    guard regions[0] != nil, let stateRegion = regions[2] else { fail("the layout lacks region 0 (guest RAM) or 2 (state)") }
    let state: WorkerStateRegion
    do { state = try WorkerStateRegion(region: stateRegion, kind: WorkerKind.vmbus.rawValue) } catch {
        fail("bad state region: \(error)")
    }
    let setupMessage = try FDPassing.receive(from: controlFD, maxPayload: 4096, maxFDs: 0)
    let setup: VMBusWorkerSetup
    do { setup = try VMBusWorkerSetup.decode(setupMessage.payload) } catch { fail("bad VMBus setup: \(error)") }
    let configuration = VMBusServer.Configuration(
        vpCount: Int(setup.vpCount), ram: setup.memory.map { $0.base..<($0.base + $0.size) })
    // A predecessor's state is restored (its pending outbound messages wait in
    // `pendingAfterRestore` for the control path, which is not built yet), then saved.
    let service = VMBusService(state: state, configuration: configuration) { say($0) }
    let next = try FDPassing.receive(from: controlFD, maxPayload: SeccompProgram.maxEncodedSize, maxFDs: 0)
    let program: SeccompProgram
    do { program = try SeccompProgram.decode(next.payload) } catch { fail("bad seccomp program: \(error)") }

    installSigsysReporter()
    let installed = program.instructions.withUnsafeBytes {
        svm_install_seccomp_filter($0.baseAddress, UInt32(program.instructionCount))
    }
    if installed < 0 { fail("cannot install the seccomp filter: \(String(cString: strerror(-installed)))") }
    if installed > 0 { fail("cannot install the seccomp filter on thread \(installed) (TSYNC)") }
    try FDPassing.send(hello.encoded(), over: controlFD)
    if let bytes = options.testPrint { _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) } }
    if options.testForbiddenSyscall { _ = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0) }
    if let ms = options.testCrashAfterMilliseconds { svm_test_crash_after(ms) }
    if options.testExhaustMemory { exhaustMemory() }

    // Serve. The loop ends when the monitor closes the socket and run() returns (a serve loop
    // left only by exit() is what Swift 6.3.1 miscompiles: docs/toolchain.md).
    var fds = [pollfd(fd: controlFD, events: Int16(POLLIN), revents: 0)]
    var serving = true
    while serving {
        for i in fds.indices { fds[i].revents = 0 }
        if poll(&fds, nfds_t(fds.count), -1) < 0 && errno != EINTR { fail("poll: \(String(cString: strerror(errno)))") }
        if fds[0].revents != 0 && !controlMessage() { serving = false }
    }
    withExtendedLifetime((regions, service)) {}
}

do { try run() } catch { fail("\(error)") }
exit(0)
