import HyperV
@testable import Partition
import Testing

/// `SyntheticTimer` on its own: register rules and deadline arithmetic, no partition.
@Suite struct SyntheticTimerArithmeticTests {
    private let c = HvMSR.STimerConfig.self

    @Test func nextPeriodicDeadlineStaysOnTheGrid() {
        typealias T = SyntheticTimer
        // On time or a little late: previous + period.
        #expect(T.nextPeriodicDeadline(after: 1000, period: 100, now: 1000) == 1100)
        #expect(T.nextPeriodicDeadline(after: 1000, period: 100, now: 1099) == 1100)
        // Exactly one period late: that grid point is coalesced into this expiry.
        #expect(T.nextPeriodicDeadline(after: 1000, period: 100, now: 1100) == 1200)
        // Several periods late: skip to the first grid point after now.
        #expect(T.nextPeriodicDeadline(after: 1000, period: 100, now: 1350) == 1400)
        #expect(T.nextPeriodicDeadline(after: 1000, period: 100, now: 100_000) == 100_100)
        // Period 1.
        #expect(T.nextPeriodicDeadline(after: 5, period: 1, now: 9) == 10)
        // Before the deadline (a caller never does this, but it stays sane).
        #expect(T.nextPeriodicDeadline(after: 1000, period: 100, now: 10) == 1100)
        // Saturation instead of a trap.
        #expect(T.nextPeriodicDeadline(after: .max - 10, period: 100, now: .max - 10) == .max)
        #expect(T.nextPeriodicDeadline(after: 10, period: .max / 2, now: .max - 1) == .max)
    }

    @Test func gridPropertyHoldsForRandomLateness() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<1000 {
            let previous = UInt64.random(in: 0...1 << 40, using: &rng)
            let period = UInt64.random(in: 1...1_000_000, using: &rng)
            let now = previous + UInt64.random(in: 0...10_000_000, using: &rng)
            let next = SyntheticTimer.nextPeriodicDeadline(after: previous, period: period, now: now)
            #expect(next > now)
            #expect((next - previous) % period == 0)
            #expect(next - period <= now, "the first grid point after now")
        }
    }

    @Test func oneShotArmsAtTheAbsoluteCount() {
        var t = SyntheticTimer(index: 1)
        t.writeCount(5000, now: 100)
        #expect(t.deadline == nil, "not enabled")
        t.writeConfig(c.enable | 2 << c.sintxShift, now: 200)
        #expect(t.deadline == 5000)
        #expect(!t.isDue(now: 4999) && t.isDue(now: 5000) && t.isDue(now: 9000))
        let e = t.expire()
        #expect(e?.expiration == 5000 && e?.signal == .message(sint: 2))
        #expect(t.deadline == nil && t.isEnabled)
        t.completeExpiration(5000, now: 5003)
        #expect(!t.isEnabled && t.deadline == nil, "a one-shot disables itself")
    }

    @Test func periodicArmsOnePeriodFromEnable() {
        var t = SyntheticTimer(index: 0)
        t.writeCount(100, now: 0)
        t.writeConfig(c.enable | c.periodic | c.directMode | 0xED << c.apicVectorShift, now: 1000)
        #expect(t.deadline == 1100)
        #expect(t.signal == .interrupt(vector: 0xED))
        let e = t.expire()
        t.completeExpiration(e!.expiration, now: 1130)
        #expect(t.deadline == 1200 && t.isEnabled)
    }

    @Test func countWriteRules() {
        var t = SyntheticTimer(index: 0)
        t.writeConfig(c.autoEnable | 3 << c.sintxShift, now: 0)
        #expect(!t.isEnabled)
        t.writeCount(700, now: 10)
        #expect(t.isEnabled && t.deadline == 700, "AutoEnable")
        t.writeCount(0, now: 20)
        #expect(!t.isEnabled && t.deadline == nil, "0 disables whatever AutoEnable says")
        #expect(t.config == c.autoEnable | 3 << c.sintxShift)
        // Without AutoEnable a count write leaves Enable as it is.
        var u = SyntheticTimer(index: 0)
        u.writeConfig(3 << c.sintxShift, now: 0)
        u.writeCount(700, now: 10)
        #expect(!u.isEnabled)
    }

    @Test func enabledMessageTimerOnSint0IsDisabled() {
        var t = SyntheticTimer(index: 0)
        t.writeCount(500, now: 0)
        t.writeConfig(c.enable, now: 0)
        #expect(!t.isEnabled && t.deadline == nil && t.config == 0)
        // Through AutoEnable too.
        t.writeConfig(c.autoEnable, now: 0)
        t.writeCount(600, now: 0)
        #expect(!t.isEnabled)
        // Direct mode may use SINTx 0.
        t.writeConfig(c.enable | c.directMode | 0x40 << c.apicVectorShift, now: 0)
        #expect(t.isEnabled && t.deadline == 600)
    }

    @Test func enabledWithZeroCountIsNotArmed() {
        var t = SyntheticTimer(index: 0)
        t.writeConfig(c.enable | c.periodic | 1 << c.sintxShift, now: 0)
        #expect(t.isEnabled && t.deadline == nil && !t.isDue(now: .max))
    }

    @Test func periodicNearTheEndOfTimeSaturates() {
        var t = SyntheticTimer(index: 0)
        t.writeCount(.max, now: 0)
        t.writeConfig(c.enable | c.periodic | 1 << c.sintxShift, now: 10)
        #expect(t.deadline == .max)
    }
}
