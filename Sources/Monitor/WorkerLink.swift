import CSynthVM
import Glibc
import IPC
import Sandbox

/// The monitor's end of a worker's control socket, after the handshake:
/// worker -> WorkerHello; supervisor -> RegionLayout with the region fds, then the worker kind's
/// setup messages (with their fds), then SeccompProgram;
/// worker -> WorkerHello again once it has mapped them and runs under the filter ("attached"). A restarted worker goes through the same steps
/// and gets the same regions, so it attaches to the existing shared state.
public final class WorkerLink: @unchecked Sendable {
    public let process: WorkerProcess
    public let kind: WorkerKind
    /// Our end of the control socket; closing it tells the worker to exit.
    private(set) var control: OwnedFileDescriptor?

    /// A region handed to the worker: its id, the fd, and the size the worker may map.
    public struct Region {
        public var id: UInt32
        public var fd: Int32
        public var size: UInt64
        public init(id: UInt32, fd: Int32, size: UInt64) {
            self.id = id
            self.fd = fd
            self.size = size
        }
    }

    /// Region ids, part of the protocol.
    public static let guestRAMRegion: UInt32 = 0
    /// The SynIC region (SynICRegion): published registers, connection table, rings.
    public static let synicRegion: UInt32 = 1
    /// The worker's restart state (WorkerStateRegion), created by the supervisor: today the VMBus
    /// worker's `VMBusServer.Saved`.
    public static let workerStateRegion: UInt32 = 2

    /// A worker-kind-specific message sent after the region layout (and before the filter),
    /// with fds attached.
    public struct SetupMessage {
        public var bytes: [UInt8]
        public var fds: [Int32]
        public init(bytes: [UInt8], fds: [Int32] = []) {
            self.bytes = bytes
            self.fds = fds
        }
    }

    /// Spawns worker `name` under `supervisor` and runs the handshake (bounded by `timeoutMs`
    /// per step). `filter` is the compiled seccomp program the worker must install before it
    /// says "attached" (`PolicyCompiler`); `jail` how it is jailed (nil: `--no-jail`, said
    /// loudly); `arguments` and `standardError` (where the supervisor relays the worker's output
    /// and says how it ended, instead of the monitor's stderr) are for tests.
    /// Throws, with the worker killed, if it does not answer as expected or is not jailed.
    public init(supervisor: Supervisor, name: String, kind: WorkerKind, regions: [Region],
                setup: [SetupMessage] = [],
                filter: SeccompProgram, jail: JailConfig? = JailConfig(), arguments: [String] = [],
                standardError: Int32? = nil, timeoutMs: Int32 = 5000) throws(MonitorError) {
        self.kind = kind
        // The jail (docs/security.md): ids mapped by the spawn, limits applied by the worker.
        do { try jail?.validate() } catch { throw .config("worker \(name): \(error)") }
        let ids = jail?.ids(monitorUID: geteuid(), monitorGID: getegid())
        let regionBytes = regions.reduce(0) { $0 &+ $1.size }
        let limits = jail?.limits(regionBytes: regionBytes)
        let budget = jail?.addressSpaceHeadroom.map { MemoryBudgetLimit(regions: regionBytes, own: $0) }
        let ours: OwnedFileDescriptor
        var theirs: OwnedFileDescriptor?
        do {
            (ours, theirs) = try FDPassing.socketPair()
            // The kernel names the hello's sender (its pid as we see it), before the worker exists.
            try PeerCredentials.pass(true, on: ours.rawValue)
        } catch { throw .config("worker \(name): \(error)") }
        process = try supervisor.spawn(name: name, arguments: WorkerCommandLine.jailArguments(limits) + arguments,
                                       fds: [theirs?.rawValue ?? -1], standardError: standardError, jail: ids,
                                       budget: budget)
        // Only the worker holds its end now (not left to ARC, which keeps it to the end of this
        // scope in a debug build): a worker that dies before its hello is end of file at once.
        theirs = nil
        if ids == nil { WorkerJail.warnUnjailed(name: name, pid: process.pid, standardError: standardError) }
        do {
            let (hello, sender) = try Self.receiveFirstHello(ours.rawValue, name: name, timeoutMs: timeoutMs)
            guard hello.kind == kind, sender.pid == process.pid,
                  hello.protocolVersion == WorkerHello.currentProtocolVersion else {
                throw MonitorError.config("worker \(name) announced \(hello.kind) protocol \(hello.protocolVersion) from pid "
                    + "\(sender.pid); expected \(kind) protocol \(WorkerHello.currentProtocolVersion) from pid \(process.pid)")
            }
            // Jailed before it gets anything: checked here, not taken from the worker.
            if let ids { try WorkerJail.verify(pid: process.pid, ids: ids, name: name) }
            let layout = RegionLayout(entries: regions.map { .init(regionID: $0.id, size: $0.size) })
            try FDPassing.send(layout.encoded(), fds: regions.map(\.fd), over: ours.rawValue)
            for m in setup { try FDPassing.send(m.bytes, fds: m.fds, over: ours.rawValue) }
            try FDPassing.send(filter.encoded(), over: ours.rawValue)
            // A worker that cannot install its filter exits instead of answering: never unfiltered.
            let attached: WorkerHello
            do { attached = try Self.receiveHello(ours.rawValue, timeoutMs: timeoutMs) } catch {
                throw MonitorError.config("worker \(name) did not attach under its seccomp filter: \(error)")
            }
            guard attached.pid == hello.pid, attached.kind == kind else {
                throw MonitorError.config("worker \(name): bad attach message")
            }
            try WorkerJail.verifyFiltered(pid: process.pid, name: name)
        } catch let e as MonitorError {
            Self.abandon(process, supervisor: supervisor)
            throw e
        } catch {
            Self.abandon(process, supervisor: supervisor)
            throw .config("worker \(name) handshake failed: \(error)")
        }
        control = ours
    }

