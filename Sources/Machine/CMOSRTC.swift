/// The PC's CMOS: a Motorola MC146818-compatible real-time clock plus battery-backed RAM, 128
/// bytes behind an index port (0x70) and a data port (0x71).
///
/// A pure state machine over the host's wall clock: every access takes the current host time
/// (`Instant`, UTC), so the clock runs with the host's and needs no timer. The guest may set it;
/// SynthVM then keeps the guest's offset from the host clock. Register map:
///
/// | index | register |
/// |---|---|
/// | 0x00, 0x02, 0x04 | seconds, minutes, hours (BCD or binary per register B; 12-hour mode puts PM in bit 7) |
/// | 0x01, 0x03, 0x05 | alarm seconds, minutes, hours: stored, no alarm is ever raised |
/// | 0x06–0x09 | day of week (1 = Sunday), day of month, month, year (two digits) |
/// | 0x0A | A: UIP (bit 7, read-only), divider and rate select (stored) |
/// | 0x0B | B: SET, PIE, AIE, UIE, SQWE, DM (binary), 24/12, DSE |
/// | 0x0C | C: UF, set by each update and cleared by reading C; no interrupt flags (IRQ 8 is never raised) |
/// | 0x0D | D: VRT (bit 7): the RAM and time are valid |
/// | 0x32 | century (same BCD/binary mode as the others, as in QEMU) |
/// | 0x0E–0x7F | CMOS RAM (0x32 aside) |
///
/// Updates happen at the host's second boundaries; UIP reads set during the 244 us before each
/// one (the MC146818's t_BUC), so a guest that reads the time after seeing UIP clear has the
/// datasheet's guarantee that no update starts while it reads. While SET is set the clock is
/// frozen (UIP reads clear) and the guest's writes edit it; clearing SET starts it again from the
/// written time. Not modelled: interrupts (periodic, alarm, update-ended: IRQ 8), the square-wave
/// output, daylight-saving jumps (DSE is stored), and stopping the clock through the divider bits.
public struct CMOSRTC: Sendable, Equatable {
    /// Host wall-clock time.
    public struct Instant: Sendable, Equatable {
        public var seconds: Int64
        public var nanoseconds: Int
        public init(seconds: Int64, nanoseconds: Int = 0) {
            self.seconds = seconds
            self.nanoseconds = nanoseconds
        }
    }

    public static let indexPort: UInt16 = 0x70
    public static let dataPort: UInt16 = 0x71

    // Register indices.
    public static let seconds: UInt8 = 0x00
    public static let secondsAlarm: UInt8 = 0x01
    public static let minutes: UInt8 = 0x02
    public static let minutesAlarm: UInt8 = 0x03
    public static let hours: UInt8 = 0x04
    public static let hoursAlarm: UInt8 = 0x05
    public static let dayOfWeek: UInt8 = 0x06
    public static let dayOfMonth: UInt8 = 0x07
    public static let month: UInt8 = 0x08
    public static let year: UInt8 = 0x09
    public static let statusA: UInt8 = 0x0A
    public static let statusB: UInt8 = 0x0B
    public static let statusC: UInt8 = 0x0C
    public static let statusD: UInt8 = 0x0D
    public static let century: UInt8 = 0x32

    // Register bits.
    public static let aUpdateInProgress: UInt8 = 0x80
    public static let bSet: UInt8 = 0x80
    public static let bUpdateEndedInterrupt: UInt8 = 0x10
    public static let bBinary: UInt8 = 0x04
    public static let b24Hour: UInt8 = 0x02
    public static let cUpdateEnded: UInt8 = 0x10
    public static let dValidRAMAndTime: UInt8 = 0x80
    static let hourPM: UInt8 = 0x80
    /// The NMI-disable bit of an index write: the index is its low 7 bits.
    static let indexMask: UInt8 = 0x7F

    /// UIP is set for this long before each update (MC146818 t_BUC = 244 us).
    public static let updateInProgressNanoseconds = 244_000

    /// What a PC BIOS leaves: 32.768 kHz time base, 1.024 kHz rate select (A); 24-hour BCD (B).
    public static let resetStatusA: UInt8 = 0x26
    public static let resetStatusB: UInt8 = b24Hour

    public private(set) var index: UInt8 = 0
    public private(set) var statusA: UInt8 = CMOSRTC.resetStatusA
    public private(set) var statusB: UInt8 = CMOSRTC.resetStatusB
    /// Alarm and RAM bytes (index 0x0E... and 0x01/0x03/0x05); the time lives in `clock`.
    private var ram = [UInt8](repeating: 0, count: 128)

    /// The guest's clock: `time` was current at host second `base` (while running) or is frozen
    /// (while SET is set). The day of week is a separate counter, as on the chip, so a guest
    /// that writes one keeps it (advanced at each midnight).
    private var time: CivilTime
    private var weekday: Int
    private var base: Int64
    /// The host second of the last read of register C (UF is set when an update happened since).
    private var lastStatusCRead: Int64

    public init(now: Instant) {
        time = CivilTime(epochSeconds: now.seconds)
        weekday = time.dayOfWeek
        base = now.seconds
        lastStatusCRead = now.seconds
    }

    var isFrozen: Bool { statusB & Self.bSet != 0 }
    var isBinary: Bool { statusB & Self.bBinary != 0 }
    var is24Hour: Bool { statusB & Self.b24Hour != 0 }

