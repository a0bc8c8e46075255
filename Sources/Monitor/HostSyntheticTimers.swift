import CSynthVM
import Glibc
import Partition
import Sandbox
import Synchronization

/// Host timers for the synthetic timers: one deadline (in partition reference time) per VP and
/// one thread that sleeps until the earliest with ppoll (nanosecond timeout, no busy polling),
/// then asks the partition to service that VP's timers, which re-arm themselves as needed.
/// Expiries raise interrupts with KVM_SIGNAL_MSI from this thread, so a halted vCPU wakes
/// without a trip through its own exit loop.
final class HostSyntheticTimers: PartitionTimers, @unchecked Sendable {
    private let deadlines: Mutex<[UInt64?]>
    private let service: ServiceThread
    private weak var partition: Partition?

    init(vpCount: Int) throws(MonitorError) {
        service = try ServiceThread()
        deadlines = Mutex([UInt64?](repeating: nil, count: vpCount))
    }

    /// Called by the partition with a VP's lock held: only records the deadline and wakes the thread.
    func armTimer(vp: UInt32, atReferenceTime referenceTime: UInt64?) {
        deadlines.withLock { d in
            if Int(vp) < d.count { d[Int(vp)] = referenceTime }
        }
        service.wake()
    }

    /// Starts the timer thread, which installs `filter` (Policies/vmm.policy) on itself first.
    func start(partition: Partition, filter: ThreadFilter) throws(MonitorError) {
        self.partition = partition
        try service.start(name: "synthvm-stimer", filter: filter) { [self] in loop() }
    }

    func stop() { service.stop() }

    private func loop() {
        var fds = [pollfd(fd: service.wakeFD, events: Int16(POLLIN), revents: 0)]
        while !service.isStopping, let p = partition {
            let earliest = deadlines.withLock { d -> (Int, UInt64)? in
                d.enumerated().compactMap { i, t in t.map { (i, $0) } }.min { $0.1 < $1.1 }
            }
            var timeoutNs: Int64 = -1
            if let (vp, deadline) = earliest {
                let ns = p.nanosecondsUntil(referenceTime: deadline)
                if ns == 0 {
                    // Due: clear it (unless re-armed meanwhile) and let the partition fire and re-arm.
                    deadlines.withLock { d in if d[vp] == deadline { d[vp] = nil } }
                    p.serviceSyntheticTimers(vp: UInt32(vp))
                    continue
                }
                timeoutNs = Int64(min(ns, UInt64(Int64.max)))
            }
            fds[0].revents = 0
            _ = svm_poll_ns(&fds, 1, timeoutNs)
            if fds[0].revents != 0 { service.drain() }
        }
    }
}
