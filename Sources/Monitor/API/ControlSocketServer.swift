import CSynthVM
import ControlAPI
import Glibc
import Sandbox

/// Serves the control socket (docs/api.md) on one thread of the VM, `synthvm-api`, under
/// Policies/monitor.policy (accept4, getsockopt(SO_PEERCRED) and send(MSG_NOSIGNAL) on top of the
/// monitor thread's poll, read, write and close). Not a vCPU thread: a slow or hostile client
/// costs this thread only, and no request ever runs on a vCPU's exit path.
///
/// Bounded against clients (the socket is 0600 and its clients are the operator's own tools,
/// but a broken script must not wedge the VM):
/// - everything non-blocking, one poll for the listening socket and every connection;
/// - at most `maxConnections` at once: one more is accepted, told `TooManyConnections` and closed;
/// - a request line is at most `APIProtocol.maxLineBytes` (64 KiB): a longer one gets
///   `LineTooLong` and the connection is closed (what else it sends is read and dropped, at most
///   `discardLimit` bytes, so the error can reach it);
/// - replies waiting for a client that does not read are at most `maxPendingOutput`; past that
///   the connection is closed, and no more requests are read from it while 64 KiB are pending;
/// - a connection with no complete request for `idleTimeoutMs` gets `IdleTimeout` and is closed.
final class ControlSocketServer: @unchecked Sendable {
    static let maxConnections = 16
    static let readSize = 16 << 10
    static let maxPendingOutput = 4 << 20
    static let discardLimit = 4 << 20
    static let threadName = "synthvm-api"
    /// After LineTooLong: how long the rest of the client's line is read and dropped, so that
    /// the error reaches it rather than a reset.
    static let discardNs: UInt64 = 2_000_000_000
    /// A closing connection whose client does not read its last reply is closed this much later.
    static let lingerNs: UInt64 = 5_000_000_000

    let listenFD: Int32
    let backend: any APIBackend
    let idleTimeoutMs: Int
    private let service: ServiceThread

    private final class Connection {
        let fd: Int32
        let peer: APIPeer?
        var framer = LineFramer()
        var output: [UInt8] = []
        /// Set after LineTooLong or IdleTimeout: close once the output is out and `closeAt` has
        /// passed (or the peer closed, or `discardLimit` bytes were dropped); by `closeAt` +
        /// `lingerNs` in any case.
        var closing = false
        var closeAt: UInt64 = 0
        var discarded = 0
        var lastRequest: UInt64
        var readEOF = false

        init(fd: Int32, peer: APIPeer?, now: UInt64) {
            self.fd = fd
            self.peer = peer
            lastRequest = now
        }
    }

    /// `listenFD` stays the caller's; it is made non-blocking here (before any filter: fcntl is
    /// not in monitor.policy).
    init(listenFD: Int32, backend: any APIBackend, idleTimeoutMs: Int = 30_000) throws(MonitorError) {
        let flags = fcntl(listenFD, F_GETFL)
        guard flags >= 0, fcntl(listenFD, F_SETFL, flags | O_NONBLOCK) == 0 else {
            throw .config("control socket (fd \(listenFD)): \(String(cString: strerror(errno)))")
        }
        self.listenFD = listenFD
        self.backend = backend
        self.idleTimeoutMs = idleTimeoutMs
        service = try ServiceThread()
    }

    func start(filter: ThreadFilter) throws(MonitorError) {
        try service.start(name: Self.threadName, filter: filter) { [self] in serve() }
    }

