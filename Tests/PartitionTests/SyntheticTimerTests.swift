import HyperV
import Partition
import Testing

/// The STIMER MSRs through the partition: expiry, direct mode, TimerExpired messages and the
/// host-timer requests.
@Suite struct SyntheticTimerTests {
    private typealias Raised = FakeSynICInterrupts.Raised
    private typealias Sent = FakeInterrupts.Sent
    private let c = HvMSR.STimerConfig.self

    private func timerMessage(_ f: SynICFixture, vp: UInt32 = 0, sint: Int) -> HvTimerMessagePayload? {
        guard let m = f.message(vp: vp, sint: sint), m.type == .timerExpired, m.payload.count == 24 else { return nil }
        return HvTimerMessagePayload(decoding: m.payload)
    }

    // MARK: MSRs

    @Test func gatedByTheStimerFeature() {
        let without = SynICFixture(Enlightenments(features: [.synic, .time]))
        let with = SynICFixture(Enlightenments(features: [.synic, .time, .stimer]))
        for n in 0..<4 {
            for index in [HvMSR.stimerConfig(n), HvMSR.stimerCount(n)] {
                #expect(without.p.readMSR(vp: 0, index: index) == .generalProtection)
                #expect(without.wrmsr(index, 0) == .generalProtection)
                #expect(with.rdmsr(index) == 0, "reset value")
                #expect(with.wrmsr(index, 0) == .written)
            }
        }
    }

    @Test func registersReadBackPerTimerAndPerVP() {
        let f = SynICFixture()
        for n in 0..<4 {
            let config = c.periodic | c.lazy | c.autoEnable | UInt64(0x30 + n) << c.apicVectorShift | UInt64(n + 1) << c.sintxShift
            #expect(f.wrmsr(HvMSR.stimerConfig(n), config, vp: 1) == .written)
            #expect(f.wrmsr(HvMSR.stimerCount(n), 0, vp: 1) == .written)
            #expect(f.rdmsr(HvMSR.stimerConfig(n), vp: 1) == config)
            #expect(f.rdmsr(HvMSR.stimerCount(n), vp: 1) == 0)
        }
        f.wrmsr(HvMSR.stimerCount(2), 0x1234_5678_9ABC, vp: 1)
        #expect(f.rdmsr(HvMSR.stimerCount(2), vp: 1) == 0x1234_5678_9ABC)
        #expect(f.rdmsr(HvMSR.stimerConfig(2), vp: 0) == 0 && f.rdmsr(HvMSR.stimerCount(2), vp: 0) == 0)
    }

    @Test func configReservedBitsFault() {
        let f = SynICFixture()
        for bit in [13, 14, 15, 20, 31, 32, 63] {
            #expect(f.wrmsr(HvMSR.stimerConfig(0), 1 << UInt64(bit) | 2 << c.sintxShift) == .generalProtection, "bit \(bit)")
        }
        #expect(f.rdmsr(HvMSR.stimerConfig(0)) == 0)
        #expect(c.reservedZ == 0xFFFF_FFFF_FFF0_E000)
        // Every defined bit is accepted.
        #expect(f.wrmsr(HvMSR.stimerConfig(0), 0xF_1FFE) == .written)
        #expect(f.rdmsr(HvMSR.stimerConfig(0)) == 0xF_1FFE)
    }

    @Test func directModeNeedsItsFeature() {
        let f = SynICFixture(Enlightenments(features: Enlightenments.defaultFeatures.subtracting([.stimerDirect])))
        #expect(f.wrmsr(HvMSR.stimerConfig(0), 0x1ED9) == .generalProtection)
        #expect(f.wrmsr(HvMSR.stimerConfig(0), 0x20009) == .written, "message mode is fine")
        let g = SynICFixture()
        #expect(g.wrmsr(HvMSR.stimerConfig(0), 0x1ED9) == .written, "Linux's direct-mode CONFIG")
    }

    // MARK: One-shot

