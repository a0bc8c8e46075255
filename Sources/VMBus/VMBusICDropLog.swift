/// Counts what an integration-service channel dropped, by reason, and picks which occurrences
/// are logged: the 1st, 2nd, 4th, 8th, ... of each reason, as `VMBusDropLog` does for the
/// control plane, so a guest flooding a channel with bad packets costs a logarithmic number
/// of log lines and no clock.
public struct VMBusICDropLog: Equatable, Sendable {
    public enum Reason: Int, CaseIterable, Sendable, CustomStringConvertible {
        /// A packet type other than INBAND (Linux replies INBAND).
        case wrongPacketType
        /// A payload longer than any IC message (the host-to-guest maximum, 4080 bytes).
        case oversized
        /// Shorter than the framing, or than the body the message type needs.
        case truncated
        /// Not a response: icflags without RESPONSE (the guest never starts a transaction here).
        case notAResponse
        /// The packet's transaction id is not the outstanding request's (stale, duplicate or
        /// invented), or nothing is outstanding.
        case unexpectedTransaction
        /// icmsgtype, or the IC header's own transaction id, is not the request's.
        case wrongMessageType
        /// Fields that cannot be a reply to what was sent (version counts, a heartbeat sequence
        /// number other than the one sent plus 1).
        case malformed
        /// The host-to-guest ring had no room for a host packet (the guest stopped reading).
        case hostRingFull

        public var description: String {
            switch self {
            case .wrongPacketType: return "wrong packet type"
            case .oversized: return "oversized packet"
            case .truncated: return "truncated packet"
            case .notAResponse: return "not a response"
            case .unexpectedTransaction: return "unexpected transaction id"
            case .wrongMessageType: return "wrong message type"
            case .malformed: return "malformed reply"
            case .hostRingFull: return "host-to-guest ring full"
            }
        }
    }

    public private(set) var counts = [UInt64](repeating: 0, count: Reason.allCases.count)

    public init() {}

    public func count(_ r: Reason) -> UInt64 { counts[r.rawValue] }
    public var total: UInt64 { counts.reduce(0, &+) }

    /// Counts one; returns the log line when this occurrence is one to log.
    mutating func record(_ r: Reason, _ service: String, _ detail: String) -> String? {
        counts[r.rawValue] &+= 1
        let n = counts[r.rawValue]
        guard n & (n - 1) == 0 else { return nil }
        return "vmbus ic \(service): dropped: \(r): \(detail) (\(n) so far)"
    }
}
