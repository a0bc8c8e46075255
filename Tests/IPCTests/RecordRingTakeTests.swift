import Testing

@testable import IPC

/// `RecordRing.Consumer.tryTake`: the consumer index moves only once the caller says its effect
/// is durable, so a consumer killed at any point is followed by one that neither loses a record
/// nor acts on one twice (a "kill" here: the consumer object is dropped mid-way and a successor
/// attaches to the same memory, as a restarted worker does).
@Suite struct RecordRingTakeTests {
    /// What a consumer's effects go to: survives the consumer (the worker's state region).
    final class Durable {
        var applied: [UInt8] = []
        /// The ring index through which effects are durable (saved with them, in one write).
        var through: UInt64 = 0
    }

    /// A successor's step: skip what `durable` says is done, apply the rest, then commit.
    static func takeOne(_ c: RecordRing.Consumer, _ durable: Durable) -> RecordRing.PopResult {
        c.tryTake { bytes, index in
            if index < durable.through { return .commit }  // done by a predecessor
            durable.applied.append(bytes[0])
            durable.through = index + 1
            return .commit
        }
    }

    @Test("take lends the record and its number; keep leaves it for the next call; commit frees it")
    func keepAndCommit() throws {
        let ring = try RingPair()
        #expect(ring.producer.tryPush([7, 8, 9]) == .pushed(wasEmpty: true))
        #expect(ring.producer.nextIndex == 1 && ring.consumer.nextIndex == 0)
        var seen: [([UInt8], UInt64)] = []
        #expect(ring.consumer.tryTake { seen.append((Array($0), $1)); return .keep } == .record(length: 3))
        #expect(ring.consumer.nextIndex == 0)
        #expect(ring.consumer.tryTake { seen.append((Array($0), $1)); return .commit } == .record(length: 3))
        #expect(seen.map(\.0) == [[7, 8, 9], [7, 8, 9]] && seen.map(\.1) == [0, 0])
        #expect(ring.consumer.nextIndex == 1)
        var calls = 0
        #expect(ring.consumer.tryTake { _, _ in calls += 1; return .commit } == .empty && calls == 0)
        // A kept record still occupies its slot: the producer cannot fill past it.
        for i in 0..<8 { #expect(ring.producer.tryPush([UInt8(i)]) == .pushed(wasEmpty: i == 0)) }
        #expect(ring.consumer.tryTake { _, _ in .keep } == .record(length: 1))
        #expect(ring.producer.tryPush([99]) == .full)
    }

    @Test("a consumer killed between take and effect: the successor is lent the record again, once")
    func diesBeforeEffect() throws {
        let ring = try RingPair()
        for v: UInt8 in 1...3 { _ = ring.producer.tryPush([v]) }
        let durable = Durable()
        #expect(Self.takeOne(ring.consumer, durable) == .record(length: 1))
        // Killed inside the body, before any effect.
        #expect(ring.consumer.tryTake { _, _ in .keep } == .record(length: 1))
        let successor = try RecordRing.Consumer(region: ring.consumerRegion, offset: ring.offset, layout: ring.layout)
        #expect(successor.nextIndex == 1)
        while case .record = Self.takeOne(successor, durable) {}
        #expect(durable.applied == [1, 2, 3])
    }

    @Test("a consumer killed between effect and commit: the successor sees the number and skips the record")
    func diesAfterEffect() throws {
        let ring = try RingPair()
        for v: UInt8 in 1...3 { _ = ring.producer.tryPush([v]) }
        let durable = Durable()
        // The effect of record 0 is made durable, then the consumer dies before committing.
        #expect(ring.consumer.tryTake { bytes, index in
            durable.applied.append(bytes[0])
            durable.through = index + 1
            return .keep  // stands for "never returned"
        } == .record(length: 1))
        let successor = try RecordRing.Consumer(region: ring.consumerRegion, offset: ring.offset, layout: ring.layout)
        #expect(successor.nextIndex == 0)
        while case .record = Self.takeOne(successor, durable) {}
        #expect(durable.applied == [1, 2, 3])
        #expect(successor.nextIndex == 3)
    }

    @Test("killed at every point of a long stream: every record applied exactly once, in order")
    func everyCrashPoint() throws {
        let ring = try RingPair(capacity: 4)
        let durable = Durable()
        var consumer = ring.consumer
        var next: UInt8 = 0
        var step = 0
        while durable.applied.count < 40 {
            while next < 40, case .pushed = ring.producer.tryPush([next]) { next += 1 }
            step += 1
            switch step % 3 {
            case 0:  // dies after the effect, before the commit
                _ = consumer.tryTake { bytes, index in
                    if index >= durable.through {
                        durable.applied.append(bytes[0])
                        durable.through = index + 1
                    }
                    return .keep
                }
                consumer = try RecordRing.Consumer(region: ring.consumerRegion, offset: ring.offset, layout: ring.layout)
            case 1:  // dies after the take, before the effect
                _ = consumer.tryTake { _, _ in .keep }
                consumer = try RecordRing.Consumer(region: ring.consumerRegion, offset: ring.offset, layout: ring.layout)
            default:
                _ = Self.takeOne(consumer, durable)
            }
        }
        #expect(durable.applied == (0..<40).map { UInt8($0) })
    }

    @Test("take keeps the hostile-peer rules: a record too long is reported, the ring cut off, body never called")
    func hostile() throws {
        let ring = try RingPair()
        _ = ring.producer.tryPush([1, 2, 3])
        // The producer scribbles the slot's length past the record size.
        try ring.producerRegion.store(UInt32(1000), at: ring.offset + RecordRing.Layout.headerSize)
        var calls = 0
        #expect(ring.consumer.tryTake { _, _ in calls += 1; return .commit } == .corrupted(.recordTooLong(length: 1000, limit: 56)))
        #expect(ring.consumer.tryTake { _, _ in calls += 1; return .commit } == .cutOff)
        #expect(calls == 0 && ring.consumer.nextIndex == 0)
    }
}
