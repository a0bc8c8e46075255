import CSynthVM
import Glibc
import IPC

/// A joinable pthread (the IPC code stays off Foundation; so do its tests).
struct TestThread {
    private let handle: pthread_t

    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    static func spawn(_ body: @escaping @Sendable () -> Void) -> TestThread {
        var tid = pthread_t()
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let r = pthread_create(&tid, nil, { ctx in
            Unmanaged<Box>.fromOpaque(ctx!).takeRetainedValue().body()
            return nil
        }, box)
        precondition(r == 0, "pthread_create: \(r)")
        return TestThread(handle: tid)
    }

    func join() { pthread_join(handle, nil) }
}

/// A memfd that can take seals but has none yet.
func unsealedMemfd(size: Int) -> OwnedFileDescriptor {
    let fd = svm_memfd_create_sealable("ipc-test-unsealed")
    precondition(fd >= 0)
    precondition(ftruncate(fd, off_t(size)) == 0)
    return OwnedFileDescriptor(adopting: fd)
}

/// A pipe; (read end, write end), both close-on-exec, the read end non-blocking.
func makePipe() -> (OwnedFileDescriptor, OwnedFileDescriptor) {
    var p: [Int32] = [-1, -1]
    precondition(pipe(&p) == 0)  // (pipe2 needs _GNU_SOURCE, which Glibc's module lacks)
    for fd in p { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    _ = fcntl(p[0], F_SETFL, O_NONBLOCK)
    return (OwnedFileDescriptor(adopting: p[0]), OwnedFileDescriptor(adopting: p[1]))
}

/// Whether every write end of the pipe is closed (read sees EOF rather than EAGAIN). Used to
/// prove that fds which arrived in a rejected message were closed, without relying on fd
/// numbers (other tests run in parallel and reuse them).
func allWritersClosed(_ readEnd: OwnedFileDescriptor) -> Bool {
    var b: UInt8 = 0
    return read(readEnd.rawValue, &b, 1) == 0
}

func isCloseOnExec(_ fd: Int32) -> Bool {
    fcntl(fd, F_GETFD) & FD_CLOEXEC != 0
}

/// Deterministic pseudo-random numbers (xorshift64*), so a failing fuzz case can be replayed.
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}
