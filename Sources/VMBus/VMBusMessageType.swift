/// The VMBus control-message vocabulary (Linux include/linux/hyperv.h
/// `enum vmbus_channel_message_type`, `struct vmbus_channel_message_header`; OpenVMM
/// vm/devices/vmbus/vmbus_core/src/protocol.rs). Control messages travel as SynIC messages of
/// type `HvMessageType.vmbus` (1): guest to host through HvPostMessage on a message connection,
/// host to guest in SIM slot 2 (`VMBusMessageConnection.sint`).

/// `enum vmbus_channel_message_type`: the u32 at +0 of every control message.
///
/// A struct, not an enum: the guest can put any 32-bit value there, and an unknown one must be
/// reported as such, not trap or vanish.
public struct VMBusMessageType: RawRepresentable, Equatable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32

    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// CHANNELMSG_INVALID = 0.
    public static let invalid = VMBusMessageType(rawValue: 0)
    /// CHANNELMSG_OFFERCHANNEL = 1, host to guest (`VMBusOfferChannel`).
    public static let offerChannel = VMBusMessageType(rawValue: 1)
    /// CHANNELMSG_RESCIND_CHANNELOFFER = 2, host to guest (`VMBusRescindChannelOffer`).
    public static let rescindChannelOffer = VMBusMessageType(rawValue: 2)
    /// CHANNELMSG_REQUESTOFFERS = 3, guest to host, header only.
    public static let requestOffers = VMBusMessageType(rawValue: 3)
    /// CHANNELMSG_ALLOFFERS_DELIVERED = 4, host to guest, header only.
    public static let allOffersDelivered = VMBusMessageType(rawValue: 4)
    /// CHANNELMSG_OPENCHANNEL = 5, guest to host (`VMBusOpenChannel`).
    public static let openChannel = VMBusMessageType(rawValue: 5)
    /// CHANNELMSG_OPENCHANNEL_RESULT = 6, host to guest (`VMBusOpenChannelResult`).
    public static let openChannelResult = VMBusMessageType(rawValue: 6)
    /// CHANNELMSG_CLOSECHANNEL = 7, guest to host (`VMBusCloseChannel`).
    public static let closeChannel = VMBusMessageType(rawValue: 7)
    /// CHANNELMSG_GPADL_HEADER = 8, guest to host (`VMBusGPADLHeader`).
    public static let gpadlHeader = VMBusMessageType(rawValue: 8)
    /// CHANNELMSG_GPADL_BODY = 9, guest to host (`VMBusGPADLBody`).
    public static let gpadlBody = VMBusMessageType(rawValue: 9)
    /// CHANNELMSG_GPADL_CREATED = 10, host to guest (`VMBusGPADLCreated`).
    public static let gpadlCreated = VMBusMessageType(rawValue: 10)
    /// CHANNELMSG_GPADL_TEARDOWN = 11, guest to host (`VMBusGPADLTeardown`).
    public static let gpadlTeardown = VMBusMessageType(rawValue: 11)
    /// CHANNELMSG_GPADL_TORNDOWN = 12, host to guest (`VMBusGPADLTorndown`).
    public static let gpadlTorndown = VMBusMessageType(rawValue: 12)
    /// CHANNELMSG_RELID_RELEASED = 13, guest to host (`VMBusRelIDReleased`).
    public static let relIDReleased = VMBusMessageType(rawValue: 13)
    /// CHANNELMSG_INITIATE_CONTACT = 14, guest to host (`VMBusInitiateContact`).
    public static let initiateContact = VMBusMessageType(rawValue: 14)
    /// CHANNELMSG_VERSION_RESPONSE = 15, host to guest (`VMBusVersionResponse`).
    public static let versionResponse = VMBusMessageType(rawValue: 15)
    /// CHANNELMSG_UNLOAD = 16, guest to host, header only.
    public static let unload = VMBusMessageType(rawValue: 16)
    /// CHANNELMSG_UNLOAD_RESPONSE = 17, host to guest, header only.
    public static let unloadResponse = VMBusMessageType(rawValue: 17)
    /// CHANNELMSG_18..20: reserved-channel messages nobody on Linux sends.
    public static let message18 = VMBusMessageType(rawValue: 18)
    public static let message19 = VMBusMessageType(rawValue: 19)
    public static let message20 = VMBusMessageType(rawValue: 20)
    /// CHANNELMSG_TL_CONNECT_REQUEST = 21, guest to host (hv_sock; not served).
    public static let tlConnectRequest = VMBusMessageType(rawValue: 21)
    /// CHANNELMSG_MODIFYCHANNEL = 22, guest to host (`VMBusModifyChannel`), version 4.1 and later.
    public static let modifyChannel = VMBusMessageType(rawValue: 22)
    /// CHANNELMSG_TL_CONNECT_RESULT = 23, host to guest (hv_sock; not served).
    public static let tlConnectResult = VMBusMessageType(rawValue: 23)
    /// CHANNELMSG_MODIFYCHANNEL_RESPONSE = 24, host to guest (`VMBusModifyChannelResponse`),
    /// version 5.3 and later.
    public static let modifyChannelResponse = VMBusMessageType(rawValue: 24)

    /// CHANNELMSG_COUNT: Linux drops (with a WARN) any message of this type or above.
    public static let count: UInt32 = 25

    public var description: String {
        switch self {
        case .invalid: return "INVALID"
        case .offerChannel: return "OFFERCHANNEL"
        case .rescindChannelOffer: return "RESCIND_CHANNELOFFER"
        case .requestOffers: return "REQUESTOFFERS"
        case .allOffersDelivered: return "ALLOFFERS_DELIVERED"
        case .openChannel: return "OPENCHANNEL"
        case .openChannelResult: return "OPENCHANNEL_RESULT"
        case .closeChannel: return "CLOSECHANNEL"
        case .gpadlHeader: return "GPADL_HEADER"
        case .gpadlBody: return "GPADL_BODY"
        case .gpadlCreated: return "GPADL_CREATED"
        case .gpadlTeardown: return "GPADL_TEARDOWN"
        case .gpadlTorndown: return "GPADL_TORNDOWN"
        case .relIDReleased: return "RELID_RELEASED"
        case .initiateContact: return "INITIATE_CONTACT"
        case .versionResponse: return "VERSION_RESPONSE"
        case .unload: return "UNLOAD"
        case .unloadResponse: return "UNLOAD_RESPONSE"
        case .tlConnectRequest: return "TL_CONNECT_REQUEST"
        case .modifyChannel: return "MODIFYCHANNEL"
        case .tlConnectResult: return "TL_CONNECT_RESULT"
        case .modifyChannelResponse: return "MODIFYCHANNEL_RESPONSE"
        default: return "message type \(rawValue)"
        }
    }
}

/// `struct vmbus_channel_message_header`: {u32 msgtype; u32 padding}, the first 8 bytes of every
/// control message. Offsets in the layouts of this module include it.
public enum VMBusMessageHeader {
    public static let size = 8
    /// A control message is one SynIC message payload: at most 240 bytes, header included.
    public static let maxMessageSize = 240
}
