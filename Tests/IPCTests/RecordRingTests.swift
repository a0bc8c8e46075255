import Glibc
import Testing

@testable import IPC

/// A ring formatted in one mapping of a memfd, producer on that mapping, consumer on a second
/// mapping of the same memfd: the same arrangement as two processes.
struct RingPair {
    let layout: RecordRing.Layout
    let offset: Int
    let producerRegion: SharedRegion
    let consumerRegion: SharedRegion
    let producer: RecordRing.Producer
    let consumer: RecordRing.Consumer

    init(recordSize: Int = 64, capacity: Int = 8, offset: Int = 128) throws {
        layout = try RecordRing.Layout(recordSize: recordSize, capacity: capacity)
        self.offset = offset
        producerRegion = try SharedRegion(name: "ipc-test-ring", size: offset + layout.byteCount)
        try RecordRing.format(producerRegion, at: offset, layout: layout)
        consumerRegion = try SharedRegion(adopting: try producerRegion.fd.duplicate(), size: producerRegion.size)
        producer = try RecordRing.Producer(region: producerRegion, offset: offset, layout: layout)
        consumer = try RecordRing.Consumer(region: consumerRegion, offset: offset, layout: layout)
    }

    func pop() -> (RecordRing.PopResult, [UInt8]) { Self.pop(consumer) }

    /// Pops through the borrowing `tryPop(_:)`, keeping a copy of the bytes for the test to compare.
    static func pop(_ consumer: RecordRing.Consumer) -> (RecordRing.PopResult, [UInt8]) {
        var bytes: [UInt8] = []
        let r = consumer.tryPop { bytes = Array($0) }
        return (r, bytes)
    }
}

@Suite struct RecordRingTests {
    @Test func layoutRules() throws {
        let l = try RecordRing.Layout(recordSize: 64, capacity: 16)
        #expect(l.maxRecordLength == 56)
        #expect(l.byteCount == 384 + 64 * 16)
        for (size, cap) in [(8, 16), (15, 16), (60, 16), (64, 0), (64, 3), (64, 12), (1 << 21, 2), (64, 1 << 25)] {
            #expect(throws: IPCError.self) { try RecordRing.Layout(recordSize: size, capacity: cap) }
        }
        _ = try RecordRing.Layout(recordSize: 16, capacity: 1)
    }

