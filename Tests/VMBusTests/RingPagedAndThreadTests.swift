import FuzzSeeds
import Glibc
import Testing
@testable import VMBus

@Suite("VMBus ring over GPADL pages of guest RAM")
struct RingPagedTests {
    /// 64 pages of "guest RAM" at GPA 0x100000, page-aligned.
    final class RAM: @unchecked Sendable {
        static let base: UInt64 = 0x10_0000
        let pages = 64
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 64 * 4096, alignment: 4096)
        init() { memory.initializeMemory(as: UInt8.self, repeating: 0, count: 64 * 4096) }
        deinit { memory.deallocate() }
        var map: VMBusGuestMemoryMap {
            VMBusGuestMemoryMap(regions: [.init(gpa: Self.base..<(Self.base + UInt64(pages) * 4096), host: memory)])
        }
        func pfn(_ page: Int) -> UInt64 { Self.base / 4096 + UInt64(page) }
    }

    @Test func guestMemoryMapChecksEveryPage() {
        let ram = RAM()
        #expect(ram.map.page(pfn: ram.pfn(0)) == ram.memory)
        #expect(ram.map.page(pfn: ram.pfn(63)) == ram.memory + 63 * 4096)
        #expect(ram.map.page(pfn: ram.pfn(64)) == nil)
        #expect(ram.map.page(pfn: RAM.base / 4096 - 1) == nil && ram.map.page(pfn: UInt64.max) == nil)
        #expect(throws: VMBusRingSetupError.self) { try VMBusPagedRingMemory(map: ram.map, pfns: [ram.pfn(0), ram.pfn(64)]) }
        #expect(throws: VMBusRingSetupError.self) { try VMBusPagedRingMemory(map: ram.map, pfns: [ram.pfn(0)]) }
    }

    @Test func gpadlSplitsIntoTheTwoRings() throws {
        let pfns = (0..<64).map { UInt64($0) }
        let (g2h, h2g) = try #require(VMBusChannelRings.split(pfns: pfns, downstreamPageOffset: 32))
        #expect(Array(g2h) == Array(0..<32) && Array(h2g) == Array(32..<64))
        #expect(VMBusChannelRings.split(pfns: pfns, downstreamPageOffset: 1) == nil)
        #expect(VMBusChannelRings.split(pfns: pfns, downstreamPageOffset: 63) == nil)
        #expect(VMBusChannelRings.split(pfns: [1, 2, 3], downstreamPageOffset: 2) == nil)
    }

    /// Data pages in a scrambled order: packets cross page boundaries and discontinuities and
    /// still read back whole; the guest's bytes land where the GPADL says.
    @Test func scatteredPagesCarryPacketsAcrossBoundaries() throws {
        let ram = RAM()
        let order = [5, 9, 8, 20, 21, 22, 3]             // control page 5, then 6 data pages
        let ring = try VMBusPagedRingMemory(map: ram.map, pfns: ArraySlice(order.map(ram.pfn)))
        #expect(ring.dataCount == 6 * 4096 && ring.control == ram.memory + 5 * 4096)
        // Pages 20, 21, 22 (data pages 2...4) are contiguous in RAM: one run of 3 pages.
        #expect(ring.dataRun(at: 2 * 4096 + 100).count == 3 * 4096 - 100)
        #expect(ring.dataRun(at: 1 * 4096).count == 4096)    // page 8 after page 9: not contiguous
        let p = try VMBusRingProducer(memory: ring), c = try VMBusRingConsumer(memory: ring)
        var rng = SeededRandom(seed: 7)
        for i in 0..<400 {
            let payload = rng.bytes(Int.random(in: 1...3000, using: &rng))
            #expect(p.tryWrite(type: .dataInBand, transactionID: UInt64(i), payload: payload) == .written)
            _ = p.commit()
            guard case .packet(let pk) = c.next() else { Issue.record("no packet \(i)"); return }
            #expect(Array(pk.payload.array.prefix(payload.count)) == payload)
            _ = c.commit()
        }
        // The write index lives in the control page in guest RAM.
        let control = ram.memory + 5 * 4096
        #expect(control.load(as: UInt32.self) != 0 && control.load(as: UInt32.self) == control.load(fromByteOffset: 4, as: UInt32.self))
    }
}

