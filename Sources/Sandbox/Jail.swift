// The worker's half of the jail (docs/security.md). The monitor has already cloned the worker
// into new user, PID, mount, network, IPC and UTS namespaces, mapped its unprivileged uid/gid,
// closed every fd it was not handed, armed PR_SET_PDEATHSIG, and exec'd it with three ambient
// capabilities of its own user namespace (csynthvm_jail.h). The worker calls `Jail.enter` first
// thing, once its libraries are loaded and before it maps a region or reads a byte the guest
// wrote; it installs its seccomp filter afterwards, so the jail needs no system call the filter
// would have to allow.
import CSynthVM
import Glibc

public enum Jail {
    /// Enters the rest of the jail, in this order:
    /// 1. `max_user_namespaces` = 0 in its user namespace (CAP_SYS_RESOURCE): no nested user
    ///    namespace, where it would hold a full capability set again;
    /// 2. every mount private, then pivot_root into an empty read-only tmpfs with the old root
    ///    detached (CAP_SYS_ADMIN): no host file is reachable by any path;
    /// 3. the rlimits (`limits`, plus RLIMIT_CORE 0; RLIMIT_FSIZE `limits.fileSize`, 0 but for the
    ///    storage worker, whose images it writes within their size), soft and hard;
    ///    SIGXFSZ ignored, so a write to a regular file (an operator's `2>log`) fails with
    ///    EFBIG instead of killing the worker;
    /// 4. locked securebits and every capability dropped from every set (CAP_SETPCAP, last);
    /// 5. PR_SET_NO_NEW_PRIVS.
    /// Then it checks the result (no capability left, no_new_privs set). Any failure throws:
    /// the caller exits, and the monitor fails the VM rather than run it unjailed.
    public static func enter(_ limits: JailLimits) throws(JailError) {
        try forbidNestedUserNamespaces()
        var step: UnsafePointer<CChar>?
        let r = svm_jail_pivot_to_empty_root(&step)
        if r < 0 { throw JailError("\(step.map { String(cString: $0) } ?? "pivot_root"): \(String(cString: strerror(-r)))") }
        try setLimit(Int32(RLIMIT_NOFILE.rawValue), "RLIMIT_NOFILE", limits.openFiles)
        try setLimit(svm_RLIMIT_NPROC, "RLIMIT_NPROC", limits.processes)
        try setLimit(Int32(RLIMIT_CORE.rawValue), "RLIMIT_CORE", 0)
        try setLimit(Int32(RLIMIT_FSIZE.rawValue), "RLIMIT_FSIZE", limits.fileSize)
        if let a = limits.addressSpace { try setLimit(Int32(RLIMIT_AS.rawValue), "RLIMIT_AS", a) }
        _ = signal(SIGXFSZ, SIG_IGN)
        try Capabilities.dropAll()
        let nnp = svm_set_no_new_privs()
        if nnp < 0 { throw JailError("PR_SET_NO_NEW_PRIVS: \(String(cString: strerror(-nnp)))") }
        let left = Capabilities.remaining()
        guard left.isEmpty else { throw JailError("capabilities left after dropping them all: \(left.joined(separator: ", "))") }
        guard svm_get_no_new_privs() == 1 else { throw JailError("no_new_privs did not stick") }
    }

    /// The user-namespace limit of the worker's own namespace, through the host's /proc that is
    /// still mounted (the value written applies to the writer's user namespace).
    static func forbidNestedUserNamespaces() throws(JailError) {
        let path = "/proc/sys/user/max_user_namespaces"
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        if fd < 0 { throw JailError("open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        if write(fd, "0", 1) != 1 { throw JailError("write 0 to \(path): \(String(cString: strerror(errno)))") }
    }

    static func setLimit(_ resource: Int32, _ name: String, _ value: UInt64) throws(JailError) {
        let r = svm_setrlimit(resource, value)
        if r < 0 { throw JailError("setrlimit(\(name), \(value)): \(String(cString: strerror(-r)))") }
    }
}

extension Jail {
    /// Whether the peer of a connected socket has gone (POLLHUP without waiting): how a worker
    /// learns the monitor died before its parent-death signal was armed.
    public static func peerHasClosed(_ socket: Int32) -> Bool {
        var p = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) == 1 && p.revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0
    }
}