    @Test func oneShotDirectFiresAtItsAbsoluteTimeNeverEarly() {
        let f = SynICFixture()
        f.setTime(1_000)
        // Linux's clockevent: CONFIG = 0x1ED9 (enable, auto-enable, vector 0xED, direct), then
        // COUNT = now + delta.
        f.wrmsr(HvMSR.stimerConfig(0), 0x1ED9)
        #expect(f.env.timers.arms.isEmpty, "count 0: nothing armed")
        f.wrmsr(HvMSR.stimerCount(0), 51_000)
        #expect(f.env.timers.armed(0) == 51_000)
        // A host timer that fires early delivers nothing and re-arms for the same deadline.
        f.setTime(50_999)
        f.p.serviceSyntheticTimers(vp: 0)
        #expect(f.env.interrupts.sent.isEmpty)
        #expect(f.env.timers.armed(0) == 51_000)
        f.setTime(51_000)
        f.p.serviceSyntheticTimers(vp: 0)
        #expect(f.env.interrupts.sent == [Sent(vp: 0, vector: 0xED)])
        #expect(f.rdmsr(HvMSR.stimerConfig(0)) == 0x1ED8, "a one-shot disables itself")
        #expect(f.env.timers.armed(0) == nil, "nothing left to arm")
        // Another COUNT write re-enables through AutoEnable.
        f.wrmsr(HvMSR.stimerCount(0), 60_000)
        #expect(f.rdmsr(HvMSR.stimerConfig(0)) == 0x1ED9)
        #expect(f.env.timers.armed(0) == 60_000)
        #expect(f.raised.isEmpty, "direct mode uses no SINT")
    }

    @Test func pastDeadlineFiresAtOnce() {
        let f = SynICFixture()
        f.setTime(10_000)
        f.wrmsr(HvMSR.stimerConfig(1), 0x1ED9)
        f.wrmsr(HvMSR.stimerCount(1), 9_000)
        #expect(f.env.interrupts.sent == [Sent(vp: 0, vector: 0xED)], "during the WRMSR itself")
        #expect(f.env.timers.arms.isEmpty, "never needed a host timer")
        // Equal to now is "in the past" too (expires when reference time >= count).
        f.wrmsr(HvMSR.stimerCount(1), 10_000)
        #expect(f.env.interrupts.sent.count == 2)
    }

    @Test func oneShotWithoutAutoEnableNeedsEnable() {
        let f = SynICFixture()
        f.wrmsr(HvMSR.stimerCount(0), 500)
        #expect(f.env.timers.arms.isEmpty)
        f.wrmsr(HvMSR.stimerConfig(0), c.enable | c.directMode | 0x41 << c.apicVectorShift)
        #expect(f.env.timers.armed(0) == 500)
        f.fireHostTimer()
        #expect(f.env.interrupts.sent == [Sent(vp: 0, vector: 0x41)])
    }

    @Test func countZeroStopsAnArmedTimer() {
        let f = SynICFixture()
        f.wrmsr(HvMSR.stimerConfig(0), 0x1ED9)
        f.wrmsr(HvMSR.stimerCount(0), 500)
        #expect(f.env.timers.armed(0) == 500)
        f.wrmsr(HvMSR.stimerCount(0), 0)
        #expect(f.env.timers.armed(0) == nil)
        #expect(f.rdmsr(HvMSR.stimerConfig(0)) == 0x1ED8)
        f.setTime(1_000)
        f.p.serviceSyntheticTimers(vp: 0)
        #expect(f.env.interrupts.sent.isEmpty)
    }

    @Test func messageTimerOnSint0IsDisabled() {
        let f = SynICFixture()
        f.wrmsr(HvMSR.stimerCount(0), 500)
        #expect(f.wrmsr(HvMSR.stimerConfig(0), c.enable) == .written)
        #expect(f.rdmsr(HvMSR.stimerConfig(0)) == 0)
        #expect(f.env.timers.arms.isEmpty)
    }

    @Test func hostTimerIsTheEarliestDeadlineOfTheVP() {
        let f = SynICFixture()
        f.wrmsr(HvMSR.stimerConfig(0), 0x1ED9)
        f.wrmsr(HvMSR.stimerConfig(1), 0x1EE9)
        f.wrmsr(HvMSR.stimerCount(0), 9_000)
        #expect(f.env.timers.armed(0) == 9_000)
        f.wrmsr(HvMSR.stimerCount(1), 4_000)
        #expect(f.env.timers.armed(0) == 4_000)
        f.fireHostTimer()
        #expect(f.env.interrupts.sent == [Sent(vp: 0, vector: 0xEE)])
        #expect(f.env.timers.armed(0) == 9_000)
        f.fireHostTimer()
        #expect(f.env.interrupts.sent.map(\.vector) == [0xEE, 0xED])
        #expect(f.env.timers.armed(0) == nil)
        #expect(f.env.timers.arms.allSatisfy { $0.vp == 0 })
        // Re-arming the same deadline is not requested twice.
        #expect(f.env.timers.arms.map(\.at) == [9_000, 4_000, 9_000, nil])
    }

