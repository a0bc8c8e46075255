/// CHANNELMSG_INITIATE_CONTACT (14), guest to host, 40 bytes (Linux
/// `struct vmbus_channel_initiate_contact`):
///
/// | offset | size | field |
/// |---|---|---|
/// | 8 | 4 | vmbus_version_requested |
/// | 12 | 4 | target_vcpu: the VP that receives every host-to-guest control message (>= 3.0) |
/// | 16 | 8 | < 5.0: interrupt_page GPA; >= 5.0: u8 msg_sint, then padding |
/// | 24 | 8 | monitor_page1 GPA (parent to child) |
/// | 32 | 8 | monitor_page2 GPA (child to parent) |
public struct VMBusInitiateContact: Equatable, Sendable {
    public static let type = VMBusMessageType.initiateContact
    public static let size = 40

    public var versionRequested: VMBusVersion
    public var targetVCPU: UInt32
    /// The union at +16, as the guest wrote it: `interrupt_page` below 5.0, `msg_sint` in its low
    /// byte from 5.0 on.
    public var interruptPageOrMessageSINT: UInt64
    public var monitorPage1: UInt64
    public var monitorPage2: UInt64

    public init(versionRequested: VMBusVersion, targetVCPU: UInt32, interruptPageOrMessageSINT: UInt64,
                monitorPage1: UInt64, monitorPage2: UInt64) {
        self.versionRequested = versionRequested
        self.targetVCPU = targetVCPU
        self.interruptPageOrMessageSINT = interruptPageOrMessageSINT
        self.monitorPage1 = monitorPage1
        self.monitorPage2 = monitorPage2
    }

    /// `msg_sint` (meaningful from 5.0 on).
    public var messageSINT: UInt8 { UInt8(truncatingIfNeeded: interruptPageOrMessageSINT) }

    public init(decoding bytes: [UInt8]) throws(VMBusMessageError) {
        let r = try MessageReader(bytes, type: Self.type, minimumSize: Self.size)
        versionRequested = VMBusVersion(rawValue: r.u32(at: 8))
        targetVCPU = r.u32(at: 12)
        interruptPageOrMessageSINT = r.u64(at: 16)
        monitorPage1 = r.u64(at: 24)
        monitorPage2 = r.u64(at: 32)
    }

    public func encoded() -> [UInt8] {
        var w = MessageWriter(type: Self.type, size: Self.size)
        w.u32(versionRequested.rawValue, at: 8)
        w.u32(targetVCPU, at: 12)
        w.u64(interruptPageOrMessageSINT, at: 16)
        w.u64(monitorPage1, at: 24)
        w.u64(monitorPage2, at: 32)
        return w.bytes
    }
}

/// CHANNELMSG_VERSION_RESPONSE (15), host to guest, 16 bytes (Linux
/// `struct vmbus_channel_version_response`):
///
/// | offset | size | field |
/// |---|---|---|
/// | 8 | 1 | version_supported (the only field Linux checks) |
/// | 9 | 1 | connection_state |
/// | 10 | 2 | padding |
/// | 12 | 4 | msg_conn_id: from 5.0 on, the connection every later control message uses |
public struct VMBusVersionResponse: Equatable, Sendable {
    public static let type = VMBusMessageType.versionResponse
    public static let size = 16

    public var versionSupported: Bool
    public var connectionState: VMBusConnectionState
    public var messageConnectionID: UInt32

    public init(versionSupported: Bool, connectionState: VMBusConnectionState = .successful, messageConnectionID: UInt32 = 0) {
        self.versionSupported = versionSupported
        self.connectionState = connectionState
        self.messageConnectionID = messageConnectionID
    }

    public init(decoding bytes: [UInt8]) throws(VMBusMessageError) {
        let r = try MessageReader(bytes, type: Self.type, minimumSize: Self.size)
        versionSupported = r.u8(at: 8) != 0
        connectionState = VMBusConnectionState(rawValue: r.u8(at: 9))
        messageConnectionID = r.u32(at: 12)
    }

    public func encoded() -> [UInt8] {
        var w = MessageWriter(type: Self.type, size: Self.size)
        w.u8(versionSupported ? 1 : 0, at: 8)
        w.u8(connectionState.rawValue, at: 9)
        w.u32(messageConnectionID, at: 12)
        return w.bytes
    }
}
