import Glibc
import Testing

@testable import IPC

/// A peer that scribbles on the ring's shared memory. Each case must end in `.corrupted` on
/// the next call of the side that is lied to, then `.cutOff`, and never trap.
@Suite struct RingCorruptionTests {
    /// Offsets inside the ring (see RecordRing's layout comment).
    static let magic = 0, version = 4, recordSize = 8, capacity = 12, producerIndex = 128,
        consumerIndex = 256, slots = 384

    /// The consumer's next pop reports `expected` once, then stays cut off, even if the peer
    /// repairs the damage.
    func expectConsumerCutOff(_ ring: RingPair, _ expected: RecordRing.Corruption,
                              sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(ring.pop().0 == .corrupted(expected), sourceLocation: sourceLocation)
        #expect(ring.consumer.corruption == expected, sourceLocation: sourceLocation)
        #expect(ring.pop().0 == .cutOff, sourceLocation: sourceLocation)
        #expect(ring.pop().0 == .cutOff, sourceLocation: sourceLocation)
    }

    func scribble<T: BitwiseCopyable>(_ ring: RingPair, _ value: T, at field: Int) {
        try! ring.producerRegion.store(value, at: ring.offset + field)
    }

    @Test func badMagic() throws {
        let ring = try RingPair()
        _ = ring.producer.tryPush([1])
        scribble(ring, UInt32(0x4141_4141), at: Self.magic)
        expectConsumerCutOff(ring, .badMagic(0x4141_4141))
        scribble(ring, RecordRing.magic, at: Self.magic)  // repaired: still cut off
        #expect(ring.pop().0 == .cutOff)
    }

    @Test func badVersion() throws {
        let ring = try RingPair()
        scribble(ring, UInt16(2), at: Self.version)
        expectConsumerCutOff(ring, .unsupportedVersion(2))
    }

    @Test func recordSizeChanged() throws {
        let ring = try RingPair(recordSize: 64)
        _ = ring.producer.tryPush([1])
        scribble(ring, UInt32(4096), at: Self.recordSize)
        expectConsumerCutOff(ring, .recordSizeMismatch(found: 4096, expected: 64))
    }

    @Test func capacityChanged() throws {
        let ring = try RingPair(capacity: 8)
        scribble(ring, UInt32(1 << 20), at: Self.capacity)
        expectConsumerCutOff(ring, .capacityMismatch(found: 1 << 20, expected: 8))
    }

    @Test func producerIndexBeyondCapacity() throws {
        let ring = try RingPair(capacity: 8)
        scribble(ring, UInt64(9), at: Self.producerIndex)
        expectConsumerCutOff(ring, .indicesInconsistent(producer: 9, consumer: 0))
    }

    @Test func producerIndexHuge() throws {
        let ring = try RingPair(capacity: 8)
        scribble(ring, UInt64.max, at: Self.producerIndex)
        expectConsumerCutOff(ring, .indicesInconsistent(producer: .max, consumer: 0))
    }

    @Test func producerIndexBehindConsumer() throws {
        let ring = try RingPair()
        for v: UInt8 in 1...3 { _ = ring.producer.tryPush([v]) }
        for _ in 1...3 { _ = ring.pop() }
        scribble(ring, UInt64(1), at: Self.producerIndex)
        expectConsumerCutOff(ring, .peerIndexWentBackwards(from: 3, to: 1))
    }

    @Test func producerIndexWentBackwards() throws {
        let ring = try RingPair()
        for v: UInt8 in 1...4 { _ = ring.producer.tryPush([v]) }
        _ = ring.pop()  // sees producer at 4
        for _ in 1...3 { _ = ring.pop() }
        scribble(ring, UInt64(6), at: Self.producerIndex)  // pretend two more ...
        _ = ring.pop()
        scribble(ring, UInt64(5), at: Self.producerIndex)  // ... then take one back
        _ = ring.pop()
        #expect(ring.pop().0 == .corrupted(.peerIndexWentBackwards(from: 6, to: 5)))
        #expect(ring.pop().0 == .cutOff)
    }

    @Test func consumerIndexOverwrittenByPeer() throws {
        let ring = try RingPair()
        _ = ring.producer.tryPush([1])
        scribble(ring, UInt64(1), at: Self.consumerIndex)
        expectConsumerCutOff(ring, .ownIndexOverwritten(expected: 0, found: 1))
    }

    @Test func recordLengthTooLong() throws {
        for bad: UInt32 in [57, 64, 4096, .max] {
            let ring = try RingPair(recordSize: 64)
            _ = ring.producer.tryPush([1, 2, 3])
            scribble(ring, bad, at: Self.slots)
            expectConsumerCutOff(ring, .recordTooLong(length: bad, limit: 56))
        }
        // The largest legal length is fine.
        let ring = try RingPair(recordSize: 64)
        _ = ring.producer.tryPush([1])
        scribble(ring, UInt32(56), at: Self.slots)
        #expect(ring.pop().0 == .record(length: 56))
    }

