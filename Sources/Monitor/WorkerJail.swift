import Glibc
import Sandbox

/// The monitor's side of the worker jail (docs/security.md): it does not take a worker's word
/// that it is jailed or filtered, it reads /proc. Every failure is one line naming the worker
/// and everything that is wrong.
enum WorkerJail {
    /// Before any region goes to the worker: its namespaces differ from ours, it runs as the
    /// mapped ids with no capability in any set and no_new_privs set, as pid 1 of its own PID
    /// namespace.
    static func verify(pid: pid_t, ids: JailIDs, name: String) throws(MonitorError) {
        guard let status = ProcStatus.read(path: "/proc/\(pid)/status") else {
            throw .config("worker \(name) (pid \(pid)): cannot read its /proc status to check its jail")
        }
        var problems = JailCheck.problems(status: status, ids: ids)
        let links = JailCheck.namespaces.map { ns in
            (name: ns, monitor: readLink("/proc/self/ns/\(ns)"), worker: readLink("/proc/\(pid)/ns/\(ns)"))
        }
        problems += JailCheck.problems(namespaces: links)
        guard problems.isEmpty else {
            throw .config("worker \(name) (pid \(pid)) is not jailed: \(problems.joined(separator: "; "))")
        }
    }

    /// Once the worker says it is attached: every thread runs under a seccomp filter with
    /// no_new_privs. A worker (or thread) that is already gone — one made to die right after
    /// attaching, or a crash the supervisor has reaped — runs nothing unfiltered: it passes, and
    /// the supervisor reports how it ended. Anything still there must show the filter.
    static func verifyFiltered(pid: pid_t, name: String) throws(MonitorError) {
        guard let dir = opendir("/proc/\(pid)/task") else {
            if errno == ENOENT || errno == ESRCH { return }
            throw .config("worker \(name) (pid \(pid)): cannot list its threads to check its seccomp filter: "
                + String(cString: strerror(errno)))
        }
        var tids: [String] = []
        while let e = readdir(dir) {
            let t = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if t != "." && t != ".." { tids.append(t) }
        }
        closedir(dir)
        var problems: [String] = []
        for t in tids.sorted() {
            guard let s = ProcStatus.read(path: "/proc/\(pid)/task/\(t)/status") else {
                if access("/proc/\(pid)/task/\(t)", F_OK) != 0 { continue }  // exited meanwhile
                problems.append("thread \(t): status unreadable")
                continue
            }
            problems += JailCheck.filterProblems(status: s).map { "thread \(t): \($0)" }
        }
        guard problems.isEmpty else {
            throw .config("worker \(name) (pid \(pid)) is not filtered: \(problems.joined(separator: "; "))")
        }
    }

    /// The operator's `--no-jail`, said on the worker's stderr (where its own lines go) each time
    /// a worker starts.
    static func warnUnjailed(name: String, pid: pid_t, standardError: Int32?) {
        let line = "synthvm: WARNING: worker \(name) (pid \(pid)) runs WITHOUT its jail (--no-jail): it shares the monitor's "
            + "namespaces, user and capabilities; only its seccomp filter confines it. For debugging only.\n"
        _ = line.withCString { write(standardError ?? 2, $0, strlen($0)) }
    }

    static func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 256)
        let n = readlink(path, &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
