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

    /// The control socket's `shutdown` asked the guest (`VirtualMachine.requestGracefulShutdown`):
    /// the supervising loop then gives it `--shutdown-grace` seconds, as after a SIGTERM. True the
    /// first time; later calls return false (the caller then stops the VM hard, as a second
    /// SIGTERM does). Wakes the supervising loop.
    func noteGuestAskedToShutDown() -> Bool {
        guard !guestAskedToShutDown.exchange(true, ordering: .acquiringAndReleasing) else { return false }
        shutdownAskedByAPI.store(true, ordering: .releasing)
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
        return true
    }

    /// Whether the guest has been asked to shut down (by SIGTERM or the control socket).
    var hasAskedGuestToShutDown: Bool { guestAskedToShutDown.load(ordering: .acquiring) }

    /// Marks the guest asked by the supervising loop itself (SIGTERM).
    func markGuestAskedToShutDown() { guestAskedToShutDown.store(true, ordering: .releasing) }

    /// For the supervising loop: whether the control socket asked the guest since the last call.
    func takeShutdownAskedByAPI() -> Bool { shutdownAskedByAPI.exchange(false, ordering: .acquiringAndReleasing) }

    private let guestAskedToShutDown = Atomic<Bool>(false)
    private let shutdownAskedByAPI = Atomic<Bool>(false)

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
