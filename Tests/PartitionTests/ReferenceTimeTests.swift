import HyperV
import Partition
import Testing

/// The formula, the scale, and the page layout (HyperV.HvReferenceTSCPage).
@Suite struct ReferenceTimeFormulaTests {
    @Test func scaleMatchesKnownValues() {
        // 2^64 * 10^7 / 2.5e9 = 2^64 / 250.
        #expect(HvReferenceTSCPage.scale(tscFrequencyHz: 2_500_000_000) == 0x0106_24DD_2F1A_9FBE)
        #expect(HvReferenceTSCPage.scale(tscFrequencyHz: 1_000_000_000) == UInt64.max / 100)
        #expect(HvReferenceTSCPage.scale(tscFrequencyHz: 20_000_000) == 1 << 63)
        // 2^64 * 10^7 / (2^64 - 1) is just above 10^7.
        #expect(HvReferenceTSCPage.scale(tscFrequencyHz: .max) == 10_000_000)
    }

    @Test func scaleIsTheFloorOf2To64Times10To7OverHz() throws {
        for hz: UInt64 in [10_000_001, 33_333_333, 1_000_000_007, 2_893_000_000, 3_999_999_999, 5_000_000_000,
                           UInt64(1) << 40, .max] {
            let s = try #require(HvReferenceTSCPage.scale(tscFrequencyHz: hz))
            // s * hz <= 10^7 * 2^64 < (s + 1) * hz, checked in 128 bits.
            let lo = s.multipliedFullWidth(by: hz)
            #expect(lo.high < 10_000_000 || (lo.high == 10_000_000 && lo.low == 0))
            let (s1, o) = s.addingReportingOverflow(1)
            if !o {
                let hi = s1.multipliedFullWidth(by: hz)
                #expect(hi.high >= 10_000_000)
            }
        }
    }

    @Test func noScaleForTSCsAt10MHzOrSlower() {
        for hz: UInt64 in [0, 1, 1_000_000, 9_999_999, 10_000_000] {
            #expect(HvReferenceTSCPage.scale(tscFrequencyHz: hz) == nil)
        }
    }

    @Test func oneSecondOfTicksIs10To7() throws {
        for hz: UInt64 in [2_500_000_000, 1_000_000_000, 3_192_000_000, 100_000_000] {
            let s = try #require(HvReferenceTSCPage.scale(tscFrequencyHz: hz))
            let t = HvReferenceTSCPage.referenceTime(tsc: hz, scale: s, offset: 0)
            #expect(t == 10_000_000 || t == 9_999_999, "floor(scale) may lose one unit")
        }
    }

    @Test func hugeValuesDoNotOverflow() throws {
        let s = try #require(HvReferenceTSCPage.scale(tscFrequencyHz: 2_500_000_000))
        // ~233 years of TSC at 2.5 GHz fits the 128-bit product.
        let t = HvReferenceTSCPage.referenceTime(tsc: .max, scale: s, offset: 0)
        #expect(t == UInt64.max / 250 - 1, "floor(scale) loses one unit in 2^64 ticks")
        // Offsets wrap like the guest's u64 arithmetic.
        #expect(HvReferenceTSCPage.referenceTime(tsc: 0, scale: s, offset: -1) == .max)
        #expect(HvReferenceTSCPage.referenceTime(tsc: 2_500_000_000, scale: s, offset: 1) == 10_000_000)
    }

    @Test(arguments: [UInt64(0), 1, 2_500_000_000, 1 << 50, .max - 1, .max])
    func offsetMakesTimeZeroAtCreation(tsc: UInt64) throws {
        let s = try #require(HvReferenceTSCPage.scale(tscFrequencyHz: 2_500_000_000))
        let o = HvReferenceTSCPage.offset(zeroAtTSC: tsc, scale: s)
        #expect(HvReferenceTSCPage.referenceTime(tsc: tsc, scale: s, offset: o) == 0)
    }

    @Test func sequenceSkipsBothInvalidValues() {
        #expect(HvReferenceTSCPage.nextSequence(after: 0) == 1)
        #expect(HvReferenceTSCPage.nextSequence(after: 41) == 42)
        #expect(HvReferenceTSCPage.nextSequence(after: 0xFFFF_FFFE) == 1)
        #expect(HvReferenceTSCPage.nextSequence(after: 0xFFFF_FFFF) == 1)
        #expect(!HvReferenceTSCPage.isValidSequence(0))
        #expect(!HvReferenceTSCPage.isValidSequence(0xFFFF_FFFF))
        #expect(HvReferenceTSCPage.isValidSequence(1))
    }

