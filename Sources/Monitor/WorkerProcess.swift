import CSynthVM
import Glibc
import IPC
import Sandbox

/// How a worker process ended, as the supervisor reports it.
public enum WorkerExit: Sendable, Equatable, CustomStringConvertible {
    case exited(status: Int32)
    case killed(signal: Int32, coreDumped: Bool)
    /// An allocation failed under its RLIMIT_AS: its reporter exited with
    /// `MemoryBudget.exitStatus` (docs/security.md, "Memory budget").
    case memoryBudgetExceeded

    public var description: String {
        switch self {
        case let .exited(s): return "exited with status \(s)"
        case .memoryBudgetExceeded: return "exceeded its memory budget"
        case let .killed(sig, core):
            return "killed by signal \(sig) (\(WorkerExit.signalName(sig)))" + (core ? ", core dumped" : "")
        }
    }

    static func signalName(_ s: Int32) -> String {
        switch s {
        case SIGKILL: return "SIGKILL"
        case SIGSEGV: return "SIGSEGV"
        case SIGABRT: return "SIGABRT"
        case SIGSYS: return "SIGSYS"
        case SIGTERM: return "SIGTERM"
        case SIGBUS: return "SIGBUS"
        case SIGILL: return "SIGILL"
        case SIGTRAP: return "SIGTRAP"
        case SIGFPE: return "SIGFPE"
        case SIGINT: return "SIGINT"
        case SIGHUP: return "SIGHUP"
        case SIGPIPE: return "SIGPIPE"
        default: return "signal \(s)"
        }
    }
}

/// One spawned worker: its pid and a pidfd (so the supervisor can poll for its death and
/// signal it without pid-reuse races). The worker gets exactly the fds it was handed, as
/// 3, 4, ..., and nothing else.
public final class WorkerProcess: @unchecked Sendable {
    public let name: String
    public let pid: pid_t
    public let pidfd: Int32

    /// Spawns `executable` with the given fds as 3, 4, ... (every other fd is closed in the child).
    /// `standardError`, if given, becomes the worker's fd 1 and fd 2 (the supervisor passes the
    /// write end of the output pipe it relays); nil leaves it the monitor's stdout and stderr.
    /// `jail`: clone it into new namespaces as those ids (`svm_spawn_worker_jailed`); nil spawns
    /// it in the monitor's namespaces as the monitor's user (`--no-jail`).
    public init(name: String, executable: String, arguments: [String] = [], fds: [Int32],
                standardError: Int32? = nil, jail: JailIDs? = nil) throws(MonitorError) {
        self.name = name
        var argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) }
        argv.append(nil)
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        if let ids = jail {
            var c = svm_jail_ids(uid: ids.uid, gid: ids.gid, host_uid: ids.hostUID, host_gid: ids.hostGID,
                                 deny_setgroups: ids.denySetgroups ? 1 : 0)
            var message = [CChar](repeating: 0, count: 512)
            let r = fds.withUnsafeBufferPointer { f in
                svm_spawn_worker_jailed(executable, argv, f.baseAddress, Int32(f.count), standardError ?? -1, &c,
                                        &child, &message, message.count)
            }
            if r < 0 {
                let why = String(decoding: message.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                // An exec refused for permissions is the host id's: it must reach the executable.
                let hint = r == -EACCES && why.contains("execve")
                    ? " (host uid \(ids.hostUID) must be able to read and search the executable, its directories and libraries)" : ""
                throw .config("cannot start worker \(name) (\(executable)) in its jail (uid \(ids.uid) -> host \(ids.hostUID), "
                    + "gid \(ids.gid) -> host \(ids.hostGID)): \(why)\(hint)")
            }
        } else {
            let r = fds.withUnsafeBufferPointer { f in
                svm_spawn_worker(executable, argv, f.baseAddress, Int32(f.count), standardError ?? -1, &child)
            }
            if r < 0 { throw .config("cannot start worker \(name) (\(executable)): \(String(cString: strerror(-r)))") }
        }
        pid = child
        pidfdOwner = nil
        let p = svm_pidfd_open(child, 0)
        if p < 0 {
            kill(child, SIGKILL)
            throw .config("pidfd_open(worker \(name)): \(String(cString: strerror(-p)))")
        }
        pidfd = p
    }

    /// A worker the spawner started (a child of this process: CLONE_PARENT), by its pid and the
    /// pidfd the spawner sent, which this object now owns.
    init(name: String, adopting pid: pid_t, pidfd: OwnedFileDescriptor) {
        self.name = name
        self.pid = pid
        self.pidfd = pidfd.rawValue
        pidfdOwner = pidfd
    }

    /// Set when the pidfd came from the spawner (it closes it).
    private let pidfdOwner: OwnedFileDescriptor?

    deinit { if pidfdOwner == nil { close(pidfd) } }

    /// Sends a signal through the pidfd (never to a recycled pid).
    public func signal(_ sig: Int32) {
        _ = svm_pidfd_send_signal(pidfd, sig)
    }

    /// Reaps the worker once its pidfd is readable.
    func reap() -> WorkerExit? {
        var code: Int32 = 0, status: Int32 = 0
        guard svm_pidfd_reap(pidfd, &code, &status) == 0 else { return nil }
        switch code {
        case Int32(CLD_EXITED): return status == MemoryBudget.exitStatus ? .memoryBudgetExceeded : .exited(status: status)
        case Int32(CLD_DUMPED): return .killed(signal: status, coreDumped: true)
        default: return .killed(signal: status, coreDumped: false)
        }
    }

    /// Where worker executables live: next to the running binary (`synthvm`, or the test bundle).
    public static func executablePath(for name: String) -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        let me = n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        let dir = me.lastIndex(of: "/").map { String(me[..<$0]) } ?? "."
        return dir + "/synthvm-" + name
    }
}
