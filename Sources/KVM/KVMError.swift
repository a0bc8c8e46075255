import Glibc

/// A failed system call or ioctl, named so an operator can look it up in the Linux/KVM docs.
public struct KVMError: Error, CustomStringConvertible, Equatable {
    public let call: String
    public let errno: Int32

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        "\(call) failed: \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Turns the shim's "result or -errno" convention into a throw.
@inline(__always)
func check(_ call: @autoclosure () -> String, _ result: Int) throws(KVMError) -> Int {
    if result < 0 { throw KVMError(call(), errno: Int32(-result)) }
    return result
}
