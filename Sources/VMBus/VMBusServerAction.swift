import HyperV

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

    public init(relID: UInt32, connectionID: UInt32, targetVP: UInt32, ringGPADL: UInt32, ringPFNs: [UInt64],
                downstreamPageOffset: UInt32, userData: [UInt8], restored: Bool) {
        self.relID = relID
        self.connectionID = connectionID
        self.targetVP = targetVP
        self.ringGPADL = ringGPADL
        self.ringPFNs = ringPFNs
        self.downstreamPageOffset = downstreamPageOffset
        self.userData = userData
        self.restored = restored
    }
}
