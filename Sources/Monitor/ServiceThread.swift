import CSynthVM
import Glibc
import Sandbox
import Synchronization

/// One of the monitor's service threads (the synthetic timers, the AutoEOI relay, the console
/// input): a filtered thread that sleeps in poll() with `wakeFD` among its descriptors, a stop
/// flag, and the way to end it: `stop()` sets the flag, wakes the thread and joins it. The owner's
/// loop polls `wakeFD`, drains it when readable, and returns once `isStopping`.
final class ServiceThread: @unchecked Sendable {
    /// The eventfd `wake()` and `stop()` write (non-blocking, close-on-exec).
    let wakeFD: Int32
    private let stopping = Atomic<Bool>(false)
    private var thread: HostThread?

    init() throws(MonitorError) {
        let fd = svm_eventfd_nonblocking()
        if fd < 0 { throw .config("eventfd: \(String(cString: strerror(-fd)))") }
        wakeFD = fd
    }

    deinit {
        stop()
        close(wakeFD)
    }

    /// Spawns the thread, which installs `filter` on itself before running `body`.
    func start(name: String, filter: ThreadFilter, _ body: @escaping @Sendable () -> Void) throws(MonitorError) {
        thread = try HostThread.spawn(name: name, filter: filter, body)
    }

    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    /// Makes the thread's poll() return (it looks at its state again).
    func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    /// Clears the wake-ups that arrived; call when poll() says `wakeFD` is readable.
    func drain() {
        var v: UInt64 = 0
        _ = Glibc.read(wakeFD, &v, 8)
    }

    /// Stops and joins the thread (once; later calls and calls before `start` do nothing more).
    func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        wake()
        thread?.join()
        thread = nil
    }
}
