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
import WorkerRuntime

// Command line, parent death, memory-budget reporter, jail (WorkerRuntime); the rest is VMBus's.
let worker = WorkerRuntime.start(name: "synthvm-vmbus")
let controlFD = WorkerRuntime.controlFD
func say(_ message: String) { worker.say(message) }
func fail(_ message: String) -> Never { worker.fail(message) }

func run() throws {
    let (hello, regions) = try worker.announceAndMapRegions(kind: .vmbus)
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
    let program = worker.seccompProgram(next)

    try worker.attach(program, hello: hello)

    // Serve. The loop ends when the monitor closes the socket and run() returns (a serve loop
    // left only by exit() is what Swift 6.3.1 miscompiles: docs/toolchain.md).
    var fds = [pollfd(fd: controlFD, events: Int16(POLLIN), revents: 0)]
    var serving = true
    while serving {
        for i in fds.indices { fds[i].revents = 0 }
        if poll(&fds, nfds_t(fds.count), -1) < 0 && errno != EINTR { fail("poll: \(String(cString: strerror(errno)))") }
        if fds[0].revents != 0 && !worker.controlMessage() { serving = false }
    }
    withExtendedLifetime((regions, service)) {}
}

do { try run() } catch { fail("\(error)") }
exit(0)
