import CSynthVM
import Glibc

/// Who sent a message, as the kernel says (SO_PASSCRED / SCM_CREDENTIALS), with the pid, uid and
/// gid translated into the receiver's namespaces. A sender cannot claim another process's pid
/// without CAP_SYS_ADMIN over its own PID namespace, which a jailed worker has dropped by the
/// time it speaks. This is how the supervisor checks that the hello on a worker's control socket
/// came from the process it spawned, whatever pid the worker sees for itself in its own PID
/// namespace (a socketpair's SO_PEERCRED would only name the process that created the pair).
public struct PeerCredentials: Sendable, Equatable {
    public var pid: pid_t
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: pid_t, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    /// Turns credential passing on `socket` on or off. It must be on before the peer sends the
    /// message to be checked: the kernel attaches credentials at send time.
    public static func pass(_ on: Bool, on socket: Int32) throws(IPCError) {
        _ = try check("setsockopt(SO_PASSCRED)", Int(svm_set_passcred(socket, on ? 1 : 0)))
    }

    /// Receives one message (no fds) of at most `maxPayload` bytes with its sender's credentials.
    public static func receive(from socket: Int32, maxPayload: Int) throws(IPCError) -> (payload: [UInt8], sender: PeerCredentials) {
        guard maxPayload > 0 else { throw .invalidArgument("maxPayload must be positive") }
        var payload = [UInt8](repeating: 0, count: maxPayload)
        var pid: pid_t = 0
        var uid: UInt32 = 0, gid: UInt32 = 0
        let n = payload.withUnsafeMutableBytes { svm_recv_with_credentials(socket, $0.baseAddress, $0.count, &pid, &uid, &gid) }
        if n == -Int(EMSGSIZE) { throw .payloadTruncated }
        let received = try check("recvmsg(SCM_CREDENTIALS)", n)
        if received == 0 { throw .peerClosed }
        payload.removeLast(maxPayload - received)
        return (payload, PeerCredentials(pid: pid, uid: uid, gid: gid))
    }
}
