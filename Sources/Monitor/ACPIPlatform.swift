import Machine
import Synchronization

/// The fixed ACPI hardware the FADT describes (Machine/ACPI/FADT.swift), on I/O ports:
/// PM1a event block at 0x600 (status, write-1-to-clear, and enable, 16 bits each) and PM1a
/// control block at 0x604. Writing SLP_EN with SLP_TYP 5 (the DSDT's \_S5) powers the VM off.
/// There is no SMI command port, so the guest finds SCI_EN already set: ACPI mode from boot.
public final class ACPIPowerManagement: PortIODevice {
    public static let eventBlock: UInt16 = 0x600
    public static let controlBlock: UInt16 = 0x604
    public static let ports: ClosedRange<UInt16> = 0x600...0x605
    static let sciEnable: UInt16 = 1 << 0
    static let sleepEnable: UInt16 = 1 << 13
    /// \_S5's SLP_TYP value in the DSDT.
    static let softOffType: UInt16 = 5

    private struct Registers {
        var status: UInt16 = 0
        var enable: UInt16 = 0
        var control: UInt16 = ACPIPowerManagement.sciEnable
    }

    private let registers = Mutex(Registers())
    private let control: VMControl

    init(control: VMControl) {
        self.control = control
    }

    public func read(port: UInt16, size: Int) -> UInt32 {
        let r = registers.withLock { $0 }
        // The block as little-endian bytes: status, enable, control.
        let bytes: [UInt8] = [UInt8(r.status & 0xFF), UInt8(r.status >> 8), UInt8(r.enable & 0xFF),
                              UInt8(r.enable >> 8), UInt8(r.control & 0xFF), UInt8(r.control >> 8)]
        var value: UInt32 = 0
        for i in 0..<size {
            let at = Int(port - Self.eventBlock) + i
            value |= UInt32(at < bytes.count ? bytes[at] : 0xFF) << (8 * i)
        }
        return value
    }

    public func write(port: UInt16, size: Int, value: UInt32) {
        var powerOff = false
        registers.withLock { r in
            for i in 0..<size {
                let at = Int(port - Self.eventBlock) + i
                let byte = UInt16(truncatingIfNeeded: value >> (8 * i)) & 0xFF
                switch at {
                case 0: r.status &= ~byte                 // write 1 to clear
                case 1: r.status &= ~(byte << 8)
                case 2: r.enable = (r.enable & 0xFF00) | byte
                case 3: r.enable = (r.enable & 0x00FF) | (byte << 8)
                case 4: r.control = (r.control & 0xFF00) | byte | Self.sciEnable
                case 5: r.control = (r.control & 0x00FF) | (byte << 8)
                default: break
                }
            }
            // SLP_EN is write-only: act on it and do not keep it.
            if r.control & Self.sleepEnable != 0 {
                powerOff = (r.control >> 10) & 7 == Self.softOffType
                r.control &= ~Self.sleepEnable
            }
        }
        if powerOff { control.requestStop(.poweredOff) }
    }
}

/// The reset control register at 0xCF9 (the FADT's RESET_REG, value 0x06): a write with the
/// reset bit (2) set resets the VM, as a PC chipset does.
public final class ResetControl: PortIODevice {
    public static let port: UInt16 = 0xCF9
    private let control: VMControl
    private let value = Mutex<UInt8>(0)

    init(control: VMControl) {
        self.control = control
    }

    public func read(port: UInt16, size: Int) -> UInt32 { UInt32(value.withLock { $0 }) }

    public func write(port: UInt16, size: Int, value v: UInt32) {
        let byte = UInt8(truncatingIfNeeded: v)
        value.withLock { $0 = byte & ~0x04 }
        if byte & 0x04 != 0 { control.requestStop(.platformReset) }
    }
}
