import Glibc
import Storage

/// The storage worker's I/O threads (docs/storage.md, "The I/O model"): a fixed pool that takes
/// validated operations from the ring thread and performs them on the disk's backend, data
/// straight between the fd and the guest's mapped pages (preadv/pwritev over the request's
/// iovecs); results go back on a list the ring thread drains, and `wake` (the worker's own
/// doorbell: an eventfd write) is called when that list goes from empty to not empty.
///
/// The threads are created by `start()`, which returns once each has run its first malloc (its
/// glibc arena: the arena set-up may open /sys files, which the filter refuses). The worker calls
/// it before installing its seccomp filter with TSYNC, so every I/O thread runs under the same
/// filter as the ring thread and the policy needs no clone at all. They use futex (the mutex and
/// condition), preadv/pwritev/fdatasync/fallocate (the backend) and write (the wake).
public final class StorageIOPool: @unchecked Sendable {
    public struct Job {
        public var tag: Int
        public var io: SCSIDisk.IO
        public var backend: any DiskBackend
        public var buffer: SCSIDataBuffer
    }

    public struct Done: Sendable {
        public var tag: Int
        public var result: SCSIDisk.IOResult
    }

    let threadCount: Int
    let wake: @Sendable () -> Void
    let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    let work = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    let idle = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    var queue: [Job] = []
    var queueHead = 0
    var done: [Done] = []
    var running = 0
    var stopping = false
    var threads: [pthread_t] = []

    static let stackSize = 512 << 10

    public init(threads: Int, wake: @escaping @Sendable () -> Void) {
        threadCount = threads
        self.wake = wake
        pthread_mutex_init(lock, nil)
        pthread_cond_init(work, nil)
        pthread_cond_init(idle, nil)
        queue.reserveCapacity(512)
        done.reserveCapacity(512)
    }

    deinit {
        stop()
        pthread_mutex_destroy(lock)
        pthread_cond_destroy(work)
        pthread_cond_destroy(idle)
        lock.deallocate()
        work.deallocate()
        idle.deallocate()
    }

    private final class Box {
        let pool: StorageIOPool
        init(_ pool: StorageIOPool) { self.pool = pool }
    }

    /// Creates the threads and waits until each is ready. False when one could not be created
    /// (the ones that were are stopped again).
    public func start() -> Bool {
        var ready = 0
        // Small stacks: the jail's RLIMIT_AS counts each thread's reservation (8 MiB by default);
        // the I/O path is shallow (SCSIDiskExecutor.perform into the backend).
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setstacksize(&attr, Self.stackSize)
        for _ in 0..<threadCount {
            var tid = pthread_t()
            let box = Unmanaged.passRetained(Box(self)).toOpaque()
            let r = pthread_create(&tid, &attr, { ctx in
                let pool = Unmanaged<Box>.fromOpaque(ctx!).takeRetainedValue().pool
                free(malloc(64))
                pool.loop()
                return nil
            }, box)
            if r != 0 {
                Unmanaged<Box>.fromOpaque(box).release()
                stop()
                return false
            }
            threads.append(tid)
        }
        // Wait for every thread to reach its loop (its first malloc done).
        pthread_mutex_lock(lock)
        while running < threadCount { pthread_cond_wait(idle, lock) }
        ready = running
        pthread_mutex_unlock(lock)
        return ready == threadCount
    }

    /// Hands jobs to the threads (one lock, one wake-up per job up to the thread count).
    public func submit(_ jobs: [Job]) {
        pthread_mutex_lock(lock)
        queue.append(contentsOf: jobs)
        if jobs.count == 1 { pthread_cond_signal(work) } else { pthread_cond_broadcast(work) }
        pthread_mutex_unlock(lock)
    }

    /// Takes the finished jobs (any order).
    public func takeDone(into out: inout [Done]) {
        pthread_mutex_lock(lock)
        out.append(contentsOf: done)
        done.removeAll(keepingCapacity: true)
        pthread_mutex_unlock(lock)
    }

    /// Blocks until at least one job finished (or none is queued or running); for a close that
    /// must wait for its channel's I/O.
    public func waitForDone() {
        pthread_mutex_lock(lock)
        while done.isEmpty && (queue.count > queueHead || busy > 0) { pthread_cond_wait(idle, lock) }
        pthread_mutex_unlock(lock)
    }

    var busy = 0

    /// Lets the queued and running jobs finish, then ends the threads (their results are dropped).
    public func stop() {
        pthread_mutex_lock(lock)
        stopping = true
        pthread_cond_broadcast(work)
        pthread_mutex_unlock(lock)
        for t in threads { pthread_join(t, nil) }
        threads = []
    }

    func loop() {
        pthread_mutex_lock(lock)
        running += 1
        pthread_cond_broadcast(idle)
        while true {
            while queueHead == queue.count && !stopping { pthread_cond_wait(work, lock) }
            if queueHead == queue.count { break }
            let job = queue[queueHead]
            queueHead += 1
            if queueHead == queue.count {
                queue.removeAll(keepingCapacity: true)
                queueHead = 0
            }
            busy += 1
            pthread_mutex_unlock(lock)
            let result = SCSIDiskExecutor.perform(job.io, backend: job.backend, buffer: job.buffer)
            pthread_mutex_lock(lock)
            busy -= 1
            let wasEmpty = done.isEmpty
            done.append(Done(tag: job.tag, result: result))
            pthread_cond_broadcast(idle)
            if wasEmpty && !stopping {
                pthread_mutex_unlock(lock)
                wake()
                pthread_mutex_lock(lock)
            }
        }
        running -= 1
        pthread_mutex_unlock(lock)
    }
}
