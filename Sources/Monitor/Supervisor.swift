import CSynthVM
import Glibc
import IPC
import Sandbox
import Synchronization

/// Watches the worker processes through their pidfds on one thread, relays what they print,
/// logs how each one ended (exit status, or the signal that killed it — SIGSYS names a seccomp
/// kill), and tells the VM, whose answer (`onExit`: a restart through the spawner, on this
/// thread) ends the same line. It also watches each attached worker's heartbeat word
/// (WorkerHeartbeat) and SIGKILLs one that has not beaten for `hangTimeoutSeconds`: its death
/// is then reported as a hang (docs/faults.md).
///
/// A worker's stdout and stderr are a pipe whose read end only this class holds: the same
/// thread reads it and writes each line, prefixed and escaped (`WorkerLogRelay`), to the
/// monitor's stderr (or the spawn's `standardError`). So a worker cannot forge the monitor's
/// lines or drive the operator's terminal, a worker without a writable file (a jailed one has
/// RLIMIT_FSIZE 0) still gets its lines out when the monitor logs to a file, and a dead worker's
/// last lines are relayed before the line that says how it died (docs/security.md).
public final class Supervisor: @unchecked Sendable {
    public struct Status: Sendable, Equatable {
        public var name: String
        public var pid: pid_t
        /// nil while it runs.
        public var exit: WorkerExit?
    }

    /// A worker and its output relay. `output` and `relay` belong to the watching thread (and,
    /// once it has been joined, to `stop`).
    private final class Watched: @unchecked Sendable {
        let process: WorkerProcess
        /// Where its relayed lines and the monitor's lines about it go.
        let destination: Int32
        /// The read end of its output pipe (non-blocking, close-on-exec); -1 once closed.
        var output: Int32
        var relay: WorkerLogRelay
        /// Its RLIMIT_AS, for the line that says it ran out (nil: none was set).
        let budget: MemoryBudgetLimit?
        /// Its heartbeat word once it has attached (nil: not watched for hangs), the last value
        /// seen and when it last changed (CLOCK_MONOTONIC ns); `hungMs` once it was killed for it.
        var heartbeat: UnsafeMutablePointer<UInt64>?
        var lastBeat: UInt64 = 0
        var lastBeatChange: UInt64 = 0
        var hungMs: UInt64?
        /// Owns `output` when it came from the spawner (dropped instead of closed).
        var outputOwner: OwnedFileDescriptor?

        func closeOutput() {
            if outputOwner != nil { outputOwner = nil } else { close(output) }
            output = -1
        }

        init(process: WorkerProcess, destination: Int32, output: Int32, budget: MemoryBudgetLimit?) {
            self.process = process
            self.destination = destination
            self.output = output
            self.budget = budget
            relay = WorkerLogRelay(name: process.name, pid: process.pid)
        }
    }

    /// A dead worker's pipe is read until end of file, but at most this many reads (a worker
    /// cannot make the monitor read forever through a descendant holding the write end).
    static let drainReads = 64
    /// Bytes per read of a worker's pipe.
    static let readSize = 16384

    private let workers = Mutex<[Watched]>([])
    private let statuses = Mutex<[Status]>([])
    private let wakeFD: Int32
    private var thread: HostThread?
    private let stopping = Atomic<Bool>(false)
    /// Set when the monitor has told the workers to leave: a clean exit is then expected and
    /// not logged (a worker that dies any other way, or before, always is).
    private let leaving = Atomic<Bool>(false)
    private let onExit: @Sendable (Status) -> String?
    /// A worker whose heartbeat has not moved for this long is killed (0: never).
    private let hangTimeoutNs: UInt64
    /// Installed by the watching thread on itself when it starts (Policies/vmm.policy in a VM).
    private let threadFilter: ThreadFilter?

    /// `onExit` runs on the supervisor thread when a worker ends, under `threadFilter` if given;
    /// what it returns (a restart, said as "restarted (1 of 5 in 60 s) as pid P") ends the line
    /// that reports the death. `hangTimeoutSeconds`: see `hangTimeoutNs`.
    public init(onExit: @escaping @Sendable (Status) -> String?, threadFilter: ThreadFilter? = nil,
                hangTimeoutSeconds: Double = 0) throws(MonitorError) {
        let fd = svm_eventfd_nonblocking()
        if fd < 0 { throw .config("eventfd: \(String(cString: strerror(-fd)))") }
        wakeFD = fd
        self.onExit = onExit
        hangTimeoutNs = UInt64(max(0, hangTimeoutSeconds) * 1e9)
        self.threadFilter = threadFilter
    }

