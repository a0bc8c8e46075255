import Glibc
import Monitor
import Synchronization

/// Monotonic time in nanoseconds.
func nowNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Port 0x81 on SynthVM's bus: the bench guest writes 1, 2, 3 at its phase boundaries and this
/// records when each arrived, so only the loops are timed, not boot and teardown.
final class PhaseClock: PortIODevice {
    static let port: UInt16 = 0x81
    private let marks = Mutex<[UInt8: UInt64]>([:])

    func read(port: UInt16, size: Int) -> UInt32 { 0xFFFF_FFFF }

    func write(port: UInt16, size: Int, value: UInt32) {
        let t = nowNanoseconds()
        marks.withLock { $0[UInt8(truncatingIfNeeded: value)] = t }
    }

    func mark(_ phase: UInt8) -> UInt64? { marks.withLock { $0[phase] } }
}
