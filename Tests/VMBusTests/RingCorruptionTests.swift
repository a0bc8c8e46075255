import FuzzSeeds
import Testing
@testable import VMBus

@Suite("VMBus ring: a hostile peer is reported once, then the ring is cut off")
struct RingCorruptionTests {
    typealias Producer = VMBusRingProducer<VMBusFlatRingMemory>
    typealias Consumer = VMBusRingConsumer<VMBusFlatRingMemory>

    /// What `next()` said, without the packet.
    enum Read: Equatable { case packet, empty, corrupted(VMBusRingCorruption), cutOff }
    static func read(_ c: Consumer) -> Read {
        switch c.next() {
        case .packet: return .packet
        case .empty: return .empty
        case .corrupted(let why): return .corrupted(why)
        case .cutOff: return .cutOff
        }
    }

    /// A guest that writes one packet by hand: descriptor fields, payload, trailer, write_index.
    static func guestWrite(_ m: VMBusFlatRingMemory, at start: Int = 0, offset8: UInt16 = 2, len8: UInt16 = 3,
                           trailer: UInt64? = nil, publish: UInt32? = nil) {
        var d: [UInt8] = [6, 0]
        d += [UInt8(offset8 & 0xFF), UInt8(offset8 >> 8), UInt8(len8 & 0xFF), UInt8(len8 >> 8), 0, 0]
        d += [UInt8](repeating: 0xAB, count: 8)
        m.poke(start, d + [UInt8](repeating: 0x55, count: max(0, Int(len8) * 8 - 16)))
        let t = trailer ?? UInt64(start) << 32
        m.poke((start + Int(len8) * 8) % m.dataCount, (0..<8).map { UInt8(truncatingIfNeeded: t >> (8 * UInt64($0))) })
        m.setControlU32(0, publish ?? UInt32((start + Int(len8) * 8 + 8) % m.dataCount))
    }

    @Test func eachBadDescriptorIsReportedOnceThenCutOff() throws {
        let cases: [((VMBusFlatRingMemory) -> Void, VMBusRingCorruption)] = [
            ({ Self.guestWrite($0, offset8: 1) }, .badPayloadOffset(offset8: 1, len8: 3)),
            ({ Self.guestWrite($0, offset8: 4, len8: 3) }, .badPayloadOffset(offset8: 4, len8: 3)),
            ({ Self.guestWrite($0, len8: 3, publish: 24) }, .packetPastWriteIndex(length: 24, available: 24)),
            ({ Self.guestWrite($0, len8: 0x100, publish: 32) }, .packetPastWriteIndex(length: 2048, available: 32)),
            ({ Self.guestWrite($0, trailer: 0x1234) }, .badTrailer(found: 0x1234, expected: 0)),
            ({ Self.guestWrite($0, publish: 16) }, .truncatedPacket(available: 16)),
            ({ $0.setControlU32(0, 12) }, .indexOutOfRange(field: "write_index", value: 12, dataCount: 4096)),
            ({ $0.setControlU32(0, 4096) }, .indexOutOfRange(field: "write_index", value: 4096, dataCount: 4096)),
            ({ $0.setControlU32(4, 8) }, .ownIndexOverwritten(field: "read_index", expected: 0, found: 8)),
        ]
        for (i, (damage, expected)) in cases.enumerated() {
            let m = try VMBusFlatRingMemory(dataCount: 4096)
            let c = try Consumer(memory: m)
            damage(m)
            #expect(Self.read(c) == .corrupted(expected), "case \(i)")
            #expect(c.corruption == expected)
            // Cut off: even a repaired ring is not read again, and nothing else answers.
            m.setControlU32(0, 0); m.setControlU32(4, 0)
            #expect(Self.read(c) == .cutOff)
            #expect(c.commit() == .cutOff && c.enableInterrupts() == .cutOff)
        }
    }

    @Test func aWriterTakingBackPublishedBytesOrOverrunningUnreadDataIsCaught() throws {
        let m = try VMBusFlatRingMemory(dataCount: 4096)
        let c = try Consumer(memory: m)
        Self.guestWrite(m)                       // 32 bytes at 0
        Self.guestWrite(m, at: 32)               // 32 more, published 64
        #expect(Self.read(c) == .packet)
        m.setControlU32(0, 32)                   // take back the second packet
        #expect(Self.read(c) == .packet)          // still the copy of the index it validated
        #expect(Self.read(c) == .corrupted(.peerIndexMovedBack(field: "write_index", from: 64, to: 32)))

        // Back into bytes already read but not yet freed: also taking back.
        let m2 = try VMBusFlatRingMemory(dataCount: 4096)
        let c2 = try Consumer(memory: m2)
        Self.guestWrite(m2)
        #expect(Self.read(c2) == .packet)
        #expect(c2.commit() == .noSignal)        // read_index 32
        Self.guestWrite(m2, at: 32)
        #expect(Self.read(c2) == .packet)         // cursor 64, published 32, seen write 64
        m2.setControlU32(0, 40)
        #expect(Self.read(c2) == .corrupted(.peerIndexMovedBack(field: "write_index", from: 64, to: 40)))
    }

