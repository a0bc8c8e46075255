/// The HvCallPostMessage input block (TLFS HvCallPostMessage; Linux
/// `struct hv_input_post_message`), 256 bytes at the input GPA:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | ConnectionId (HV_CONNECTION_ID: Id in bits 23:0, bits 31:24 RsvdZ) |
/// | 4 | 4 | RsvdZ |
/// | 8 | 4 | MessageType: non-zero, bit 31 clear |
/// | 12 | 4 | PayloadSize: at most 240 |
/// | 16 | 240 | Message payload; only the first PayloadSize bytes are sent |
///
/// VMBus posts MessageType 1 on connection 1 (or the one VERSION_RESPONSE names).
public struct HvPostMessageInput: Equatable, Sendable {
    /// The whole input block: too big for the 112-byte fast-call registers, so memory-based only.
    public static let size = 256
    /// `HV_MESSAGE_PAYLOAD_BYTE_COUNT`.
    public static let maxPayloadSize = 240
    public static let payloadOffset = 16
    /// Message types with bit 31 set are the hypervisor's own (timer expiry, intercepts).
    public static let hypervisorMessageTypeBit: UInt32 = 1 << 31

    /// The 24-bit connection id.
    public var connectionID: UInt32
    public var messageType: UInt32
    /// Exactly PayloadSize bytes.
    public var payload: [UInt8]

    public init(connectionID: UInt32, messageType: UInt32, payload: [UInt8]) {
        self.connectionID = connectionID
        self.messageType = messageType
        self.payload = payload
    }

    /// Validates and decodes a 256-byte block (shorter blocks are INVALID_HYPERCALL_INPUT):
    ///
    /// - ConnectionId bits 31:24 or the RsvdZ word non-zero: HV_STATUS_INVALID_HYPERCALL_INPUT,
    ///   the answer KVM gives for RsvdZ bits inside an input block (HvSignalEvent's connection
    ///   id, HvSendSyntheticClusterIpi's reserved word). QEMU silently masks the top byte.
    /// - MessageType zero or with bit 31 set, PayloadSize > 240: HV_STATUS_INVALID_PARAMETER, as
    ///   the TLFS lists them. (QEMU answers INVALID_HYPERCALL_INPUT for the size; the TLFS is
    ///   explicit, so we follow it.)
    public static func parse(_ bytes: [UInt8]) -> Result<HvPostMessageInput, HvStatus> {
        guard bytes.count >= size else { return .failure(.invalidHypercallInput) }
        let connection = le32(bytes, 0)
        let reserved = le32(bytes, 4)
        let type = le32(bytes, 8)
        let payloadSize = le32(bytes, 12)
        guard connection & ~HvConnectionID.idMask == 0, reserved == 0 else {
            return .failure(.invalidHypercallInput)
        }
        guard type != 0, type & hypervisorMessageTypeBit == 0 else { return .failure(.invalidParameter) }
        guard payloadSize <= UInt32(maxPayloadSize) else { return .failure(.invalidParameter) }
        let payload = Array(bytes[payloadOffset..<(payloadOffset + Int(payloadSize))])
        return .success(HvPostMessageInput(connectionID: connection, messageType: type, payload: payload))
    }

    /// The block as a guest writes it (payload zero-padded to 240 bytes).
    public func encoded(reserved: UInt32 = 0) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        putLE32(&bytes, 0, connectionID)
        putLE32(&bytes, 4, reserved)
        putLE32(&bytes, 8, messageType)
        putLE32(&bytes, 12, UInt32(payload.count))
        for (index, byte) in payload.prefix(Self.maxPayloadSize).enumerated() {
            bytes[Self.payloadOffset + index] = byte
        }
        return bytes
    }
}

private func le32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
        | UInt32(bytes[offset + 3]) << 24
}

private func putLE32(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt32) {
    for index in 0..<4 { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> UInt32(8 * index)) }
}
