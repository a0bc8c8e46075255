import Glibc
import Machine
import Synchronization

/// The CMOS RTC and RAM at ports 0x70 (index) and 0x71 (data): the `CMOSRTC` model over the
/// host's CLOCK_REALTIME. A 16-bit access at 0x70 writes the index and then the data byte, as
/// the two byte lanes of an ISA bus would.
public final class RTCDevice: PortIODevice {
    public static let ports: ClosedRange<UInt16> = CMOSRTC.indexPort...CMOSRTC.dataPort
    private let cmos: Mutex<CMOSRTC>

    public init() {
        cmos = Mutex(CMOSRTC(now: Self.hostNow()))
    }

    static func hostNow() -> CMOSRTC.Instant {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return CMOSRTC.Instant(seconds: Int64(ts.tv_sec), nanoseconds: Int(ts.tv_nsec))
    }

    public func read(port: UInt16, size: Int) -> UInt32 {
        let now = Self.hostNow()
        return cmos.withLock { c in
            var value: UInt32 = 0
            for lane in 0..<size {
                let p = port &+ UInt16(lane)
                let byte: UInt8
                switch p {
                case CMOSRTC.indexPort: byte = c.readIndex()
                case CMOSRTC.dataPort: byte = c.readData(now: now)
                default: byte = 0xFF
                }
                value |= UInt32(byte) << (8 * lane)
            }
            return value
        }
    }

    public func write(port: UInt16, size: Int, value: UInt32) {
        let now = Self.hostNow()
        cmos.withLock { c in
            for lane in 0..<size {
                let byte = UInt8(truncatingIfNeeded: value >> (8 * lane))
                switch port &+ UInt16(lane) {
                case CMOSRTC.indexPort: c.writeIndex(byte)
                case CMOSRTC.dataPort: c.writeData(byte, now: now)
                default: break
                }
            }
        }
    }
}
