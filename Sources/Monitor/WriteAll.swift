import Glibc

/// Writes all of `bytes` to `fd`, continuing after short writes and EINTR. False on an error or a
/// zero-length write (errno says which): the console, the worker-output relay and the launcher's
/// crash report each decide themselves what a failed write means.
@discardableResult
public func writeAll(_ bytes: UnsafeRawBufferPointer, fd: Int32) -> Bool {
    var done = 0
    while done < bytes.count {
        let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return false }
        done += n
    }
    return true
}

/// `writeAll` for a byte array.
@discardableResult
public func writeAll(_ bytes: [UInt8], fd: Int32) -> Bool {
    bytes.withUnsafeBytes { writeAll($0, fd: fd) }
}
