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
    /// Everything the handshake sent, kept for a restart (the fds stay the VM's for its life).
    let name: String
    let regions: [Region]
    let setup: [SetupMessage]
    let filter: SeccompProgram
    let standardError: Int32?
    let budget: MemoryBudgetLimit?
    let timeoutMs: Int32
    /// The arguments after argv[0] and the jail ids the first start used (the spawner's copy).
    let spawnArguments: [String]
    let jailIDs: JailIDs?
    /// The supervisor's mapping of this worker's heartbeat word (nil: none watched).
    let heartbeat: UnsafeMutablePointer<UInt64>?

    /// A region handed to the worker: its id, the fd, and the size the worker may map.
    public struct Region {
        public var id: UInt32
        public var fd: Int32
        public var size: UInt64
        /// Where it starts in the fd (page-aligned): a worker's own heartbeat page.
        public var offset: UInt64
        public init(id: UInt32, fd: Int32, size: UInt64, offset: UInt64 = 0) {
            self.id = id
            self.fd = fd
            self.size = size
            self.offset = offset
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
                standardError: Int32? = nil, timeoutMs: Int32 = 5000,
                heartbeat: UnsafeMutablePointer<UInt64>? = nil) throws(MonitorError) {
        self.kind = kind
        self.name = name
        self.regions = regions
        self.setup = setup
        self.filter = filter
        self.standardError = standardError
        self.timeoutMs = timeoutMs
        self.heartbeat = heartbeat
        // The jail (docs/security.md): ids mapped by the spawn, limits applied by the worker.
        do { try jail?.validate() } catch { throw .config("worker \(name): \(error)") }
        let (ids, spawnArguments, budget) = Self.plan(regions: regions, jail: jail, arguments: arguments)
        self.budget = budget
        jailIDs = ids
        self.spawnArguments = spawnArguments
        let ours: OwnedFileDescriptor
        var theirs: OwnedFileDescriptor?
        do {
            (ours, theirs) = try FDPassing.socketPair()
            // The kernel names the hello's sender (its pid as we see it), before the worker exists.
            try PeerCredentials.pass(true, on: ours.rawValue)
        } catch { throw .config("worker \(name): \(error)") }
        process = try supervisor.spawn(name: name, arguments: spawnArguments,
                                       fds: [theirs?.rawValue ?? -1], standardError: standardError, jail: ids,
                                       budget: budget)
        // Only the worker holds its end now (not left to ARC, which keeps it to the end of this
        // scope in a debug build): a worker that dies before its hello is end of file at once.
        theirs = nil
        if ids == nil { WorkerJail.warnUnjailed(name: name, pid: process.pid, standardError: standardError) }
        try Self.handshake(ours, process: process, supervisor: supervisor, name: name, kind: kind, regions: regions,
                           setup: setup, filter: filter, ids: ids, firstStart: true, timeoutMs: timeoutMs)
        control = ours
        if let heartbeat { supervisor.watchHeartbeat(of: process, word: heartbeat) }
    }

    /// How a worker with these regions and jail is started: its jail ids, its arguments after
    /// argv[0] (the jail's limits, RLIMIT_AS covering the regions, then `arguments`), its RLIMIT_AS.
    static func plan(regions: [Region], jail: JailConfig?, arguments: [String])
        -> (ids: JailIDs?, arguments: [String], budget: MemoryBudgetLimit?) {
        let ids = jail?.ids(monitorUID: geteuid(), monitorGID: getegid())
        let regionBytes = regions.reduce(0) { $0 &+ $1.size }
        let limits = jail?.limits(regionBytes: regionBytes)
        let budget = jail?.addressSpaceHeadroom.map { MemoryBudgetLimit(regions: regionBytes, own: $0) }
        return (ids, WorkerCommandLine.jailArguments(limits) + arguments, budget)
    }

    /// The handshake (see the type's comment) with a spawned worker; throws with it killed. On
    /// the first start it is also checked through /proc (WorkerJail) and its last words awaited;
    /// a restart runs on the filtered supervisor thread, which can do neither: the failed worker
    /// is killed and the supervisor reaps and reports it afterwards.
    static func handshake(_ ours: OwnedFileDescriptor, process: WorkerProcess, supervisor: Supervisor, name: String,
                          kind: WorkerKind, regions: [Region], setup: [SetupMessage], filter: SeccompProgram,
                          ids: JailIDs?, firstStart: Bool, timeoutMs: Int32) throws(MonitorError) {
        do {
            let (hello, sender) = try Self.receiveFirstHello(ours.rawValue, name: name, timeoutMs: timeoutMs)
            guard hello.kind == kind, sender.pid == process.pid,
                  hello.protocolVersion == WorkerHello.currentProtocolVersion else {
                throw MonitorError.config("worker \(name) announced \(hello.kind) protocol \(hello.protocolVersion) from pid "
                    + "\(sender.pid); expected \(kind) protocol \(WorkerHello.currentProtocolVersion) from pid \(process.pid)")
            }
            // Jailed before it gets anything: checked here, not taken from the worker.
            // (A restart's worker is checked by the spawner's construction instead: /proc cannot be
            // opened under vmm.policy. docs/faults.md, "What a restart checks".)
            if firstStart, let ids { try WorkerJail.verify(pid: process.pid, ids: ids, name: name) }
            let layout = RegionLayout(entries: regions.map { .init(regionID: $0.id, size: $0.size, offset: $0.offset) })
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
            if firstStart { try WorkerJail.verifyFiltered(pid: process.pid, name: name) }
        } catch let e as MonitorError {
            if firstStart { Self.abandon(process, supervisor: supervisor) } else { process.signal(SIGKILL) }
            throw e
        } catch {
            if firstStart { Self.abandon(process, supervisor: supervisor) } else { process.signal(SIGKILL) }
            throw .config("worker \(name) handshake failed: \(error)")
        }
    }

    /// A new worker in place of this one's dead process: the spawner starts it with the same
    /// executable, arguments and jail; the handshake gives it the same regions, setup messages
    /// (the same fds) and filter, so it attaches to the state that outlived its predecessor.
    /// On the supervisor thread (vmm.policy). Throws with the new process killed (the
    /// supervisor reaps and reports it).
    func restarted(supervisor: Supervisor, spawner: SpawnerLink, kindIndex: Int) throws(MonitorError) -> WorkerLink {
        let spawned = try spawner.respawn(kind: kindIndex, timeoutMs: timeoutMs)
        try supervisor.adopt(spawned.process, output: spawned.output, standardError: standardError, budget: budget)
        // The supervisor owns the pipe's read end now (it closes it at end of file).
        if jailIDs == nil { WorkerJail.warnUnjailed(name: name, pid: spawned.process.pid, standardError: standardError) }
        try Self.handshake(spawned.control, process: spawned.process, supervisor: supervisor, name: name, kind: kind,
                           regions: regions, setup: setup, filter: filter, ids: jailIDs, firstStart: false, timeoutMs: timeoutMs)
        let link = WorkerLink(restartOf: self, process: spawned.process, control: spawned.control)
        if let word = heartbeat { supervisor.watchHeartbeat(of: spawned.process, word: word) }
        return link
    }

    private init(restartOf old: WorkerLink, process: WorkerProcess, control: OwnedFileDescriptor) {
        self.process = process
        self.control = control
        kind = old.kind
        name = old.name
        regions = old.regions
        setup = old.setup
        filter = old.filter
        standardError = old.standardError
        budget = old.budget
        timeoutMs = old.timeoutMs
        spawnArguments = old.spawnArguments
        jailIDs = old.jailIDs
        heartbeat = old.heartbeat
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
