import CSynthVM
import Glibc
import IPC

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
    /// says "attached" (`PolicyCompiler`); `arguments` and `standardError` are for tests.
    /// Throws, with the worker killed, if it does not answer as expected.
    public init(supervisor: Supervisor, name: String, kind: WorkerKind, regions: [Region],
                setup: [SetupMessage] = [],
                filter: SeccompProgram, arguments: [String] = [], standardError: Int32? = nil,
                timeoutMs: Int32 = 5000) throws(MonitorError) {
        self.kind = kind
        let ours: OwnedFileDescriptor, theirs: OwnedFileDescriptor
        do { (ours, theirs) = try FDPassing.socketPair() } catch { throw .config("worker \(name): \(error)") }
        process = try supervisor.spawn(name: name, arguments: arguments, fds: [theirs.rawValue],
                                       standardError: standardError)
        do {
            let hello = try Self.receiveHello(ours.rawValue, timeoutMs: timeoutMs)
            guard hello.kind == kind, hello.pid == process.pid,
                  hello.protocolVersion == WorkerHello.currentProtocolVersion else {
                throw MonitorError.config("worker \(name) announced \(hello.kind) pid \(hello.pid) protocol "
                    + "\(hello.protocolVersion); expected \(kind) pid \(process.pid) protocol \(WorkerHello.currentProtocolVersion)")
            }
            let layout = RegionLayout(entries: regions.map { .init(regionID: $0.id, size: $0.size) })
            try FDPassing.send(layout.encoded(), fds: regions.map(\.fd), over: ours.rawValue)
            for m in setup { try FDPassing.send(m.bytes, fds: m.fds, over: ours.rawValue) }
            try FDPassing.send(filter.encoded(), over: ours.rawValue)
            // A worker that cannot install its filter exits instead of answering: never unfiltered.
            let attached: WorkerHello
            do { attached = try Self.receiveHello(ours.rawValue, timeoutMs: timeoutMs) } catch {
                throw MonitorError.config("worker \(name) did not attach under its seccomp filter: \(error)")
            }
            guard attached.pid == process.pid else { throw MonitorError.config("worker \(name): bad attach message") }
        } catch let e as MonitorError {
            process.signal(SIGKILL)
            throw e
        } catch {
            process.signal(SIGKILL)
            throw .config("worker \(name) handshake failed: \(error)")
        }
        control = ours
    }

    static func receiveHello(_ fd: Int32, timeoutMs: Int32) throws -> WorkerHello {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMs) == 1 else { throw MonitorError.config("worker did not answer within \(timeoutMs) ms") }
        let m = try FDPassing.receive(from: fd, maxPayload: 4096, maxFDs: 0)
        return try WorkerHello.decode(m.payload)
    }

    /// Closes the control socket: the worker sees end-of-file and exits.
    public func close() { control = nil }
}