    @Test func formatAndAttachCheckPlacement() throws {
        let layout = try RecordRing.Layout(recordSize: 64, capacity: 8)
        let r = try SharedRegion(name: "ipc-test-ring", size: layout.byteCount)
        #expect(throws: IPCError.self) { try RecordRing.format(r, at: 64, layout: layout) }  // does not fit
        #expect(throws: IPCError.self) { try RecordRing.format(r, at: 8, layout: layout) }  // misaligned
        try RecordRing.format(r, at: 0, layout: layout)
        #expect(try r.load(UInt32.self, at: 0) == RecordRing.magic)
        // Attaching with a layout other than the one formatted is corruption.
        let other = try RecordRing.Layout(recordSize: 32, capacity: 8)
        #expect(throws: IPCError.ringCorrupted(.recordSizeMismatch(found: 64, expected: 32))) {
            try RecordRing.Consumer(region: r, offset: 0, layout: other)
        }
        let ro = try SharedRegion(adopting: try r.fd.duplicate(), size: r.size, access: .readOnly)
        #expect(throws: IPCError.readOnlyRegion) { try RecordRing.Consumer(region: ro, offset: 0, layout: layout) }
    }

    @Test func pushPopAcrossTwoMappings() throws {
        let ring = try RingPair()
        #expect(ring.pop().0 == .empty)
        #expect(ring.producer.tryPush([1, 2, 3]) == .pushed(wasEmpty: true))
        #expect(ring.producer.tryPush([]) == .pushed(wasEmpty: false))
        let big = [UInt8]((0..<56).map { UInt8($0 + 100) })
        #expect(ring.producer.tryPush(big) == .pushed(wasEmpty: false))
        #expect(ring.producer.tryPush(length: 4) { $0.storeBytes(of: UInt32(0xCAFE_F00D).littleEndian, as: UInt32.self) }
                == .pushed(wasEmpty: false))
        var (r, bytes) = ring.pop()
        #expect(r == .record(length: 3) && bytes == [1, 2, 3])
        (r, bytes) = ring.pop()
        #expect(r == .record(length: 0) && bytes == [])
        (r, bytes) = ring.pop()
        #expect(r == .record(length: 56) && bytes == big)
        (r, bytes) = ring.pop()
        #expect(r == .record(length: 4) && bytes == [0x0D, 0xF0, 0xFE, 0xCA])
        #expect(ring.pop().0 == .empty)
        // The shared indices are the published ones.
        #expect(try ring.consumerRegion.load(UInt64.self, at: ring.offset + 128) == 4)
        #expect(try ring.producerRegion.load(UInt64.self, at: ring.offset + 256) == 4)
    }

    @Test func fullAndEmptyTransitionsDecideTheDoorbell() throws {
        let ring = try RingPair(recordSize: 16, capacity: 4)
        let bell = try Doorbell()
        var rings = 0
        func push(_ v: UInt8) -> RecordRing.PushResult {
            let r = ring.producer.tryPush([v])
            if r == .pushed(wasEmpty: true) { try? bell.ring(); rings += 1 }
            return r
        }
        #expect(push(1) == .pushed(wasEmpty: true))
        #expect(push(2) == .pushed(wasEmpty: false))
        #expect(push(3) == .pushed(wasEmpty: false))
        #expect(push(4) == .pushed(wasEmpty: false))
        #expect(push(5) == .full)
        #expect(push(5) == .full)
        #expect(try bell.drain() == 1)

        #expect(ring.pop() == (.record(length: 1), [1]))
        #expect(push(5) == .pushed(wasEmpty: false))  // not empty: 2, 3, 4 still queued
        #expect(push(6) == .full)
        for v: UInt8 in 2...5 { #expect(ring.pop() == (.record(length: 1), [v])) }
        #expect(ring.pop().0 == .empty)
        #expect(push(6) == .pushed(wasEmpty: true))  // empty -> non-empty again
        #expect(ring.pop() == (.record(length: 1), [6]))
        #expect(push(7) == .pushed(wasEmpty: true))
        #expect(rings == 3)
        #expect(try bell.drain() == 2)
        // Wrap around many times.
        for v in 0..<1000 {
            #expect(ring.producer.tryPush([UInt8(truncatingIfNeeded: v)]) != .full)
            if v % 3 == 2 { while ring.pop().0 != .empty {} }
            while ring.producer.tryPush([0]) != .full {}
            while ring.pop().0 != .empty {}
        }
    }

    @Test func capacityOneRing() throws {
        let ring = try RingPair(recordSize: 16, capacity: 1)
        #expect(ring.producer.tryPush([9]) == .pushed(wasEmpty: true))
        #expect(ring.producer.tryPush([9]) == .full)
        #expect(ring.pop() == (.record(length: 1), [9]))
        #expect(ring.pop().0 == .empty)
        #expect(ring.producer.tryPush([8]) == .pushed(wasEmpty: true))
    }

    /// The borrowing pop lends exactly the record's bytes, a copy (the slot may change under it),
    /// and calls its body only for a record.
    @Test func borrowingPopLendsACopyOfExactlyTheRecord() throws {
        let ring = try RingPair(recordSize: 64, capacity: 4)
        var calls = 0
        #expect(ring.consumer.tryPop { _ in calls += 1 } == .empty)
        #expect(calls == 0)
        _ = ring.producer.tryPush(Array(1...56))
        _ = ring.producer.tryPush([9, 8, 7])
        var seen: [[UInt8]] = []
        #expect(ring.consumer.tryPop { record in
            // Scribble on the slot while the body runs: the body's view must not change.
            try? ring.producerRegion.write([UInt8](repeating: 0xEE, count: 56), at: ring.offset + RecordRing.Layout.headerSize + 8)
            seen.append(Array(record))
        } == .record(length: 56))
        #expect(ring.consumer.tryPop { seen.append(Array($0)) } == .record(length: 3))
        #expect(seen == [Array(1...56), [9, 8, 7]])
        #expect(ring.consumer.tryPop { _ in calls += 1 } == .empty)
        // A corrupted ring: reported once, the body never called.
        _ = ring.producer.tryPush([1])
        try ring.consumerRegion.store(UInt32(0xBAD), at: ring.offset)
        #expect(ring.consumer.tryPop { _ in calls += 1 } == .corrupted(.badMagic(0xBAD)))
        #expect(ring.consumer.tryPop { _ in calls += 1 } == .cutOff)
        #expect(calls == 0)
    }

    /// A restarted worker attaches to the ring its predecessor used and continues.
    @Test func reattachResumesFromSharedIndices() throws {
        let ring = try RingPair()
        for v: UInt8 in 1...5 { _ = ring.producer.tryPush([v]) }
        #expect(ring.pop() == (.record(length: 1), [1]))
        #expect(ring.pop() == (.record(length: 1), [2]))
        let again = try RecordRing.Consumer(region: ring.consumerRegion, offset: ring.offset, layout: ring.layout)
        for v: UInt8 in 3...5 {
            #expect(RingPair.pop(again) == (.record(length: 1), [v]))
        }
        #expect(RingPair.pop(again) == (.empty, []))
        let producer2 = try RecordRing.Producer(region: ring.producerRegion, offset: ring.offset, layout: ring.layout)
        #expect(producer2.tryPush([6]) == .pushed(wasEmpty: true))
        #expect(RingPair.pop(again) == (.record(length: 1), [6]))
    }

    /// Two threads, two mappings, a few hundred thousand records of varying length: every
    /// record arrives, in order, intact; the consumer sleeps on the doorbell when empty.
    @Test func threadsPassRecordsInOrderWithoutLoss() throws {
        let ring = try RingPair(recordSize: 64, capacity: 256)
        let bell = try Doorbell()
        let count: UInt64 = 300_000
        let producer = ring.producer
        let consumer = ring.consumer
        final class Stats: @unchecked Sendable { var rings = 0, fulls = 0, sleeps = 0, drained: UInt64 = 0, errors: [String] = [] }
        let ps = Stats(), cs = Stats()

        @Sendable func record(_ seq: UInt64, into p: UnsafeMutableRawBufferPointer) {
            p.storeBytes(of: seq.littleEndian, as: UInt64.self)
            for i in 8..<p.count { p[i] = UInt8(truncatingIfNeeded: seq &+ UInt64(i)) }
        }
        @Sendable func length(_ seq: UInt64) -> Int { 8 + Int(seq % 49) }

        let t = TestThread.spawn {
            var seq: UInt64 = 0
            while seq < count {
                switch producer.tryPush(length: length(seq), { record(seq, into: $0) }) {
                case .pushed(let wasEmpty):
                    if wasEmpty {
                        ps.rings += 1
                        do { try bell.ring() } catch { ps.errors.append("\(error)") }
                    }
                    seq += 1
                case .full:
                    ps.fulls += 1
                    sched_yield()
                case let other:
                    ps.errors.append("push: \(other)")
                    return
                }
            }
        }
        var expected: UInt64 = 0
        var buffer = [UInt8](repeating: 0, count: 56)
        var scratch = [UInt8](repeating: 0, count: 56)
        buffer.withUnsafeMutableBytes { buf in
            while expected < count {
                switch consumer.tryPop(into: buf) {
                case .record(let n):
                    let seq = UInt64(littleEndian: buf.loadUnaligned(as: UInt64.self))
                    scratch.withUnsafeMutableBytes { record(seq, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n])) }
                    if seq != expected || n != length(expected) || !buf.prefix(n).elementsEqual(scratch.prefix(n)) {
                        cs.errors.append("record \(expected): got seq \(seq), \(n) bytes")
                        return
                    }
                    expected += 1
                case .empty:
                    cs.sleeps += 1
                    do {
                        // A lost wake-up would show as a 5 s stall; fail rather than hang.
                        if try !bell.wait(timeoutMs: 5000) { cs.errors.append("no doorbell at \(expected)"); return }
                        cs.drained += try bell.drain()
                    } catch { cs.errors.append("\(error)"); return }
                case let other:
                    cs.errors.append("pop: \(other)")
                    return
                }
            }
        }
        t.join()
        #expect(ps.errors.isEmpty && cs.errors.isEmpty, "\(ps.errors) \(cs.errors)")
        #expect(expected == count)
        #expect(ring.pop().0 == .empty)
        // Every ring was seen (drained now or while running), and rings come only with
        // empty -> non-empty transitions: far fewer than records unless the consumer always
        // kept pace, which a 256-slot ring under a yielding producer does not.
        #expect(cs.drained + (try bell.drain()) == UInt64(ps.rings))
        #expect(ps.rings >= 1 && ps.rings <= Int(count))
    }
}
