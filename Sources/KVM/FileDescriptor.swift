import Glibc

/// An owned file descriptor, closed exactly once when the owner goes away.
public final class FileDescriptor: @unchecked Sendable {
    public let rawValue: Int32

    public init(adopting fd: Int32) {
        precondition(fd >= 0, "adopting a negative fd")
        rawValue = fd
    }

    deinit {
        close(rawValue)
    }
}