    /// A write to the index port. Bit 7 (NMI disable on a PC) is ignored: SynthVM never
    /// raises a platform NMI, so there is nothing to mask.
    public mutating func writeIndex(_ value: UInt8) {
        index = value & Self.indexMask
    }

    /// The index port is write-only; reads float high.
    public func readIndex() -> UInt8 { 0xFF }

    /// The guest's clock at `now`: the stored time advanced by the updates since `base`.
    public func currentTime(now: Instant) -> (time: CivilTime, weekday: Int) {
        guard !isFrozen, now.seconds > base else { return (time, weekday) }
        let before = time.epochSeconds
        let after = before + (now.seconds - base)
        let midnights = CivilTime.floorDiv(after, 86_400) - CivilTime.floorDiv(before, 86_400)
        let wd = Int((Int64(weekday - 1) + midnights) % 7 + 7) % 7 + 1
        return (CivilTime(epochSeconds: after), wd)
    }

    /// A read of the data port: the register at `index`.
    public mutating func readData(now: Instant) -> UInt8 {
        switch index {
        case Self.seconds, Self.minutes, Self.hours, Self.dayOfWeek, Self.dayOfMonth, Self.month, Self.year,
             Self.century:
            let (t, wd) = currentTime(now: now)
            return encode(field: index, of: t, weekday: wd)
        case Self.statusA:
            var value = statusA & 0x7F
            if !isFrozen, now.nanoseconds >= 1_000_000_000 - Self.updateInProgressNanoseconds {
                value |= Self.aUpdateInProgress
            }
            return value
        case Self.statusB:
            return statusB
        case Self.statusC:
            // Updates happen at host second boundaries, none while frozen.
            let updated = !isFrozen && now.seconds > lastStatusCRead
            lastStatusCRead = now.seconds
            return updated ? Self.cUpdateEnded : 0
        case Self.statusD:
            return Self.dValidRAMAndTime
        default:
            return ram[Int(index)]
        }
    }

    /// A write of the data port: the register at `index`.
    public mutating func writeData(_ value: UInt8, now: Instant) {
        switch index {
        case Self.seconds, Self.minutes, Self.hours, Self.dayOfWeek, Self.dayOfMonth, Self.month, Self.year,
             Self.century:
            // Bring the clock to now, then change the one field; it runs on from here.
            (time, weekday) = currentTime(now: now)
            if !isFrozen { base = now.seconds }
            decode(value, into: index)
        case Self.statusA:
            statusA = value & 0x7F  // UIP is read-only
        case Self.statusB:
            let wasFrozen = isFrozen
            if !wasFrozen, value & Self.bSet != 0 {
                (time, weekday) = currentTime(now: now)
            }
            // Setting SET also clears UIE (MC146818: updates cannot end while they are inhibited).
            statusB = value & Self.bSet != 0 ? value & ~Self.bUpdateEndedInterrupt : value
            if wasFrozen, !isFrozen {
                base = now.seconds
                lastStatusCRead = max(lastStatusCRead, now.seconds)
            }
        case Self.statusC, Self.statusD:
            break  // read-only
        default:
            ram[Int(index)] = value
        }
    }

    // MARK: - Register encoding

    private func encode(field: UInt8, of t: CivilTime, weekday: Int) -> UInt8 {
        switch field {
        case Self.seconds: return number(t.second)
        case Self.minutes: return number(t.minute)
        case Self.hours:
            if is24Hour { return number(t.hour) }
            let h = ((t.hour % 24) + 24) % 24
            let twelve = h % 12 == 0 ? 12 : h % 12
            return number(twelve) | (h >= 12 ? Self.hourPM : 0)
        case Self.dayOfWeek: return number(weekday)
        case Self.dayOfMonth: return number(t.day)
        case Self.month: return number(t.month)
        case Self.year: return number(((t.year % 100) + 100) % 100)
        default: return number(((t.year / 100) % 100 + 100) % 100)  // century
        }
    }

    private mutating func decode(_ value: UInt8, into field: UInt8) {
        switch field {
        case Self.seconds: time.second = integer(value)
        case Self.minutes: time.minute = integer(value)
        case Self.hours:
            if is24Hour {
                time.hour = integer(value)
            } else {
                let h = integer(value & ~Self.hourPM) % 12  // 12 AM is hour 0, 12 PM is 12
                time.hour = h + (value & Self.hourPM != 0 ? 12 : 0)
            }
        case Self.dayOfWeek: weekday = integer(value)
        case Self.dayOfMonth: time.day = integer(value)
        case Self.month: time.month = integer(value)
        case Self.year: time.year = time.year - ((time.year % 100) + 100) % 100 + integer(value)
        default: time.year = integer(value) * 100 + ((time.year % 100) + 100) % 100  // century
        }
    }

    /// A register value in the current data mode.
    private func number(_ v: Int) -> UInt8 {
        let clamped = UInt8(truncatingIfNeeded: max(0, v))
        if isBinary { return clamped }
        return UInt8(truncatingIfNeeded: (v / 10 % 10) << 4 | v % 10)
    }

    /// A written value in the current data mode. Invalid BCD digits are taken at face value
    /// (0x5A is 5 * 10 + 10), as the chip's counters would.
    private func integer(_ value: UInt8) -> Int {
        isBinary ? Int(value) : Int(value >> 4) * 10 + Int(value & 0x0F)
    }
}
