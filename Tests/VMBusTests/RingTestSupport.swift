import Atomics
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

/// An interrupt line the waiter polls instead of sleeping in the kernel, so both sides stay on
/// their CPUs and hit the window between "store my index" and "load the peer's" as often as
/// possible; a kernel semaphore's barriers and sleeps would hide a missing fence. `signal`
/// counts; `wait` takes one signal or times out.
final class SpinInterrupt: @unchecked Sendable {
    private let raised = ManagedAtomic<Int>(0)
    private var taken = 0

    func signal() { raised.wrappingIncrement(ordering: .releasing) }

    /// False on timeout.
    func wait(milliseconds: Int) -> Bool {
        var start = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        var spins = 0
        while raised.load(ordering: .acquiring) == taken {
            spins += 1
            if spins % 256 == 0 {
                sched_yield()
                var now = timespec()
                clock_gettime(CLOCK_MONOTONIC, &now)
                if (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1_000_000 > milliseconds { return false }
            }
        }
        taken += 1
        return true
    }
}
