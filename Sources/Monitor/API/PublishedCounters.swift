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

    /// Called by the vCPU thread only (one writer). Allocates nothing: one relaxed store per
    /// counter, in `ExitCounters.named` order (a test checks the order).
    func publish(_ c: ExitCounters, hypercallCodes: [Int], hypercallsChanged: Bool) {
        let values = (c.exits, c.portIO, c.mmio, c.msr, c.kicks, c.unknownPortReads, c.unknownPortWrites,
                      c.unknownMMIOReads, c.unknownMMIOWrites, c.unknownMSRReads, c.unknownMSRWrites,
                      c.syntheticMSRReads, c.syntheticMSRWrites, c.hypercalls, c.autoEOIInjections, c.emulationFixups)
        withUnsafeBytes(of: values) { raw in
            for (i, v) in raw.bindMemory(to: Int.self).enumerated() where i < exits.count {
                exits[i].store(v, ordering: .relaxed)
            }
        }
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

extension PublishedCounters {
    /// What `exitCounters()` reads back after publishing `c` (for the order check in the tests).
    static func roundTrip(_ c: ExitCounters) -> [(String, Int)] {
        let p = PublishedCounters()
        p.publish(c, hypercallCodes: [], hypercallsChanged: false)
        return p.exitCounters()
    }
}
