/// Counts what the server dropped or refused, by reason, and decides which occurrences are
/// logged: the 1st, 2nd, 4th, 8th, ... of each reason. A guest flooding one kind of bad message
/// gets a logarithmic number of log lines, with no clock in the pure server.
public struct VMBusDropLog: Equatable, Sendable {
    public enum Reason: Int, CaseIterable, Sendable, CustomStringConvertible {
        /// HvPostMessage type other than 1.
        case wrongMessageType
        /// A connection other than 1 and 4.
        case wrongConnection
        /// Posted by a VP the partition does not have.
        case unknownVP
        /// Did not decode (truncated, oversized, unknown or host-to-guest type).
        case malformed
        /// Not valid in the connection's state (before INITIATE_CONTACT or REQUESTOFFERS, during a reset).
        case outOfOrder
        /// A relid no offer has.
        case unknownChannel
        /// The channel is not in a state that allows the request.
        case channelState
        /// A GPADL handle that does not exist (or belongs to another channel), or is in the wrong state.
        case unknownGPADL
        /// Replies would overflow the outbound queue (the guest is not taking its messages).
        case outboundFull
        /// A request the server answered with a failure status.
        case refused
        /// A device or shell input that does not fit the state (a host bug, not the guest's).
        case hostProtocol

        public var description: String {
            switch self {
            case .wrongMessageType: return "wrong message type"
            case .wrongConnection: return "wrong connection"
            case .unknownVP: return "unknown VP"
            case .malformed: return "malformed message"
            case .outOfOrder: return "out-of-order message"
            case .unknownChannel: return "unknown channel"
            case .channelState: return "channel state"
            case .unknownGPADL: return "unknown GPADL"
            case .outboundFull: return "outbound queue full"
            case .refused: return "refused request"
            case .hostProtocol: return "host protocol error"
            }
        }
    }

    public private(set) var counts = [UInt64](repeating: 0, count: Reason.allCases.count)

    public init() {}

    public func count(_ r: Reason) -> UInt64 { counts[r.rawValue] }
    public var total: UInt64 { counts.reduce(0, &+) }

    /// Counts one; returns the log line when this occurrence is one to log.
    mutating func record(_ r: Reason, _ detail: String) -> String? {
        counts[r.rawValue] &+= 1
        let n = counts[r.rawValue]
        guard n & (n - 1) == 0 else { return nil }
        let verb = r == .refused ? "refused" : "dropped"
        return "vmbus: \(verb): \(r): \(detail) (\(n) so far)"
    }
}
