import Machine
import Synchronization

/// COM1: the UART16550 register model wired to a console sink.
public final class SerialPort: PortIODevice {
    public static let com1: ClosedRange<UInt16> = 0x3F8...0x3FF
    private let base: UInt16
    private let uart = Mutex(UART16550())
    private let sink: ConsoleSink

    public init(base: UInt16 = 0x3F8, sink: ConsoleSink) {
        self.base = base
        self.sink = sink
    }

    public func read(port: UInt16, size: Int) -> UInt32 {
        let offset = UInt8(truncatingIfNeeded: port &- base)
        return UInt32(uart.withLock { $0.read(offset: offset) })
    }

    public func write(port: UInt16, size: Int, value: UInt32) {
        let offset = UInt8(truncatingIfNeeded: port &- base)
        if let out = uart.withLock({ $0.write(offset: offset, value: UInt8(truncatingIfNeeded: value)) }) {
            sink.write(out)
        }
    }
}
