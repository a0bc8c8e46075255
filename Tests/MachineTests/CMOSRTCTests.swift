import FuzzSeeds
import Testing

@testable import Machine

/// 2024-02-29 23:59:58 UTC, a Thursday.
private let leapEve = CMOSRTC.Instant(seconds: CivilTime(year: 2024, month: 2, day: 29, hour: 23, minute: 59, second: 58).epochSeconds)

private extension CMOSRTC.Instant {
    func plus(_ s: Int64, ns: Int = 0) -> CMOSRTC.Instant { .init(seconds: seconds + s, nanoseconds: ns) }
}

private extension CMOSRTC {
    mutating func read(_ index: UInt8, at now: CMOSRTC.Instant) -> UInt8 {
        writeIndex(index)
        return readData(now: now)
    }

    mutating func write(_ index: UInt8, _ value: UInt8, at now: CMOSRTC.Instant) {
        writeIndex(index)
        writeData(value, now: now)
    }

    /// sec, min, hour, weekday, day, month, year, century as read.
    mutating func clock(at now: CMOSRTC.Instant) -> [UInt8] {
        [CMOSRTC.seconds, CMOSRTC.minutes, CMOSRTC.hours, CMOSRTC.dayOfWeek, CMOSRTC.dayOfMonth, CMOSRTC.month,
         CMOSRTC.year, CMOSRTC.century].map { read($0, at: now) }
    }
}

@Suite struct CMOSRTCTests {
    @Test("reset state: BCD, 24-hour, the host's time, registers A-D as a BIOS leaves them")
    func resetState() {
        var rtc = CMOSRTC(now: leapEve)
        #expect(rtc.clock(at: leapEve) == [0x58, 0x59, 0x23, 0x05, 0x29, 0x02, 0x24, 0x20])
        #expect(rtc.read(CMOSRTC.statusA, at: leapEve) == 0x26)
        #expect(rtc.read(CMOSRTC.statusB, at: leapEve) == 0x02)
        #expect(rtc.read(CMOSRTC.statusC, at: leapEve) == 0x00)
        #expect(rtc.read(CMOSRTC.statusD, at: leapEve) == 0x80)
        #expect(rtc.readIndex() == 0xFF)
    }

    @Test("the clock follows the host's: across midnight into March, the weekday advances")
    func runsWithTheHost() {
        var rtc = CMOSRTC(now: leapEve)
        #expect(rtc.clock(at: leapEve.plus(1)) == [0x59, 0x59, 0x23, 0x05, 0x29, 0x02, 0x24, 0x20])
        #expect(rtc.clock(at: leapEve.plus(2)) == [0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0x24, 0x20])
        #expect(rtc.clock(at: leapEve.plus(2 + 86_400 * 365)) == [0x00, 0x00, 0x00, 0x07, 0x01, 0x03, 0x25, 0x20])
    }

    @Test("binary mode and 12-hour mode, including midnight and noon")
    func dataModes() {
        var rtc = CMOSRTC(now: leapEve)
        rtc.write(CMOSRTC.statusB, 0x06, at: leapEve)  // binary, 24-hour
        #expect(rtc.clock(at: leapEve) == [58, 59, 23, 5, 29, 2, 24, 20])
        rtc.write(CMOSRTC.statusB, 0x04, at: leapEve)  // binary, 12-hour
        #expect(rtc.read(CMOSRTC.hours, at: leapEve) == 0x80 | 11)  // 11 PM
        #expect(rtc.read(CMOSRTC.hours, at: leapEve.plus(2)) == 12)  // 12 AM
        rtc.write(CMOSRTC.statusB, 0x00, at: leapEve)  // BCD, 12-hour
        #expect(rtc.read(CMOSRTC.hours, at: leapEve) == 0x91)
        #expect(rtc.read(CMOSRTC.hours, at: leapEve.plus(2)) == 0x12)
        #expect(rtc.read(CMOSRTC.hours, at: leapEve.plus(2 + 3600)) == 0x01)
        #expect(rtc.read(CMOSRTC.hours, at: leapEve.plus(2 + 12 * 3600)) == 0x92)  // 12 PM
        #expect(rtc.read(CMOSRTC.hours, at: leapEve.plus(2 + 13 * 3600)) == 0x81)  // 1 PM
    }

    @Test("UIP reads set only in the 244 us before each update, and never while SET is set")
    func updateInProgress() {
        var rtc = CMOSRTC(now: leapEve)
        func uip(_ ns: Int) -> Bool { rtc.read(CMOSRTC.statusA, at: leapEve.plus(0, ns: ns)) & 0x80 != 0 }
        #expect(!uip(0))
        #expect(!uip(500_000_000))
        #expect(!uip(999_755_999))
        #expect(uip(999_756_000))
        #expect(uip(999_999_999))
        rtc.write(CMOSRTC.statusB, 0x82, at: leapEve)
        #expect(!uip(999_999_999))
        // A is writable but for UIP.
        rtc.write(CMOSRTC.statusA, 0xAF, at: leapEve)
        #expect(rtc.read(CMOSRTC.statusA, at: leapEve) == 0x2F)
    }

