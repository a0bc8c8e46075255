/// SynIC messages and the pages they live in (TLFS "Inter-Partition Communication", "SIM Page",
/// "SIEF Page", HV_MESSAGE, HV_SYNIC_EVENT_FLAGS, HV_TIMER_MESSAGE_PAYLOAD; Linux
/// include/asm-generic/hyperv-tlfs.h `struct hv_message`, `struct hv_message_header`,
/// `struct hv_timer_message_payload`, `HV_EVENT_FLAGS_COUNT`).

/// `HV_MESSAGE_TYPE`: the first u32 of a message. A slot whose type is `none` is empty.
///
/// A struct, not an enum: the guest and the host can put any 32-bit value there, and it must
/// survive a round trip. Types with bit 31 set are the hypervisor's own; a guest may not post them.
public struct HvMessageType: RawRepresentable, Equatable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32

    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// HvMessageTypeNone: the slot is free.
    public static let none = HvMessageType(rawValue: 0x0000_0000)
    /// What VMBus posts in both directions (Linux `hv_post_message(.., 1, ..)`, QEMU `HV_MESSAGE_VMBUS`).
    public static let vmbus = HvMessageType(rawValue: 0x0000_0001)
    public static let unmappedGpa = HvMessageType(rawValue: 0x8000_0000)
    public static let gpaIntercept = HvMessageType(rawValue: 0x8000_0001)
    /// A synthetic timer expired (payload: `HvTimerMessagePayload`).
    public static let timerExpired = HvMessageType(rawValue: 0x8000_0010)
    public static let invalidVpRegisterValue = HvMessageType(rawValue: 0x8000_0020)
    public static let unrecoverableException = HvMessageType(rawValue: 0x8000_0021)
    public static let unsupportedFeature = HvMessageType(rawValue: 0x8000_0022)
    public static let eventLogBufferComplete = HvMessageType(rawValue: 0x8000_0040)
    public static let x64IoPortIntercept = HvMessageType(rawValue: 0x8001_0000)
    public static let x64MsrIntercept = HvMessageType(rawValue: 0x8001_0001)
    public static let x64CpuidIntercept = HvMessageType(rawValue: 0x8001_0002)
    public static let x64ExceptionIntercept = HvMessageType(rawValue: 0x8001_0003)
    public static let x64ApicEoi = HvMessageType(rawValue: 0x8001_0004)
    public static let x64LegacyFpError = HvMessageType(rawValue: 0x8001_0005)

    /// Bit 31: the type belongs to the hypervisor (HvPostMessage refuses it from a guest).
    public static let hypervisorBit: UInt32 = 1 << 31

    public var isHypervisorType: Bool { rawValue & Self.hypervisorBit != 0 }

    public var description: String {
        "0x" + String(rawValue, radix: 16, uppercase: true)
    }
}

/// `HV_MESSAGE_FLAGS`, the u8 at +5 of the header.
public enum HvMessageFlags {
    /// MessagePending: more messages are queued for this slot; the guest writes EOM once it has
    /// freed the slot, so that the hypervisor delivers the next one.
    public static let pending: UInt8 = 1 << 0
}

/// One 256-byte message as it appears in a SIM page slot:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | MessageType |
/// | 4 | 1 | PayloadSize (bytes of payload, header excluded) |
/// | 5 | 1 | MessageFlags (bit 0 MessagePending) |
/// | 6 | 2 | Reserved |
/// | 8 | 8 | OriginationId / sender / port id (0 for hypervisor messages) |
/// | 16 | 240 | Payload |
///
/// This is the order of the markdown TLFS, Linux and QEMU; the v6.0b PDF prints PayloadSize and
/// the flags the other way round, which nobody implements.
public struct HvMessage: Equatable, Sendable {
    /// A whole slot.
    public static let size = 256
    public static let headerSize = 16
    /// `HV_MESSAGE_PAYLOAD_BYTE_COUNT`.
    public static let maxPayloadSize = 240

    public static let typeOffset = 0
    public static let payloadSizeOffset = 4
    public static let flagsOffset = 5
    public static let originationIDOffset = 8
    public static let payloadOffset = 16

    public var type: HvMessageType
    /// `HvMessageFlags` bits. The SynIC computes MessagePending itself when it delivers.
    public var flags: UInt8
    public var originationID: UInt64
    /// At most 240 bytes; PayloadSize is its count.
    public var payload: [UInt8]

    public init(type: HvMessageType, payload: [UInt8] = [], originationID: UInt64 = 0, flags: UInt8 = 0) {
        self.type = type
        self.flags = flags
        self.originationID = originationID
        self.payload = payload
    }

    /// True when the message can be put in a slot: a type other than None, at most 240 bytes.
    public var isDeliverable: Bool { type != .none && payload.count <= Self.maxPayloadSize }

