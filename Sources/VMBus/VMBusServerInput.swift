import HyperV

/// What goes into `VMBusServer.handle`: guest control messages as the router delivered them,
/// the device workers' answers, the shell's delivery receipts, and host-side device changes.
public enum VMBusServerInput: Equatable, Sendable {
    /// A guest HvPostMessage on one of the VMBus message connections.
    case message(VMBusPostedMessage)
    /// The device serving `relID` has (or has not, `status` != 0) taken the channel the server
    /// handed it with `.openChannel`. Every open is answered exactly once.
    case openComplete(relID: UInt32, status: VMBusStatus)
    /// The device serving `relID` no longer touches the channel's rings. Every `.closeChannel`
    /// is answered exactly once, also one that overtook its open's answer.
    case closeComplete(relID: UInt32)
    /// The shell has handed every outbound message up to and including this sequence number to
    /// the router: they leave the server's queue.
    case posted(throughSequence: UInt64)
    /// The host withdraws a device: RESCIND_CHANNELOFFER if the guest has seen the offer.
    case rescind(relID: UInt32)
    /// The device serving the open primary channel `primaryRelID` asks for `total` sub-channels
    /// in all (storvsc's CREATE_SUB_CHANNELS, answered by the device before this): the missing
    /// ones up to the configured limit are offered (OFFERCHANNEL with the primary's interface
    /// type and instance, sub_channel_index 1...), none is ever withdrawn by asking for fewer.
    case offerSubChannels(primaryRelID: UInt32, total: UInt16)
}

/// One guest HvPostMessage, as the router hands it over.
public struct VMBusPostedMessage: Equatable, Sendable {
    /// The connection the guest posted on (1 or 4 for VMBus).
    public var connectionID: UInt32
    /// The VP that posted it.
    public var vp: UInt32
    /// HvPostMessage's message type: must be `HvMessageType.vmbus`.
    public var messageType: HvMessageType
    /// The payload: one whole control message, header included.
    public var bytes: [UInt8]

    public init(connectionID: UInt32, vp: UInt32, messageType: HvMessageType = .vmbus, bytes: [UInt8]) {
        self.connectionID = connectionID
        self.vp = vp
        self.messageType = messageType
        self.bytes = bytes
    }
}
