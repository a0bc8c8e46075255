import Machine
import Synchronization

/// The i8042 at ports 0x60 and 0x64 (`Machine/I8042.swift`). Its CPU reset line (command 0xFE,
/// or the output port written with bit 0 clear) takes the same path as the reset control
/// register at 0xCF9: the VM stops with `.platformReset`, and `synthvm run` restarts it or exits
/// with status 10 as `--on-reset` says.
public final class KeyboardController: PortIODevice {
    private let controller = Mutex(I8042())
    private let control: VMControl

    init(control: VMControl) {
        self.control = control
    }

    public func read(port: UInt16, size: Int) -> UInt32 {
        let byte = controller.withLock { c in
            port == I8042.commandPort ? c.readStatus() : c.readData()
        }
        // Wider reads see the neighbouring port, which does not exist: all-ones.
        return UInt32(byte) | (size > 1 ? 0xFFFF_FF00 : 0)
    }

    public func write(port: UInt16, size: Int, value: UInt32) {
        let byte = UInt8(truncatingIfNeeded: value)
        let effect = controller.withLock { c in
            port == I8042.commandPort ? c.writeCommand(byte) : c.writeData(byte)
        }
        if effect == .reset { control.requestStop(.platformReset) }
    }
}
