import Glibc

/// Why an IPC operation failed. System calls keep their errno so an operator can look them
/// up; everything else names the rule that was broken (a peer's fd without seals, a message
/// whose control data was cut short), because those point at a misbehaving peer, not at us.
public enum IPCError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed.
    case system(call: String, errno: Int32)
    /// An argument we were given cannot work (a zero size, a misaligned offset, ...).
    case invalidArgument(String)
    /// A peer's fd lacks F_SEAL_GROW|F_SEAL_SHRINK (or carries a write seal), so it could be
    /// resized under us or is not writable. `seals` is what F_GET_SEALS returned.
    case unsealedRegion(seals: Int32)
    /// A peer's fd is smaller than the region it is supposed to hold.
    case regionTooSmall(size: Int, required: Int)
    /// An access outside a region's bounds.
    case outOfBounds(offset: Int, count: Int, size: Int)
    /// A store through a region mapped read-only.
    case readOnlyRegion
    /// recvmsg set MSG_CTRUNC: the sender's fds did not fit; those that arrived were closed.
    case controlTruncated
    /// More fds arrived than the caller accepts; all of them were closed.
    case tooManyFDs(received: Int, limit: Int)
    /// recvmsg set MSG_TRUNC: the message was longer than the buffer; its fds were closed.
    case payloadTruncated
    /// The peer closed its end of the socket.
    case peerClosed
    /// A ring's shared header or indices are not what this side was told to expect.
    case ringCorrupted(RecordRing.Corruption)

    public var description: String {
        switch self {
        case .system(let call, let e):
            return "\(call) failed: \(String(cString: strerror(e))) (errno \(e))"
        case .invalidArgument(let what):
            return "invalid argument: \(what)"
        case .unsealedRegion(let seals):
            return "shared region refused: seals 0x\(String(seals, radix: 16)) lack F_SEAL_GROW|F_SEAL_SHRINK or carry a write seal"
        case .regionTooSmall(let size, let required):
            return "shared region refused: \(size) bytes, need \(required)"
        case .outOfBounds(let offset, let count, let size):
            return "access of \(count) bytes at offset \(offset) outside a \(size)-byte region"
        case .readOnlyRegion:
            return "store to a region mapped read-only"
        case .controlTruncated:
            return "received fds truncated (MSG_CTRUNC); the ones that arrived were closed"
        case .tooManyFDs(let received, let limit):
            return "received \(received) fds, accept at most \(limit); all closed"
        case .payloadTruncated:
            return "received message longer than the buffer (MSG_TRUNC); its fds were closed"
        case .peerClosed:
            return "peer closed the socket"
        case .ringCorrupted(let why):
            return "ring corrupted: \(why)"
        }
    }
}

/// Turns the shim's "result or -errno" convention into a throw.
@inline(__always)
func check(_ call: @autoclosure () -> String, _ result: Int) throws(IPCError) -> Int {
    if result < 0 { throw .system(call: call(), errno: Int32(-result)) }
    return result
}