    @Test func timersOfDifferentVPsAreIndependent() {
        let f = SynICFixture()
        f.wrmsr(HvMSR.stimerConfig(0), 0x1ED9, vp: 1)
        f.wrmsr(HvMSR.stimerCount(0), 700, vp: 1)
        #expect(f.env.timers.armed(1) == 700 && f.env.timers.armed(0) == nil)
        f.fireHostTimer(vp: 1)
        #expect(f.env.interrupts.sent == [Sent(vp: 1, vector: 0xED)])
    }

    // MARK: Periodic

    /// 1000 periods of 1 ms (10 000 reference units), the host timer firing up to 0.9 ms late
    /// every time: exactly 1000 expirations, each exactly on the grid, no drift.
    @Test(arguments: [false, true])
    func periodicDirectDoesNotDriftOver1000Periods(lazy: Bool) {
        let f = SynICFixture()
        f.setTime(123_456)
        let start = f.now
        f.wrmsr(HvMSR.stimerCount(2), 10_000)
        f.wrmsr(HvMSR.stimerConfig(2), c.enable | c.periodic | (lazy ? c.lazy : 0) | c.directMode | 0xEC << c.apicVectorShift)
        var deadlines: [UInt64] = []
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<1000 {
            let armed = f.env.timers.armed(0)!
            deadlines.append(armed)
            f.fireHostTimer(lateBy: UInt64.random(in: 0..<9_000, using: &rng))
        }
        #expect(f.env.interrupts.sent.count == 1000)
        #expect(deadlines == (1...1000).map { start + UInt64($0) * 10_000 })
        #expect(f.env.timers.armed(0) == start + 1001 * 10_000)
        #expect(f.now < start + 1001 * 10_000)
    }

    @Test(arguments: [false, true])
    func periodicMessageDoesNotDriftOver1000Periods(lazy: Bool) {
        let f = SynICFixture()
        f.enableSynIC(sints: [2: 0xF3])
        let start = f.now
        f.wrmsr(HvMSR.stimerCount(0), 10_000)
        f.wrmsr(HvMSR.stimerConfig(0), c.enable | c.periodic | (lazy ? c.lazy : 0) | 2 << c.sintxShift)
        var expirations: [UInt64] = []
        for k in 0..<1000 {
            f.fireHostTimer(lateBy: UInt64(k % 7) * 1_000)
            let payload = timerMessage(f, sint: 2)
            #expect(payload?.timerIndex == 0)
            #expect(payload?.deliveryTime == f.now)
            expirations.append(payload?.expirationTime ?? 0)
            f.consume(sint: 2)
        }
        #expect(expirations == (1...1000).map { start + UInt64($0) * 10_000 })
        #expect(f.raised.count == 1000)
    }

    @Test(arguments: [false, true])
    func periodicSkipsMissedPeriods(lazy: Bool) {
        let f = SynICFixture()
        f.wrmsr(HvMSR.stimerCount(0), 1_000)
        f.wrmsr(HvMSR.stimerConfig(0), c.enable | c.periodic | (lazy ? c.lazy : 0) | c.directMode | 0x50 << c.apicVectorShift)
        #expect(f.env.timers.armed(0) == 1_000)
        // The host timer is 3.5 periods late: one expiry, then back on the grid after now.
        f.setTime(4_500)
        f.p.serviceSyntheticTimers(vp: 0)
        #expect(f.env.interrupts.sent.count == 1)
        #expect(f.env.timers.armed(0) == 5_000)
        f.fireHostTimer()
        #expect(f.env.interrupts.sent.count == 2)
        #expect(f.env.timers.armed(0) == 6_000)
    }

    @Test func periodicRestartsOnCountWrite() {
        let f = SynICFixture()
        f.wrmsr(HvMSR.stimerCount(0), 1_000)
        f.wrmsr(HvMSR.stimerConfig(0), c.enable | c.periodic | c.directMode | 0x50 << c.apicVectorShift)
        f.setTime(300)
        f.wrmsr(HvMSR.stimerCount(0), 2_000)
        #expect(f.env.timers.armed(0) == 2_300, "a new first period from the write")
    }

    // MARK: Messages

