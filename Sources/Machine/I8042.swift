/// The PC keyboard controller (Intel 8042) at ports 0x60 (data) and 0x64 (status / command), as
/// much of it as a guest needs to reset the machine through it and to probe it without harm.
///
/// There is no keyboard and no mouse behind it. What is modelled:
///
/// - the status register: OBF while a response waits, IBF never (commands complete at once),
///   SYS from the command byte, A2 (last write was a command), INH (bit 4) set: not inhibited;
/// - controller RAM 0x00-0x1F (0x00 is the command byte), read with 0x20-0x3F and written with
///   0x60-0x7F (the data byte that follows);
/// - 0xAA self test -> 0x55, 0xAB keyboard interface test -> 0x00 (passed), 0xA9 auxiliary
///   interface test -> 0x02 (clock line stuck high: nothing attached), 0xAD / 0xAE and
///   0xA7 / 0xA8 disable / enable the keyboard and auxiliary clocks in the command byte;
/// - 0xD0 reads and 0xD1 writes the output port; writing it with bit 0 (the CPU reset line,
///   active low) clear resets the machine;
/// - 0xF0-0xFF pulse the output lines whose bit is clear for 6 us: bit 0 is the reset line, so
///   0xFE (the keyboard-controller reset guests use) and every even command in that range reset.
///
/// Everything else is accepted and ignored: other commands have no effect (those that take a data
/// byte, 0xD2-0xD4, still consume it) and bytes written to the keyboard are dropped, as nothing
/// is attached to answer them. No interrupt (IRQ 1 / 12) is ever raised.
public struct I8042: Sendable, Equatable {
    public static let dataPort: UInt16 = 0x60
    public static let commandPort: UInt16 = 0x64

    public enum Effect: Sendable, Equatable {
        case none
        /// The guest pulsed or drove low the CPU reset line.
        case reset
    }

    // Status register bits.
    public static let statusOutputFull: UInt8 = 0x01
    public static let statusInputFull: UInt8 = 0x02
    public static let statusSystem: UInt8 = 0x04
    public static let statusCommand: UInt8 = 0x08
    public static let statusNotInhibited: UInt8 = 0x10
    // Command byte bits.
    public static let commandByteSystem: UInt8 = 0x04
    public static let commandByteKeyboardDisabled: UInt8 = 0x10
    public static let commandByteAuxDisabled: UInt8 = 0x20
    /// Keyboard interrupt on, system flag (POST passed), scan-code translation: what a BIOS leaves.
    public static let resetCommandByte: UInt8 = 0x45
    /// Output port: reset line high (not resetting), A20 enabled.
    public static let resetOutputPort: UInt8 = 0x03
    /// Responses kept before further ones are dropped; commands answer one byte each.
    static let outputCapacity = 16

    /// Controller RAM; byte 0 is the command byte.
    private var ram: [UInt8] = [I8042.resetCommandByte] + [UInt8](repeating: 0, count: 31)
    public private(set) var outputPort: UInt8 = I8042.resetOutputPort
    private var output: [UInt8] = []
    /// The last byte read from the data port, returned again when nothing is waiting.
    private var lastOutput: UInt8 = 0
    /// A command that takes the next data-port byte as its parameter.
    private var awaitingData: UInt8?
    private var lastWriteWasCommand = false

    public init() {}

    public var commandByte: UInt8 { ram[0] }

    public func readStatus() -> UInt8 {
        var status = Self.statusNotInhibited
        if !output.isEmpty { status |= Self.statusOutputFull }
        if commandByte & Self.commandByteSystem != 0 { status |= Self.statusSystem }
        if lastWriteWasCommand { status |= Self.statusCommand }
        return status
    }

    public mutating func readData() -> UInt8 {
        if !output.isEmpty { lastOutput = output.removeFirst() }
        return lastOutput
    }

    public mutating func writeCommand(_ command: UInt8) -> Effect {
        lastWriteWasCommand = true
        awaitingData = nil
        switch command {
        case 0x20...0x3F:
            respond(ram[Int(command & 0x1F)])
        case 0x60...0x7F, 0xD1, 0xD2, 0xD3, 0xD4:
            awaitingData = command
        case 0xA7:
            ram[0] |= Self.commandByteAuxDisabled
        case 0xA8:
            ram[0] &= ~Self.commandByteAuxDisabled
        case 0xA9:
            respond(0x02)
        case 0xAA:
            respond(0x55)
        case 0xAB:
            respond(0x00)
        case 0xAD:
            ram[0] |= Self.commandByteKeyboardDisabled
        case 0xAE:
            ram[0] &= ~Self.commandByteKeyboardDisabled
        case 0xD0:
            respond(outputPort)
        case 0xF0...0xFF:
            // Pulse the output lines whose bit (3:0) is clear; line 0 is the CPU reset.
            if command & 0x01 == 0 { return .reset }
        default:
            break
        }
        return .none
    }

    public mutating func writeData(_ value: UInt8) -> Effect {
        lastWriteWasCommand = false
        guard let command = awaitingData else { return .none }  // to the keyboard: nobody there
        awaitingData = nil
        switch command {
        case 0x60...0x7F:
            ram[Int(command & 0x1F)] = value
        case 0xD1:
            outputPort = value
            if value & 0x01 == 0 { return .reset }
        default:
            break  // 0xD2-0xD4: keyboard / auxiliary output buffer and auxiliary writes: no device
        }
        return .none
    }

    private mutating func respond(_ byte: UInt8) {
        if output.count < Self.outputCapacity { output.append(byte) }
    }
}
