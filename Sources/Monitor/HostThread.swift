import CSynthVM
import Glibc
import Sandbox

/// A joinable pthread for vCPUs and the monitor's other threads. The monitor stays off
/// Foundation, so no `Thread`.
public struct HostThread: Sendable {
    private let handle: pthread_t

    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    public static func spawn(_ body: @escaping @Sendable () -> Void) throws(MonitorError) -> HostThread {
        var tid = pthread_t()
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let r = pthread_create(&tid, nil, { ctx in
            let b = Unmanaged<Box>.fromOpaque(ctx!).takeRetainedValue()
            b.body()
            return nil
        }, box)
        if r != 0 {
            Unmanaged<Box>.fromOpaque(box).release()
            throw .config("pthread_create: \(String(cString: strerror(r)))")
        }
        return HostThread(handle: tid)
    }

    /// Spawns a thread that first installs `filter` on itself (and only on itself), then runs
    /// `body`. Returns once the filter is in place; if the kernel refused it, the thread ends
    /// without running `body` and this throws: a monitor thread never runs unfiltered. The name
    /// (at most 15 bytes, shown in /proc/<pid>/task/<tid>/comm and `top -H`) is given only after
    /// the filter is installed, from this thread, so a thread named `synthvm-*` is always filtered.
    public static func spawn(name: String, filter: ThreadFilter,
                             _ body: @escaping @Sendable () -> Void) throws(MonitorError) -> HostThread {
        let gate = StartGate()
        let thread = try spawn {
            // glibc gives a thread its malloc arena on its first malloc, and when there are
            // already 8 or more arenas it first counts the CPUs by opening
            // /sys/devices/system/cpu/online. Do that first malloc before the filter, which
            // refuses open: from then on this thread allocates from its own arena.
            free(malloc(64))
            let r = filter.installOnCurrentThread()
            gate.open(result: r, tid: svm_gettid())
            if r == 0 { body() }
        }
        let (r, tid) = gate.wait()
        if r != 0 {
            thread.join()
            throw .config("cannot install the seccomp filter \(filter.name) on thread \(name): "
                + String(cString: strerror(-r)))
        }
        setName(name, tid: tid)
        return thread
    }

    /// What pthread_setname_np does for another thread (it is not in Swift's Glibc module):
    /// write /proc/self/task/<tid>/comm. Best effort; the kernel truncates to 15 bytes.
    static func setName(_ name: String, tid: pid_t) {
        NameFile(tid: tid)?.write(name)
    }

    /// A thread's /proc/self/task/<tid>/comm, opened now and written later: a thread that names
    /// itself only once its filter is in (which refuses open) opens the file before.
    struct NameFile {
        private let fd: Int32

        init?(tid: pid_t) {
            fd = open("/proc/self/task/\(tid)/comm", O_WRONLY | O_CLOEXEC)
            if fd < 0 { return nil }
        }

        /// Writes the name and closes the file.
        func write(_ name: String) {
            _ = name.withCString { Glibc.write(fd, $0, min(strlen($0), 15)) }
            close(fd)
        }

        /// Closes the file; the thread keeps its name.
        func discard() { close(fd) }
    }

    public func join() {
        pthread_join(handle, nil)
    }

    /// A one-shot result handed from a new thread to its creator (a POSIX semaphore: sem_post is
    /// a futex wake, which every filter allows).
    private final class StartGate: @unchecked Sendable {
        private let sem = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
        private var result: Int32 = 0
        private var tid: pid_t = 0

        init() { sem_init(sem, 0, 0) }

        deinit {
            sem_destroy(sem)
            sem.deallocate()
        }

        func open(result r: Int32, tid t: pid_t) {
            result = r
            tid = t
            sem_post(sem)
        }

        /// The install result (0 or -errno) and the new thread's kernel tid.
        func wait() -> (Int32, pid_t) {
            while sem_wait(sem) != 0 && errno == EINTR {}
            return (result, tid)
        }
    }
}