    @Test func corruptionFoundAfterTheIndexIsPublished() throws {
        // The length of the second slot is garbage; the first record still comes through.
        let ring = try RingPair(recordSize: 32)
        _ = ring.producer.tryPush([1])
        _ = ring.producer.tryPush([2])
        scribble(ring, UInt32(1000), at: Self.slots + 32)
        #expect(ring.pop() == (.record(length: 1), [1]))
        expectConsumerCutOff(ring, .recordTooLong(length: 1000, limit: 24))
    }

    // MARK: The producer is lied to as well

    @Test func consumerIndexAheadOfProducer() throws {
        let ring = try RingPair()
        _ = ring.producer.tryPush([1])
        try ring.consumerRegion.store(UInt64(5), at: ring.offset + Self.consumerIndex)
        #expect(ring.producer.tryPush([2]) == .corrupted(.indicesInconsistent(producer: 2, consumer: 5)))
        #expect(ring.producer.tryPush([3]) == .cutOff)
        #expect(ring.producer.corruption == .indicesInconsistent(producer: 2, consumer: 5))
    }

    @Test func consumerIndexWentBackwards() throws {
        let ring = try RingPair()
        for v: UInt8 in 1...3 { _ = ring.producer.tryPush([v]) }
        for _ in 1...3 { _ = ring.pop() }
        _ = ring.producer.tryPush([4])  // producer sees the consumer at 3
        try ring.consumerRegion.store(UInt64(1), at: ring.offset + Self.consumerIndex)
        #expect(ring.producer.tryPush([5]) == .corrupted(.peerIndexWentBackwards(from: 3, to: 1)))
    }

    @Test func producerIndexOverwrittenByPeer() throws {
        let ring = try RingPair()
        try ring.consumerRegion.store(UInt64(3), at: ring.offset + Self.producerIndex)
        #expect(ring.producer.tryPush([1]) == .corrupted(.ownIndexOverwritten(expected: 0, found: 3)))
    }

    @Test func producerChecksTheHeader() throws {
        let ring = try RingPair()
        try ring.consumerRegion.store(UInt32(3), at: ring.offset + Self.capacity)
        #expect(ring.producer.tryPush([1]) == .corrupted(.capacityMismatch(found: 3, expected: 8)))
        #expect(ring.producer.tryPush([1]) == .cutOff)
    }

    @Test func attachingToGarbageThrows() throws {
        let ring = try RingPair(capacity: 8)
        scribble(ring, UInt64(100), at: Self.producerIndex)
        #expect(throws: IPCError.ringCorrupted(.indicesInconsistent(producer: 100, consumer: 0))) {
            try RecordRing.Consumer(region: ring.consumerRegion, offset: ring.offset, layout: ring.layout)
        }
        scribble(ring, UInt32(0), at: Self.magic)
        #expect(throws: IPCError.ringCorrupted(.badMagic(0))) {
            try RecordRing.Producer(region: ring.producerRegion, offset: ring.offset, layout: ring.layout)
        }
    }

    /// Random garbage anywhere in the header, indices or slots, between random pushes and
    /// pops on both sides: every answer is well-formed, no record is longer than a slot, and
    /// once cut off a side stays cut off. (A trap would end the test run.)
    @Test func randomScribblesNeverTrap() throws {
        var rng = TestRandom(seed: 0x5EED_0001)
        var corruptions = 0
        for _ in 0..<300 {
            let ring = try RingPair(recordSize: 32, capacity: 4)
            var consumerCut = false, producerCut = false
            for _ in 0..<40 {
                switch rng.below(4) {
                case 0:
                    // Scribble: a field, an index, or a slot byte range.
                    let targets = [Self.magic, Self.version, Self.recordSize, Self.capacity,
                                   Self.producerIndex, Self.consumerIndex, Self.slots + 32 * rng.below(4)]
                    let at = ring.offset + targets[rng.below(targets.count)]
                    let value = rng.below(3) == 0 ? rng.next() : rng.next() % 16
                    let width = [1, 2, 4, 8][rng.below(4)]
                    let region = rng.below(2) == 0 ? ring.producerRegion : ring.consumerRegion
                    withUnsafeBytes(of: value) { try! region.write(UnsafeRawBufferPointer(rebasing: $0[0..<width]), at: at) }
                case 1:
                    let r = ring.producer.tryPush([UInt8](repeating: 7, count: rng.below(25)))
                    if producerCut { #expect(r == .cutOff) }
                    if case .corrupted = r { producerCut = true; corruptions += 1 }
                default:
                    let (r, bytes) = ring.pop()
                    if consumerCut { #expect(r == .cutOff) }
                    switch r {
                    case .record(let n): #expect(n <= 24 && bytes.count == n)
                    case .corrupted: consumerCut = true; corruptions += 1
                    case .empty, .cutOff: break
                    }
                }
            }
        }
        #expect(corruptions > 100)
    }
}