    @Test func oneShotMessageCarriesIndexExpirationAndDeliveryTime() {
        let f = SynICFixture()
        f.enableSynIC(sints: [3: 0xB3])
        f.wrmsr(HvMSR.stimerConfig(1), c.enable | 3 << c.sintxShift)
        f.wrmsr(HvMSR.stimerCount(1), 20_000)
        f.fireHostTimer(lateBy: 37)
        let m = f.message(sint: 3)
        #expect(m?.type == .timerExpired && m?.type.rawValue == 0x8000_0010)
        #expect(m?.payload.count == 24 && m?.originationID == 0)
        #expect(timerMessage(f, sint: 3) == HvTimerMessagePayload(timerIndex: 1, expirationTime: 20_000, deliveryTime: 20_037))
        #expect(f.raised == [Raised(vp: 0, sint: 3, vector: 0xB3, autoEOI: false)])
        #expect(f.rdmsr(HvMSR.stimerConfig(1)) == 3 << c.sintxShift, "disabled after delivery")
        // Raw layout: index at +16, reserved +20, expiration +24, delivery +32.
        let slot = f.slot(sint: 3)
        #expect(Array(slot[0..<8]) == [0x10, 0, 0, 0x80, 24, 0, 0, 0])
        #expect(Array(slot[16..<24]) == [1, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(slot[24..<26]) == [0x20, 0x4E] && Array(slot[32..<34]) == [0x45, 0x4E])
    }

    @Test func busySlotTimerMessageIsRetriedOnEOM() {
        let f = SynICFixture()
        f.enableSynIC(sints: [2: 0xF3])
        f.post(1, vp: 0, sint: 2)  // occupies SINT2's slot
        f.wrmsr(HvMSR.stimerConfig(0), c.enable | 2 << c.sintxShift)
        f.wrmsr(HvMSR.stimerCount(0), 5_000)
        f.fireHostTimer()
        #expect(f.message(sint: 2)?.type == .vmbus, "the slot was busy")
        #expect(f.slotPending(sint: 2))
        #expect(f.rdmsr(HvMSR.stimerConfig(0))! & c.enable != 0, "still enabled: not delivered yet")
        #expect(f.env.timers.armed(0) == nil, "nothing to arm while the message waits")
        // The guest is slow; time passes. Then it takes the VMBus message and writes EOM.
        f.setTime(8_000)
        #expect(f.consume(sint: 2)?.type == .vmbus)
        #expect(timerMessage(f, sint: 2) == HvTimerMessagePayload(timerIndex: 0, expirationTime: 5_000, deliveryTime: 8_000))
        #expect(f.rdmsr(HvMSR.stimerConfig(0)) == 2 << c.sintxShift)
        #expect(f.raised.count == 2)
    }

    @Test func periodicTimerMessagesCoalesceWhileTheSlotIsBusy() {
        let f = SynICFixture()
        f.enableSynIC(sints: [2: 0xF3])
        f.wrmsr(HvMSR.stimerCount(0), 1_000)
        f.wrmsr(HvMSR.stimerConfig(0), c.enable | c.periodic | 2 << c.sintxShift)
        f.fireHostTimer()
        #expect(timerMessage(f, sint: 2)?.expirationTime == 1_000)
        // The guest does not take it; the next expiry finds the slot busy and waits.
        f.fireHostTimer()
        #expect(f.slotPending(sint: 2))
        #expect(f.env.timers.armed(0) == nil)
        #expect(f.p.synicSnapshot(vp: 0)?.timers[0].pendingExpiration == 2_000)
        // Ten periods later the guest catches up: one message for 2000, then the grid resumes.
        f.setTime(12_500)
        f.consume(sint: 2)
        #expect(timerMessage(f, sint: 2) == HvTimerMessagePayload(timerIndex: 0, expirationTime: 2_000, deliveryTime: 12_500))
        #expect(f.env.timers.armed(0) == 13_000)
        f.consume(sint: 2)
        f.fireHostTimer()
        #expect(timerMessage(f, sint: 2)?.expirationTime == 13_000)
        #expect(f.raised.count == 3)
    }

    @Test func timerMessageWaitsForTheSynICToBeEnabled() {
        let f = SynICFixture()
        f.wrmsr(HvMSR.sint(2), 0xF3)
        f.wrmsr(HvMSR.stimerConfig(0), c.enable | 2 << c.sintxShift)
        f.wrmsr(HvMSR.stimerCount(0), 100)
        f.fireHostTimer()
        #expect(f.p.synicSnapshot(vp: 0)?.queuedMessages[2] == 1)
        f.setTime(300)
        f.wrmsr(HvMSR.simp, SynICFixture.simp(0) | 1)
        #expect(f.p.synicSnapshot(vp: 0)?.queuedMessages[2] == 1, "SCONTROL still off")
        f.wrmsr(HvMSR.scontrol, 1)
        #expect(timerMessage(f, sint: 2) == HvTimerMessagePayload(timerIndex: 0, expirationTime: 100, deliveryTime: 300))
    }

