/// The server's state, as plain values (also what `VMBusServer.Saved` holds).
extension VMBusServer {
    /// The connection with the guest's VMBus driver.
    public enum Connection: Equatable, Sendable {
        /// No version agreed (start, after UNLOAD, after a refused INITIATE_CONTACT).
        case disconnected
        case connected(Connected)
        /// UNLOAD or a new INITIATE_CONTACT arrived while connected: channels are being closed
        /// by their devices; `pending` is answered once the last one is.
        case resetting(PendingReset)
    }

    public struct Connected: Equatable, Sendable {
        public var version: VMBusVersion
        /// Where every host-to-guest control message goes (INITIATE_CONTACT's target_vcpu from
        /// 3.0 on, VP 0 before).
        public var targetVP: UInt32
        public var monitorPage1: UInt64
        public var monitorPage2: UInt64
        /// REQUESTOFFERS was answered: the offers are visible to the guest.
        public var offersSent: Bool

        public init(version: VMBusVersion, targetVP: UInt32, monitorPage1: UInt64 = 0, monitorPage2: UInt64 = 0, offersSent: Bool = false) {
            self.version = version
            self.targetVP = targetVP
            self.monitorPage1 = monitorPage1
            self.monitorPage2 = monitorPage2
            self.offersSent = offersSent
        }
    }

    public enum PendingReset: Equatable, Sendable {
        /// Answer UNLOAD_RESPONSE to this VP.
        case unload(replyVP: UInt32)
        /// Answer this INITIATE_CONTACT (posted on `connectionID` by `fromVP`) as if disconnected.
        case contact(VMBusInitiateContact, connectionID: UInt32, fromVP: UInt32)
    }

    /// One offered device.
    public struct Channel: Equatable, Sendable {
        public var relID: UInt32
        public var offer: VMBusOffer
        public var state: ChannelState
        /// RESCIND_CHANNELOFFER was sent (or the offer was withdrawn before the guest saw it).
        public var revoked: Bool
        /// RELID_RELEASED arrived (only after a rescind): the channel goes once closed.
        public var released: Bool

        public init(relID: UInt32, offer: VMBusOffer, state: ChannelState = .closed, revoked: Bool = false, released: Bool = false) {
            self.relID = relID
            self.offer = offer
            self.state = state
            self.revoked = revoked
            self.released = released
        }

        public var connectionID: UInt32 { VMBusRelID.connectionID(relID: relID) }

        /// The open request while a device holds (or is taking, or giving back) the channel.
        public var request: OpenRequest? {
            switch state {
            case .closed: return nil
            case .opening(let r), .open(let r), .closing(let r): return r
            }
        }
    }

    public enum ChannelState: Equatable, Sendable {
        case closed
        /// Handed to the device; waiting for `.openComplete`.
        case opening(OpenRequest)
        case open(OpenRequest)
        /// The device was told to stop; waiting for `.closeComplete`. The ring GPADL stays in use.
        case closing(OpenRequest)
    }

    /// What OPENCHANNEL asked for, once accepted.
    public struct OpenRequest: Equatable, Sendable {
        public var openID: UInt32
        public var ringGPADL: UInt32
        public var targetVP: UInt32
        public var downstreamPageOffset: UInt32
        /// 120 bytes.
        public var userData: [UInt8]

        public init(openID: UInt32, ringGPADL: UInt32, targetVP: UInt32, downstreamPageOffset: UInt32, userData: [UInt8]) {
            self.openID = openID
            self.ringGPADL = ringGPADL
            self.targetVP = targetVP
            self.downstreamPageOffset = downstreamPageOffset
            self.userData = userData
        }
    }

    /// One GPADL, from its GPADL_HEADER to its GPADL_TORNDOWN.
    public struct GPADL: Equatable, Sendable {
        public var id: UInt32
        /// The channel named in GPADL_HEADER.
        public var relID: UInt32
        public var rangeCount: UInt16
        /// range_buflen / 8.
        public var expectedWords: Int
        /// The range words received so far (all of them once created), in the guest's format.
        public var words: [UInt64]
        public var state: GPADLState

        public init(id: UInt32, relID: UInt32, rangeCount: UInt16, expectedWords: Int, words: [UInt64], state: GPADLState) {
            self.id = id
            self.relID = relID
            self.rangeCount = rangeCount
            self.expectedWords = expectedWords
            self.words = words
            self.state = state
        }
    }

    public enum GPADLState: UInt32, Equatable, Sendable {
        /// Waiting for GPADL_BODY messages.
        case building = 0
        /// Validated and answered (GPADL_CREATED with success).
        case created = 1
        /// GPADL_TEARDOWN arrived while the GPADL is a ring of a channel a device still holds:
        /// GPADL_TORNDOWN goes out when the device lets go.
        case tearingDown = 2
    }
}
