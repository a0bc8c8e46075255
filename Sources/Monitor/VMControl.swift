import CSynthVM
import Glibc
import KVM
import Synchronization

/// Shared run state: the first stop request wins; vCPU threads register so the supervisor can
/// kick them; and the halt detector's per-vCPU reports.
///
/// Halt detection: with the in-kernel LAPIC a HLT never exits to user space, so the supervisor
/// kicks every vCPU once per poll round and each reports whether it is parked for good (HLT with
/// IF=0, or an AP still waiting for INIT/SIPI). The VM stops when every vCPU reported parked in
/// two consecutive rounds; two rounds close the window where one vCPU wakes another (NMI, INIT)
/// between their reports.
public final class VMControl: Sendable {
    private let reason = Mutex<StopReason?>(nil)
    private let stoppingFlag = Atomic<Bool>(false)
    /// An eventfd the supervisor polls, so a stop request wakes it at once.
    let wakeFD: Int32

    struct Report {
        var thread: UInt?
        var lastRound = -1
        var parkedSince = Int.max
    }

    private let reports: Mutex<[Report]>
    private let round = Atomic<Int>(0)

    init(vcpuCount: Int) throws(MonitorError) {
        let fd = svm_eventfd_nonblocking()
        if fd < 0 { throw .config("eventfd: \(String(cString: strerror(-fd)))") }
        wakeFD = fd
        reports = Mutex([Report](repeating: Report(), count: vcpuCount))
    }

    deinit {
        close(wakeFD)
    }

    public var isStopping: Bool { stoppingFlag.load(ordering: .acquiring) }

    public var stopReason: StopReason? { reason.withLock { $0 } }

    /// Records the first reason; later requests are ignored. Wakes the supervisor. True if
    /// this request was the first.
    @discardableResult
    public func requestStop(_ r: StopReason) -> Bool {
        let first = reason.withLock { cur -> Bool in
            if cur != nil { return false }
            cur = r
            return true
        }
        if first {
            stoppingFlag.store(true, ordering: .releasing)
            var one: UInt64 = 1
            _ = Glibc.write(wakeFD, &one, 8)
        }
        return first
    }

    /// The graceful path of the control socket's `shutdown` (docs/api.md): asks the guest to shut
    /// itself down. Returns false when there is no way to ask, and the caller stops the VM hard.
    /// Today nothing is installed, so it always returns false; the VMBus shutdown integration
    /// service plugs in here (`setGracefulShutdownHandler`) and returns true once it has sent
    /// the guest its shutdown request.
    public func requestGracefulShutdown() -> Bool {
        gracefulShutdown.withLock { $0 }?() ?? false
    }

    /// Installs (or, with nil, removes) what `requestGracefulShutdown` calls. The handler runs on
    /// the control socket's thread (synthvm-api, under monitor.policy) and must not block.
    public func setGracefulShutdownHandler(_ handler: (@Sendable () -> Bool)?) {
        gracefulShutdown.withLock { $0 = handler }
    }

    private let gracefulShutdown = Mutex<(@Sendable () -> Bool)?>(nil)

    func register(vcpu index: Int, thread: UInt) {
        reports.withLock { $0[index].thread = thread }
    }

    /// The pthread of vCPU `index`, while it runs.
    func thread(vcpu index: Int) -> UInt? {
        reports.withLock { index < $0.count ? $0[index].thread : nil }
    }

    func unregister(vcpu index: Int) {
        reports.withLock { $0[index].thread = nil }
    }

    /// Kicks vCPU `index` out of KVM_RUN (if its thread runs).
    func kick(vcpu index: Int) {
        if let t = thread(vcpu: index) { VCPUKick.kick(thread: t) }
    }

    /// Kicks every registered vCPU thread out of KVM_RUN.
    func kickAll() {
        let threads = reports.withLock { $0.compactMap(\.thread) }
        for t in threads { VCPUKick.kick(thread: t) }
    }

    /// Starts a halt-detection round and kicks everyone.
    func beginRound() {
        round.add(1, ordering: .relaxed)
        kickAll()
    }

    /// Called by a vCPU thread after a kick.
    func report(vcpu index: Int, parked: Bool) {
        let r = round.load(ordering: .relaxed)
        reports.withLock { rep in
            rep[index].lastRound = r
            if parked {
                if rep[index].parkedSince == Int.max { rep[index].parkedSince = r }
            } else {
                rep[index].parkedSince = Int.max
            }
        }
    }

    /// True when every vCPU answered the current round and was parked in the one before too.
    func everyoneParked() -> Bool {
        let r = round.load(ordering: .relaxed)
        return reports.withLock { rep in
            rep.allSatisfy { $0.lastRound == r && $0.parkedSince <= r - 1 }
        }
    }
}
