import Glibc
import Synchronization

/// The restart policy (docs/faults.md): when a worker dies while the VM runs, the supervisor
/// thread asks this for a new one. Within the budget (`--restart-budget N/SECONDS`, all workers
/// together, a sliding window) it is restarted at once through the spawner and the handshake
/// (`WorkerLink.restarted`); past it, or without a spawner, the VM stops with status 6 and a
/// line naming the worker. No device is failed towards the guest instead: none of the worker
/// kinds has a protocol path for that yet.
///
/// The links live here, under one lock that a restart holds until its handshake is over: the
/// VM's stop (`close`) waits for a restart in progress, then closes whatever is current, and
/// from then on no restart starts (a death at stop is expected, not restarted).
final class WorkerRestarts: @unchecked Sendable {
    struct State {
        var links: [WorkerLink] = []
        /// CLOCK_MONOTONIC seconds of the restarts inside the window.
        var recent: [Double] = []
        var closed = false
        var spawner: SpawnerLink?
        /// Pids whose exit the supervisor caused itself to restart them (the VMBus worker after a
        /// storage restart): their restart is not a failure and is not counted in the budget.
        var planned: Set<pid_t> = []
    }

    /// nil: restarts are off (a dead worker stays dead, the VM goes on).
    let budget: RestartBudget?
    let control: VMControl
    private let state = Mutex(State())
    /// Set once the supervisor exists.
    private(set) weak var supervisor: Supervisor?

    init(budget: RestartBudget?, control: VMControl) {
        self.budget = budget
        self.control = control
    }

    func attach(supervisor: Supervisor) { self.supervisor = supervisor }

    func append(_ link: WorkerLink) { state.withLock { $0.links.append(link) } }

    func setSpawner(_ spawner: SpawnerLink) { state.withLock { $0.spawner = spawner } }

    var links: [WorkerLink] { state.withLock { $0.links } }

    func link(named name: String) -> WorkerLink? { state.withLock { s in s.links.first { $0.name == name } } }

    /// The VM is stopping: no more restarts; the current links, to be closed.
    func close() -> [WorkerLink] {
        state.withLock { s in
            s.closed = true
            // The spawner sees end of file and exits.
            s.spawner?.close()
            s.spawner = nil
            return s.links
        }
    }

    /// A process the supervisor watches has ended (on its thread): what was done about it, for
    /// the end of the line that reports the death.
    func processEnded(_ status: Supervisor.Status) -> String? {
        guard let sup = supervisor, !sup.isLeaving, !control.isStopping, let budget else { return nil }
        if status.name == SpawnerLink.executableName {
            state.withLock { $0.spawner = nil }
            return "workers can no longer be restarted (the next worker death stops the VM)"
        }
        return state.withLock { s -> String? in
            guard !s.closed, let index = s.links.firstIndex(where: { $0.name == status.name }) else { return nil }
            // A process of a name whose current one still runs is not news for the policy.
            if s.links[index].process.pid != status.pid,
               sup.status.contains(where: { $0.pid == s.links[index].process.pid && $0.exit == nil }) { return nil }
            var failures: [String] = []
            // A planned restart's first attempt is free; a failed handshake after it counts.
            var free = s.planned.remove(status.pid) != nil
            while true {
                let now = monotonicSeconds()
                s.recent.removeAll { now - $0 >= Double(budget.seconds) }
                guard free || s.recent.count < budget.restarts, let spawner = s.spawner else {
                    let why = s.spawner == nil && budget.restarts > 0 ? "no spawner: cannot restart it" : "restart budget \(budget) used up"
                    control.requestStop(.workerRestartBudgetExhausted(worker: status.name, restarts: budget.restarts,
                                                                      seconds: budget.seconds))
                    return (failures + ["\(why): stopping the VM"]).joined(separator: "; ")
                }
                let counted: String
                if free {
                    counted = "(planned, not counted in the budget)"
                } else {
                    s.recent.append(now)
                    counted = "(\(s.recent.count) of \(budget.restarts) in \(budget.seconds) s)"
                }
                free = false
                do {
                    let link = try s.links[index].restarted(supervisor: sup, spawner: spawner, kindIndex: index)
                    s.links[index] = link
                    let ms = Int(((monotonicSeconds() - now) * 1000).rounded())
                    var said = "restarted \(counted) as pid \(link.process.pid) in \(ms) ms"
                    // A device worker gets its open channels from the VMBus worker, which hands
                    // them over as restored opens when it starts from its saved state: closing its
                    // control socket makes it leave cleanly (its state saved), and its restart
                    // follows through this same path, planned: the storage worker's death was
                    // counted once, so a storage restart costs one unit of the budget.
                    if link.kind == .storage, let vmbus = s.links.first(where: { $0.kind == .vmbus }) {
                        s.planned.insert(vmbus.process.pid)
                        vmbus.close()
                        said += "; the vmbus worker is restarted too, to hand it its open channels"
                    }
                    return (failures + [said]).joined(separator: "; ")
                } catch {
                    // The new process (if any) was killed; its death is reported on its own line.
                    failures.append("restart \(counted) failed: \(error)")
                }
            }
        }
    }
}