    deinit {
        stop()
        close(wakeFD)
    }

    /// Spawns a worker (jailed as `jail`, or unjailed if nil: `WorkerProcess`) and starts watching
    /// it. Its stdout and stderr are a pipe the supervisor relays to `standardError` (tests), or
    /// to the monitor's stderr if nil. `budget`: the RLIMIT_AS it runs under, named in the line
    /// that reports it ran out.
    @discardableResult
    public func spawn(name: String, executable: String? = nil, arguments: [String] = [],
                      fds: [Int32], standardError: Int32? = nil, jail: JailIDs? = nil,
                      budget: MemoryBudgetLimit? = nil) throws(MonitorError) -> WorkerProcess {
        var pipe: [Int32] = [-1, -1]
        let r = svm_pipe_cloexec(&pipe)
        if r < 0 { throw .config("worker \(name): output pipe: \(String(cString: strerror(-r)))") }
        // Our end never blocks the thread that relays every worker: it waits in poll only.
        if fcntl(pipe[0], F_SETFL, O_NONBLOCK) < 0 {
            let e = errno
            close(pipe[0])
            close(pipe[1])
            throw .config("worker \(name): output pipe: \(String(cString: strerror(e)))")
        }
        let w: WorkerProcess
        do {
            w = try WorkerProcess(name: name, executable: executable ?? WorkerProcess.executablePath(for: name),
                                  arguments: arguments, fds: fds, standardError: pipe[1], jail: jail)
        } catch {
            close(pipe[0])
            close(pipe[1])
            throw error
        }
        // Only the worker holds the write end now: its death (or closing it) is our end of file.
        close(pipe[1])
        try watch(w, output: pipe[0], standardError: standardError, budget: budget)
        return w
    }

    /// Starts watching a worker someone else spawned (the spawner, for a restart): its process
    /// (a child of this one: CLONE_PARENT) and the read end of its output pipe (non-blocking,
    /// close-on-exec), which the supervisor now owns.
    public func adopt(_ w: WorkerProcess, output: OwnedFileDescriptor, standardError: Int32? = nil,
                      budget: MemoryBudgetLimit? = nil) throws(MonitorError) {
        try watch(w, output: output.rawValue, owner: output, standardError: standardError, budget: budget)
    }

    private func watch(_ w: WorkerProcess, output: Int32, owner: OwnedFileDescriptor? = nil, standardError: Int32?,
                       budget: MemoryBudgetLimit?) throws(MonitorError) {
        let watched = Watched(process: w, destination: standardError ?? 2, output: output, budget: budget)
        watched.outputOwner = owner
        workers.withLock { $0.append(watched) }
        statuses.withLock { $0.append(Status(name: w.name, pid: w.pid, exit: nil)) }
        wake()
        if thread == nil {
            if let f = threadFilter {
                thread = try HostThread.spawn(name: "synthvm-workers", filter: f) { [self] in watch() }
            } else {
                thread = try HostThread.spawn { [self] in watch() }
            }
        }
    }

    /// From now on `process` must beat (WorkerHeartbeat) at `word`, in the supervisor's own
    /// mapping of its heartbeat page (kept mapped for the VM's life): the clock starts now.
    public func watchHeartbeat(of process: WorkerProcess, word: UnsafeMutablePointer<UInt64>) {
        guard let w = workers.withLock({ $0.last { $0.process === process } }) else { return }
        let now = Self.now()
        workers.withLock { _ in
            w.lastBeat = svm_atomic_load_u64(word)
            w.lastBeatChange = now
            w.heartbeat = word
        }
        wake()
    }

    /// Milliseconds since the newest process of `name` last beat (nil: not running or not yet
    /// attached).
    public func heartbeatAgeMs(worker name: String) -> Int? {
        let now = Self.now()
        return workers.withLock { all -> Int? in
            guard let w = all.last(where: { $0.process.name == name }), w.heartbeat != nil, w.hungMs == nil else { return nil }
            return Int((now &- w.lastBeatChange) / 1_000_000)
        }
    }

