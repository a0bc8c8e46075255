import IPC

/// One turn of the SynIC router worker's serve loop (Workers/synic-router/main.swift), as a
/// library so the worker and its fuzz target (Fuzz/Sources/fuzz-synic-router) run the same code:
/// drain every ring the monitor fills — one per VP with its guests' HvPostMessage records, then
/// the test-device ring — decoding each record in place and handing it to `MessageRouter`; then
/// `service()` (EOMs, signalled events, contended slots) and `retry()` when it asks.
///
/// The rings are written by the monitor, which the router does not trust: a bad record is
/// reported and dropped, a broken ring is reported once and cut off (`RecordRing.Consumer`), and
/// neither stops the other rings. Records are decoded straight from the consumer's own copy
/// (`RecordRing.Consumer.tryPop(_:)`): nothing is allocated per record and no reused array is
/// sliced (docs/toolchain.md, issue 11).
public struct RouterRingService {
    public let consumers: [RecordRing.Consumer]
    /// Index of the test-device ring among `consumers` (after the VPs').
    public let testDeviceRing: Int
    /// The VMBus worker's outbound ring (`HostMessageRecord`s), when it runs. It is a peer the
    /// router does not trust either: the same rules as the monitor's rings.
    public let vmbusOutbound: RecordRing.Consumer?
    /// Rings already reported as cut off.
    private var reported = Set<Int>()

    public init(consumers: [RecordRing.Consumer], testDeviceRing: Int, vmbusOutbound: RecordRing.Consumer? = nil) {
        self.consumers = consumers
        self.testDeviceRing = testDeviceRing
        self.vmbusOutbound = vmbusOutbound
    }

    /// One turn. `testDeviceApplied(sequence)` runs after each test-device write is applied (the
    /// worker publishes the acknowledgement and rings the monitor); `report` gets one line per
    /// problem.
    public mutating func serveOnce(_ router: MessageRouter, testDeviceApplied: (UInt64) -> Void,
                                   report: (String) -> Void) {
        // Records are taken with `tryTake`: the slot is freed only after the record's effect is
        // in the router's state region (with the ring's applied mark), so a router killed at any
        // point leaves each record either still in the ring or marked done (docs/processes.md,
        // "Restart state"). A record kept for lack of room stops that ring until the next turn.
        for (i, ring) in consumers.enumerated() {
            var kept = false
            while !kept {
                let result = ring.tryTake { record, index in
                    if i == testDeviceRing {
                        guard let w = try? TestDeviceWriteRecord.decode(record) else {
                            report("bad test-device record")
                            return .commit
                        }
                        // Applied and acknowledged by a predecessor: the acknowledgement is the mark.
                        if w.sequence > router.region.testDeviceAck {
                            router.handleTestDevice(value: w.value)
                            router.stepHook?("ring: test-device write applied")
                        }
                        testDeviceApplied(w.sequence)
                        router.stepHook?("ring: test-device write acknowledged")
                        return .commit
                    }
                    do {
                        let outcome = router.take(try PostedMessageRecord.decode(record), fromRing: i, index: index)
                        if let problem = outcome.problem { report("ring \(i): \(problem)") }
                        if outcome.keep {
                            kept = true
                            return .keep
                        }
                    } catch {
                        report("ring \(i): bad record: \(error)")
                    }
                    router.stepHook?("ring: record done, not committed")
                    return .commit
                }
                guard case .record = result else {
                    if case .corrupted(let why) = result, reported.insert(i).inserted { report("ring \(i) cut off: \(why)") }
                    break
                }
            }
        }
        if let ring = vmbusOutbound {
            var kept = false
            while !kept {
                let result = ring.tryTake { record, index in
                    do {
                        let outcome = router.takeFromVMBus(try HostMessageRecord.decode(record), index: index)
                        if let problem = outcome.problem { report("vmbus ring: \(problem)") }
                        if outcome.keep {
                            kept = true
                            return .keep
                        }
                    } catch {
                        report("vmbus ring: bad record: \(error)")
                    }
                    router.stepHook?("vmbus ring: record done, not committed")
                    return .commit
                }
                guard case .record = result else {
                    if case .corrupted(let why) = result, reported.insert(-1).inserted { report("vmbus ring cut off: \(why)") }
                    break
                }
            }
        }
        router.service()
        if router.needsRetry { router.retry() }
    }
}
