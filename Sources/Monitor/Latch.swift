import Glibc
import Synchronization

/// A gate that opens once, for good. The monitor thread holds its vCPU threads at one until its
/// own filter is in (so no KVM_RUN happens before every thread of the VM is filtered), and the
/// joiner opens one when every vCPU thread has returned, which the monitor thread checks between
/// kicks. Waiting is a mutex and a condition variable: futex calls only, which every filter allows.
final class Latch: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let opened = Atomic<Bool>(false)

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    /// Without waiting.
    var isOpen: Bool { opened.load(ordering: .acquiring) }

    func open() {
        pthread_mutex_lock(mutex)
        opened.store(true, ordering: .releasing)
        pthread_cond_broadcast(cond)
        pthread_mutex_unlock(mutex)
    }

    func wait() {
        pthread_mutex_lock(mutex)
        while !isOpen { pthread_cond_wait(cond, mutex) }
        pthread_mutex_unlock(mutex)
    }
}