    @Test func pageLayoutIsLittleEndianAtTheTLFSOffsets() throws {
        let page = HvReferenceTSCPage(tscSequence: 0x0403_0201, tscScale: 0x1817_1615_1413_1211, tscOffset: -2)
        let bytes = page.encoded()
        #expect(bytes.count == 4096)
        #expect(Array(bytes[0..<4]) == [1, 2, 3, 4])
        #expect(Array(bytes[4..<8]) == [0, 0, 0, 0])
        #expect(Array(bytes[8..<16]) == [0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18])
        #expect(Array(bytes[16..<24]) == [0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        #expect(bytes[24...].allSatisfy { $0 == 0 })
        #expect(try #require(HvReferenceTSCPage(decoding: bytes)) == page)
        #expect(HvReferenceTSCPage(decoding: Array(bytes[0..<23])) == nil)
        #expect(HvReferenceTSCPage.sequence(in: bytes) == 0x0403_0201)
    }
}

/// ReferenceClock: the partition's one scale/offset pair.
@Suite struct ReferenceClockTests {
    @Test func startsAtZeroAndCounts100ns() {
        let c = ReferenceClock(tscFrequencyHz: 2_500_000_000, tscAtCreation: 1 << 45)
        #expect(c.referenceTime(atTSC: 1 << 45) == 0)
        let oneSecond = c.referenceTime(atTSC: (1 << 45) + 2_500_000_000)
        #expect(oneSecond >= 9_999_999 && oneSecond <= 10_000_001)
        #expect(c.referenceTime(atTSC: (1 << 45) - 1) == 0, "before creation counts as creation")
        #expect(c.referenceTime(atTSC: 0) == 0)
    }

    @Test func slowTSCFallsBackToExactDivision() {
        let c = ReferenceClock(tscFrequencyHz: 5_000_000, tscAtCreation: 100)
        #expect(c.tscScale == nil)
        #expect(c.referenceTime(atTSC: 100) == 0)
        #expect(c.referenceTime(atTSC: 100 + 5_000_000) == 10_000_000)
        #expect(c.referenceTime(atTSC: 101) == 2)
        #expect(c.referenceTime(atTSC: .max) == .max, "saturates instead of trapping")
        #expect(c.page(sequence: 7).tscSequence == 0, "the page cannot describe this clock")
    }

    @Test func zeroHzNeverTraps() {
        let c = ReferenceClock(tscFrequencyHz: 0, tscAtCreation: 5)
        #expect(c.referenceTime(atTSC: 1_000_000) == 0)
    }

    @Test func pageCarriesTheClocksParameters() throws {
        let c = ReferenceClock(tscFrequencyHz: 3_000_000_000, tscAtCreation: 123_456_789_012)
        let page = c.page(sequence: 9)
        #expect(page.tscSequence == 9)
        #expect(page.tscScale == c.tscScale)
        #expect(page.tscOffset == c.tscOffset)
        for tsc: UInt64 in [123_456_789_012, 123_456_789_013, 1 << 40, 1 << 60] {
            #expect(page.referenceTime(tsc: tsc) == c.referenceTime(atTSC: tsc))
        }
    }
}

/// TIME_REF_COUNT and REFERENCE_TSC through the partition.
@Suite struct ReferenceTimeMSRTests {
    let tscPage: UInt64 = 0x6000

    private struct Faulted: Error {}

    private func timeRefCount(_ p: Partition, vp: UInt32 = 0) throws -> UInt64 {
        guard case .value(let v) = p.readMSR(vp: vp, index: HvMSR.timeRefCount) else { throw Faulted() }
        return v
    }

    private func page(_ env: FakePartitionEnvironment, at gpa: UInt64) throws -> HvReferenceTSCPage {
        try #require(HvReferenceTSCPage(decoding: env.memory.bytes(at: gpa, count: 4096)))
    }

    @Test func timeRefCountStartsAtZeroAndIsReadOnly() throws {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        #expect(try timeRefCount(p) == 0)
        env.clock.advance(nanoseconds: 1_000_000_000)
        let t = try timeRefCount(p, vp: 1)
        #expect(t >= 9_999_999 && t <= 10_000_000)
        #expect(p.writeMSR(vp: 0, index: HvMSR.timeRefCount, value: 0) == .generalProtection)
        #expect(p.writeMSR(vp: 0, index: HvMSR.timeRefCount, value: 1) == .generalProtection)
        #expect(p.referenceTime() == t)
    }

