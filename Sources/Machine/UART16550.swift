/// The register model of a National Semiconductor PC16550D UART, as seen by a guest driver at
/// I/O offsets 0 to 7 (COM1 at 0x3f8 in docs/boot-protocol.md, "Platform ports").
///
/// It is a pure state machine: the caller turns port I/O exits into `read`/`write`, forwards
/// transmitted bytes to the console sink and then reports the holding register empty again
/// (`transmitterDrained`), feeds console input in through `receive`, and drives the IRQ line
/// from `interruptLine`. There is no baud-rate timing: the caller drains the transmitter within
/// the same exit, so a guest never sees it busy, but the THR write and the drain are two steps
/// so the THRE interrupt falls and rises again as on the chip (an edge-triggered ISA IRQ needs
/// that edge). What is modelled faithfully is what drivers probe and rely on: the divisor
/// latch, the scratch register, loopback (Linux's 8250 autoconfig uses it), the IIR priority
/// scheme, THRE and received-data interrupts, and the PC's OUT2 gate on the IRQ output.
public struct UART16550: Sendable, Equatable {
    /// Received bytes kept before overruns start. A real 16550 holds 16; a deeper queue means
    /// pasted console input survives a guest that polls slowly, which no driver can tell apart
    /// from a fast line.
    public static let receiveCapacity = 256

    // Register offsets.
    public static let offsetData: UInt8 = 0  // RBR (read) / THR (write) / DLL (DLAB=1)
    public static let offsetInterruptEnable: UInt8 = 1  // IER / DLM (DLAB=1)
    public static let offsetInterruptIdentification: UInt8 = 2  // IIR (read) / FCR (write)
    public static let offsetLineControl: UInt8 = 3  // LCR
    public static let offsetModemControl: UInt8 = 4  // MCR
    public static let offsetLineStatus: UInt8 = 5  // LSR
    public static let offsetModemStatus: UInt8 = 6  // MSR
    public static let offsetScratch: UInt8 = 7  // SCR

    // IER bits.
    static let ierReceivedData: UInt8 = 0x01
    static let ierTransmitterEmpty: UInt8 = 0x02
    static let ierLineStatus: UInt8 = 0x04
    static let ierModemStatus: UInt8 = 0x08
    // IIR interrupt identifications, highest priority first.
    static let iirLineStatus: UInt8 = 0x06
    static let iirReceivedData: UInt8 = 0x04
    static let iirTransmitterEmpty: UInt8 = 0x02
    static let iirModemStatus: UInt8 = 0x00
    static let iirNone: UInt8 = 0x01
    static let iirFIFOsEnabled: UInt8 = 0xC0
    // LSR bits.
    static let lsrDataReady: UInt8 = 0x01
    static let lsrOverrun: UInt8 = 0x02
    static let lsrTransmitterIdle: UInt8 = 0x60  // THRE | TEMT
    // LCR / MCR bits.
    static let lcrDLAB: UInt8 = 0x80
    static let mcrRTS: UInt8 = 0x02
    static let mcrOUT2: UInt8 = 0x08
    static let mcrLoopback: UInt8 = 0x10
    /// MSR line bits when the port is not in loopback: DCD, DSR and CTS asserted, as if a
    /// terminal were attached and ready, so drivers that wait for CTS/DSR do not stall.
    static let msrLinesConnected: UInt8 = 0xB0

    public private(set) var interruptEnable: UInt8 = 0
    public private(set) var lineControl: UInt8 = 0
    public private(set) var modemControl: UInt8 = 0
    public private(set) var scratch: UInt8 = 0
    /// Baud-rate divisor (DLM:DLL). Kept only so drivers read back what they wrote.
    public private(set) var divisorLatch: UInt16 = 0
    public private(set) var fifosEnabled = false
    /// Bytes lost because the receive queue was full.
    public private(set) var overrunCount = 0
    /// Received bytes waiting to be read from RBR.
    public var receivedCount: Int { receiveQueue.count - receiveHead }

