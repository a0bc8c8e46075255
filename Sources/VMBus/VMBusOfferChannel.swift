/// CHANNELMSG_OFFERCHANNEL (1), host to guest, 196 bytes (Linux
/// `struct vmbus_channel_offer_channel` around `struct vmbus_channel_offer`):
///
/// | offset | size | field |
/// |---|---|---|
/// | 8 | 16 | if_type (class GUID: which driver binds) |
/// | 24 | 16 | if_instance (unique per device) |
/// | 40 | 16 | reserved1, reserved2 |
/// | 56 | 2 | chn_flags (`VMBusChannelFlags`) |
/// | 58 | 2 | mmio_megabytes |
/// | 60 | 120 | user_def (pipes: u32 pipe_mode at 60) |
/// | 180 | 2 | sub_channel_index (0: the primary channel) |
/// | 182 | 2 | reserved3 |
/// | 184 | 4 | child_relid |
/// | 188 | 1 | monitorid |
/// | 189 | 1 | bit 0 monitor_allocated |
/// | 190 | 2 | bit 0 is_dedicated_interrupt |
/// | 192 | 4 | connection_id (the channel's HvSignalEvent connection) |
public struct VMBusOfferChannel: Equatable, Sendable {
    public static let type = VMBusMessageType.offerChannel
    public static let size = 196
    /// `MAX_USER_DEFINED_BYTES`.
    public static let userDefinedSize = 120

    public var offer: VMBusOffer
    public var childRelID: UInt32
    /// 0xFF when the channel has no monitor page bit (OpenVMM's choice; this server never
    /// allocates monitor bits).
    public var monitorID: UInt8
    public var monitorAllocated: Bool
    public var isDedicatedInterrupt: Bool
    public var connectionID: UInt32

    public init(offer: VMBusOffer, childRelID: UInt32, monitorID: UInt8 = 0xFF, monitorAllocated: Bool = false,
                isDedicatedInterrupt: Bool = true, connectionID: UInt32) {
        self.offer = offer
        self.childRelID = childRelID
        self.monitorID = monitorID
        self.monitorAllocated = monitorAllocated
        self.isDedicatedInterrupt = isDedicatedInterrupt
        self.connectionID = connectionID
    }

    public init(decoding bytes: [UInt8]) throws(VMBusMessageError) {
        let r = try MessageReader(bytes, type: Self.type, minimumSize: Self.size)
        offer = VMBusOffer(interfaceType: r.guid(at: 8), interfaceInstance: r.guid(at: 24), channelFlags: r.u16(at: 56),
                           mmioMegabytes: r.u16(at: 58), userDefined: r.raw(at: 60, count: Self.userDefinedSize),
                           subChannelIndex: r.u16(at: 180))
        childRelID = r.u32(at: 184)
        monitorID = r.u8(at: 188)
        monitorAllocated = r.u8(at: 189) & 1 != 0
        isDedicatedInterrupt = r.u16(at: 190) & 1 != 0
        connectionID = r.u32(at: 192)
    }

    public func encoded() -> [UInt8] {
        var w = MessageWriter(type: Self.type, size: Self.size)
        w.raw(offer.interfaceType.bytes, at: 8, count: 16)
        w.raw(offer.interfaceInstance.bytes, at: 24, count: 16)
        w.u16(offer.channelFlags, at: 56)
        w.u16(offer.mmioMegabytes, at: 58)
        w.raw(offer.userDefined, at: 60, count: Self.userDefinedSize)
        w.u16(offer.subChannelIndex, at: 180)
        w.u32(childRelID, at: 184)
        w.u8(monitorID, at: 188)
        w.u8(monitorAllocated ? 1 : 0, at: 189)
        w.u16(isDedicatedInterrupt ? 1 : 0, at: 190)
        w.u32(connectionID, at: 192)
        return w.bytes
    }
}

