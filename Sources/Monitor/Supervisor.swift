import CSynthVM
import Glibc
import Sandbox
import Synchronization

/// Watches the worker processes through their pidfds on one thread, logs how each one ended
/// (exit status, or the signal that killed it — SIGSYS names a seccomp kill), and tells the
/// VM. Restarting a worker comes later; the handshake already lets a new worker attach to
/// existing shared state.
public final class Supervisor: @unchecked Sendable {
    public struct Status: Sendable, Equatable {
        public var name: String
        public var pid: pid_t
        /// nil while it runs.
        public var exit: WorkerExit?
    }

    private let workers = Mutex<[WorkerProcess]>([])
    private let statuses = Mutex<[Status]>([])
    private let wakeFD: Int32
    private var thread: HostThread?
    private let stopping = Atomic<Bool>(false)
    /// Set when the monitor has told the workers to leave: a clean exit is then expected and
    /// not logged (a worker that dies any other way, or before, always is).
    private let leaving = Atomic<Bool>(false)
    private let onExit: @Sendable (Status) -> Void
    /// Installed by the watching thread on itself when it starts (Policies/vmm.policy in a VM).
    private let threadFilter: ThreadFilter?

    /// `onExit` runs on the supervisor thread when a worker ends, under `threadFilter` if given.
    public init(onExit: @escaping @Sendable (Status) -> Void, threadFilter: ThreadFilter? = nil) throws(MonitorError) {
        let fd = svm_eventfd_nonblocking()
        if fd < 0 { throw .config("eventfd: \(String(cString: strerror(-fd)))") }
        wakeFD = fd
        self.onExit = onExit
        self.threadFilter = threadFilter
    }

    deinit {
        stop()
        close(wakeFD)
    }

    /// Spawns a worker (jailed as `jail`, or unjailed if nil: `WorkerProcess`) and starts watching it.
    @discardableResult
    public func spawn(name: String, executable: String? = nil, arguments: [String] = [],
                      fds: [Int32], standardError: Int32? = nil, jail: JailIDs? = nil) throws(MonitorError) -> WorkerProcess {
        let w = try WorkerProcess(name: name, executable: executable ?? WorkerProcess.executablePath(for: name),
                                  arguments: arguments, fds: fds, standardError: standardError, jail: jail)
        workers.withLock { $0.append(w) }
        statuses.withLock { $0.append(Status(name: name, pid: w.pid, exit: nil)) }
        wake()
        if thread == nil {
            if let f = threadFilter {
                thread = try HostThread.spawn(name: "synthvm-workers", filter: f) { [self] in watch() }
            } else {
                thread = try HostThread.spawn { [self] in watch() }
            }
        }
        return w
    }

    public var status: [Status] { statuses.withLock { $0 } }

    /// The VM is stopping and has closed the workers' control sockets.
    public func expectExits() { leaving.store(true, ordering: .releasing) }

    /// Kills every worker still running, reaps them and stops watching.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        wake()
        thread?.join()
        thread = nil
        for w in workers.withLock({ $0 }) where statuses.withLock({ s in s.first { $0.pid == w.pid }?.exit == nil }) {
            w.signal(SIGKILL)
            let e = w.reap()
            statuses.withLock { s in
                if let i = s.firstIndex(where: { $0.pid == w.pid }) { s[i].exit = e }
            }
        }
    }

    private func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    private func watch() {
        while !stopping.load(ordering: .acquiring) {
            let live = workers.withLock { ws in
                ws.filter { w in statuses.withLock { s in s.first { $0.pid == w.pid }?.exit == nil } }
            }
            var fds = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
            fds += live.map { pollfd(fd: $0.pidfd, events: Int16(POLLIN), revents: 0) }
            let n = poll(&fds, nfds_t(fds.count), -1)
            if n < 0 && errno != EINTR { return }
            if fds[0].revents != 0 {
                var v: UInt64 = 0
                _ = Glibc.read(wakeFD, &v, 8)
            }
            for (i, w) in live.enumerated() where fds[i + 1].revents != 0 {
                guard let e = w.reap() else { continue }
                let st = statuses.withLock { s -> Status? in
                    guard let j = s.firstIndex(where: { $0.pid == w.pid }) else { return nil }
                    s[j].exit = e
                    return s[j]
                }
                if !(leaving.load(ordering: .acquiring) && e == .exited(status: 0)) {
                    let line = "synthvm: worker \(w.name) (pid \(w.pid)) \(e)\n"
                    _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
                }
                if let st { onExit(st) }
            }
        }
    }
}