    private var receiveQueue: [UInt8] = []
    private var receiveHead = 0
    /// The "THR empty" interrupt condition, separate from IER as in the 16550: it is raised when
    /// the holding register empties (`transmitterDrained`, or when the interrupt is enabled
    /// while empty) and cleared by an IIR read that reports it or a THR write.
    private var transmitterEmptyInterrupt = false
    /// A byte was written to THR and the caller has not yet called `transmitterDrained`.
    public private(set) var transmitterHolding = false
    /// LSR overrun bit; cleared by reading LSR.
    private var overrunFlag = false
    /// MSR delta bits (DCTS, DDSR, TERI, DDCD); cleared by reading MSR.
    private var modemStatusDeltas: UInt8 = 0

    public init() {}

    /// Whether the UART asserts its interrupt output (IIR bit 0 clear).
    public var interruptPending: Bool { pendingInterruptID != Self.iirNone }

    /// The level of the ISA IRQ line. On a PC the UART's INTRPT output reaches the interrupt
    /// controller only through a buffer enabled by MCR OUT2, which drivers set when they want
    /// interrupts (Linux's 8250 does for every port with an IRQ); in loopback the OUT2 output is
    /// wired back to DCD instead, so the line is not driven.
    public var interruptLine: Bool {
        interruptPending && modemControl & Self.mcrOUT2 != 0 && !isLoopback
    }

    /// Whether the guest asserts RTS (and is not in loopback): the "ready to receive" of
    /// hardware flow control. Console input is held back while it is clear.
    public var readyToReceive: Bool { modemControl & Self.mcrRTS != 0 && !isLoopback }

    /// Room left in the receive queue.
    public var receiveSpace: Int { Self.receiveCapacity - receivedCount }

    var isLoopback: Bool { modemControl & Self.mcrLoopback != 0 }
    var isDLAB: Bool { lineControl & Self.lcrDLAB != 0 }

    /// A guest read of the register at `offset`. Reads have side effects (RBR pops a byte, IIR
    /// acknowledges THRE, LSR clears overrun, MSR clears deltas), hence `mutating`.
    public mutating func read(offset: UInt8) -> UInt8 {
        switch offset {
        case 0:
            if isDLAB { return UInt8(truncatingIfNeeded: divisorLatch) }
            return popReceived() ?? 0
        case 1:
            if isDLAB { return UInt8(truncatingIfNeeded: divisorLatch >> 8) }
            return interruptEnable
        case 2:
            let id = pendingInterruptID
            if id == Self.iirTransmitterEmpty { transmitterEmptyInterrupt = false }
            return id | (fifosEnabled ? Self.iirFIFOsEnabled : 0)
        case 3:
            return lineControl
        case 4:
            return modemControl
        case 5:
            var value = transmitterHolding ? 0 : Self.lsrTransmitterIdle
            if receivedCount > 0 { value |= Self.lsrDataReady }
            if overrunFlag { value |= Self.lsrOverrun }
            overrunFlag = false
            return value
        case 6:
            let value = modemStatusLines | modemStatusDeltas
            modemStatusDeltas = 0
            return value
        case 7:
            return scratch
        default:
            return 0xFF  // Not a UART register: the caller routed the wrong port here.
        }
    }

    /// A guest write of `value` to the register at `offset`. Returns the byte to send to the
    /// console when the write transmits one (THR with DLAB clear, not in loopback).
    public mutating func write(offset: UInt8, value: UInt8) -> UInt8? {
        switch offset {
        case 0:
            if isDLAB {
                divisorLatch = divisorLatch & 0xFF00 | UInt16(value)
                return nil
            }
            // The write clears the THRE condition; `transmitterDrained` sets it again once the
            // byte has gone, as the 16550 does when the byte moves to the shift register.
            // Interrupt-driven drivers wait for that second edge.
            transmitterEmptyInterrupt = false
            transmitterHolding = true
            if isLoopback {
                enqueueReceived(value)
                return nil
            }
            return value
        case 1:
            if isDLAB {
                divisorLatch = divisorLatch & 0x00FF | UInt16(value) << 8
                return nil
            }
            let old = interruptEnable
            interruptEnable = value & 0x0F
            // Enabling the THRE interrupt while the holding register is empty raises it, as
            // drivers expect to kick off interrupt-driven transmission.
            if interruptEnable & Self.ierTransmitterEmpty != 0, old & Self.ierTransmitterEmpty == 0,
               !transmitterHolding {
                transmitterEmptyInterrupt = true
            }
            return nil
        case 2:
            fifosEnabled = value & 0x01 != 0
            if value & 0x02 != 0 { clearReceived() }
            // Bit 2 clears the transmit FIFO, which is always empty; bits 6-7 (trigger level)
            // have no effect without timing.
            return nil
        case 3:
            lineControl = value
            return nil
        case 4:
            let before = modemStatusLines
            modemControl = value & 0x1F
            recordModemStatusChange(from: before, to: modemStatusLines)
            return nil
        case 5, 6:
            return nil  // LSR and MSR are read-only (factory test writes are not modelled).
        case 7:
            scratch = value
            return nil
        default:
            return nil
        }
    }

