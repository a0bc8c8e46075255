import CSynthVM
import Glibc

/// Passing fds (and a small payload with them) over a Unix socket with SCM_RIGHTS.
///
/// This is how a worker gets everything it may touch: the supervisor sends it the memfds,
/// eventfds and sockets it needs and nothing else exists in its fd table. The receiving side
/// is strict, because the sender may be the untrusted one: fds arrive close-on-exec
/// (MSG_CMSG_CLOEXEC, so none leaks into a later exec), and a message whose fds did not fit
/// (MSG_CTRUNC), that brought more fds than asked for, or whose payload was cut
/// (MSG_TRUNC) is an error with every fd it brought already closed: a bad message can
/// neither leak nor exhaust our fd table.
///
/// Use SOCK_SEQPACKET sockets (`socketPair()`): they keep message boundaries, so a payload
/// and its fds arrive together or not at all, and truncation is visible.
public enum FDPassing {
    /// The kernel's limit on fds in one message (SCM_MAX_FD).
    public static let maxFDsPerMessage = Int(SVM_MAX_PASSED_FDS)

    /// A received message: its payload bytes and the fds that came with it, now ours.
    public struct Message: Sendable {
        public let payload: [UInt8]
        public let fds: [OwnedFileDescriptor]
    }

    /// A connected pair of AF_UNIX SOCK_SEQPACKET sockets, both close-on-exec.
    public static func socketPair() throws(IPCError) -> (OwnedFileDescriptor, OwnedFileDescriptor) {
        var sv: [Int32] = [-1, -1]
        _ = try check("socketpair(AF_UNIX, SOCK_SEQPACKET)", Int(svm_socketpair_seqpacket(&sv)))
        return (OwnedFileDescriptor(adopting: sv[0]), OwnedFileDescriptor(adopting: sv[1]))
    }

    /// Sends `payload` (at least one byte: a message carries its fds only with data) and
    /// `fds` (borrowed: they stay open here; the receiver gets its own copies) as one message.
    public static func send(_ payload: UnsafeRawBufferPointer, fds: [Int32] = [], over socket: Int32) throws(IPCError) {
        guard payload.count > 0 else { throw .invalidArgument("an fd-passing message needs at least one payload byte") }
        guard fds.count <= maxFDsPerMessage else {
            throw .invalidArgument("\(fds.count) fds in one message; the kernel takes at most \(maxFDsPerMessage)")
        }
        let n = fds.withUnsafeBufferPointer { f in
            svm_send_with_fds(socket, payload.baseAddress, payload.count, f.baseAddress, Int32(f.count))
        }
        let sent = try check("sendmsg(SCM_RIGHTS)", n)
        guard sent == payload.count else { throw .system(call: "sendmsg: short send (\(sent) of \(payload.count))", errno: EMSGSIZE) }
    }

    public static func send(_ payload: [UInt8], fds: [Int32] = [], over socket: Int32) throws(IPCError) {
        try payload.withUnsafeBytes { p in Result { () throws(IPCError) in try send(p, fds: fds, over: socket) } }.get()
    }

    /// Receives one message of at most `maxPayload` bytes carrying at most `maxFDs` fds.
    /// Blocks unless the socket is non-blocking (then EAGAIN is a `.system` error).
    public static func receive(from socket: Int32, maxPayload: Int, maxFDs: Int) throws(IPCError) -> Message {
        guard maxPayload > 0 else { throw .invalidArgument("maxPayload must be positive") }
        guard maxFDs >= 0, maxFDs <= maxFDsPerMessage else {
            throw .invalidArgument("maxFDs \(maxFDs) outside 0...\(maxFDsPerMessage)")
        }
        var payload = [UInt8](repeating: 0, count: maxPayload)
        var raw = [Int32](repeating: -1, count: max(maxFDs, 1))
        var count: Int32 = 0
        var flags: Int32 = 0
        let n = payload.withUnsafeMutableBytes { p in
            raw.withUnsafeMutableBufferPointer { f in
                svm_recv_with_fds(socket, p.baseAddress, p.count, f.baseAddress, Int32(maxFDs), &count, &flags)
            }
        }
        let received = try check("recvmsg", n)
        // Take ownership at once, so every early exit below closes what arrived.
        let fds = raw.prefix(min(Int(count), maxFDs)).map { OwnedFileDescriptor(adopting: $0) }
        if flags & svm_MSG_CTRUNC != 0 { throw .controlTruncated }
        if Int(count) > maxFDs { throw .tooManyFDs(received: Int(count), limit: maxFDs) }
        if flags & svm_MSG_TRUNC != 0 { throw .payloadTruncated }
        if received == 0 && fds.isEmpty { throw .peerClosed }
        payload.removeLast(maxPayload - received)
        return Message(payload: payload, fds: fds)
    }
}