    /// Header and payload, `16 + payload.count` bytes: what a hypervisor copies into a slot (the
    /// TLFS lets it copy "only the number of payload bytes associated with the message").
    /// Payload beyond 240 bytes is cut.
    public func encoded() -> [UInt8] {
        let body = payload.prefix(Self.maxPayloadSize)
        var bytes = [UInt8](repeating: 0, count: Self.headerSize + body.count)
        storeLE(UInt64(type.rawValue), &bytes, Self.typeOffset, 4)
        bytes[Self.payloadSizeOffset] = UInt8(body.count)
        bytes[Self.flagsOffset] = flags
        storeLE(originationID, &bytes, Self.originationIDOffset, 8)
        bytes.replaceSubrange(Self.payloadOffset..<bytes.count, with: body)
        return bytes
    }

    /// Decodes a slot (or any buffer holding at least the header and PayloadSize bytes); nil when
    /// it is shorter than that or PayloadSize exceeds 240.
    public init?(decoding bytes: [UInt8]) {
        guard bytes.count >= Self.headerSize else { return nil }
        let size = Int(bytes[Self.payloadSizeOffset])
        guard size <= Self.maxPayloadSize, bytes.count >= Self.headerSize + size else { return nil }
        type = HvMessageType(rawValue: UInt32(truncatingIfNeeded: loadLE(bytes, Self.typeOffset, 4)))
        flags = bytes[Self.flagsOffset]
        originationID = loadLE(bytes, Self.originationIDOffset, 8)
        payload = Array(bytes[Self.payloadOffset..<(Self.payloadOffset + size)])
    }
}

/// `HV_TIMER_MESSAGE_PAYLOAD`, the 24-byte payload of an `HvMessageType.timerExpired` message:
///
/// | payload offset | size | field |
/// |---|---|---|
/// | 0 | 4 | TimerIndex (0-3) |
/// | 4 | 4 | Reserved |
/// | 8 | 8 | ExpirationTime: the reference time the timer was due |
/// | 16 | 8 | DeliveryTime: the reference time the message was written into the slot |
///
/// Both times are partition reference time (100 ns units).
public struct HvTimerMessagePayload: Equatable, Sendable {
    public static let size = 24

    public var timerIndex: UInt32
    public var expirationTime: UInt64
    public var deliveryTime: UInt64

    public init(timerIndex: UInt32, expirationTime: UInt64, deliveryTime: UInt64) {
        self.timerIndex = timerIndex
        self.expirationTime = expirationTime
        self.deliveryTime = deliveryTime
    }

    public func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        storeLE(UInt64(timerIndex), &bytes, 0, 4)
        storeLE(expirationTime, &bytes, 8, 8)
        storeLE(deliveryTime, &bytes, 16, 8)
        return bytes
    }

    public init?(decoding bytes: [UInt8]) {
        guard bytes.count >= Self.size else { return nil }
        timerIndex = UInt32(truncatingIfNeeded: loadLE(bytes, 0, 4))
        expirationTime = loadLE(bytes, 8, 8)
        deliveryTime = loadLE(bytes, 16, 8)
    }

    /// The whole message a synthetic timer sends.
    public var message: HvMessage {
        HvMessage(type: .timerExpired, payload: encoded())
    }
}

/// The SynIC message page (SIM page, SIMP register): 16 slots of 256 bytes, slot x for SINTx.
public enum HvMessagePage {
    public static let size = 4096
    public static let slotCount = 16
    public static let slotSize = HvMessage.size

    /// Byte offset of SINTx's slot in the page.
    @inlinable
    public static func slotOffset(sint: Int) -> Int { sint * slotSize }
}

/// The SynIC event flags page (SIEF page, SIEFP register): 16 arrays of 256 bytes, one per SINT,
/// 2048 flags each. Flag n of SINTx is bit (n % 8) of byte (n / 8) of the array at x * 256 (the
/// little-endian bitmap Linux scans with `sync_test_and_clear_bit`).
public enum HvEventFlagsPage {
    public static let size = 4096
    public static let bytesPerSint = 256
    /// `HV_EVENT_FLAGS_COUNT`.
    public static let flagsPerSint = bytesPerSint * 8

    /// The byte of the page that holds flag `flag` of SINTx, and the bit inside it.
    @inlinable
    public static func location(sint: Int, flag: Int) -> (byteOffset: Int, mask: UInt8) {
        (sint * bytesPerSint + flag / 8, UInt8(1) << UInt8(flag % 8))
    }
}

private func loadLE(_ bytes: [UInt8], _ offset: Int, _ count: Int) -> UInt64 {
    (0..<count).reduce(0) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
}

private func storeLE(_ value: UInt64, _ bytes: inout [UInt8], _ offset: Int, _ count: Int) {
    for i in 0..<count { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
}