    /// The byte written to THR has left: THR and the shift register are empty again (LSR THRE
    /// and TEMT) and the THRE interrupt condition is raised. No effect when nothing was held.
    public mutating func transmitterDrained() {
        guard transmitterHolding else { return }
        transmitterHolding = false
        transmitterEmptyInterrupt = true
    }

    /// A byte arriving on the serial line (console input). In loopback the line input is
    /// disconnected, as on the chip, so the byte is dropped. When the queue is full the byte is
    /// lost and the overrun is flagged in LSR and counted.
    public mutating func receive(_ byte: UInt8) {
        if isLoopback { return }
        enqueueReceived(byte)
    }

    // MARK: - Internals

    /// IIR bits 3:0 for the highest-priority enabled, pending interrupt.
    var pendingInterruptID: UInt8 {
        if interruptEnable & Self.ierLineStatus != 0, overrunFlag { return Self.iirLineStatus }
        if interruptEnable & Self.ierReceivedData != 0, receivedCount > 0 { return Self.iirReceivedData }
        if interruptEnable & Self.ierTransmitterEmpty != 0, transmitterEmptyInterrupt {
            return Self.iirTransmitterEmpty
        }
        if interruptEnable & Self.ierModemStatus != 0, modemStatusDeltas != 0 { return Self.iirModemStatus }
        return Self.iirNone
    }

    /// MSR bits 7:4. In loopback the modem-control outputs are wired back to the inputs:
    /// DTR -> DSR, RTS -> CTS, OUT1 -> RI, OUT2 -> DCD.
    var modemStatusLines: UInt8 {
        guard isLoopback else { return Self.msrLinesConnected }
        let mcr = modemControl
        var lines: UInt8 = 0
        if mcr & 0x01 != 0 { lines |= 0x20 }  // DTR -> DSR
        if mcr & 0x02 != 0 { lines |= 0x10 }  // RTS -> CTS
        if mcr & 0x04 != 0 { lines |= 0x40 }  // OUT1 -> RI
        if mcr & 0x08 != 0 { lines |= 0x80 }  // OUT2 -> DCD
        return lines
    }

    private mutating func recordModemStatusChange(from old: UInt8, to new: UInt8) {
        let changed = old ^ new
        if changed & 0x10 != 0 { modemStatusDeltas |= 0x01 }  // DCTS
        if changed & 0x20 != 0 { modemStatusDeltas |= 0x02 }  // DDSR
        if old & 0x40 != 0, new & 0x40 == 0 { modemStatusDeltas |= 0x04 }  // TERI: trailing edge of RI
        if changed & 0x80 != 0 { modemStatusDeltas |= 0x08 }  // DDCD
    }

    private mutating func enqueueReceived(_ byte: UInt8) {
        if receivedCount >= Self.receiveCapacity {
            overrunCount += 1
            overrunFlag = true
            return
        }
        receiveQueue.append(byte)
    }

    private mutating func popReceived() -> UInt8? {
        guard receiveHead < receiveQueue.count else { return nil }
        let byte = receiveQueue[receiveHead]
        receiveHead += 1
        if receiveHead == receiveQueue.count {
            clearReceived()
        } else if receiveHead >= Self.receiveCapacity {
            // Compact occasionally so the array stays bounded under a steady stream.
            receiveQueue.removeFirst(receiveHead)
            receiveHead = 0
        }
        return byte
    }

    private mutating func clearReceived() {
        receiveQueue.removeAll(keepingCapacity: true)
        receiveHead = 0
    }
}
