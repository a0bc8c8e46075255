import HyperV

/// Where HvCallPostMessage and HvCallSignalEvent go once their input has been validated: the
/// seam where the SynIC router (the table of VMBus message and event connections) plugs in.
///
/// The dispatcher checks everything that does not depend on a connection (privilege, control
/// word, alignment, reserved fields, message type, payload size); an implementation looks the
/// connection id up and answers the rest. Returning nil means "no such connection" and becomes
/// HV_STATUS_INVALID_CONNECTION_ID. A found connection answers with the status the TLFS gives
/// for the situation, e.g.
/// - HV_STATUS_SUCCESS once the message is queued or the flag set;
/// - HV_STATUS_INSUFFICIENT_BUFFERS when the port's message buffers are exhausted (Linux
///   retries on it);
/// - HV_STATUS_INVALID_PARAMETER when the flag number is not below the port's flag count (at
///   most `HvSignalEventInput.flagsPerSint`, the 2048 flags of one SINT's SIEF area);
/// - HV_STATUS_INVALID_PORT_ID when the connection's port is not of the right type;
/// - HV_STATUS_INVALID_SYNIC_STATE when the target VP's SynIC, SIM or SIEF page is disabled.
///
/// Called on the calling VP's thread, synchronously: an implementation must not block (post to
/// the router worker and return).
public protocol HypercallConnections: AnyObject, Sendable {
    /// HvCallPostMessage from VP `vp`. `payload` holds exactly `message.payloadSize` bytes.
    func postMessage(_ message: HvPostMessageInput, fromVP vp: UInt32) -> HvStatus?
    /// HvCallSignalEvent from VP `vp`.
    func signalEvent(_ event: HvSignalEventInput, fromVP vp: UInt32) -> HvStatus?
}

/// No connections at all: every HvCallPostMessage / HvCallSignalEvent answers
/// HV_STATUS_INVALID_CONNECTION_ID. What SynthVM does until the SynIC router exists.
public final class NoHypercallConnections: HypercallConnections {
    public static let shared = NoHypercallConnections()

    public init() {}

    public func postMessage(_ message: HvPostMessageInput, fromVP vp: UInt32) -> HvStatus? { nil }
    public func signalEvent(_ event: HvSignalEventInput, fromVP vp: UInt32) -> HvStatus? { nil }
}
