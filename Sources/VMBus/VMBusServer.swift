import HyperV

/// The VMBus control plane as one pure state machine (compare OpenVMM vmbus_server
/// `channels.rs`): inputs in (`VMBusServerInput`: guest control messages, device answers,
/// delivery receipts), actions out (`VMBusServerAction`: messages for SIM slot 2, channel
/// hand-offs to devices, log lines). It never waits: a request that needs a device (OPENCHANNEL,
/// and closing channels for UNLOAD or a reconnect) moves the channel to a waiting state, and
/// the device's answer arrives later as an input. Host-to-guest messages also stay in its
/// outbound queue until the shell confirms them, so the queue is part of the saved state.
///
/// Trust: every guest byte is hostile. A message that does not decode, or does not fit the
/// state, gets the protocol's answer when the protocol has one (GPADL_CREATED or
/// OPENCHANNEL_RESULT with a failure status, VERSION_RESPONSE refusing the version) and is
/// otherwise dropped, counted in `drops`, with a rate-limited `.log` line. Nothing a guest sends
/// reaches a precondition.
///
/// The order of decisions for each message is written at its handler. The guest waits without
/// a timeout for VERSION_RESPONSE, GPADL_CREATED, OPENCHANNEL_RESULT, GPADL_TORNDOWN and
/// UNLOAD_RESPONSE (Linux drivers/hv/connection.c, channel.c), so every well-formed request in
/// the right state is answered, and answers owed to the guest because of a device's answer are
/// never dropped.
public struct VMBusServer: Sendable {
    /// The constructor arguments: the partition's shape. Not part of the saved state.
    public struct Configuration: Equatable, Sendable {
        /// VPs 0..<vpCount exist.
        public var vpCount: Int
        /// Guest RAM as GPA ranges: every GPADL page must lie inside one.
        public var ram: [Range<UInt64>]
        public var limits: Limits
        /// The relids reserved for the sub-channels of a primary offer, by the primary's relid:
        /// sub-channel i (1...) is `[i - 1]`, so their count is that primary's sub-channel limit
        /// (docs/vmbus.md, "Sub-channels"). Fixed for the VM's life, so their event connections
        /// can be published before the guest runs. A primary that is not here gets none.
        public var subChannelRelIDs: [UInt32: [UInt32]]

        public init(vpCount: Int, ram: [Range<UInt64>], limits: Limits = Limits(), subChannelRelIDs: [UInt32: [UInt32]] = [:]) {
            self.vpCount = vpCount
            self.ram = ram
            self.limits = limits
            self.subChannelRelIDs = subChannelRelIDs
        }

        /// The primary whose sub-channel `index` is `relID`, if the configuration reserves it so.
        func primary(ofSubChannel relID: UInt32, index: UInt16) -> UInt32? {
            guard index > 0 else { return nil }
            for (primary, relIDs) in subChannelRelIDs where Int(index) <= relIDs.count && relIDs[Int(index) - 1] == relID {
                return primary
            }
            return nil
        }
    }

    /// Bounds on what a guest can make the server hold.
    public struct Limits: Equatable, Sendable {
        /// Guest requests are dropped while this many messages wait to be posted.
        public var maxOutbound = 1024
        public var maxGPADLs = 1024
        /// u64 words over all GPADLs (8 MiB of PFNs).
        public var maxGPADLWords = 1 << 20

        public init(maxOutbound: Int = 1024, maxGPADLs: Int = 1024, maxGPADLWords: Int = 1 << 20) {
            self.maxOutbound = maxOutbound
            self.maxGPADLs = maxGPADLs
            self.maxGPADLWords = maxGPADLWords
        }
    }

    public let configuration: Configuration
    public internal(set) var connection: Connection = .disconnected
    public internal(set) var channels: [UInt32: Channel] = [:]
    public internal(set) var gpadls: [UInt32: GPADL] = [:]
    /// Posted but not yet confirmed by `.posted`, oldest first.
    public internal(set) var outbound: [VMBusOutboundMessage] = []
    var nextSequence: UInt64 = 0
    /// What was dropped or refused, by reason (diagnostics; not saved).
    public internal(set) var drops = VMBusDropLog()

