/// A guest-to-host control message, decoded. One case per message type the server handles;
/// `decode` reads the type and hands the bytes to that layout's decoder.
public enum VMBusGuestMessage: Equatable, Sendable {
    case requestOffers
    case openChannel(VMBusOpenChannel)
    case closeChannel(VMBusCloseChannel)
    case gpadlHeader(VMBusGPADLHeader)
    case gpadlBody(VMBusGPADLBody)
    case gpadlTeardown(VMBusGPADLTeardown)
    case relIDReleased(VMBusRelIDReleased)
    case initiateContact(VMBusInitiateContact)
    case unload
    case modifyChannel(VMBusModifyChannel)

    public var type: VMBusMessageType {
        switch self {
        case .requestOffers: return .requestOffers
        case .openChannel: return .openChannel
        case .closeChannel: return .closeChannel
        case .gpadlHeader: return .gpadlHeader
        case .gpadlBody: return .gpadlBody
        case .gpadlTeardown: return .gpadlTeardown
        case .relIDReleased: return .relIDReleased
        case .initiateContact: return .initiateContact
        case .unload: return .unload
        case .modifyChannel: return .modifyChannel
        }
    }

    /// The type of a message the guest wrote, if it has a whole header.
    public static func peekType(_ bytes: [UInt8]) -> VMBusMessageType? {
        MessageReader.load(bytes, 0, 4).map { VMBusMessageType(rawValue: UInt32(truncatingIfNeeded: $0)) }
    }

    /// Decodes the message the guest posted. Host-to-guest types, hv_sock, the reserved
    /// types and unknown numbers are `.unsupportedType`.
    public static func decode(_ bytes: [UInt8]) throws(VMBusMessageError) -> VMBusGuestMessage {
        guard bytes.count <= VMBusMessageHeader.maxMessageSize else { throw .oversized(count: bytes.count) }
        guard let type = peekType(bytes) else {
            throw .truncated(type: nil, needed: VMBusMessageHeader.size, available: bytes.count)
        }
        switch type {
        case .requestOffers: _ = try VMBusHeaderOnlyMessage(decoding: bytes, type: type); return .requestOffers
        case .openChannel: return .openChannel(try VMBusOpenChannel(decoding: bytes))
        case .closeChannel: return .closeChannel(try VMBusCloseChannel(decoding: bytes))
        case .gpadlHeader: return .gpadlHeader(try VMBusGPADLHeader(decoding: bytes))
        case .gpadlBody: return .gpadlBody(try VMBusGPADLBody(decoding: bytes))
        case .gpadlTeardown: return .gpadlTeardown(try VMBusGPADLTeardown(decoding: bytes))
        case .relIDReleased: return .relIDReleased(try VMBusRelIDReleased(decoding: bytes))
        case .initiateContact: return .initiateContact(try VMBusInitiateContact(decoding: bytes))
        case .unload: _ = try VMBusHeaderOnlyMessage(decoding: bytes, type: type); return .unload
        case .modifyChannel: return .modifyChannel(try VMBusModifyChannel(decoding: bytes))
        default: throw .unsupportedType(type)
        }
    }

    public func encoded() -> [UInt8] {
        switch self {
        case .requestOffers: return VMBusHeaderOnlyMessage(type: .requestOffers).encoded()
        case .openChannel(let m): return m.encoded()
        case .closeChannel(let m): return m.encoded()
        case .gpadlHeader(let m): return m.encoded()
        case .gpadlBody(let m): return m.encoded()
        case .gpadlTeardown(let m): return m.encoded()
        case .relIDReleased(let m): return m.encoded()
        case .initiateContact(let m): return m.encoded()
        case .unload: return VMBusHeaderOnlyMessage(type: .unload).encoded()
        case .modifyChannel(let m): return m.encoded()
        }
    }
}

/// A host-to-guest control message: what the server posts to SIM slot 2.
public enum VMBusHostMessage: Equatable, Sendable {
    case offerChannel(VMBusOfferChannel)
    case rescindChannelOffer(VMBusRescindChannelOffer)
    case allOffersDelivered
    case openChannelResult(VMBusOpenChannelResult)
    case gpadlCreated(VMBusGPADLCreated)
    case gpadlTorndown(VMBusGPADLTorndown)
    case versionResponse(VMBusVersionResponse)
    case unloadResponse
    case modifyChannelResponse(VMBusModifyChannelResponse)

    public func encoded() -> [UInt8] {
        switch self {
        case .offerChannel(let m): return m.encoded()
        case .rescindChannelOffer(let m): return m.encoded()
        case .allOffersDelivered: return VMBusHeaderOnlyMessage(type: .allOffersDelivered).encoded()
        case .openChannelResult(let m): return m.encoded()
        case .gpadlCreated(let m): return m.encoded()
        case .gpadlTorndown(let m): return m.encoded()
        case .versionResponse(let m): return m.encoded()
        case .unloadResponse: return VMBusHeaderOnlyMessage(type: .unloadResponse).encoded()
        case .modifyChannelResponse(let m): return m.encoded()
        }
    }

    /// Decodes what the host wrote (the guest side of the tests, and a restored outbound queue).
    public static func decode(_ bytes: [UInt8]) throws(VMBusMessageError) -> VMBusHostMessage {
        guard bytes.count <= VMBusMessageHeader.maxMessageSize else { throw .oversized(count: bytes.count) }
        guard let type = VMBusGuestMessage.peekType(bytes) else {
            throw .truncated(type: nil, needed: VMBusMessageHeader.size, available: bytes.count)
        }
        switch type {
        case .offerChannel: return .offerChannel(try VMBusOfferChannel(decoding: bytes))
        case .rescindChannelOffer: return .rescindChannelOffer(try VMBusRescindChannelOffer(decoding: bytes))
        case .allOffersDelivered: _ = try VMBusHeaderOnlyMessage(decoding: bytes, type: type); return .allOffersDelivered
        case .openChannelResult: return .openChannelResult(try VMBusOpenChannelResult(decoding: bytes))
        case .gpadlCreated: return .gpadlCreated(try VMBusGPADLCreated(decoding: bytes))
        case .gpadlTorndown: return .gpadlTorndown(try VMBusGPADLTorndown(decoding: bytes))
        case .versionResponse: return .versionResponse(try VMBusVersionResponse(decoding: bytes))
        case .unloadResponse: _ = try VMBusHeaderOnlyMessage(decoding: bytes, type: type); return .unloadResponse
        case .modifyChannelResponse: return .modifyChannelResponse(try VMBusModifyChannelResponse(decoding: bytes))
        default: throw .unsupportedType(type)
        }
    }
}