    @Test("setting the clock: SET freezes it, the writes land, clearing SET runs it from there")
    func settingTheClock() {
        var rtc = CMOSRTC(now: leapEve)
        rtc.write(CMOSRTC.statusB, 0x82 | 0x10, at: leapEve)  // SET, and UIE which SET clears
        #expect(rtc.read(CMOSRTC.statusB, at: leapEve) == 0x82)
        // 1999-12-31 23:59:30, Friday; written field by field through an invalid intermediate
        // date (Feb 31), which must not be normalized while frozen.
        for (index, value) in [(CMOSRTC.dayOfMonth, UInt8(0x31)), (CMOSRTC.month, 0x12), (CMOSRTC.year, 0x99),
                               (CMOSRTC.century, 0x19), (CMOSRTC.hours, 0x23), (CMOSRTC.minutes, 0x59),
                               (CMOSRTC.seconds, 0x30), (CMOSRTC.dayOfWeek, 0x06)] {
            rtc.write(index, value, at: leapEve.plus(5))
        }
        #expect(rtc.clock(at: leapEve.plus(100)) == [0x30, 0x59, 0x23, 0x06, 0x31, 0x12, 0x99, 0x19])
        rtc.write(CMOSRTC.statusB, 0x02, at: leapEve.plus(100))
        #expect(rtc.clock(at: leapEve.plus(129)) == [0x59, 0x59, 0x23, 0x06, 0x31, 0x12, 0x99, 0x19])
        #expect(rtc.clock(at: leapEve.plus(130)) == [0x00, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x20])
    }

    @Test("a field written while the clock runs moves the clock, which keeps running")
    func writeWhileRunning() {
        var rtc = CMOSRTC(now: leapEve)
        rtc.write(CMOSRTC.statusB, 0x06, at: leapEve)  // binary
        rtc.write(CMOSRTC.minutes, 10, at: leapEve.plus(1))  // 23:10:59
        #expect(rtc.clock(at: leapEve.plus(3)) == [1, 11, 23, 5, 29, 2, 24, 20])
        rtc.write(CMOSRTC.hours, 0x80 | 1, at: leapEve.plus(3))  // binary 24-hour: 0x81 is 129
        #expect(rtc.read(CMOSRTC.hours, at: leapEve.plus(3)) == 129)
        // 12-hour writes: 12 AM is hour 0.
        rtc.write(CMOSRTC.statusB, 0x04, at: leapEve.plus(3))
        rtc.write(CMOSRTC.hours, 12, at: leapEve.plus(3))
        rtc.write(CMOSRTC.statusB, 0x06, at: leapEve.plus(3))
        #expect(rtc.read(CMOSRTC.hours, at: leapEve.plus(3)) == 0)
    }

    @Test("register C: UF after an update, cleared by the read; C and D are read-only")
    func statusC() {
        var rtc = CMOSRTC(now: leapEve)
        #expect(rtc.read(CMOSRTC.statusC, at: leapEve.plus(0, ns: 900_000_000)) == 0)
        #expect(rtc.read(CMOSRTC.statusC, at: leapEve.plus(1)) == 0x10)
        #expect(rtc.read(CMOSRTC.statusC, at: leapEve.plus(1, ns: 5)) == 0)
        rtc.write(CMOSRTC.statusC, 0xFF, at: leapEve.plus(1))
        rtc.write(CMOSRTC.statusD, 0x00, at: leapEve.plus(1))
        #expect(rtc.read(CMOSRTC.statusD, at: leapEve.plus(1)) == 0x80)
        rtc.write(CMOSRTC.statusB, 0x82, at: leapEve.plus(1))
        #expect(rtc.read(CMOSRTC.statusC, at: leapEve.plus(9)) == 0)  // no updates while frozen
    }

    @Test("CMOS RAM and alarm bytes keep what is written; the NMI bit of the index is ignored")
    func ram() {
        var rtc = CMOSRTC(now: leapEve)
        for index in UInt8(0x0E)...0x7F where index != CMOSRTC.century {
            rtc.write(index, index ^ 0xA5, at: leapEve)
        }
        for index: UInt8 in [0x01, 0x03, 0x05] { rtc.write(index, index, at: leapEve) }
        for index in UInt8(0x0E)...0x7F where index != CMOSRTC.century {
            rtc.writeIndex(0x80 | index)  // NMI disabled: same register
            #expect(rtc.index == index)
            #expect(rtc.readData(now: leapEve) == index ^ 0xA5)
        }
        for index: UInt8 in [0x01, 0x03, 0x05] { #expect(rtc.read(index, at: leapEve) == index) }
        #expect(rtc.clock(at: leapEve)[0] == 0x58)  // the time is not RAM
    }

    @Test("random register traffic never traps", arguments: [7, 8, 9])
    func fuzz(seed: UInt64) {
        var rng = SplitMix64(state: seed)
        var rtc = CMOSRTC(now: leapEve)
        var now = leapEve
        for _ in 0..<20_000 {
            let r = rng.next()
            now = now.plus(Int64(r % 3), ns: Int(r >> 32) % 1_000_000_000)
            switch (r >> 8) % 3 {
            case 0: rtc.writeIndex(UInt8(truncatingIfNeeded: r >> 16))
            case 1: _ = rtc.readData(now: now)
            default: rtc.writeData(UInt8(truncatingIfNeeded: r >> 24), now: now)
            }
        }
    }
}
