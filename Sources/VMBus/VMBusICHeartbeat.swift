/// The heartbeat body (Linux `struct heartbeat_msg_data`), at +28 of the payload:
///
/// | payload offset | size | field |
/// |---|---|---|
/// | 28 | 8 | seq_num |
/// | 36 | 32 | reserved[8] (u32) |
///
/// The host sends a sequence number; Linux adds 1 and sends the buffer back. Linux checks only
/// that the payload reaches past seq_num (36 bytes: "the host may not fill [reserved] up
/// entirely"); the host sends the whole 40-byte body, zeroed.
public struct VMBusICHeartbeatMessage: Equatable, Sendable {
    public static let sequenceOffset = VMBusICMessageHeader.bodyOffset
    public static let reservedOffset = sequenceOffset + 8
    public static let bodySize = 40
    public static let payloadSize = VMBusICMessageHeader.bodyOffset + bodySize
    /// What a reply must hold for the host to read the sequence number back (Linux's own minimum).
    public static let minimumReplySize = sequenceOffset + 8

    public var sequenceNumber: UInt64

    public init(sequenceNumber: UInt64) { self.sequenceNumber = sequenceNumber }

    public func request(framework: VMBusICVersion, message: VMBusICVersion) -> [UInt8] {
        var body = VMBusICPayloadWriter(size: Self.bodySize)
        body.u64(sequenceNumber, at: 0)
        return VMBusICMessageHeader(frameworkVersion: framework, messageType: .heartbeat, messageVersion: message,
                                    messageSize: 0).message(body: body.bytes)
    }

    public init(decoding payload: UnsafeRawBufferPointer) throws(VMBusICMessageError) {
        guard payload.count >= Self.minimumReplySize else { throw .truncated(needed: Self.minimumReplySize, available: payload.count) }
        sequenceNumber = VMBusICPayloadReader(payload).u64(at: Self.sequenceOffset)
    }
}
