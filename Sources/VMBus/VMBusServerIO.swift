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

/// What comes out of `VMBusServer.handle`, in the order it must happen.
public enum VMBusServerAction: Equatable, Sendable {
    /// Post this control message to SIM slot 2 of `message.vp` (through the router, which
    /// handles a busy slot). It stays in the server's queue until `.posted` covers it.
    case post(VMBusOutboundMessage)
    /// Hand the channel to the device that serves it; answer with `.openComplete`.
    case openChannel(VMBusChannelOpen)
    /// Tell the device to stop using the channel's rings; answer with `.closeComplete`.
    case closeChannel(relID: UInt32)
    /// The guest moved the channel's interrupt to `targetVP` (no answer needed).
    case modifyChannel(relID: UInt32, targetVP: UInt32)
    /// A line for the worker's log (already rate-limited).
    case log(String)
}

/// A host-to-guest control message in the server's outbound queue.
public struct VMBusOutboundMessage: Equatable, Sendable {
    /// Increases by one per message, across the server's whole life (saved and restored).
    public var sequence: UInt64
    /// The VP whose SIM slot 2 receives it.
    public var vp: UInt32
    /// One encoded control message (8...240 bytes): the payload of an `HvMessage` of type 1.
    public var bytes: [UInt8]

    public init(sequence: UInt64, vp: UInt32, bytes: [UInt8]) {
        self.sequence = sequence
        self.vp = vp
        self.bytes = bytes
    }

    /// The SynIC message to deliver.
    public var message: HvMessage { HvMessage(type: .vmbus, payload: bytes) }
}

/// Everything a device worker needs to serve an opened channel (compare OpenVMM `OpenData`).
public struct VMBusChannelOpen: Equatable, Sendable {
    public var relID: UInt32
    /// The guest-to-host event connection (HvSignalEvent) of the channel.
    public var connectionID: UInt32
    /// The VP to interrupt: SIEF slot 2 bit `relID`, then SINT2.
    public var targetVP: UInt32
    public var ringGPADL: UInt32
    /// The ring GPADL's pages, every one checked against guest RAM: pages
    /// [0, downstreamPageOffset) are the guest-to-host ring, the rest the host-to-guest ring,
    /// each a header page then data.
    public var ringPFNs: [UInt64]
    public var downstreamPageOffset: UInt32
    /// OPENCHANNEL's 120 bytes of user data.
    public var userData: [UInt8]
    /// True when a restored server re-announces a channel that was already open: the device
    /// keeps serving it and sends no `.openComplete`.
    public var restored: Bool
}