    @Test func enablingPublishesThePageBeforeReturning() throws {
        let env = FakePartitionEnvironment()
        env.memory.fill(0xAB, at: tscPage, count: 4096)
        let p = env.makePartition()
        #expect(p.readMSR(vp: 0, index: HvMSR.referenceTsc) == .value(0))
        #expect(p.writeMSR(vp: 0, index: HvMSR.referenceTsc, value: tscPage | 1) == .written)
        #expect(p.readMSR(vp: 1, index: HvMSR.referenceTsc) == .value(tscPage | 1))
        let pg = try page(env, at: tscPage)
        #expect(pg.isValid)
        #expect(pg.tscScale == HvReferenceTSCPage.scale(tscFrequencyHz: 2_500_000_000))
        #expect(pg.tscOffset == p.referenceClock.tscOffset)
        #expect(env.memory.bytes(at: tscPage + 4, count: 4) == [0, 0, 0, 0], "Reserved1")
        #expect(env.memory.bytes(at: tscPage + 24, count: 4096 - 24).allSatisfy { $0 == 0 }, "reserved area")
        #expect(env.memory.bytes(at: tscPage + 4096, count: 1) == [0], "nothing past the page")
    }

    @Test func sequenceIsWrittenLastAfterAnInvalidMarker() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        _ = p.writeMSR(vp: 0, index: HvMSR.referenceTsc, value: tscPage | 1)
        let w = env.memory.writes.map { "\($0.gpa):\($0.count)" }
        // Sequence 0 first, then the rest of the page, then the valid sequence.
        #expect(w == ["\(tscPage):4", "\(tscPage + 4):4092", "\(tscPage):4"])
    }

    /// What the guest computes from the page equals what the MSR says, at the same TSC.
    @Test func pageFormulaEqualsTheMSRAtTheSameTSC() throws {
        for hz: UInt64 in [2_500_000_000, 1_000_000_000, 2_893_437_000, 3_600_000_001, 10_000_001] {
            let env = FakePartitionEnvironment(tscFrequencyHz: hz, tsc: 0x0000_1234_5678_9ABC)
            let p = env.makePartition()
            _ = p.writeMSR(vp: 0, index: HvMSR.referenceTsc, value: tscPage | 1)
            let pg = try page(env, at: tscPage)
            var steps: UInt64 = 1
            for _ in 0..<200 {
                env.clock.advance(ticks: steps)
                steps = steps &* 3 &+ 7919
                steps %= 1 << 42
                let msr = try timeRefCount(p, vp: UInt32(steps % 2))
                #expect(pg.referenceTime(tsc: env.clock.tsc) == msr, "hz \(hz) tsc \(env.clock.tsc)")
            }
        }
    }

    @Test func msrNeverGoesBackwards() throws {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        env.clock.advance(ticks: 5_000_000_000)
        let t1 = try timeRefCount(p, vp: 0)
        // A VP whose TSC read lags (or a guest that rewrote its TSC) must not see time go back.
        env.clock.tsc -= 1_000_000_000
        let t2 = try timeRefCount(p, vp: 1)
        #expect(t2 >= t1)
        env.clock.advance(ticks: 2_000_000_000)
        #expect(try timeRefCount(p, vp: 0) > t1)
    }

    @Test func msrIsMonotonicUnderConcurrentReaders() async throws {
        let env = FakePartitionEnvironment()
        let p = env.makePartition(.default, vpCount: 4)
        let clock = env.clock
        let failures = await withTaskGroup(of: Int.self) { group in
            group.addTask {
                for _ in 0..<20_000 { clock.advance(ticks: 997) }
                return 0
            }
            for vp: UInt32 in 0..<4 {
                group.addTask {
                    var last: UInt64 = 0
                    var failures = 0
                    for _ in 0..<20_000 {
                        guard case .value(let t) = p.readMSR(vp: vp, index: HvMSR.timeRefCount) else { return 1 }
                        if t < last { failures += 1 }
                        last = t
                    }
                    return failures
                }
            }
            return await group.reduce(0, +)
        }
        #expect(failures == 0)
    }

    @Test func everyReEnableChangesTheSequenceAndSkipsInvalidValues() throws {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        var seen: [UInt32] = []
        for i in 0..<50 {
            let gpa: UInt64 = i % 3 == 0 ? 0x6000 : 0x7000
            #expect(p.writeMSR(vp: 0, index: HvMSR.referenceTsc, value: gpa | 1) == .written)
            let s = try page(env, at: gpa).tscSequence
            #expect(HvReferenceTSCPage.isValidSequence(s))
            #expect(seen.last != s)
            seen.append(s)
            if i % 5 == 0 { _ = p.writeMSR(vp: 0, index: HvMSR.referenceTsc, value: gpa) }
        }
        #expect(Set(seen).count == seen.count, "never reused")
    }

    @Test func newSequenceDiffersFromWhatThePageHeld() throws {
        let env = FakePartitionEnvironment()
        env.memory.store32(1, at: tscPage) // what the first enable would otherwise publish
        let p = env.makePartition()
        _ = p.writeMSR(vp: 0, index: HvMSR.referenceTsc, value: tscPage | 1)
        let s = try page(env, at: tscPage).tscSequence
        #expect(s != 1)
        #expect(HvReferenceTSCPage.isValidSequence(s))
    }

    @Test func disablingStoresAndTouchesNoMemory() throws {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        _ = p.writeMSR(vp: 0, index: HvMSR.referenceTsc, value: tscPage | 1)
        let writes = env.memory.writes.count
        #expect(p.writeMSR(vp: 0, index: HvMSR.referenceTsc, value: tscPage) == .written)
        #expect(p.readMSR(vp: 0, index: HvMSR.referenceTsc) == .value(tscPage))
        #expect(p.writeMSR(vp: 0, index: HvMSR.referenceTsc, value: 0xFFFF_FFFF_FFFF_F000) == .written)
        #expect(env.memory.writes.count == writes)
        #expect(try timeRefCount(p) == 0, "the MSR works with the page off")
    }

    @Test func reservedBitsAreStored() {
        let p = FakePartitionEnvironment().makePartition()
        let v = tscPage | HvMSR.ReferenceTsc.reservedP | 1
        #expect(p.writeMSR(vp: 0, index: HvMSR.referenceTsc, value: v) == .written)
        #expect(p.readMSR(vp: 0, index: HvMSR.referenceTsc) == .value(v))
    }

    @Test(arguments: [(1 << 20, 1 << 20), (0x1800, 0x1000), (1 << 20, 0xFFFF_FFFF_FFFF_F000)] as [(Int, UInt64)])
    func pageOutsideRAMFaults(memorySize: Int, page: UInt64) {
        let env = FakePartitionEnvironment(memorySize: memorySize)
        let p = env.makePartition()
        #expect(p.writeMSR(vp: 0, index: HvMSR.referenceTsc, value: page | 1) == .generalProtection)
        #expect(p.readMSR(vp: 0, index: HvMSR.referenceTsc) == .value(0))
        #expect(env.memory.writes.isEmpty)
    }

    @Test func slowTSCPublishesAnInvalidPageAndTheMSRStillCounts() throws {
        let env = FakePartitionEnvironment(tscFrequencyHz: 5_000_000, tsc: 1000)
        let p = env.makePartition()
        #expect(p.writeMSR(vp: 0, index: HvMSR.referenceTsc, value: tscPage | 1) == .written)
        #expect(try page(env, at: tscPage).tscSequence == 0)
        env.clock.advance(ticks: 5_000_000)
        #expect(try timeRefCount(p) == 10_000_000)
    }

    @Test func timeMSRsNeedTheFeature() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition(Enlightenments(features: Enlightenments.defaultFeatures.subtracting([.time])))
        for index in [HvMSR.timeRefCount, HvMSR.referenceTsc] {
            #expect(p.readMSR(vp: 0, index: index) == .generalProtection)
            #expect(p.writeMSR(vp: 0, index: index, value: tscPage | 1) == .generalProtection)
        }
        #expect(env.memory.writes.isEmpty)
    }

    @Test func referenceTimeForTheMonitorMatchesTheMSR() throws {
        let env = FakePartitionEnvironment()
        let p = env.makePartition(.base) // no `time` feature: the monitor still has a clock
        env.clock.advance(nanoseconds: 3_000_000_000)
        let t = p.referenceTime()
        #expect(t >= 29_999_999 && t <= 30_000_000)
    }
}
