import Testing
@testable import VMBus

@Suite("VMBus ring: layout, packets, wrap, signalling, full ring")
struct RingTests {
    typealias Producer = VMBusRingProducer<VMBusFlatRingMemory>
    typealias Consumer = VMBusRingConsumer<VMBusFlatRingMemory>

    static func pair(_ dataCount: Int = 4096) throws -> (VMBusFlatRingMemory, Producer, Consumer) {
        let m = try VMBusFlatRingMemory(dataCount: dataCount)
        m.setControlU32(64, 1)   // feature_bits: pending_send_sz honoured (Linux sets it)
        return (m, try Producer(memory: m), try Consumer(memory: m))
    }

    static func packet(_ c: Consumer, sourceLocation: SourceLocation = #_sourceLocation) -> VMBusRingPacket<VMBusFlatRingMemory>? {
        if case .packet(let p) = c.next() { return p }
        Issue.record("expected a packet", sourceLocation: sourceLocation)
        return nil
    }

    @Test func packetLayoutIndicesAndTrailerAreLinuxs() throws {
        let (m, p, c) = try Self.pair()
        #expect(p.tryWrite(type: .dataInBand, flags: 1, transactionID: 0x1122_3344_5566_7788, payload: [1, 2, 3]) == .written)
        #expect(m.controlU32(0) == 0)                      // not published before commit
        #expect(p.commit() == .signal)                     // empty ring, mask 0: the reader may sleep
        #expect(m.controlU32(0) == 32)                     // 16 + 8 (payload padded) + 8 trailer
        #expect(m.peek(0, 24) == [6, 0, 2, 0, 3, 0, 1, 0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 1, 2, 3, 0, 0, 0, 0, 0])
        #expect(m.peek(24, 8) == [0, 0, 0, 0, 0, 0, 0, 0])  // trailer: start 0 << 32
        #expect(p.tryWrite(type: .completion, transactionID: 9, payload: []) == .written)
        #expect(p.commit() == .noSignal)                   // the reader has not caught up
        #expect(m.peek(48, 8) == [0, 0, 0, 0, 32, 0, 0, 0]) // trailer of the second: 32 << 32
        let a = try #require(Self.packet(c))
        #expect(a.descriptor == VMBusPacketDescriptor(type: .dataInBand, offset8: 2, len8: 3, flags: 1, transactionID: 0x1122_3344_5566_7788))
        #expect(a.payload.array == [1, 2, 3, 0, 0, 0, 0, 0] && a.headerExtension.count == 0)
        #expect(a.payload.load(UInt16.self, at: 1) == 0x0302 && a.payload.load(UInt64.self, at: 1) == nil)
        let b = try #require(Self.packet(c))
        #expect(b.descriptor.type == .completion && b.payload.count == 0)
        guard case .empty = c.next() else { Issue.record("expected empty"); return }
        #expect(m.controlU32(4) == 0)                      // not freed before commit
        #expect(c.commit() == .noSignal)
        #expect(m.controlU32(4) == 56)
    }

    @Test func headerExtensionAndLargePayload() throws {
        let (_, p, c) = try Self.pair()
        let ext: [UInt8] = (0..<24).map { UInt8($0) }
        let payload: [UInt8] = (0..<100).map { UInt8(200 - $0) }
        let r = ext.withUnsafeBytes { e in payload.withUnsafeBytes { p.tryWrite(type: .dataUsingGPADirect, transactionID: 1, headerExtension: e, payload: $0) } }
        #expect(r == .written)
        _ = p.commit()
        let pk = try #require(Self.packet(c))
        #expect(pk.descriptor.offset8 == 5 && pk.descriptor.len8 == 5 + 13)
        #expect(pk.headerExtension.array == ext)
        #expect(Array(pk.payload.array.prefix(100)) == payload && pk.payload.count == 104)
        #expect(pk.payload.withContiguousBytes { Array($0.prefix(2)) } == [200, 199])
        #expect(ext.withUnsafeBytes { e in p.tryWrite(type: .dataInBand, transactionID: 1, headerExtension: UnsafeRawBufferPointer(rebasing: e[0..<5]), payload: e) } == .tooLarge)
    }