    @Test func reconfiguringWithdrawsAWaitingTimerMessage() {
        let f = SynICFixture()
        f.enableSynIC(sints: [2: 0xF3])
        f.post(1, vp: 0, sint: 2)
        f.wrmsr(HvMSR.stimerConfig(0), c.enable | 2 << c.sintxShift)
        f.wrmsr(HvMSR.stimerCount(0), 100)
        f.fireHostTimer()
        #expect(f.p.synicSnapshot(vp: 0)?.queuedMessages[2] == 1)
        f.wrmsr(HvMSR.stimerConfig(0), 0)
        #expect(f.p.synicSnapshot(vp: 0)?.queuedMessages[2] == 0)
        #expect(f.consume(sint: 2)?.type == .vmbus)
        #expect(f.message(sint: 2) == nil)
    }

    @Test func timerAndPostedMessagesShareTheQueueInOrder() {
        let f = SynICFixture()
        f.enableSynIC(sints: [2: 0xF3])
        f.post(1, vp: 0, sint: 2)
        f.post(2, vp: 0, sint: 2)
        f.wrmsr(HvMSR.stimerConfig(3), c.enable | 2 << c.sintxShift)
        f.wrmsr(HvMSR.stimerCount(3), 100)
        f.fireHostTimer()
        f.post(3, vp: 0, sint: 2)
        var order: [String] = []
        while let m = f.consume(sint: 2) { order.append(m.type == .timerExpired ? "timer" : "vmbus\(m.payload[0])") }
        #expect(order == ["vmbus1", "vmbus2", "timer", "vmbus3"])
    }

    @Test func timerMessagesDoNotUseThePostedQueueBudget() {
        let f = SynICFixture(queueDepth: 1)
        f.enableSynIC(sints: [2: 0xF3])
        f.post(1, vp: 0, sint: 2)
        #expect(f.p.postMessage(SynICFixture.vmbus(2), vp: 0, sint: 2) == .success)
        for n in 0..<4 {
            f.wrmsr(HvMSR.stimerConfig(n), c.enable | 2 << c.sintxShift)
            f.wrmsr(HvMSR.stimerCount(n), 100)
        }
        f.fireHostTimer()
        #expect(f.p.synicSnapshot(vp: 0)?.queuedMessages[2] == 5)
        #expect(f.p.postMessage(SynICFixture.vmbus(3), vp: 0, sint: 2) == .insufficientBuffers)
        var timers = 0
        while let m = f.consume(sint: 2) { if m.type == .timerExpired { timers += 1 } }
        #expect(timers == 4)
    }

    @Test func maskedSintTimerMessageIsWrittenWithoutInterrupt() {
        let f = SynICFixture()
        f.enableSynIC(sints: [2: 0x100F3])
        f.wrmsr(HvMSR.stimerConfig(0), c.enable | 2 << c.sintxShift)
        f.wrmsr(HvMSR.stimerCount(0), 100)
        f.fireHostTimer()
        #expect(timerMessage(f, sint: 2)?.expirationTime == 100)
        #expect(f.raised.isEmpty)
        #expect(f.rdmsr(HvMSR.stimerConfig(0))! & c.enable == 0)
    }

    @Test func resetStopsTimersAndCancelsTheHostTimer() {
        let f = SynICFixture()
        f.wrmsr(HvMSR.stimerConfig(0), 0x1ED9)
        f.wrmsr(HvMSR.stimerCount(0), 500)
        #expect(f.env.timers.armed(0) == 500)
        f.p.reset()
        #expect(f.env.timers.armed(0) == nil)
        #expect(f.rdmsr(HvMSR.stimerConfig(0)) == 0 && f.rdmsr(HvMSR.stimerCount(0)) == 0)
        f.setTime(1_000)
        f.p.serviceSyntheticTimers(vp: 0)
        #expect(f.env.interrupts.sent.isEmpty)
    }

    @Test func nanosecondsUntil() {
        let f = SynICFixture()
        f.setTime(1_000)
        #expect(f.p.nanosecondsUntil(referenceTime: 1_500) == 50_000)
        #expect(f.p.nanosecondsUntil(referenceTime: 1_000) == 0)
        #expect(f.p.nanosecondsUntil(referenceTime: 10) == 0)
        #expect(f.p.nanosecondsUntil(referenceTime: .max) == .max)
    }

    @Test func serviceIgnoresUnknownVPs() {
        let f = SynICFixture()
        f.p.serviceSyntheticTimers(vp: 7)
        #expect(f.env.timers.arms.isEmpty)
    }
}