    /// A server with `offers` as relids 1, 2, ... in order. The offers are the host's own
    /// configuration: more than relids 1...2047 can hold is a programming error.
    public init(configuration: Configuration, offers: [VMBusOffer]) {
        precondition(offers.count <= Int(VMBusRelID.last), "at most \(VMBusRelID.last) offers")
        for (primary, relIDs) in configuration.subChannelRelIDs {
            precondition(Int(primary) >= 1 && Int(primary) <= offers.count && offers[Int(primary) - 1].subChannelIndex == 0,
                         "sub-channels of relid \(primary), which is not a primary offer")
            precondition(relIDs.allSatisfy { $0 > UInt32(offers.count) && $0 <= VMBusRelID.last }
                         && Set(relIDs).count == relIDs.count, "sub-channel relids of \(primary) collide")
        }
        self.configuration = configuration
        for (i, offer) in offers.enumerated() {
            let relID = UInt32(i) + VMBusRelID.first
            channels[relID] = Channel(relID: relID, offer: offer)
        }
    }

    /// An empty server for `restore` (the saved channels are checked by `checkInvariants`).
    init(restoring configuration: Configuration) {
        self.configuration = configuration
    }

    /// The one entry point.
    public mutating func handle(_ input: VMBusServerInput) -> [VMBusServerAction] {
        var out: [VMBusServerAction] = []
        switch input {
        case .message(let m): handleMessage(m, &out)
        case .openComplete(let relID, let status): openComplete(relID: relID, status: status, &out)
        case .closeComplete(let relID): closeComplete(relID: relID, &out)
        case .posted(let through): outbound.removeAll { $0.sequence <= through }
        case .rescind(let relID): rescind(relID: relID, &out)
        case .offerSubChannels(let primary, let total): offerSubChannels(primary: primary, total: total, &out)
        }
        return out
    }

    // MARK: Guest messages

    /// Order: HvPostMessage type 1, a VMBus message connection, a VP that exists, a message that
    /// decodes, room in the outbound queue for the replies; then the handler of its type.
    mutating func handleMessage(_ m: VMBusPostedMessage, _ out: inout [VMBusServerAction]) {
        guard m.messageType == .vmbus else {
            return drop(.wrongMessageType, "type \(m.messageType) on connection \(m.connectionID)", &out)
        }
        guard VMBusMessageConnection.accepted.contains(m.connectionID) else {
            return drop(.wrongConnection, "connection \(m.connectionID)", &out)
        }
        guard Int(m.vp) < configuration.vpCount else { return drop(.unknownVP, "VP \(m.vp)", &out) }
        let message: VMBusGuestMessage
        do {
            message = try VMBusGuestMessage.decode(m.bytes)
        } catch {
            return drop(.malformed, error.description, &out)
        }
        let replies = message == .requestOffers ? channels.count + 1 : 1
        guard outbound.count + replies <= configuration.limits.maxOutbound else {
            return drop(.outboundFull, "\(message.type) with \(outbound.count) messages waiting", &out)
        }
        switch message {
        case .initiateContact(let c): initiateContact(c, connectionID: m.connectionID, fromVP: m.vp, &out)
        case .unload: unload(fromVP: m.vp, &out)
        case .requestOffers: requestOffers(&out)
        case .gpadlHeader(let h): gpadlHeader(h, &out)
        case .gpadlBody(let b): gpadlBody(b, &out)
        case .gpadlTeardown(let t): gpadlTeardown(t, &out)
        case .openChannel(let o): openChannel(o, &out)
        case .closeChannel(let c): closeChannel(relID: c.childRelID, &out)
        case .relIDReleased(let r): relIDReleased(relID: r.childRelID, &out)
        case .modifyChannel(let mc): modifyChannel(mc, &out)
        }
    }

    // MARK: Helpers shared by the handlers

    /// The connection, when a version is agreed.
    var connected: Connected? {
        if case .connected(let c) = connection { return c }
        return nil
    }

    /// The guest has seen the offers: relids mean something to it.
    var offersVisible: Bool { connected?.offersSent ?? false }

    mutating func post(_ message: VMBusHostMessage, to vp: UInt32, _ out: inout [VMBusServerAction]) {
        let m = VMBusOutboundMessage(sequence: nextSequence, vp: vp, bytes: message.encoded())
        nextSequence &+= 1
        outbound.append(m)
        out.append(.post(m))
    }

    /// Posts to the connection's target VP (the caller knows the server is connected).
    mutating func reply(_ message: VMBusHostMessage, _ out: inout [VMBusServerAction]) {
        post(message, to: connected?.targetVP ?? 0, &out)
    }

    mutating func drop(_ reason: VMBusDropLog.Reason, _ detail: String, _ out: inout [VMBusServerAction]) {
        if let line = drops.record(reason, detail) { out.append(.log(line)) }
    }
}