/// `chn_flags` bits of an offer (Linux `VMBUS_CHANNEL_*`).
public enum VMBusChannelFlags {
    /// VMBUS_CHANNEL_ENUMERATE_DEVICE_INTERFACE.
    public static let enumerateDeviceInterface: UInt16 = 0x1
    /// VMBUS_CHANNEL_NAMED_PIPE_MODE.
    public static let namedPipeMode: UInt16 = 0x10
    /// VMBUS_CHANNEL_LOOPBACK_OFFER.
    public static let loopbackOffer: UInt16 = 0x100
    /// VMBUS_CHANNEL_PARENT_OFFER.
    public static let parentOffer: UInt16 = 0x200
    /// VMBUS_CHANNEL_REQUEST_MONITORED_NOTIFICATION.
    public static let requestMonitoredNotification: UInt16 = 0x400
    /// VMBUS_CHANNEL_TLNPI_PROVIDER_OFFER (hv_sock).
    public static let tlnpiProviderOffer: UInt16 = 0x2000
}

/// A device as the server offers it: the host's description, from which OFFERCHANNEL is built
/// (the server adds the relid and the connection id).
public struct VMBusOffer: Equatable, Sendable {
    public var interfaceType: VMBusGUID
    public var interfaceInstance: VMBusGUID
    public var channelFlags: UInt16
    public var mmioMegabytes: UInt16
    /// `user_def`: exactly 120 bytes (shorter input is zero-padded, longer cut).
    public private(set) var userDefined: [UInt8]
    public var subChannelIndex: UInt16

    public init(interfaceType: VMBusGUID, interfaceInstance: VMBusGUID, channelFlags: UInt16 = 0, mmioMegabytes: UInt16 = 0,
                userDefined: [UInt8] = [], subChannelIndex: UInt16 = 0) {
        self.interfaceType = interfaceType
        self.interfaceInstance = interfaceInstance
        self.channelFlags = channelFlags
        self.mmioMegabytes = mmioMegabytes
        let n = VMBusOfferChannel.userDefinedSize
        self.userDefined = Array(userDefined.prefix(n)) + [UInt8](repeating: 0, count: max(0, n - userDefined.count))
        self.subChannelIndex = subChannelIndex
    }

    /// VMBUS_PIPE_TYPE_BYTE / VMBUS_PIPE_TYPE_MESSAGE: `pipe_mode`, the u32 at the start of
    /// `user_def` for named-pipe offers.
    public static let pipeTypeByte: UInt32 = 0
    public static let pipeTypeMessage: UInt32 = 4

    /// An offer in pipe mode (the integration services: flags 0x11 and pipe_mode 4, as OpenVMM).
    public static func pipe(interfaceType: VMBusGUID, interfaceInstance: VMBusGUID, pipeMode: UInt32 = pipeTypeMessage) -> VMBusOffer {
        let mode = (0..<4).map { UInt8(truncatingIfNeeded: pipeMode >> (8 * UInt32($0))) }
        return VMBusOffer(interfaceType: interfaceType, interfaceInstance: interfaceInstance,
                          channelFlags: VMBusChannelFlags.enumerateDeviceInterface | VMBusChannelFlags.namedPipeMode,
                          userDefined: mode)
    }
}

/// CHANNELMSG_RESCIND_CHANNELOFFER (2), host to guest, 12 bytes
/// (`struct vmbus_channel_rescind_offer`): {+8 u32 child_relid}.
public struct VMBusRescindChannelOffer: VMBusChildRelIDMessage {
    public static let type = VMBusMessageType.rescindChannelOffer
    public var childRelID: UInt32
    public init(childRelID: UInt32) { self.childRelID = childRelID }
}

/// A control message that is only its 8-byte header: REQUESTOFFERS (3), ALLOFFERS_DELIVERED (4),
/// UNLOAD (16), UNLOAD_RESPONSE (17).
public struct VMBusHeaderOnlyMessage: Equatable, Sendable {
    public static let size = 8
    public var type: VMBusMessageType
    public init(type: VMBusMessageType) { self.type = type }
    public init(decoding bytes: [UInt8], type: VMBusMessageType) throws(VMBusMessageError) {
        _ = try MessageReader(bytes, type: type, minimumSize: Self.size)
        self.type = type
    }
    public func encoded() -> [UInt8] { MessageWriter(type: type, size: Self.size).bytes }
}
