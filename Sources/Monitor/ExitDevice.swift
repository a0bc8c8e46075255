/// QEMU isa-debug-exit compatible: a write of `v` to port 0xf4 ends the VM with process status
/// `(v << 1) | 1`, so guest test suites written for QEMU report the same way here.
public final class ExitDevice: PortIODevice {
    public static let port: UInt16 = 0xF4
    private let control: VMControl

    init(control: VMControl) {
        self.control = control
    }

    public func read(port: UInt16, size: Int) -> UInt32 { 0xFFFF_FFFF }

    public func write(port: UInt16, size: Int, value: UInt32) {
        control.requestStop(.exitDevice(value: value))
    }
}

/// Port 0x80 (POST codes): accepted and ignored, as on a PC.
public final class POSTPort: PortIODevice {
    public static let port: UInt16 = 0x80
    public init() {}
    public func read(port: UInt16, size: Int) -> UInt32 { 0xFFFF_FFFF }
    public func write(port: UInt16, size: Int, value: UInt32) {}
}
