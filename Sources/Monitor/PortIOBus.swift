/// A device on the x86 I/O port bus. Called from vCPU threads, possibly several at once:
/// a device protects its own state.
public protocol PortIODevice: AnyObject, Sendable {
    func read(port: UInt16, size: Int) -> UInt32
    func write(port: UInt16, size: Int, value: UInt32)
}

/// Port -> device dispatch through a flat 64 Ki table, so the hot path is one array load.
/// Built before the vCPUs start and immutable afterwards.
public final class PortIOBus: Sendable {
    private let slots: [UInt8]           // 0 = unclaimed, else index + 1 into devices
    private let devices: [any PortIODevice]

    public struct Builder {
        var slots = [UInt8](repeating: 0, count: 65536)
        var devices: [any PortIODevice] = []

        public init() {}

        /// Claims `ports` for `device`. Overlaps are a programming error.
        public mutating func attach(_ device: any PortIODevice, ports: ClosedRange<UInt16>) {
            precondition(devices.count < 255)
            devices.append(device)
            for p in ports {
                precondition(slots[Int(p)] == 0, "port 0x\(String(p, radix: 16)) claimed twice")
                slots[Int(p)] = UInt8(devices.count)
            }
        }

        public func build() -> PortIOBus { PortIOBus(slots: slots, devices: devices) }
    }

    private init(slots: [UInt8], devices: [any PortIODevice]) {
        self.slots = slots
        self.devices = devices
    }

    /// The device at `port`, or nil for an unclaimed port.
    @inline(__always)
    public func device(at port: UInt16) -> (any PortIODevice)? {
        let s = slots[Int(port)]
        return s == 0 ? nil : devices[Int(s) - 1]
    }
}