    public var status: [Status] { statuses.withLock { $0 } }

    /// Whether the VM has said its workers are leaving (`expectExits`): no restart then.
    public var isLeaving: Bool { leaving.load(ordering: .acquiring) }

    /// SIGKILLs the newest process of worker `name` through its pidfd (the control socket's
    /// `fault WORKER kill`); its pid, or nil when no process of that name still runs. The death
    /// is then reaped and reported by the watching thread like any other.
    public func kill(worker name: String) -> pid_t? {
        guard let w = workers.withLock({ $0.last { $0.process.name == name } }), exit(of: w.process.pid) == nil else {
            return nil
        }
        w.process.signal(SIGKILL)
        return w.process.pid
    }

    /// Waits (at most `timeoutMs`) until the supervisor has reaped `process` and relayed the rest
    /// of its output: then an error about it can be reported after the worker's own last words.
    @discardableResult
    public func awaitExit(of process: WorkerProcess, timeoutMs: Int = 2000) -> WorkerExit? {
        for _ in 0...max(0, timeoutMs) {
            if let e = exit(of: process.pid) { return e }
            var ts = timespec(tv_sec: 0, tv_nsec: 1_000_000)
            nanosleep(&ts, nil)
        }
        return exit(of: process.pid)
    }

    /// The VM is stopping and has closed the workers' control sockets.
    public func expectExits() { leaving.store(true, ordering: .releasing) }

