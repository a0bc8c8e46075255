import FuzzSeeds
import Testing

@testable import Machine

private let RBR: UInt8 = 0, IER: UInt8 = 1, IIR: UInt8 = 2, FCR: UInt8 = 2, LCR: UInt8 = 3, MCR: UInt8 = 4,
    LSR: UInt8 = 5, MSR: UInt8 = 6, SCR: UInt8 = 7

/// A THR write followed by the drain the caller does within the same exit.
private func send(_ uart: inout UART16550, _ byte: UInt8) -> UInt8? {
    let out = uart.write(offset: 0, value: byte)
    uart.transmitterDrained()
    return out
}

@Suite struct UART16550Tests {
    @Test func resetState() {
        var uart = UART16550()
        #expect(uart.read(offset: IER) == 0)
        #expect(uart.read(offset: IIR) == 0x01)
        #expect(uart.read(offset: LCR) == 0)
        #expect(uart.read(offset: MCR) == 0)
        #expect(uart.read(offset: LSR) == 0x60)
        #expect(uart.read(offset: MSR) == 0xB0)
        #expect(uart.read(offset: RBR) == 0)  // nothing received
        #expect(!uart.interruptPending)
    }

    @Test func transmitReturnsTheByte() {
        var uart = UART16550()
        #expect(send(&uart, 0x41) == 0x41)
        #expect(send(&uart, 0x00) == 0x00)
        #expect(uart.read(offset: LSR) == 0x60)  // drained within the exit
        // Other registers never produce output.
        for offset: UInt8 in 1...7 {
            #expect(uart.write(offset: offset, value: 0x41) == nil)
        }
    }

    @Test func registerRoundTrips() {
        var uart = UART16550()
        _ = uart.write(offset: SCR, value: 0x5A)
        #expect(uart.read(offset: SCR) == 0x5A)
        _ = uart.write(offset: LCR, value: 0x1B)  // 8 data bits, even parity, 1 stop bit (no DLAB)
        #expect(uart.read(offset: LCR) == 0x1B)
        _ = uart.write(offset: IER, value: 0xFF)
        #expect(uart.read(offset: IER) == 0x0F)  // only the low 4 bits exist
        _ = uart.write(offset: MCR, value: 0xEB)
        #expect(uart.read(offset: MCR) == 0x0B)  // only the low 5 bits exist; loopback off
        // LSR and MSR are read-only.
        _ = uart.write(offset: LSR, value: 0x00)
        _ = uart.write(offset: MSR, value: 0x00)
        #expect(uart.read(offset: LSR) == 0x60)
        #expect(uart.read(offset: MSR) == 0xB0)
    }

    @Test func divisorLatch() {
        var uart = UART16550()
        _ = uart.write(offset: IER, value: 0x05)
        _ = uart.write(offset: LCR, value: 0x80)  // DLAB
        #expect(uart.write(offset: 0, value: 0x01) == nil)  // DLL, not transmitted
        #expect(uart.write(offset: 1, value: 0x02) == nil)  // DLM, not IER
        #expect(uart.read(offset: 0) == 0x01)
        #expect(uart.read(offset: 1) == 0x02)
        #expect(uart.divisorLatch == 0x0201)
        _ = uart.write(offset: LCR, value: 0x03)
        #expect(uart.read(offset: IER) == 0x05)  // IER untouched by DLM writes
        #expect(uart.divisorLatch == 0x0201)
        // DLAB does not hide the other registers.
        _ = uart.write(offset: LCR, value: 0x83)
        _ = uart.write(offset: SCR, value: 0x77)
        #expect(uart.read(offset: SCR) == 0x77)
        #expect(uart.read(offset: LCR) == 0x83)
        // Received data stays queued while DLAB hides RBR.
        uart.receive(0x31)
        #expect(uart.read(offset: 0) == 0x01)
        _ = uart.write(offset: LCR, value: 0x03)
        #expect(uart.read(offset: RBR) == 0x31)
    }

