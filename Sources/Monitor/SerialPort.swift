import CSynthVM
import Glibc
import Machine
import Synchronization

/// COM1: the UART16550 register model wired to a console sink, to its ISA IRQ (4), and to the
/// console input feeder (`ConsoleInput`).
///
/// Every guest access and every fed byte runs under one lock, and the IRQ line is re-evaluated
/// after each step, so the interrupt controller sees the UART's output edges in order: a THR
/// write lowers the THRE interrupt and the drain that follows (the byte went to the sink) raises
/// it again, an IIR read that reports THRE lowers it, received data raises it.
///
/// Console input is flow-controlled like RTS/CTS: the feeder hands bytes over only while the
/// guest asserts RTS and only as many as the receive queue has room for; when it had to hold some
/// back it waits on `inputReadyFD`, which is signalled once the guest raises RTS or reads a byte.
/// So input piped in before the guest's driver is ready, or faster than it reads, is not lost.
public final class SerialPort: PortIODevice {
    public static let com1: ClosedRange<UInt16> = 0x3F8...0x3FF
    public static let com1IRQ: UInt32 = 4

    private struct State {
        var uart = UART16550()
        var line = false
        var feederWaiting = false
    }

    private let base: UInt16
    private let state = Mutex(State())
    private let sink: ConsoleSink
    private let irq: (any InterruptLine)?
    /// An eventfd the console input feeder polls while it holds input back.
    public let inputReadyFD: Int32

    public init(base: UInt16 = 0x3F8, sink: ConsoleSink, irq: (any InterruptLine)? = nil) throws(MonitorError) {
        let fd = svm_eventfd_nonblocking()
        if fd < 0 { throw .config("eventfd: \(String(cString: strerror(-fd)))") }
        self.base = base
        self.sink = sink
        self.irq = irq
        inputReadyFD = fd
    }

    deinit {
        close(inputReadyFD)
    }

    public func read(port: UInt16, size: Int) -> UInt32 {
        let offset = UInt8(truncatingIfNeeded: port &- base)
        return UInt32(state.withLock { s in
            let value = s.uart.read(offset: offset)
            afterAccess(&s)
            return value
        })
    }

    public func write(port: UInt16, size: Int, value: UInt32) {
        let offset = UInt8(truncatingIfNeeded: port &- base)
        let out: UInt8? = state.withLock { s in
            let out = s.uart.write(offset: offset, value: UInt8(truncatingIfNeeded: value))
            afterAccess(&s)
            // The byte leaves at once (the sink takes it below): THR is empty again. No effect
            // unless this was a THR write.
            s.uart.transmitterDrained()
            afterAccess(&s)
            return out
        }
        if let out { sink.write(out) }
    }

    /// Console input: hands the UART as many of `bytes` as it takes now (see the type's comment)
    /// and returns that count. When it is less than offered, `inputReadyFD` is signalled later.
    public func receive(_ bytes: ArraySlice<UInt8>) -> Int {
        state.withLock { s in
            var taken = 0
            if s.uart.readyToReceive {
                taken = min(bytes.count, s.uart.receiveSpace)
                for b in bytes.prefix(taken) { s.uart.receive(b) }
            }
            if taken < bytes.count { s.feederWaiting = true }
            afterAccess(&s)
            return taken
        }
    }

    /// The model's state, for tests.
    public var uart: UART16550 { state.withLock { $0.uart } }

    private func afterAccess(_ s: inout State) {
        let level = s.uart.interruptLine
        if level != s.line {
            s.line = level
            irq?.set(level: level)
        }
        if s.feederWaiting, s.uart.readyToReceive, s.uart.receiveSpace > 0 {
            s.feederWaiting = false
            var one: UInt64 = 1
            _ = Glibc.write(inputReadyFD, &one, 8)
        }
    }
}
