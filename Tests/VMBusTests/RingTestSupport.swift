import Glibc
@testable import VMBus

/// A joinable pthread (the VMBus code stays off Foundation; so do its tests).
struct TestThread {
    private let handle: pthread_t

    static func spawn(_ body: @escaping @Sendable () -> Void) -> TestThread {
        final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
        var tid = pthread_t()
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let r = pthread_create(&tid, nil, { ctx in
            let b = Unmanaged<Box>.fromOpaque(ctx!).takeRetainedValue()
            b.body()
            return nil
        }, box)
        precondition(r == 0, "pthread_create: \(r)")
        return TestThread(handle: tid)
    }

    func join() { pthread_join(handle, nil) }
}

/// A counting semaphore standing in for an interrupt line: `signal` is the peer's interrupt,
/// `wait` sleeps for it with a timeout.
final class Interrupt: @unchecked Sendable {
    private var sem = sem_t()
    init() { sem_init(&sem, 0, 0) }
    deinit { sem_destroy(&sem) }
    func signal() { sem_post(&sem) }
    /// False on timeout.
    func wait(milliseconds: Int) -> Bool {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let ns = Int(ts.tv_nsec) + (milliseconds % 1000) * 1_000_000
        ts.tv_sec += milliseconds / 1000 + ns / 1_000_000_000
        ts.tv_nsec = ns % 1_000_000_000
        while sem_timedwait(&sem, &ts) != 0 {
            if errno == ETIMEDOUT { return false }
        }
        return true
    }
}

/// Raw little-endian access to ring memory, for the tests that play a hostile guest.
extension VMBusRingMemory {
    func controlU32(_ offset: Int) -> UInt32 { control.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    func setControlU32(_ offset: Int, _ v: UInt32) { control.storeBytes(of: v, toByteOffset: offset, as: UInt32.self) }
    func poke(_ offset: Int, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { copyIn(to: offset, from: $0.baseAddress, count: $0.count) }
    }
    func peek(_ offset: Int, _ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { copyOut(from: offset, count: count, into: $0.baseAddress!) }
        return out
    }
}

extension VMBusRingBytes {
    /// A copy, for assertions.
    var array: [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { _ = copyBytes(to: $0) }
        return out
    }
}