    @Test func receiveQueueAndLineStatus() {
        var uart = UART16550()
        uart.receive(0x61)
        uart.receive(0x62)
        #expect(uart.receivedCount == 2)
        #expect(uart.read(offset: LSR) == 0x61)
        #expect(uart.read(offset: RBR) == 0x61)
        #expect(uart.read(offset: LSR) == 0x61)
        #expect(uart.read(offset: RBR) == 0x62)
        #expect(uart.read(offset: LSR) == 0x60)
        #expect(uart.read(offset: RBR) == 0)
    }

    @Test func receiveOverrun() {
        var uart = UART16550()
        for i in 0..<300 { uart.receive(UInt8(truncatingIfNeeded: i)) }
        #expect(uart.receivedCount == UART16550.receiveCapacity)
        #expect(uart.overrunCount == 300 - UART16550.receiveCapacity)
        #expect(uart.read(offset: LSR) == 0x63)  // DR | OE | THRE | TEMT
        #expect(uart.read(offset: LSR) == 0x61)  // OE clears on read
        // The oldest bytes were kept, in order.
        for i in 0..<UART16550.receiveCapacity {
            #expect(uart.read(offset: RBR) == UInt8(i))
        }
        #expect(uart.read(offset: LSR) == 0x60)
    }

    @Test func steadyStreamKeepsOrder() {
        // The queue never drains, so the read position keeps advancing through compactions.
        var uart = UART16550()
        for i in 0..<10 { uart.receive(UInt8(i)) }
        for i in 10..<10_000 {
            uart.receive(UInt8(truncatingIfNeeded: i))
            #expect(uart.read(offset: RBR) == UInt8(truncatingIfNeeded: i - 10))
        }
        #expect(uart.receivedCount == 10)
        #expect(uart.overrunCount == 0)
    }

    @Test func fifoControl() {
        var uart = UART16550()
        _ = uart.write(offset: FCR, value: 0x01)
        #expect(uart.read(offset: IIR) == 0xC1)
        uart.receive(1)
        uart.receive(2)
        _ = uart.write(offset: FCR, value: 0x07)  // enable, clear receive and transmit FIFOs
        #expect(uart.receivedCount == 0)
        #expect(uart.read(offset: IIR) == 0xC1)
        _ = uart.write(offset: FCR, value: 0x00)
        #expect(uart.read(offset: IIR) == 0x01)
    }

    @Test func transmitterEmptyInterrupt() {
        var uart = UART16550()
        _ = uart.write(offset: FCR, value: 0x01)
        // Enabling ETBEI while the transmitter is empty raises THRE at once.
        _ = uart.write(offset: IER, value: 0x02)
        #expect(uart.interruptPending)
        #expect(uart.read(offset: IIR) == 0xC2)
        // Reading IIR acknowledged it.
        #expect(!uart.interruptPending)
        #expect(uart.read(offset: IIR) == 0xC1)
        // Each transmitted byte empties the holding register again: a new THRE interrupt.
        #expect(send(&uart, 0x58) == 0x58)
        #expect(uart.interruptPending)
        #expect(uart.read(offset: IIR) == 0xC2)
        #expect(uart.read(offset: IIR) == 0xC1)
        // Re-writing IER with ETBEI already set does not re-raise it; toggling it does.
        _ = uart.write(offset: IER, value: 0x02)
        #expect(!uart.interruptPending)
        _ = uart.write(offset: IER, value: 0x00)
        _ = uart.write(offset: IER, value: 0x02)
        #expect(uart.read(offset: IIR) == 0xC2)
    }

    @Test func transmitterEmptyIsLatchedWhileMasked() {
        var uart = UART16550()
        _ = send(&uart, 0x41)  // THRE condition latched with ETBEI off
        #expect(!uart.interruptPending)
        #expect(uart.read(offset: IIR) == 0x01)
        _ = uart.write(offset: IER, value: 0x02)
        #expect(uart.read(offset: IIR) == 0x02)
        _ = uart.write(offset: IER, value: 0x00)
        #expect(uart.read(offset: IIR) == 0x01)
    }

