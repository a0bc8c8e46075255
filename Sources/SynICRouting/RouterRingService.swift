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
        for (i, ring) in consumers.enumerated() {
            while true {
                let result = ring.tryPop { record in
                    if i == testDeviceRing {
                        guard let w = try? TestDeviceWriteRecord.decode(record) else { report("bad test-device record"); return }
                        router.handleTestDevice(value: w.value)
                        testDeviceApplied(w.sequence)
                    } else {
                        do {
                            if let problem = router.handle(try PostedMessageRecord.decode(record), fromRing: i) {
                                report("ring \(i): \(problem)")
                            }
                        } catch {
                            report("ring \(i): bad record: \(error)")
                        }
                    }
                }
                guard case .record = result else {
                    if case .corrupted(let why) = result, reported.insert(i).inserted { report("ring \(i) cut off: \(why)") }
                    break
                }
            }
        }
        if let ring = vmbusOutbound {
            while true {
                let result = ring.tryPop { record in
                    do {
                        if let problem = router.handleFromVMBus(try HostMessageRecord.decode(record)) { report("vmbus ring: \(problem)") }
                    } catch {
                        report("vmbus ring: bad record: \(error)")
                    }
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
