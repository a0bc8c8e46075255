/// A date and time of day in the proleptic Gregorian calendar (UTC, no leap seconds), and its
/// conversion to and from seconds since the Unix epoch. The RTC keeps its clock in this form.
///
/// The conversions are Howard Hinnant's `days_from_civil` / `civil_from_days` (exact for every
/// year here). `epochSeconds` also accepts out-of-range fields (month 0 or 13, day 0, hour 25,
/// as a guest may write into RTC registers) and normalizes them arithmetically, so no value a
/// guest can produce traps.
public struct CivilTime: Sendable, Equatable, CustomStringConvertible {
    public var year: Int
    /// 1...12 when produced by `init(epochSeconds:)`; anything when written by a guest.
    public var month: Int
    public var day: Int
    public var hour: Int
    public var minute: Int
    public var second: Int

    public init(year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0) {
        self.year = year
        self.month = month
        self.day = day
        self.hour = hour
        self.minute = minute
        self.second = second
    }

    public init(epochSeconds t: Int64) {
        let days = Self.floorDiv(t, 86_400)
        let secondOfDay = Int(t - days * 86_400)
        let (y, m, d) = Self.civil(fromDays: days)
        self.init(year: Int(y), month: Int(m), day: Int(d), hour: secondOfDay / 3600,
                  minute: secondOfDay / 60 % 60, second: secondOfDay % 60)
    }

    /// Seconds since 1970-01-01 00:00:00 UTC. Out-of-range fields carry into the next larger
    /// unit (day 0 is the last day of the previous month).
    public var epochSeconds: Int64 {
        let months = Int64(year) * 12 + Int64(month) - 1
        let y = Self.floorDiv(months, 12)
        let m = months - y * 12 + 1
        let days = Self.days(fromCivilYear: y, month: m, day: 1) + Int64(day) - 1
        return days * 86_400 + Int64(hour) * 3600 + Int64(minute) * 60 + Int64(second)
    }

    /// 1 (Sunday) ... 7 (Saturday), the RTC's day-of-week convention.
    public var dayOfWeek: Int {
        let days = Self.floorDiv(epochSeconds, 86_400)
        return Int((days + 4) - Self.floorDiv(days + 4, 7) * 7) + 1  // 1970-01-01 was a Thursday (5)
    }

    public var description: String {
        func two(_ v: Int) -> String { v < 10 && v >= 0 ? "0\(v)" : "\(v)" }
        return "\(year)-\(two(month))-\(two(day)) \(two(hour)):\(two(minute)):\(two(second))"
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    /// Days since 1970-01-01 of year-month-day, month 1...12.
    static func days(fromCivilYear year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = floorDiv(y, 400)
        let yearOfEra = y - era * 400
        let monthIndex = month > 2 ? month - 3 : month + 9
        let dayOfYear = (153 * monthIndex + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civil(fromDays days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = floorDiv(z, 146_097)
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