    @Test func receivedDataInterruptAndPriority() {
        var uart = UART16550()
        _ = uart.write(offset: IER, value: 0x01)
        #expect(!uart.interruptPending)
        uart.receive(0x0D)
        #expect(uart.interruptPending)
        #expect(uart.read(offset: IIR) == 0x04)
        #expect(uart.read(offset: IIR) == 0x04)  // IIR does not acknowledge received data
        // THRE is lower priority than received data.
        _ = uart.write(offset: IER, value: 0x03)
        #expect(uart.read(offset: IIR) == 0x04)
        #expect(uart.read(offset: RBR) == 0x0D)
        #expect(uart.read(offset: IIR) == 0x02)
        #expect(uart.read(offset: IIR) == 0x01)
    }

    @Test func lineStatusInterruptOnOverrun() {
        var uart = UART16550()
        _ = uart.write(offset: IER, value: 0x05)
        for _ in 0...UART16550.receiveCapacity { uart.receive(0x20) }
        #expect(uart.read(offset: IIR) == 0x06)  // highest priority
        _ = uart.read(offset: LSR)
        #expect(uart.read(offset: IIR) == 0x04)
    }

    @Test func loopback() {
        var uart = UART16550()
        _ = uart.write(offset: MCR, value: 0x10)
        #expect(uart.read(offset: MSR) & 0xF0 == 0x00)
        // Linux 8250 autoconfig: MCR = LOOP | OUT2 | RTS must read back MSR 0x90 (DCD | CTS).
        _ = uart.write(offset: MCR, value: 0x1A)
        #expect(uart.read(offset: MSR) & 0xF0 == 0x90)
        _ = uart.write(offset: MCR, value: 0x1F)
        #expect(uart.read(offset: MSR) & 0xF0 == 0xF0)
        _ = uart.write(offset: MCR, value: 0x11)  // DTR -> DSR
        #expect(uart.read(offset: MSR) & 0xF0 == 0x20)
        _ = uart.write(offset: MCR, value: 0x14)  // OUT1 -> RI
        #expect(uart.read(offset: MSR) & 0xF0 == 0x40)

        // Transmitted bytes come back as received data and are not sent out.
        #expect(send(&uart, 0x55) == nil)
        #expect(send(&uart, 0xAA) == nil)
        #expect(uart.read(offset: LSR) & 0x01 == 0x01)
        #expect(uart.read(offset: RBR) == 0x55)
        #expect(uart.read(offset: RBR) == 0xAA)
        // Line input is disconnected in loopback.
        uart.receive(0x42)
        #expect(uart.receivedCount == 0)

        _ = uart.write(offset: MCR, value: 0x00)
        #expect(uart.read(offset: MSR) & 0xF0 == 0xB0)
        #expect(send(&uart, 0x55) == 0x55)
    }

    @Test func modemStatusDeltas() {
        var uart = UART16550()
        _ = uart.write(offset: MCR, value: 0x10)  // loopback drops DCD, DSR, CTS
        #expect(uart.read(offset: MSR) == 0x0B)  // DDCD | DDSR | DCTS
        #expect(uart.read(offset: MSR) == 0x00)  // deltas clear on read
        _ = uart.write(offset: IER, value: 0x08)
        _ = uart.write(offset: MCR, value: 0x14)  // RI rises: no TERI yet
        #expect(!uart.interruptPending)
        #expect(uart.read(offset: MSR) == 0x40)
        _ = uart.write(offset: MCR, value: 0x10)  // RI falls: TERI
        #expect(uart.interruptPending)
        #expect(uart.read(offset: IIR) == 0x00)
        #expect(uart.read(offset: MSR) == 0x04)
        #expect(uart.read(offset: IIR) == 0x01)
    }

    @Test func offsetsBeyondSevenAreIgnored() {
        var uart = UART16550()
        _ = uart.write(offset: SCR, value: 0x12)
        let before = uart
        for offset: UInt8 in [8, 9, 0x80, 0xF8, 0xFF] {
            #expect(uart.read(offset: offset) == 0xFF)
            #expect(uart.write(offset: offset, value: 0x41) == nil)
        }
        #expect(uart == before)
    }

