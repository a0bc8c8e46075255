import Glibc

/// An fd that IPC owns: closed exactly once, when the last reference goes away.
///
/// A class rather than a raw `Int32` because fds here travel: created by the supervisor,
/// passed over sockets, adopted by regions and doorbells. Reference counting makes "who
/// closes it" a non-question, and an fd that arrived but failed validation is closed simply
/// by dropping it. (The KVM target has its own `FileDescriptor`; IPC must not import KVM.)
public final class OwnedFileDescriptor: @unchecked Sendable {
    public let rawValue: Int32

    /// Takes ownership of `fd`, which must be open.
    public init(adopting fd: Int32) {
        precondition(fd >= 0, "adopting a negative fd")
        rawValue = fd
    }

    /// A new, independent descriptor for the same open file (close-on-exec).
    public func duplicate() throws(IPCError) -> OwnedFileDescriptor {
        let r = fcntl(rawValue, F_DUPFD_CLOEXEC, 0)
        if r < 0 { throw .system(call: "fcntl(F_DUPFD_CLOEXEC)", errno: errno) }
        return OwnedFileDescriptor(adopting: r)
    }

    deinit {
        close(rawValue)
    }
}
