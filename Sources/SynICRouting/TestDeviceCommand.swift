/// A write to QEMU's hyperv-testdev port (hw/hyperv/hyperv_testdev.c; kvm-unit-tests
/// x86/hyperv.h): one 32-bit value, `conn_id << 24 | ctl << 16 | vp_index << 8 | sint`.
public struct TestDeviceCommand: Equatable, Sendable {
    /// The port QEMU's `-device hyperv-testdev` claims (4 bytes, write-only).
    public static let port: UInt16 = 0x3000

    public enum Control: UInt8, Sendable {
        case sintRouteCreate = 1
        case sintRouteDestroy = 2
        case sintRouteSetSint = 3
        case messageConnectionCreate = 4
        case messageConnectionDestroy = 5
        case eventConnectionCreate = 6
        case eventConnectionDestroy = 7
    }

    public var control: Control
    public var connectionID: UInt32
    public var vp: UInt32
    public var sint: Int

    public init(control: Control, connectionID: UInt32, vp: UInt32, sint: Int) {
        self.control = control
        self.connectionID = connectionID
        self.vp = vp
        self.sint = sint
    }

    /// Decodes a port write; nil for a control code QEMU does not define (ignored, as QEMU does).
    /// VP and SINT are range-checked by whoever applies the command.
    public init?(value: UInt32) {
        guard let control = Control(rawValue: UInt8(truncatingIfNeeded: value >> 16)) else { return nil }
        self.init(control: control, connectionID: value >> 24, vp: (value >> 8) & 0xFF, sint: Int(value & 0xFF))
    }

    public var value: UInt32 {
        connectionID << 24 | UInt32(control.rawValue) << 16 | (vp & 0xFF) << 8 | UInt32(sint & 0xFF)
    }
}
