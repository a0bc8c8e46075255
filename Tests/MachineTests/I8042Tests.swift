import FuzzSeeds
import Testing

@testable import Machine

@Suite struct I8042Tests {
    @Test("status at reset: system flag, not inhibited, nothing to read")
    func resetStatus() {
        let kbc = I8042()
        #expect(kbc.readStatus() == 0x14)
        #expect(kbc.commandByte == 0x45)
    }

    @Test("command 0xFE, and every 0xF0-0xFF pulse with bit 0 clear, resets; 0xFF does not",
          arguments: Array(UInt8(0xF0)...0xFF))
    func pulseResets(command: UInt8) {
        var kbc = I8042()
        #expect(kbc.writeCommand(command) == (command & 1 == 0 ? .reset : .none))
    }

    @Test("the output port: 0xD0 reads it, 0xD1 writes it, reset line low resets")
    func outputPort() {
        var kbc = I8042()
        #expect(kbc.writeCommand(0xD0) == .none)
        #expect(kbc.readStatus() & 0x01 == 0x01)
        #expect(kbc.readData() == 0x03)
        #expect(kbc.readStatus() & 0x01 == 0)
        #expect(kbc.writeCommand(0xD1) == .none)
        #expect(kbc.readStatus() & 0x08 == 0x08)  // A2: last write was a command
        #expect(kbc.writeData(0x01) == .none)  // A20 off, reset line high
        #expect(kbc.readStatus() & 0x08 == 0)
        #expect(kbc.outputPort == 0x01)
        #expect(kbc.writeCommand(0xD1) == .none)
        #expect(kbc.writeData(0x02) == .reset)
    }

    @Test("self test, interface tests, and the command byte through controller RAM")
    func probing() {
        var kbc = I8042()
        for (command, answer) in [(UInt8(0xAA), UInt8(0x55)), (0xAB, 0x00), (0xA9, 0x02), (0x20, 0x45)] {
            #expect(kbc.writeCommand(command) == .none)
            #expect(kbc.readStatus() & 0x01 == 0x01)
            #expect(kbc.readData() == answer)
        }
        #expect(kbc.readData() == 0x45)  // nothing new: the last byte again
        _ = kbc.writeCommand(0x60)
        _ = kbc.writeData(0x61)  // SYS cleared
        #expect(kbc.commandByte == 0x61)
        #expect(kbc.readStatus() & 0x04 == 0)
        _ = kbc.writeCommand(0xAD)
        _ = kbc.writeCommand(0xA7)
        #expect(kbc.commandByte == 0x71)
        _ = kbc.writeCommand(0xAE)
        _ = kbc.writeCommand(0xA8)
        #expect(kbc.commandByte == 0x41)
        _ = kbc.writeCommand(0x65)
        _ = kbc.writeData(0x99)
        _ = kbc.writeCommand(0x25)
        #expect(kbc.readData() == 0x99)
    }

    @Test("bytes for the keyboard or the auxiliary device go nowhere and answer nothing")
    func noDevices() {
        var kbc = I8042()
        let before = kbc
        #expect(kbc.writeData(0xFF) == .none)  // keyboard reset command: no keyboard
        _ = kbc.writeCommand(0xD4)
        #expect(kbc.writeData(0xF2) == .none)
        _ = kbc.writeCommand(0xD3)
        #expect(kbc.writeData(0x5A) == .none)
        #expect(kbc.readStatus() & 0x01 == 0)
        #expect(kbc.commandByte == before.commandByte)
        #expect(kbc.outputPort == before.outputPort)
    }

    @Test("random traffic never traps; only the reset line resets", arguments: [11, 12])
    func fuzz(seed: UInt64) {
        var rng = SplitMix64(state: seed)
        var kbc = I8042()
        var lastCommand: UInt8 = 0
        for _ in 0..<20_000 {
            let r = rng.next()
            let v = UInt8(truncatingIfNeeded: r >> 8)
            switch r % 4 {
            case 0:
                if kbc.writeCommand(v) == .reset { #expect(v >= 0xF0 && v & 1 == 0) }
                lastCommand = v
            case 1:
                if kbc.writeData(v) == .reset { #expect(lastCommand == 0xD1 && v & 1 == 0) }
                lastCommand = 0
            case 2: _ = kbc.readData()
            default: _ = kbc.readStatus()
            }
        }
    }
}