    /// Kills every worker still running, reaps them, relays what they left in their pipes and
    /// stops watching.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        wake()
        thread?.join()
        thread = nil
        for w in workers.withLock({ $0 }) {
            if exit(of: w.process.pid) == nil {
                // One that died on its own before the thread saw it is still reported (after
                // its output); the ones killed here are not.
                var p = pollfd(fd: w.process.pidfd, events: Int16(POLLIN), revents: 0)
                let died = poll(&p, 1, 0) == 1
                w.process.signal(SIGKILL)
                let e = w.process.reap()
                drain(w)
                if died, let e { report(w, e) }
                statuses.withLock { s in
                    if let i = s.firstIndex(where: { $0.pid == w.process.pid }) { s[i].exit = e }
                }
            }
            drain(w)
        }
    }

    private func exit(of pid: pid_t) -> WorkerExit? {
        statuses.withLock { s in s.first { $0.pid == pid }?.exit }
    }

    private func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    private func watch() {
        var buffer = [UInt8](repeating: 0, count: Self.readSize)
        while !stopping.load(ordering: .acquiring) {
            let all = workers.withLock { $0 }
            let live = all.filter { exit(of: $0.process.pid) == nil }
            let reading = all.filter { $0.output >= 0 }
            var fds = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
            fds += live.map { pollfd(fd: $0.process.pidfd, events: Int16(POLLIN), revents: 0) }
            fds += reading.map { pollfd(fd: $0.output, events: Int16(POLLIN), revents: 0) }
            // A relay that is dropping a flood has a drop notice due once its budget refills.
            var timeout: Int32 = -1
            // Heartbeats are checked a few times per hang timeout.
            if hangTimeoutNs > 0, live.contains(where: { $0.heartbeat != nil }) {
                timeout = Int32(clamping: max(10, min(Int(hangTimeoutNs / 4_000_000), 250)))
            }
            if let due = reading.compactMap({ $0.relay.nextDeadline() }).min() {
                let now = Self.now()
                let relayDue = due <= now ? 0 : Int32(min((due - now + 999_999) / 1_000_000, 60_000))
                timeout = timeout < 0 ? relayDue : min(timeout, relayDue)
            }
            let n = poll(&fds, nfds_t(fds.count), timeout)
            if n < 0 && errno != EINTR { return }
            if fds[0].revents != 0 {
                var v: UInt64 = 0
                _ = Glibc.read(wakeFD, &v, 8)
            }
            // Output first: a worker that wrote and died has its lines relayed before its death.
            let now = Self.now()
            for (i, w) in reading.enumerated() {
                if fds[1 + live.count + i].revents != 0 { _ = relayOnce(w, buffer: &buffer, now: now) }
                if w.output >= 0 { write(w.relay.tick(now: now), to: w.destination) }
            }
            if hangTimeoutNs > 0 { checkHeartbeats(live, now: Self.now()) }
            for (i, w) in live.enumerated() where fds[i + 1].revents != 0 {
                guard let e = w.process.reap() else { continue }
                drain(w)
                let st = statuses.withLock { s -> Status? in
                    guard let j = s.firstIndex(where: { $0.pid == w.process.pid }) else { return nil }
                    s[j].exit = e
                    return s[j]
                }
                // What the VM does about it (a restart) ends the same line.
                let outcome = st.flatMap { onExit($0) }
                report(w, e, then: outcome)
            }
        }
    }

    /// Kills each attached worker whose heartbeat has not moved for the hang timeout; the
    /// death is reaped and reported (as a hang) like any other.
    private func checkHeartbeats(_ live: [Watched], now: UInt64) {
        for w in live {
            let hung: UInt64? = workers.withLock { _ in
                guard let word = w.heartbeat, w.hungMs == nil else { return nil }
                let v = svm_atomic_load_u64(word)
                if v != w.lastBeat {
                    w.lastBeat = v
                    w.lastBeatChange = now
                    return nil
                }
                guard now &- w.lastBeatChange >= hangTimeoutNs else { return nil }
                w.hungMs = (now &- w.lastBeatChange) / 1_000_000
                return w.hungMs
            }
            if hung != nil { w.process.signal(SIGKILL) }
        }
    }

    /// How a worker ended, after its last output (a clean exit once the VM has told it to leave
    /// is not news), and what was done about it (`then`).
    private func report(_ w: Watched, _ e: WorkerExit, then outcome: String? = nil) {
        guard !(leaving.load(ordering: .acquiring) && e == .exited(status: 0)) else { return }
        let detail = e == .memoryBudgetExceeded ? w.budget.map { " (\($0))" } ?? "" : ""
        let hang = w.hungMs.map { " after it hung (no heartbeat for \($0) ms)" } ?? ""
        let then = outcome.map { "; \($0)" } ?? ""
        write(["synthvm: worker \(w.process.name) (pid \(w.process.pid)) \(e)\(hang)\(detail)\(then)\n"], to: w.destination)
    }

    /// One read of a worker's pipe, relayed. False once there is nothing more to read now (would
    /// block, or end of file: the pipe is then closed and the relay's partial line flushed).
    private func relayOnce(_ w: Watched, buffer: inout [UInt8], now: UInt64) -> Bool {
        guard w.output >= 0 else { return false }
        let n = buffer.withUnsafeMutableBytes { Glibc.read(w.output, $0.baseAddress, $0.count) }
        if n > 0 {
            write(w.relay.feed(buffer[0..<n], now: now), to: w.destination)
            return true
        }
        if n < 0 {
            let e = errno
            if e == EINTR { return true }
            if e == EAGAIN { return false }
        }
        write(w.relay.finish(), to: w.destination)
        w.closeOutput()
        return false
    }

    /// What a dead worker left in its pipe: read (boundedly) and relayed, then the pipe closed.
    private func drain(_ w: Watched) {
        guard w.output >= 0 else { return }
        var buffer = [UInt8](repeating: 0, count: Self.readSize)
        for _ in 0..<Self.drainReads where relayOnce(w, buffer: &buffer, now: Self.now()) {}
        guard w.output >= 0 else { return }
        write(w.relay.finish(), to: w.destination)
        w.closeOutput()
    }

    /// Writes the lines in one go (a short write is continued; a failing destination loses them:
    /// there is nowhere else to say so).
    private func write(_ lines: [String], to fd: Int32) {
        guard !lines.isEmpty else { return }
        writeAll(Array(lines.joined().utf8), fd: fd)
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// A worker's RLIMIT_AS as the supervisor names it: the shared regions it maps plus its own
/// budget (JailConfig.limits).
public struct MemoryBudgetLimit: Sendable, Equatable, CustomStringConvertible {
    public var regions: UInt64
    public var own: UInt64

    public init(regions: UInt64, own: UInt64) {
        self.regions = regions
        self.own = own
    }

    public var description: String {
        let total = regions.addingReportingOverflow(own)
        return "RLIMIT_AS \(total.overflow ? "unlimited" : MemoryBudget.describe(total.partialValue)): "
            + "\(MemoryBudget.describe(regions)) of shared regions and \(MemoryBudget.describe(own)) of its own"
    }
}