    /// Kills a worker that failed its handshake and waits until the supervisor has relayed its
    /// last output (why it could not start or enter its jail), so those lines come before the
    /// error that says it did not answer.
    static func abandon(_ process: WorkerProcess, supervisor: Supervisor) {
        process.signal(SIGKILL)
        supervisor.awaitExit(of: process)
    }

    /// The first hello, with its sender as the kernel names it (SO_PASSCRED is on until then):
    /// in its own PID namespace the worker sees itself as pid 1.
    static func receiveFirstHello(_ fd: Int32, name: String, timeoutMs: Int32) throws -> (WorkerHello, PeerCredentials) {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMs) == 1 else { throw MonitorError.config("worker \(name) did not answer within \(timeoutMs) ms") }
        let m: (payload: [UInt8], sender: PeerCredentials)
        do { m = try PeerCredentials.receive(from: fd, maxPayload: 4096) } catch .peerClosed {
            throw MonitorError.config("worker \(name) exited before its hello: it could not start or enter its jail "
                + "(its output, relayed above, says why)")
        }
        try PeerCredentials.pass(false, on: fd)
        return (try WorkerHello.decode(m.payload), m.sender)
    }

    static func receiveHello(_ fd: Int32, timeoutMs: Int32) throws -> WorkerHello {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMs) == 1 else { throw MonitorError.config("worker did not answer within \(timeoutMs) ms") }
        let m = try FDPassing.receive(from: fd, maxPayload: 4096, maxFDs: 0)
        return try WorkerHello.decode(m.payload)
    }

    /// Closes the control socket: the worker sees end-of-file and exits.
    public func close() { control = nil }

    /// Sends one record on the control socket (a SEQPACKET write is one message; `write` is in
    /// every monitor thread's policy, `sendmsg` is not). False if the socket is closed or full.
    func send(_ bytes: [UInt8]) -> Bool {
        guard let fd = control?.rawValue else { return false }
        return bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count
    }
}
