import Atomics

/// One vCPU's counters as the control socket reads them while the VM runs (docs/api.md,
/// "metrics"). The vCPU thread keeps its `ExitCounters` and hypercall counts in plain memory on
/// its hot path, as before, and copies them here with relaxed atomic stores whenever it is kicked
/// (every halt-detection round, 10 ms by default) and when it returns; the control socket's
/// thread reads them with relaxed loads. No lock, and nothing added to an exit but the hypercall
/// count by code (one array increment). So a metric is at most one round old.
final class PublishedCounters: Sendable {
    /// Hypercall codes 0...255 each have a slot; every larger code (extended hypercalls, garbage)
    /// shares the last one.
    static let hypercallSlots = 257

    static func hypercallSlot(_ code: UInt16) -> Int { code < 256 ? Int(code) : 256 }

    private let exits: [ManagedAtomic<Int>]
    private let hypercalls: [ManagedAtomic<Int>]

    init() {
        exits = (0..<ExitCounters().named.count).map { _ in ManagedAtomic(0) }
        hypercalls = (0..<Self.hypercallSlots).map { _ in ManagedAtomic(0) }
    }

    /// Called by the vCPU thread only (one writer).
    func publish(_ counters: ExitCounters, hypercallCodes: [Int], hypercallsChanged: Bool) {
        for (i, (_, v)) in counters.named.enumerated() { exits[i].store(v, ordering: .relaxed) }
        guard hypercallsChanged else { return }
        for (i, v) in hypercallCodes.enumerated() where i < hypercalls.count {
            hypercalls[i].store(v, ordering: .relaxed)
        }
    }

    /// (name, value) in `ExitCounters.named` order.
    func exitCounters() -> [(String, Int)] {
        let names = ExitCounters().named.map(\.0)
        return zip(names, exits).map { ($0, $1.load(ordering: .relaxed)) }
    }

    /// (slot, count) of every slot with a count.
    func hypercallCounts() -> [(Int, Int)] {
        hypercalls.enumerated().compactMap { i, a in
            let v = a.load(ordering: .relaxed)
            return v == 0 ? nil : (i, v)
        }
    }
}