    @Test func packetsWrapAroundTheEndOfTheData() throws {
        let (_, p, c) = try Self.pair(256)
        // 40-byte footprints: the sixth and seventh cross the end at different points.
        for round in 0..<40 {
            let payload = (0..<16).map { UInt8(truncatingIfNeeded: round * 16 + $0) }
            #expect(p.tryWrite(type: .dataInBand, transactionID: UInt64(round), payload: payload) == .written)
            _ = p.commit()
            let pk = try #require(Self.packet(c))
            #expect(pk.descriptor.transactionID == UInt64(round) && pk.payload.array == payload)
            // A view that wraps is not contiguous; the copy still is right.
            if pk.bytes.withContiguousBytes({ _ in true }) == nil { #expect(pk.bytes.array.count == 32) }
            _ = c.commit()
        }
    }

    @Test func signalRulesAfterWriting() throws {
        let (m, p, c) = try Self.pair()
        // A batch: one signal.
        for i in 0..<5 { #expect(p.tryWrite(type: .dataInBand, transactionID: UInt64(i), payload: [1]) == .written) }
        #expect(p.uncommitted == 5 * 32)
        #expect(p.commit() == .signal)
        // Reader masked its interrupts (draining): no signal.
        c.disableInterrupts()
        #expect(m.controlU32(8) == 1)
        for _ in 0..<5 { _ = c.next() }
        _ = c.commit()
        _ = p.tryWrite(type: .dataInBand, transactionID: 9, payload: [1])
        #expect(p.commit() == .noSignal)
        // The reader turns interrupts back on and finds the packet itself: no sleeping on it.
        #expect(c.enableInterrupts() == .readAgain)
        _ = c.next()
        _ = c.commit()
        #expect(c.enableInterrupts() == .sleep && m.controlU32(8) == 0)
        _ = p.tryWrite(type: .dataInBand, transactionID: 10, payload: [1])
        #expect(p.commit() == .signal)
        #expect(p.commit() == .noSignal)   // nothing new
    }

    @Test func fullRingPendingSendSizeAndTheReadersSignal() throws {
        let (m, p, c) = try Self.pair(256)
        let payload = [UInt8](repeating: 7, count: 40)     // footprint 64
        #expect(Producer.footprint(headerExtension: 0, payload: 40) == 64)
        for _ in 0..<3 { #expect(p.tryWrite(type: .dataInBand, transactionID: 1, payload: payload) == .written) }
        // 64 bytes left: a 64-byte packet would make the ring look empty, so it does not fit.
        #expect(p.tryWrite(type: .dataInBand, transactionID: 1, payload: payload) == .full)
        #expect(p.commit() == .signal)
        #expect(p.armForSpace(64) == false)
        #expect(m.controlU32(12) == 64)
        // Reading one packet frees 64 + 64 = 128 > 64: crossing the threshold, signal once.
        _ = c.next()
        #expect(c.commit() == .signal)
        _ = c.next()
        #expect(c.commit() == .noSignal)   // already above: no second signal
        #expect(p.tryWrite(type: .dataInBand, transactionID: 2, payload: payload) == .written)
        #expect(m.controlU32(12) == 0)      // cleared by the write
        // Without the feature bit the reader never signals.
        m.setControlU32(64, 0)
        _ = p.commit()
        _ = p.tryWrite(type: .dataInBand, transactionID: 3, payload: payload)
        _ = p.armForSpace(1000)
        _ = c.next()
        #expect(c.commit() == .noSignal)
        #expect(p.tryWrite(type: .dataInBand, transactionID: 3, payload: [UInt8](repeating: 0, count: 300)) == .tooLarge)
    }

    @Test func restartedSidesResumeFromTheIndicesInTheRing() throws {
        let (m, p, c) = try Self.pair()
        _ = p.tryWrite(type: .dataInBand, transactionID: 1, payload: [1])
        _ = p.tryWrite(type: .dataInBand, transactionID: 2, payload: [2])
        _ = p.commit()
        _ = c.next()
        _ = c.commit()
        let p2 = try Producer(memory: m), c2 = try Consumer(memory: m)
        _ = p2.tryWrite(type: .dataInBand, transactionID: 3, payload: [3])
        _ = p2.commit()
        #expect(Self.packet(c2)?.descriptor.transactionID == 2)
        #expect(Self.packet(c2)?.descriptor.transactionID == 3)
        m.setControlU32(0, 13)
        #expect(throws: VMBusRingSetupError.corrupted(.indexOutOfRange(field: "write_index", value: 13, dataCount: 4096))) { try Consumer(memory: m) }
        #expect(throws: VMBusRingSetupError.self) { try VMBusFlatRingMemory(dataCount: 12) }
    }
}

@Suite("VMBus GPA-direct range lists read from the ring")
struct GPADirectRangeTests {
    typealias Ranges = VMBusGPADirectRanges<VMBusFlatRingMemory>

    static func packet(_ ext: [UInt64]) throws -> (VMBusRingConsumer<VMBusFlatRingMemory>, VMBusRingPacket<VMBusFlatRingMemory>) {
        let m = try VMBusFlatRingMemory(dataCount: 4096)
        let p = try VMBusRingProducer(memory: m), c = try VMBusRingConsumer(memory: m)
        let r = ext.withUnsafeBytes { e in p.tryWrite(type: .dataUsingGPADirect, transactionID: 1, headerExtension: e,
                                                       payload: UnsafeRawBufferPointer(start: nil, count: 0)) }
        #expect(r == .written)
        _ = p.commit()
        guard case .packet(let pk) = c.next() else { throw VMBusRingSetupError.badGeometry("no packet") }
        return (c, pk)
    }

    static func all(_ ext: [UInt64]) throws -> Result<[(UInt32, UInt32, [UInt64])], Ranges.Problem> {
        let (_, pk) = try packet(ext)
        do throws(Ranges.Problem) {
            var it = try Ranges(packet: pk)
            var out: [(UInt32, UInt32, [UInt64])] = []
            while let r = try it.next() { out.append((r.byteCount, r.byteOffset, (0..<r.pageCount).compactMap { r.pfn($0) })) }
            return .success(out)
        } catch {
            return .failure(error)
        }
    }

    @Test func storvscStyleListsParse() throws {
        // reserved (garbage) | rangecount 2, then {len 8192, offset 0, 2 PFNs}, {len 100, offset 4050, 2 PFNs}.
        let ext: [UInt64] = [0xDEAD_BEEF | 2 << 32, 8192, 0x100, 0x101, 100 | 4050 << 32, 0x200, 0x201]
        let got = try Self.all(ext).get()
        #expect(got.count == 2)
        #expect(got[0].0 == 8192 && got[0].1 == 0 && got[0].2 == [0x100, 0x101])
        #expect(got[1].0 == 100 && got[1].1 == 4050 && got[1].2 == [0x200, 0x201])
    }

    @Test func badListsAreRefused() throws {
        #expect(throws: Ranges.Problem.noRangeHeader) { _ = try Ranges(packet: try Self.packet([]).1) }
        #expect(throws: Ranges.Problem.noRanges) { _ = try Ranges(packet: try Self.packet([0]).1) }
        func failure(_ ext: [UInt64]) throws -> Ranges.Problem? {
            if case .failure(let p) = try Self.all(ext) { return p }
            return nil
        }
        #expect(try failure([1 << 32, 100 | 4096 << 32, 1]) == .offsetNotInPage(index: 0, offset: 4096))
        #expect(try failure([1 << 32, 0, 1]) == .emptyRange(index: 0))
        #expect(try failure([1 << 32, 8192, 1]) == .rangePastExtension(index: 0))          // one PFN of two
        #expect(try failure([2 << 32, 4096, 1]) == .rangePastExtension(index: 1))          // second range missing
        #expect(try failure([1 << 32, 0xFFFF_FFFF | 4095 << 32, 1]) == .rangePastExtension(index: 0))
    }
}