@Suite("VMBus ring: two threads, one signal per wake-up, no lost wake-up")
struct RingThreadTests {
    /// The writer publishes and signals by the rules; the reader drains with interrupts masked,
    /// unmasks, and sleeps only when `enableInterrupts` says so. Each side waits on its
    /// interrupt with a timeout: a timeout while the other side's work is visible is a lost
    /// wake-up, which the missing fence in either `commit` or `enableInterrupts` produces. A
    /// small ring forces the full-ring path (pending_send_sz and the reader's signal) too.
    @Test(arguments: [(128, 1), (256, 3), (512, 1), (1024, 3), (4096, 1)])
    func producerAndConsumerNeverLoseAWakeUp(ringBytes: Int, batch: UInt64) throws {
        let memory = try VMBusFlatRingMemory(dataCount: ringBytes)
        memory.setControlU32(64, 1)
        let producer = try VMBusRingProducer(memory: memory)
        let consumer = try VMBusRingConsumer(memory: memory)
        let toReader = SpinInterrupt(), toWriter = SpinInterrupt()
        let count = 300_000
        final class Outcome: @unchecked Sendable { var lostWriter = 0, lostReader = 0, received = 0, outOfOrder = 0, signals = 0 }
        let out = Outcome()

        let writer = TestThread.spawn {
            var seq: UInt64 = 0
            while seq < UInt64(count) {
                let size = Int(seq % 5) * 8 + 8
                let r = withUnsafeBytes(of: seq) { s in
                    producer.tryWrite(type: .dataInBand, transactionID: seq, payload: UnsafeRawBufferPointer(rebasing: s.prefix(min(8, size))))
                }
                switch r {
                case .written:
                    seq += 1
                    // Publish in small batches: one signal per batch at most.
                    if seq % batch == 0 || seq == UInt64(count), producer.commit() == .signal { toReader.signal() }
                case .full:
                    if producer.commit() == .signal { toReader.signal() }
                    let need = VMBusRingProducer<VMBusFlatRingMemory>.footprint(headerExtension: 0, payload: size)
                    if !producer.armForSpace(need) {
                        if !toWriter.wait(milliseconds: 2000) {
                            out.lostWriter += 1
                            return
                        }
                    }
                default:
                    return
                }
            }
        }
        let reader = TestThread.spawn {
            var expected: UInt64 = 0
            while expected < UInt64(count) {
                consumer.disableInterrupts()
                drain: while true {
                    switch consumer.next() {
                    case .packet(let pk):
                        if pk.descriptor.transactionID != expected || pk.payload.load(UInt64.self, at: 0).map({ $0 & 0xFF }) != expected & 0xFF {
                            out.outOfOrder += 1
                        }
                        expected += 1
                        out.received += 1
                    case .empty:
                        break drain
                    default:
                        return
                    }
                    if expected % 7 == 0, consumer.commit() == .signal { out.signals += 1; toWriter.signal() }
                }
                if consumer.commit() == .signal { out.signals += 1; toWriter.signal() }
                if expected == UInt64(count) { break }
                switch consumer.enableInterrupts() {
                case .sleep:
                    if !toReader.wait(milliseconds: 2000) {
                        out.lostReader += 1
                        return
                    }
                case .readAgain:
                    continue
                default:
                    return
                }
            }
        }
        writer.join()
        if out.lostWriter > 0 { toReader.signal() }
        reader.join()
        #expect(out.lostWriter == 0 && out.lostReader == 0)
        #expect(out.received == count && out.outOfOrder == 0)
        #expect(producer.corruption == nil && consumer.corruption == nil)
        if ringBytes == 256 { #expect(out.signals > 0) }   // the full-ring path ran
    }
}
