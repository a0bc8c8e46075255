import Testing

@testable import Machine

@Suite struct CivilTimeTests {
    @Test("known instants", arguments: [
        (Int64(0), "1970-01-01 00:00:00", 5),
        (Int64(951_782_400), "2000-02-29 00:00:00", 3),  // leap day of a 400-year leap year
        (Int64(1_709_164_800), "2024-02-29 00:00:00", 5),
        (Int64(4_107_542_399), "2100-02-28 23:59:59", 1),  // 2100 is not a leap year
        (Int64(4_107_542_400), "2100-03-01 00:00:00", 2),
        (Int64(-1), "1969-12-31 23:59:59", 4),
        (Int64(253_402_300_799), "9999-12-31 23:59:59", 6),
    ])
    func knownInstants(seconds: Int64, text: String, weekday: Int) {
        let t = CivilTime(epochSeconds: seconds)
        #expect(t.description == text)
        #expect(t.epochSeconds == seconds)
        #expect(t.dayOfWeek == weekday)
    }

    @Test("every day from 1900 to 2200 round-trips and follows the previous one")
    func roundTripEveryDay() {
        var previous = CivilTime(epochSeconds: -2_208_988_800 - 86_400)  // 1899-12-31
        for day in Int64(-25_567)...Int64(84_000) {
            let t = CivilTime(epochSeconds: day * 86_400 + 3_723)
            #expect(t.epochSeconds == day * 86_400 + 3_723)
            #expect(t.hour == 1 && t.minute == 2 && t.second == 3)
            let nextDay = t.day == previous.day + 1 && t.month == previous.month && t.year == previous.year
            let nextMonth = t.day == 1 && (t.month == previous.month + 1 && t.year == previous.year
                || t.month == 1 && previous.month == 12 && t.year == previous.year + 1)
            #expect(nextDay || nextMonth, "\(previous) -> \(t)")
            previous = t
        }
    }

    @Test("out-of-range fields carry arithmetically")
    func normalization() {
        #expect(CivilTime(year: 2023, month: 13, day: 1).epochSeconds == CivilTime(year: 2024, month: 1, day: 1).epochSeconds)
        #expect(CivilTime(year: 2024, month: 0, day: 1).epochSeconds == CivilTime(year: 2023, month: 12, day: 1).epochSeconds)
        #expect(CivilTime(year: 2024, month: 3, day: 0).epochSeconds == CivilTime(year: 2024, month: 2, day: 29).epochSeconds)
        #expect(CivilTime(year: 2024, month: 2, day: 31).epochSeconds == CivilTime(year: 2024, month: 3, day: 2).epochSeconds)
        #expect(CivilTime(year: 2024, month: 1, day: 1, hour: 24, minute: 60, second: 60).epochSeconds
            == CivilTime(year: 2024, month: 1, day: 2, hour: 1, minute: 1).epochSeconds)
        // Whatever a guest can write into the RTC's byte registers stays far from overflow.
        _ = CivilTime(year: 255 * 100 + 255, month: 255, day: 255, hour: 255, minute: 255, second: 255).epochSeconds
    }
}