    /// Stops the thread (closing every connection); the listening socket stays open.
    func stop() { service.stop() }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    private func serve() {
        var connections: [Connection] = []
        var buffer = [UInt8](repeating: 0, count: Self.readSize)
        defer { for c in connections { close(c.fd) } }
        while !service.isStopping {
            var fds = [pollfd(fd: service.wakeFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)]
            for c in connections {
                var events: Int16 = 0
                if !c.readEOF && c.output.count < APIProtocol.maxLineBytes { events |= Int16(POLLIN) }
                if !c.output.isEmpty { events |= Int16(POLLOUT) }
                fds.append(pollfd(fd: c.fd, events: events, revents: 0))
            }
            let now = Self.now()
            let idleNs = UInt64(idleTimeoutMs) * 1_000_000
            let nextIdle = connections.map { $0.closing ? ($0.output.isEmpty ? $0.closeAt : $0.closeAt &+ Self.lingerNs)
                                                        : $0.lastRequest &+ idleNs }.min()
            let timeout: Int32 = nextIdle.map { $0 <= now ? 0 : Int32(min(($0 - now) / 1_000_000 + 1, 60_000)) } ?? -1
            let n = poll(&fds, nfds_t(fds.count), timeout)
            if n < 0 && errno != EINTR { return }
            if fds[0].revents != 0 { service.drain() }
            if service.isStopping { return }
            let later = Self.now()
            for (i, c) in connections.enumerated() {
                let revents = fds[2 + i].revents
                if revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { read(c, buffer: &buffer, now: later) }
                if !c.output.isEmpty { flush(c) }
                if !c.closing, later >= c.lastRequest &+ idleNs {
                    queue(APIHandler.errorLine(APIError(.idleTimeout, "no request for \(idleTimeoutMs / 1000) s"), id: nil), to: c)
                    c.closing = true
                    c.closeAt = later
                    flush(c)
                }
            }
            // Done: closed by the peer with nothing left to say, or closing and flushed (or stuck).
            connections.removeAll { c in
                let done = (c.readEOF && c.output.isEmpty)
                    || (c.closing && c.output.isEmpty && (c.readEOF || c.discarded >= Self.discardLimit || later >= c.closeAt))
                    || (c.closing && later >= c.closeAt &+ Self.lingerNs)
                    || c.output.count > Self.maxPendingOutput
                if done { close(c.fd) }
                return done
            }
            if fds[1].revents & Int16(POLLIN) != 0 { acceptAll(&connections, now: later) }
        }
    }

    private func acceptAll(_ connections: inout [Connection], now: UInt64) {
        // A few per round, so a flood of connects cannot starve the open ones.
        for _ in 0..<Self.maxConnections {
            let fd = svm_api_accept(listenFD)
            if fd < 0 { return }
            var pid: Int32 = 0, uid: UInt32 = 0, gid: UInt32 = 0
            let peer = svm_api_peer(fd, &pid, &uid, &gid) == 0 ? APIPeer(pid: pid, uid: uid, gid: gid) : nil
            let c = Connection(fd: fd, peer: peer, now: now)
            guard connections.count < Self.maxConnections else {
                queue(APIHandler.errorLine(APIError(.tooManyConnections,
                                                    "the control socket serves at most \(Self.maxConnections) connections at once"),
                                           id: nil), to: c)
                flush(c)
                close(fd)
                continue
            }
            connections.append(c)
        }
    }

    private func read(_ c: Connection, buffer: inout [UInt8], now: UInt64) {
        let n = buffer.withUnsafeMutableBytes { Glibc.read(c.fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EAGAIN || errno == EINTR { return }
            c.readEOF = true
            return
        }
        if n == 0 {
            c.readEOF = true
            return
        }
        if c.closing {
            c.discarded += n
            return
        }
        for line in c.framer.feed(buffer[0..<n]) {
            c.lastRequest = now
            queue(APIHandler.reply(to: line, peer: c.peer, backend: backend), to: c)
        }
        if c.framer.overflowed {
            queue(APIHandler.errorLine(APIError(.lineTooLong,
                                                "request line longer than \(APIProtocol.maxLineBytes) bytes; closing"),
                                       id: nil), to: c)
            c.closing = true
            c.closeAt = now &+ Self.discardNs
        }
    }

    private func queue(_ line: String, to c: Connection) {
        c.output += Array(line.utf8)
        c.output.append(0x0A)
    }

    private func flush(_ c: Connection) {
        while !c.output.isEmpty {
            let n = c.output.withUnsafeBytes { svm_api_send(c.fd, $0.baseAddress, $0.count) }
            if n > 0 {
                c.output.removeFirst(n)
                continue
            }
            if n == -Int(EINTR) { continue }
            if n != -Int(EAGAIN) {
                // The peer is gone: drop what is left, let the sweep close it.
                c.output = []
                c.readEOF = true
            }
            return
        }
    }
}
