import CSynthVM
import Glibc

/// An eventfd used as a wake-up: the producer of a ring rings it, the consumer sleeps on it.
///
/// An eventfd rather than a pipe or futex because it is one fd, costs one 8-byte write, and
/// is exactly what KVM takes as an irqfd/ioeventfd: the same primitive carries worker wake-ups
/// and guest interrupts. Non-blocking and close-on-exec: a ring never blocks a producer, and
/// a spawned worker inherits only the fds it is handed on purpose.
///
/// Rings coalesce: the counter sums rings until drained, so one wake-up may stand for many.
/// The consumer's loop is: wait, drain, pop until `.empty`, wait again. Draining before
/// popping means a ring that arrives while popping is not lost (the next wait returns at
/// once).
public final class Doorbell: @unchecked Sendable {
    public let fd: OwnedFileDescriptor

    /// A new eventfd (EFD_CLOEXEC | EFD_NONBLOCK), counter 0.
    public init() throws(IPCError) {
        fd = OwnedFileDescriptor(adopting: Int32(try check("eventfd", Int(svm_eventfd_nonblocking()))))
    }

    /// Wraps an eventfd a peer handed us (e.g. received with `FDPassing.receive`).
    public init(adopting fd: OwnedFileDescriptor) {
        self.fd = fd
    }

    /// Adds 1 to the counter, waking a waiter. A counter already at its maximum (EAGAIN)
    /// means a wake-up is pending anyway, so that is not an error.
    public func ring() throws(IPCError) {
        var one: UInt64 = 1
        while true {
            let n = write(fd.rawValue, &one, 8)
            if n == 8 { return }
            let e = errno
            if n < 0 && e == EINTR { continue }
            if n < 0 && e == EAGAIN { return }
            throw .system(call: "write(eventfd)", errno: n < 0 ? e : EIO)
        }
    }

    /// Resets the counter and returns how many rings it held (0 if none).
    @discardableResult
    public func drain() throws(IPCError) -> UInt64 {
        var value: UInt64 = 0
        while true {
            let n = read(fd.rawValue, &value, 8)
            if n == 8 { return value }
            let e = errno
            if n < 0 && e == EINTR { continue }
            if n < 0 && e == EAGAIN { return 0 }
            throw .system(call: "read(eventfd)", errno: n < 0 ? e : EIO)
        }
    }

    /// Waits until the doorbell has been rung (without draining it) or `timeoutMs` passes;
    /// a negative timeout waits forever. Returns whether it was rung. Signals do not cut the
    /// wait short: it resumes with the time that remains.
    public func wait(timeoutMs: Int32) throws(IPCError) -> Bool {
        var pfd = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
        let deadline = timeoutMs >= 0 ? Self.nowMs() + Int64(timeoutMs) : Int64.max
        var remaining = timeoutMs
        while true {
            let r = poll(&pfd, 1, remaining)
            if r > 0 {
                if pfd.revents & Int16(POLLIN) != 0 { return true }
                throw .system(call: "poll(eventfd) revents 0x\(String(pfd.revents, radix: 16))", errno: EIO)
            }
            if r == 0 { return false }
            let e = errno
            guard e == EINTR else { throw .system(call: "poll(eventfd)", errno: e) }
            if timeoutMs >= 0 {
                let left = deadline - Self.nowMs()
                if left <= 0 { return false }
                remaining = Int32(left)
            }
        }
    }

    private static func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
