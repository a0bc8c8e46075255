/// CHANNELMSG_OPENCHANNEL (5), guest to host, 148 bytes (Linux `struct vmbus_channel_open_channel`):
///
/// | offset | size | field |
/// |---|---|---|
/// | 8 | 4 | child_relid |
/// | 12 | 4 | openid (Linux: = relid; echoed in the result) |
/// | 16 | 4 | ringbuffer_gpadlhandle |
/// | 20 | 4 | target_vp: the VP whose SIEF/SINT2 the channel interrupts |
/// | 24 | 4 | downstream_ringbuffer_pageoffset: the host-to-guest ring's first page in the GPADL |
/// | 28 | 120 | userdata |
public struct VMBusOpenChannel: Equatable, Sendable {
    public static let type = VMBusMessageType.openChannel
    public static let size = 148
    public static let userDataSize = 120

    public var childRelID: UInt32
    public var openID: UInt32
    public var ringBufferGPADLHandle: UInt32
    public var targetVP: UInt32
    public var downstreamRingBufferPageOffset: UInt32
    /// Exactly 120 bytes.
    public var userData: [UInt8]

    public init(childRelID: UInt32, openID: UInt32, ringBufferGPADLHandle: UInt32, targetVP: UInt32,
                downstreamRingBufferPageOffset: UInt32, userData: [UInt8] = []) {
        self.childRelID = childRelID
        self.openID = openID
        self.ringBufferGPADLHandle = ringBufferGPADLHandle
        self.targetVP = targetVP
        self.downstreamRingBufferPageOffset = downstreamRingBufferPageOffset
        self.userData = Array(userData.prefix(Self.userDataSize)) + [UInt8](repeating: 0, count: max(0, Self.userDataSize - userData.count))
    }

    public init(decoding bytes: [UInt8]) throws(VMBusMessageError) {
        let r = try MessageReader(bytes, type: Self.type, minimumSize: Self.size)
        childRelID = r.u32(at: 8)
        openID = r.u32(at: 12)
        ringBufferGPADLHandle = r.u32(at: 16)
        targetVP = r.u32(at: 20)
        downstreamRingBufferPageOffset = r.u32(at: 24)
        userData = r.raw(at: 28, count: Self.userDataSize)
    }

    public func encoded() -> [UInt8] {
        var w = MessageWriter(type: Self.type, size: Self.size)
        w.u32(childRelID, at: 8)
        w.u32(openID, at: 12)
        w.u32(ringBufferGPADLHandle, at: 16)
        w.u32(targetVP, at: 20)
        w.u32(downstreamRingBufferPageOffset, at: 24)
        w.raw(userData, at: 28, count: Self.userDataSize)
        return w.bytes
    }
}

/// CHANNELMSG_OPENCHANNEL_RESULT (6), host to guest, 20 bytes
/// (`struct vmbus_channel_open_result`): {+8 child_relid; +12 openid; +16 status}.
public struct VMBusOpenChannelResult: Equatable, Sendable {
    public static let type = VMBusMessageType.openChannelResult
    public static let size = 20
    public var childRelID: UInt32
    public var openID: UInt32
    public var status: VMBusStatus
    public init(childRelID: UInt32, openID: UInt32, status: VMBusStatus) {
        self.childRelID = childRelID
        self.openID = openID
        self.status = status
    }
    public init(decoding bytes: [UInt8]) throws(VMBusMessageError) {
        let r = try MessageReader(bytes, type: Self.type, minimumSize: Self.size)
        childRelID = r.u32(at: 8)
        openID = r.u32(at: 12)
        status = VMBusStatus(rawValue: r.u32(at: 16))
    }
    public func encoded() -> [UInt8] {
        var w = MessageWriter(type: Self.type, size: Self.size)
        w.u32(childRelID, at: 8)
        w.u32(openID, at: 12)
        w.u32(status.rawValue, at: 16)
        return w.bytes
    }
}

/// CHANNELMSG_CLOSECHANNEL (7), guest to host, 12 bytes (`struct vmbus_channel_close_channel`):
/// {+8 child_relid}. No reply: the host must stop using the rings now.
public struct VMBusCloseChannel: VMBusChildRelIDMessage {
    public static let type = VMBusMessageType.closeChannel
    public var childRelID: UInt32
    public init(childRelID: UInt32) { self.childRelID = childRelID }
}

/// CHANNELMSG_RELID_RELEASED (13), guest to host, 12 bytes (`struct vmbus_channel_relid_released`):
/// {+8 child_relid}. The guest dropped its channel object (after a rescind, or a failed
/// probe); no reply.
public struct VMBusRelIDReleased: VMBusChildRelIDMessage {
    public static let type = VMBusMessageType.relIDReleased
    public var childRelID: UInt32
    public init(childRelID: UInt32) { self.childRelID = childRelID }
}

/// CHANNELMSG_MODIFYCHANNEL (22), guest to host, 16 bytes (`struct vmbus_channel_modifychannel`):
/// {+8 child_relid; +12 target_vp}. Sent from 4.1 on, when the guest moves a channel's
/// interrupt to another CPU.
public struct VMBusModifyChannel: Equatable, Sendable {
    public static let type = VMBusMessageType.modifyChannel
    public static let size = 16
    public var childRelID: UInt32
    public var targetVP: UInt32
    public init(childRelID: UInt32, targetVP: UInt32) {
        self.childRelID = childRelID
        self.targetVP = targetVP
    }
    public init(decoding bytes: [UInt8]) throws(VMBusMessageError) {
        let r = try MessageReader(bytes, type: Self.type, minimumSize: Self.size)
        childRelID = r.u32(at: 8)
        targetVP = r.u32(at: 12)
    }
    public func encoded() -> [UInt8] {
        var w = MessageWriter(type: Self.type, size: Self.size)
        w.u32(childRelID, at: 8)
        w.u32(targetVP, at: 12)
        return w.bytes
    }
}

/// CHANNELMSG_MODIFYCHANNEL_RESPONSE (24), host to guest, 16 bytes
/// (`struct vmbus_channel_modifychannel_response`): {+8 child_relid; +12 status}. Sent from 5.3 on.
public struct VMBusModifyChannelResponse: Equatable, Sendable {
    public static let type = VMBusMessageType.modifyChannelResponse
    public static let size = 16
    public var childRelID: UInt32
    public var status: VMBusStatus
    public init(childRelID: UInt32, status: VMBusStatus) {
        self.childRelID = childRelID
        self.status = status
    }
    public init(decoding bytes: [UInt8]) throws(VMBusMessageError) {
        let r = try MessageReader(bytes, type: Self.type, minimumSize: Self.size)
        childRelID = r.u32(at: 8)
        status = VMBusStatus(rawValue: r.u32(at: 12))
    }
    public func encoded() -> [UInt8] {
        var w = MessageWriter(type: Self.type, size: Self.size)
        w.u32(childRelID, at: 8)
        w.u32(status.rawValue, at: 12)
        return w.bytes
    }
}
