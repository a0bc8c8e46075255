import IPC

/// The server's state as one plain value, for the state region a restarted worker resumes from
/// (compare OpenVMM channels/saved_state.rs). Saving only reads; restoring rebuilds the server,
/// checks it like any hostile input, and returns the actions that bring the shell and the
/// devices back in step: every unconfirmed outbound message is posted again (the guest may see
/// a message twice, never lose one), channels a device was taking are handed over again, open
/// channels are re-announced (`restored: true`), and closes in progress are repeated.
/// The drop counters are diagnostics and start from zero.
extension VMBusServer {
    public struct Saved: Equatable, Sendable {
        public var connection: Connection
        /// By relid.
        public var channels: [Channel]
        /// By handle.
        public var gpadls: [GPADL]
        public var outbound: [VMBusOutboundMessage]
        public var nextSequence: UInt64

        public init(connection: Connection, channels: [Channel], gpadls: [GPADL], outbound: [VMBusOutboundMessage], nextSequence: UInt64) {
            self.connection = connection
            self.channels = channels
            self.gpadls = gpadls
            self.outbound = outbound
            self.nextSequence = nextSequence
        }
    }

    public func save() -> Saved {
        Saved(connection: connection, channels: channels.keys.sorted().compactMap { channels[$0] },
              gpadls: gpadls.keys.sorted().compactMap { gpadls[$0] }, outbound: outbound, nextSequence: nextSequence)
    }

    /// Rebuilds a server from `saved` under `configuration` (the same partition). Throws
    /// `.inconsistent` when the state breaks an invariant (duplicate relids or handles, a GPADL
    /// page outside RAM, a channel open on a missing ring, ...): the caller then presents a
    /// reset bus instead.
    public static func restore(_ saved: Saved, configuration: Configuration) throws(VMBusSavedStateError) -> (VMBusServer, [VMBusServerAction]) {
        var s = VMBusServer(restoring: configuration)
        s.connection = saved.connection
        for ch in saved.channels {
            guard s.channels.updateValue(ch, forKey: ch.relID) == nil else { throw .inconsistent("relid \(ch.relID) twice") }
        }
        for g in saved.gpadls {
            guard s.gpadls.updateValue(g, forKey: g.id) == nil else { throw .inconsistent("gpadl \(g.id) twice") }
        }
        s.outbound = saved.outbound
        s.nextSequence = saved.nextSequence
        if let problem = s.checkInvariants().first { throw .inconsistent(problem) }

        var actions: [VMBusServerAction] = saved.outbound.map { .post($0) }
        for ch in saved.channels {
            switch ch.state {
            case .closed: break
            case .opening(let r), .open(let r):
                guard let g = s.gpadls[r.ringGPADL], let pages = ringPages(g) else { throw .inconsistent("relid \(ch.relID): ring") }
                let restored = ch.state == .open(r)
                actions.append(.openChannel(s.channelOpen(ch, r, pfns: pages, restored: restored)))
            case .closing:
                actions.append(.closeChannel(relID: ch.relID))
            }
        }
        // A reset with nothing left to wait for would never end (only a device's answer ends
        // one): finish it now, so the guest gets its UNLOAD_RESPONSE or VERSION_RESPONSE.
        s.finishResetIfIdle(&actions)
        return (s, actions)
    }
}

public enum VMBusSavedStateError: Error, Equatable, Sendable, CustomStringConvertible {
    case badMagic(UInt32)
    case unsupportedVersion(UInt16)
    /// The bytes break the encoding rules (lengths, reserved fields, enum values, counts).
    case format(WireError)
    /// The bytes decode but the state is not one a server can be in.
    case inconsistent(String)

    public var description: String {
        switch self {
        case .badMagic(let m): return "VMBus saved state: bad magic 0x\(String(m, radix: 16))"
        case .unsupportedVersion(let v): return "VMBus saved state: unsupported layout version \(v)"
        case .format(let e): return "VMBus saved state: \(e)"
        case .inconsistent(let why): return "VMBus saved state: inconsistent: \(why)"
        }
    }
}
