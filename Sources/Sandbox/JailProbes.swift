// Test-only (`--test-jail-probes`): what a jailed worker can reach, tried right after Jail.enter
// and before the seccomp filter, so the jail alone is shown to hold (modelled on Firecracker's
// jailer tests). Each probe is one attempt and one line of result; the test that set the
// targets up (it listens on them in the host's namespaces) checks the lines.
import CCap
import CSynthVM
import Glibc

public enum JailProbes {
    /// Things on the host side to reach for: the monitor's pid, a TCP port listening on the
    /// host's 127.0.0.1, and a listening abstract Unix socket name (no leading NUL).
    public struct Targets: Sendable, Equatable {
        public var monitorPID: Int32
        public var tcpPort: UInt16
        public var unixName: String

        public init(monitorPID: Int32, tcpPort: UInt16, unixName: String) {
            self.monitorPID = monitorPID
            self.tcpPort = tcpPort
            self.unixName = unixName
        }

        /// `PID:PORT:NAME`.
        public var argument: String { "\(monitorPID):\(tcpPort):\(unixName)" }

        public init(argument: String) throws(JailError) {
            let parts = argument.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, let pid = Int32(parts[0]), pid > 0, let port = UInt16(parts[1]), port > 0,
                  !parts[2].isEmpty, parts[2].utf8.count <= 100, !parts[2].utf8.contains(0) else {
                throw JailError("--test-jail-probes \(argument): expected PID:PORT:NAME")
            }
            self.init(monitorPID: pid, tcpPort: port, unixName: String(parts[2]))
        }
    }

    /// Runs every probe; returns (probe, result) pairs. A refused attempt reads
    /// `refused (ERRNO)`; anything that got through says what it got.
    public static func run(_ t: Targets, executable: String) -> [(probe: String, result: String)] {
        var out: [(String, String)] = []
        func attempt(_ name: String, _ r: Int32) {
            out.append((name, r < 0 ? "refused (\(errnoName(errno)))" : "ALLOWED"))
        }
        // Host files: by the path we were started from, and a file every host has.
        for path in [executable, "/etc/passwd"] {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            attempt("open \(path)", fd)
            if fd >= 0 { close(fd) }
        }
        out.append(("root directory", rootEntries()))
        attempt("mkdir /probe", mkdir("/probe", 0o700))
        // Host processes: the monitor by pid, a procfs to list them, or mounting one.
        attempt("kill(monitor pid \(t.monitorPID), 0)", kill(t.monitorPID, 0))
        out.append(("own pid", "\(getpid())"))
        let procFD = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        attempt("open /proc", procFD)
        if procFD >= 0 { close(procFD) }
        attempt("mount proc", mount("proc", "/", "proc", 0, nil))
        // The network: the interfaces there are, and the host's listeners.
        out.append(("network interfaces", interfaceNames()))
        out.append(("connect tcp 127.0.0.1:\(t.tcpPort)", connectTCP(port: t.tcpPort)))
        out.append(("connect unix @\(t.unixName)", connectAbstract(t.unixName)))
        // The way back to capabilities: a nested user namespace, or becoming root.
        let u = svm_unshare(svm_CLONE_NEWUSER)
        out.append(("unshare(CLONE_NEWUSER)", u < 0 ? "refused (\(errnoName(-u)))" : "ALLOWED"))
        attempt("setuid(0)", setuid(0))  // EINVAL: uid 0 does not exist in its user namespace
        out.append(("raise CAP_SYS_ADMIN", raiseCapability(CAP_SYS_ADMIN)))
        return out
    }

    /// Tries to put `cap` back into the permitted and effective sets.
    static func raiseCapability(_ cap: cap_value_t) -> String {
        guard let c = cap_get_proc() else { return "refused (\(errnoName(errno)))" }
        defer { cap_free(UnsafeMutableRawPointer(c)) }
        var v = [cap]
        guard cap_set_flag(c, CAP_PERMITTED, 1, &v, CAP_SET) == 0, cap_set_flag(c, CAP_EFFECTIVE, 1, &v, CAP_SET) == 0 else {
            return "refused (\(errnoName(errno)))"
        }
        return cap_set_proc(c) == 0 ? "ALLOWED" : "refused (\(errnoName(errno)))"
    }

    static func rootEntries() -> String {
        guard let d = opendir("/") else { return "refused (\(errnoName(errno)))" }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.isEmpty ? "empty" : names.sorted().joined(separator: " ")
    }

    static func interfaceNames() -> String {
        guard let list = if_nameindex() else { return "refused (\(errnoName(errno)))" }
        defer { if_freenameindex(list) }
        var names: [String] = []
        var i = 0
        while list[i].if_index != 0, let n = list[i].if_name {
            names.append(String(cString: n))
            i += 1
        }
        return names.sorted().joined(separator: " ")
    }

    public static func connectTCP(port: UInt16) -> String {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { return "refused (\(errnoName(errno)))" }
        defer { close(s) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let r = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return r < 0 ? "refused (\(errnoName(errno)))" : "ALLOWED"
    }

    public static func connectAbstract(_ name: String) -> String {
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { return "refused (\(errnoName(errno)))" }
        defer { close(s) }
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(name.utf8)
        withUnsafeMutableBytes(of: &a.sun_path) { p in
            p[0] = 0
            for (i, b) in bytes.enumerated() { p[i + 1] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
        let r = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, length) } }
        return r < 0 ? "refused (\(errnoName(errno)))" : "ALLOWED"
    }

    /// The symbolic name of the errnos a probe can meet.
    public static func errnoName(_ e: Int32) -> String {
        switch e {
        case EPERM: return "EPERM"
        case ENOENT: return "ENOENT"
        case ESRCH: return "ESRCH"
        case EACCES: return "EACCES"
        case EROFS: return "EROFS"
        case EINVAL: return "EINVAL"
        case ENOSPC: return "ENOSPC"
        case ENETUNREACH: return "ENETUNREACH"
        case ECONNREFUSED: return "ECONNREFUSED"
        case EAFNOSUPPORT: return "EAFNOSUPPORT"
        case EADDRNOTAVAIL: return "EADDRNOTAVAIL"
        default: return "errno \(e)"
        }
    }
}
