import HyperV
import Partition
import Testing

/// Event flags: the SIEF page, 0->1 interrupts, masked/polling/disabled SINTs.
@Suite struct SynICEventTests {
    private typealias Raised = FakeSynICInterrupts.Raised

    @Test func setsTheBitAndInterruptsOnlyOnZeroToOne() {
        let f = SynICFixture()
        f.enableSynIC()
        #expect(f.p.signalEvent(vp: 0, sint: 2, flag: 5) == .success)
        #expect(f.flag(sint: 2, 5))
        #expect(f.raised == [Raised(vp: 0, sint: 2, vector: 0xF3, autoEOI: false)])
        // Already set: success, no interrupt.
        #expect(f.p.signalEvent(vp: 0, sint: 2, flag: 5) == .success)
        #expect(f.raised.count == 1)
        // Another flag in the same byte is its own 0->1.
        #expect(f.p.signalEvent(vp: 0, sint: 2, flag: 6) == .success)
        #expect(f.raised.count == 2)
        // The guest clears flag 5 (LOCK AND): the next signal interrupts again.
        let byte = SynICFixture.siefp(0) + 2 * 256
        f.env.memory.store32(f.env.memory.load32(at: byte) & ~(1 << 5), at: byte)
        #expect(f.p.signalEvent(vp: 0, sint: 2, flag: 5) == .success)
        #expect(f.raised.count == 3)
    }

    @Test func flagLayoutIsALittleEndianBitmapPerSint() {
        let f = SynICFixture()
        f.enableSynIC(sints: [0: 0x30, 15: 0x3F])
        for (sint, flag) in [(0, 0), (0, 7), (0, 8), (15, 2047), (15, 1000)] {
            #expect(f.p.signalEvent(vp: 0, sint: sint, flag: flag) == .success)
        }
        let page = f.env.memory.bytes(at: SynICFixture.siefp(0), count: 4096)
        var expected = [UInt8](repeating: 0, count: 4096)
        expected[0] = 0x81          // flags 0 and 7
        expected[1] = 0x01          // flag 8
        expected[15 * 256 + 255] = 0x80  // flag 2047 of SINT15
        expected[15 * 256 + 125] = 0x01  // flag 1000 = byte 125 bit 0
        #expect(page == expected)
        #expect(HvEventFlagsPage.location(sint: 3, flag: 17) == (3 * 256 + 2, 0x02))
    }

    @Test func maskedSintRefusesAndSetsNothing() {
        let f = SynICFixture()
        f.enableSynIC(sints: [2: 0x100F3])
        #expect(f.p.signalEvent(vp: 0, sint: 2, flag: 1) == .invalidSynicState)
        #expect(!f.flag(sint: 2, 1))
        #expect(f.raised.isEmpty)
        #expect(f.p.signalEvent(vp: 0, sint: 4, flag: 1) == .invalidSynicState, "never programmed: masked")
    }

    @Test func pollingSintSetsTheFlagWithoutInterrupt() {
        let f = SynICFixture(pollingEnlightenments)
        f.enableSynIC(sints: [2: HvMSR.Sint.polling | HvMSR.Sint.masked | 0xF3])
        #expect(f.p.signalEvent(vp: 0, sint: 2, flag: 9) == .success)
        #expect(f.flag(sint: 2, 9))
        #expect(f.raised.isEmpty)
    }

    @Test func pollingBitWithoutTheFeatureIsJustMasked() {
        let f = SynICFixture()
        f.enableSynIC(sints: [2: HvMSR.Sint.polling | HvMSR.Sint.masked | 0xF3])
        #expect(f.p.signalEvent(vp: 0, sint: 2, flag: 9) == .invalidSynicState)
    }

    @Test func disabledSynICOrEventPageRefuses() {
        let f = SynICFixture()
        f.wrmsr(HvMSR.sint(2), 0xF3)
        f.wrmsr(HvMSR.siefp, SynICFixture.siefp(0) | 1)
        #expect(f.p.signalEvent(vp: 0, sint: 2, flag: 1) == .invalidSynicState, "SCONTROL off")
        f.wrmsr(HvMSR.scontrol, 1)
        f.wrmsr(HvMSR.siefp, SynICFixture.siefp(0))
        #expect(f.p.signalEvent(vp: 0, sint: 2, flag: 1) == .invalidSynicState, "SIEFP off")
        #expect(!f.flag(sint: 2, 1) && f.raised.isEmpty)
        f.wrmsr(HvMSR.siefp, SynICFixture.siefp(0) | 1)
        #expect(f.p.signalEvent(vp: 0, sint: 2, flag: 1) == .success)
        // The message page does not matter for events.
        #expect(f.rdmsr(HvMSR.simp) == 0)
    }

    @Test func eventsToTheOtherVP() {
        let f = SynICFixture()
        f.enableSynIC(vp: 1, sints: [3: 0x33])
        #expect(f.p.signalEvent(vp: 1, sint: 3, flag: 2) == .success)
        #expect(f.flag(vp: 1, sint: 3, 2))
        #expect(!f.flag(vp: 0, sint: 3, 2))
        #expect(f.raised == [Raised(vp: 1, sint: 3, vector: 0x33, autoEOI: false)])
    }

    @Test func invalidArguments() {
        let f = SynICFixture()
        f.enableSynIC()
        #expect(f.p.signalEvent(vp: 2, sint: 2, flag: 0) == .invalidVPIndex)
        #expect(f.p.signalEvent(vp: 0, sint: 16, flag: 0) == .invalidParameter)
        #expect(f.p.signalEvent(vp: 0, sint: 2, flag: 2048) == .invalidParameter)
        #expect(f.p.signalEvent(vp: 0, sint: 2, flag: -1) == .invalidParameter)
        #expect(f.raised.isEmpty)
    }
}