    @Test("a THR write drops THRE (LSR and interrupt) until the caller drains the byte")
    func transmitterHoldsUntilDrained() {
        var uart = UART16550()
        _ = uart.write(offset: MCR, value: 0x08)  // OUT2
        _ = uart.write(offset: IER, value: 0x02)
        #expect(uart.interruptLine)
        #expect(uart.write(offset: RBR, value: 0x41) == 0x41)
        #expect(uart.transmitterHolding)
        #expect(uart.read(offset: LSR) == 0x00)  // neither THRE nor TEMT
        #expect(!uart.interruptPending)
        #expect(!uart.interruptLine)  // the falling half of the edge
        #expect(uart.read(offset: IIR) == 0x01)
        // Toggling ETBEI while a byte is held does not raise THRE.
        _ = uart.write(offset: IER, value: 0x00)
        _ = uart.write(offset: IER, value: 0x02)
        #expect(!uart.interruptPending)
        uart.transmitterDrained()
        #expect(!uart.transmitterHolding)
        #expect(uart.interruptLine)  // and the rising half
        #expect(uart.read(offset: LSR) == 0x60)
        #expect(uart.read(offset: IIR) == 0x02)
        // A second drain without a write changes nothing.
        uart.transmitterDrained()
        #expect(!uart.interruptPending)
    }

    @Test("the IRQ line follows the interrupt only with OUT2 set and loopback off")
    func interruptLineNeedsOUT2() {
        var uart = UART16550()
        _ = uart.write(offset: IER, value: 0x01)
        uart.receive(0x33)
        #expect(uart.interruptPending)
        #expect(!uart.interruptLine)  // OUT2 clear: the PC's buffer is off
        _ = uart.write(offset: MCR, value: 0x0B)  // DTR | RTS | OUT2
        #expect(uart.interruptLine)
        _ = uart.read(offset: RBR)
        #expect(!uart.interruptLine)
        _ = uart.write(offset: MCR, value: 0x18)  // loopback | OUT2
        _ = send(&uart, 0x44)  // comes back as received data
        #expect(uart.interruptPending)
        #expect(!uart.interruptLine)
        _ = uart.write(offset: MCR, value: 0x08)
        #expect(uart.interruptLine)
    }

    @Test("RTS is the ready-to-receive signal; receive space counts down")
    func flowControlSignals() {
        var uart = UART16550()
        #expect(!uart.readyToReceive)
        _ = uart.write(offset: MCR, value: 0x02)
        #expect(uart.readyToReceive)
        _ = uart.write(offset: MCR, value: 0x12)  // RTS, but looped back
        #expect(!uart.readyToReceive)
        _ = uart.write(offset: MCR, value: 0x03)
        #expect(uart.receiveSpace == UART16550.receiveCapacity)
        for b: UInt8 in 1...10 { uart.receive(b) }
        #expect(uart.receiveSpace == UART16550.receiveCapacity - 10)
        _ = uart.read(offset: RBR)
        #expect(uart.receiveSpace == UART16550.receiveCapacity - 9)
    }

    @Test("random register traffic never traps and keeps the invariants", arguments: [1, 2, 3])
    func fuzz(seed: UInt64) {
        var rng = SplitMix64(state: seed)
        var uart = UART16550()
        for _ in 0..<20_000 {
            let r = rng.next()
            let offset = UInt8(truncatingIfNeeded: r >> 8) & 0x0F
            switch r % 4 {
            case 0: _ = uart.read(offset: offset)
            case 1: _ = uart.write(offset: offset, value: UInt8(truncatingIfNeeded: r >> 16))
            case 2: uart.receive(UInt8(truncatingIfNeeded: r >> 24))
            default: uart.transmitterDrained()
            }
            #expect(uart.receivedCount >= 0 && uart.receivedCount <= UART16550.receiveCapacity)
            #expect(!uart.interruptLine || uart.interruptPending)
        }
    }
}

