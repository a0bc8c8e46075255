import CSynthVM
import Glibc
import IPC
import Sandbox

/// The VM process's side of `synthvm-spawner` (Sources/synthvm-spawner/main.c, docs/faults.md):
/// started at VM creation, while the VM process can still clone and exec, with everything a
/// worker's start needs on its command line (executable, arguments with the jail's limits, jail
/// ids) and its filter (Policies/spawner.policy) as the first message. Later, from the filtered
/// supervisor thread, `respawn` asks it for a new worker of a kind and gets back the worker's
/// pidfd, the supervisor's end of a new control socket and the read end of a new output pipe.
/// The supervisor thread needs only `write`, `poll` and `recvmsg` for that: it never clones,
/// execs or opens anything.
public final class SpawnerLink: @unchecked Sendable {
    /// One worker kind as the first start made it.
    public struct Kind: Sendable {
        public var name: String
        public var executable: String
        /// After argv[0] (the executable).
        public var arguments: [String]
        /// nil: `--no-jail`.
        public var jail: JailIDs?
    }

    /// What a respawn hands back: the worker (adopted by this process: its pidfd) and our ends.
    public struct Spawned {
        public var process: WorkerProcess
        public var control: OwnedFileDescriptor
        public var output: OwnedFileDescriptor
    }

    public static let executableName = "spawner"
    static let magic: UInt32 = 0x5356_5350
    /// `struct spawner_reply`: magic, result, pid, 244 bytes of message.
    static let replySize = 256

    public let process: WorkerProcess
    private var socketFD: OwnedFileDescriptor?
    private var socket: OwnedFileDescriptor { socketFD! }
    public let kinds: [Kind]

    /// Starts the spawner under `supervisor` (which relays its stderr and reports its death;
    /// it is not restarted) and waits until it runs under `filter`.
    public init(supervisor: Supervisor, kinds: [Kind], filter: SeccompProgram, standardError: Int32? = nil,
                timeoutMs: Int32 = 5000) throws(MonitorError) {
        self.kinds = kinds
        var argv = [String(kinds.count)]
        for (i, k) in kinds.enumerated() {
            let ids = k.jail
            argv += [String(i), ids == nil ? "0" : "1", String(ids?.uid ?? 0), String(ids?.gid ?? 0),
                     String(ids?.hostUID ?? 0), String(ids?.hostGID ?? 0), ids?.denySetgroups == true ? "1" : "0",
                     k.executable, String(1 + k.arguments.count), k.executable] + k.arguments
        }
        let ours: OwnedFileDescriptor
        var theirs: OwnedFileDescriptor?
        do { (ours, theirs) = try FDPassing.socketPair() } catch { throw .config("spawner: \(error)") }
        process = try supervisor.spawn(name: Self.executableName, executable: WorkerProcess.executablePath(for: Self.executableName),
                                       arguments: argv, fds: [theirs?.rawValue ?? -1], standardError: standardError)
        theirs = nil
        socketFD = ours
        do {
            try FDPassing.send(filter.instructions, over: ours.rawValue)
            var p = pollfd(fd: ours.rawValue, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, timeoutMs) == 1 else { throw MonitorError.config("the spawner did not answer within \(timeoutMs) ms") }
            let m = try FDPassing.receive(from: ours.rawValue, maxPayload: 64, maxFDs: 0)
            guard m.payload == Array("ready\0".utf8) else {
                throw MonitorError.config("the spawner did not install its seccomp filter (its output, relayed above, says why)")
            }
        } catch let e as MonitorError {
            WorkerLink.abandon(process, supervisor: supervisor)
            throw e
        } catch {
            WorkerLink.abandon(process, supervisor: supervisor)
            throw .config("spawner: \(error)")
        }
    }

    /// Asks for a new worker of kind `index` (on the supervisor thread, filtered): waits at most
    /// `timeoutMs` for the answer.
    public func respawn(kind index: Int, timeoutMs: Int32 = 5000) throws(MonitorError) -> Spawned {
        let name = index < kinds.count ? kinds[index].name : "#\(index)"
        guard socketFD != nil else { throw .config("the spawner is closed") }
        var request: [UInt8] = []
        withUnsafeBytes(of: Self.magic.littleEndian) { request += $0 }
        withUnsafeBytes(of: UInt32(index).littleEndian) { request += $0 }
        // A SEQPACKET write is one message (`write` is in vmm.policy; the request has no fds).
        guard request.withUnsafeBytes({ Glibc.write(socket.rawValue, $0.baseAddress, $0.count) }) == request.count else {
            throw .config("cannot ask the spawner for worker \(name): \(String(cString: strerror(errno)))")
        }
        var p = pollfd(fd: socket.rawValue, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMs) == 1 else { throw .config("the spawner did not answer within \(timeoutMs) ms") }
        let m: FDPassing.Message
        do { m = try FDPassing.receive(from: socket.rawValue, maxPayload: Self.replySize, maxFDs: 3) } catch {
            throw .config("the spawner's answer for worker \(name): \(error)")
        }
        guard m.payload.count == Self.replySize else { throw .config("the spawner's answer has \(m.payload.count) bytes") }
        func i32(_ o: Int) -> Int32 { m.payload[o..<(o + 4)].enumerated().reduce(0) { $0 | Int32($1.element) << (8 * $1.offset) } }
        guard UInt32(bitPattern: i32(0)) == Self.magic else { throw .config("the spawner's answer has a bad magic") }
        let result = i32(4), pid = i32(8)
        let message = String(decoding: m.payload[12...].prefix { $0 != 0 }, as: UTF8.self)
        var fds = m.fds
        if result != 0 {
            // A worker that was made and killed is ours to reap (its pidfd came along).
            if pid > 0, let fd = fds.first {
                let dead = WorkerProcess(name: name, adopting: pid, pidfd: fd)
                _ = dead.reap()
            }
            throw .config("the spawner could not start worker \(name): \(message) (\(String(cString: strerror(-result))))")
        }
        guard pid > 0, fds.count == 3 else { throw .config("the spawner's answer came with \(fds.count) fds") }
        let pidfd = fds.removeFirst()
        let process = WorkerProcess(name: name, adopting: pid, pidfd: pidfd)
        return Spawned(process: process, control: fds.removeFirst(), output: fds.removeFirst())
    }

    /// Closes the socket: the spawner exits.
    public func close() { socketFD = nil }
}
