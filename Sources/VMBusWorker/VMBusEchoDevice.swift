import VMBus

/// A test-only VMBus device: offered only when the worker runs with `--test-echo-device`
/// (tests, `synthvm-bench vmbus`), after the standard devices. It has two modes, chosen by the
/// first byte of OPENCHANNEL's user data:
///
/// - 0, echo: every packet the guest writes into the guest-to-host ring is written back, same
///   type, transaction id and payload, into the host-to-guest ring; one commit (and at most one
///   interrupt, as the ring rules say) per wake-up, so a guest's batch comes back as a batch.
/// - 1, floor: a signal only raises the channel's interrupt (SIEF bit + SINT2). The rings are not
///   touched: what is left is the raw cost of the path (HvSignalEvent exit, doorbell eventfd,
///   the worker's wake-up, the irqfd interrupt), the floor the echo's round trip is measured
///   against.
///
/// A packet that does not fit into the host-to-guest ring is dropped and counted (the bench
/// sizes its batches to the ring); a corrupt ring cuts the channel off, as for any device.
public final class VMBusEchoDevice: VMBusChannelDevice {
    /// The class GUID the guest looks for (made up; no Hyper-V device has it).
    public static let interfaceType = VMBusGUID("5e1f0c4a-9d2b-4c1e-8f3a-0123456789ec") ?? .zero
    public static let interfaceInstance = VMBusGUID("5e1f0c4a-9d2b-4c1e-8f3a-00000000ec01") ?? .zero
    public static let floorMode: UInt8 = 1

    public let offer = VMBusOffer(interfaceType: VMBusEchoDevice.interfaceType,
                                  interfaceInstance: VMBusEchoDevice.interfaceInstance)
    var channel: VMBusChannel?
    var floor = false
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 8)
    public private(set) var echoed = 0
    public private(set) var dropped = 0
    public private(set) var corruption: VMBusRingCorruption?
    let log: (String) -> Void

    public init(log: @escaping (String) -> Void = { _ in }) { self.log = log }

    deinit { buffer.deallocate() }

    public func open(_ channel: VMBusChannel, now: UInt64) -> VMBusStatus {
        self.channel = channel
        floor = channel.open.userData.first == Self.floorMode
        corruption = nil
        return .success
    }

    public func serve(now: UInt64) {
        guard let channel else { return }
        if floor {
            channel.interruptGuest()
            return
        }
        reading: while true {
            switch channel.inbound.next() {
            case .packet(let p):
                let payload = p.payload
                guard payload.count <= buffer.count,
                      payload.copyBytes(to: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<payload.count])) else {
                    dropped += 1
                    continue
                }
                switch channel.outbound.tryWrite(type: p.descriptor.type, transactionID: p.descriptor.transactionID,
                                                 payload: UnsafeRawBufferPointer(rebasing: buffer[0..<payload.count])) {
                case .written: echoed += 1
                case .full, .tooLarge: dropped += 1
                case .corrupted(let why): cut(why); break reading
                case .cutOff: break reading
                }
            case .empty, .cutOff:
                break reading
            case .corrupted(let why):
                cut(why)
                break reading
            }
        }
        switch channel.inbound.commit() {
        case .corrupted(let why): cut(why)
        case .signal, .noSignal, .cutOff: break
        }
        switch channel.outbound.commit() {
        case .signal: channel.interruptGuest()
        case .corrupted(let why): cut(why)
        case .noSignal, .cutOff: break
        }
    }

    func cut(_ why: VMBusRingCorruption) {
        guard corruption == nil else { return }
        corruption = why
        log("echo device: relid \(channel?.relID ?? 0): ring cut off: \(why)")
    }

    public var deadline: UInt64? { nil }

    public func close() { channel = nil }
}