    @Test func theProducerChecksTheReadersIndexAndItsOwn() throws {
        let m = try VMBusFlatRingMemory(dataCount: 4096)
        let p = try Producer(memory: m)
        _ = p.tryWrite(type: .dataInBand, transactionID: 1, payload: [1])
        #expect(p.commit() == .signal)
        m.setControlU32(4, 96)                   // the reader claims to have read past what was written
        #expect(p.commit() == .noSignal)         // nothing new: nothing read
        _ = p.tryWrite(type: .dataInBand, transactionID: 1, payload: [1])
        #expect(p.commit() == .corrupted(.peerIndexMovedBack(field: "read_index", from: 0, to: 96)))
        #expect(p.tryWrite(type: .dataInBand, transactionID: 1, payload: [1]) == .cutOff)

        let m2 = try VMBusFlatRingMemory(dataCount: 4096)
        let p2 = try Producer(memory: m2)
        m2.setControlU32(0, 8)                   // the guest wrote our write_index
        #expect(p2.tryWrite(type: .dataInBand, transactionID: 1, payload: [1])
                == .corrupted(.ownIndexOverwritten(field: "write_index", expected: 0, found: 8)))
        #expect(p2.commit() == .cutOff)

        let m3 = try VMBusFlatRingMemory(dataCount: 256)
        let p3 = try Producer(memory: m3)
        for _ in 0..<3 { _ = p3.tryWrite(type: .dataInBand, transactionID: 1, payload: [UInt8](repeating: 0, count: 40)) }
        _ = p3.commit()
        m3.setControlU32(4, 7)                   // unaligned
        #expect(p3.tryWrite(type: .dataInBand, transactionID: 1, payload: [UInt8](repeating: 0, count: 40))
                == .corrupted(.indexOutOfRange(field: "read_index", value: 7, dataCount: 256)))
    }

    /// Random bytes everywhere the guest can write (data and indices): the consumer returns
    /// packets whose views stay inside the ring, reports one corruption, and never traps.
    @Test(arguments: [UInt64(21), 22, 23, 24])
    func randomGuestMemoryNeverTraps(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        var corruptions = 0, packets = 0
        for _ in 0..<300 {
            let size = 8 * Int.random(in: 4...128, using: &rng)
            let m = try VMBusFlatRingMemory(dataCount: size)
            m.poke(0, rng.bytes(size))
            let c = try Consumer(memory: m)
            // Sometimes a plausible write index, sometimes anything.
            m.setControlU32(0, Bool.random(using: &rng) ? UInt32(8 * Int.random(in: 0..<(size / 8), using: &rng)) : UInt32.random(in: 0...UInt32.max, using: &rng))
            var reported = false
            for _ in 0..<50 {
                switch c.next() {
                case .packet(let pk):
                    packets += 1
                    #expect(pk.bytes.count <= size && pk.payload.count <= pk.bytes.count)
                    _ = pk.payload.array
                    if Bool.random(using: &rng) { _ = c.commit() }
                case .empty:
                    break
                case .corrupted:
                    #expect(!reported)
                    reported = true
                    corruptions += 1
                case .cutOff:
                    #expect(reported)
                }
                if Int.random(in: 0..<8, using: &rng) == 0 {
                    m.setControlU32(0, UInt32(8 * Int.random(in: 0..<(size / 8), using: &rng)))
                }
            }
        }
        #expect(corruptions > 0)
    }

    /// Random packet sizes through a small ring against a model of what was sent.
    @Test(arguments: [UInt64(31), 32])
    func randomTrafficMatchesTheModel(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let m = try VMBusFlatRingMemory(dataCount: 1024)
        m.setControlU32(64, 1)
        let p = try Producer(memory: m), c = try Consumer(memory: m)
        var sent: [[UInt8]] = [], next = 0
        for id in 0..<3000 {
            let payload = rng.bytes(Int.random(in: 0...200, using: &rng))
            switch p.tryWrite(type: .dataInBand, transactionID: UInt64(id), payload: payload) {
            case .written: sent.append(payload)
            case .full: break
            default: Issue.record("unexpected write result")
            }
            if Bool.random(using: &rng) { _ = p.commit() }
            while Bool.random(using: &rng), case .packet(let pk) = c.next() {
                let expected = sent[next]
                next += 1
                #expect(Array(pk.payload.array.prefix(expected.count)) == expected)
                #expect(pk.payload.count == (expected.count + 7) / 8 * 8)
                if Bool.random(using: &rng) { _ = c.commit() }
            }
            if Bool.random(using: &rng) { _ = c.commit() }
        }
        #expect(next > 1000 && p.corruption == nil && c.corruption == nil)
    }
}
