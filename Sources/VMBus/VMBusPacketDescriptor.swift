/// The packet framing inside a VMBus ring (Linux include/linux/hyperv.h
/// `struct vmpacket_descriptor`, `enum vmbus_packet_type`, `VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED`;
/// drivers/hv/ring_buffer.c).

/// `enum vmbus_packet_type`: the u16 at +0 of a packet. Open: the guest writes any value.
public struct VMBusPacketType: RawRepresentable, Equatable, Hashable, Sendable {
    public var rawValue: UInt16

    public init(rawValue: UInt16) {
        self.rawValue = rawValue
    }

    /// VM_PKT_INVALID = 0.
    public static let invalid = VMBusPacketType(rawValue: 0x0)
    /// VM_PKT_SYNCH = 1.
    public static let synch = VMBusPacketType(rawValue: 0x1)
    /// VM_PKT_ADD_XFER_PAGESET = 2.
    public static let addTransferPageSet = VMBusPacketType(rawValue: 0x2)
    /// VM_PKT_RM_XFER_PAGESET = 3.
    public static let removeTransferPageSet = VMBusPacketType(rawValue: 0x3)
    /// VM_PKT_ESTABLISH_GPADL = 4.
    public static let establishGPADL = VMBusPacketType(rawValue: 0x4)
    /// VM_PKT_TEARDOWN_GPADL = 5.
    public static let teardownGPADL = VMBusPacketType(rawValue: 0x5)
    /// VM_PKT_DATA_INBAND = 6: the payload is in the ring.
    public static let dataInBand = VMBusPacketType(rawValue: 0x6)
    /// VM_PKT_DATA_USING_XFER_PAGES = 7 (netvsc).
    public static let dataUsingTransferPages = VMBusPacketType(rawValue: 0x7)
    /// VM_PKT_DATA_USING_GPADL = 8.
    public static let dataUsingGPADL = VMBusPacketType(rawValue: 0x8)
    /// VM_PKT_DATA_USING_GPA_DIRECT = 9: a page-range list follows the descriptor (storvsc I/O).
    public static let dataUsingGPADirect = VMBusPacketType(rawValue: 0x9)
    /// VM_PKT_CANCEL_REQUEST = 0xA.
    public static let cancelRequest = VMBusPacketType(rawValue: 0xA)
    /// VM_PKT_COMP = 0xB: a completion, carrying the request's transaction id.
    public static let completion = VMBusPacketType(rawValue: 0xB)
    /// VM_PKT_DATA_USING_ADDITIONAL_PKT = 0xC.
    public static let dataUsingAdditionalPacket = VMBusPacketType(rawValue: 0xC)
    /// VM_PKT_ADDITIONAL_DATA = 0xD.
    public static let additionalData = VMBusPacketType(rawValue: 0xD)
}

/// `flags` bits of a packet.
public enum VMBusPacketFlags {
    /// VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED: the sender wants a completion packet.
    public static let completionRequested: UInt16 = 1
}

/// `struct vmpacket_descriptor`, the 16 bytes that start every packet:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 2 | type |
/// | 2 | 2 | offset8: where the payload starts, in 8-byte units from the descriptor (>= 2) |
/// | 4 | 2 | len8: the whole packet in 8-byte units, descriptor included, trailer excluded |
/// | 6 | 2 | flags |
/// | 8 | 8 | trans_id |
///
/// The packet is followed by an 8-byte trailer, `(u64)start_write_index << 32`: the ring offset
/// at which the packet starts, in the high half (Linux `hv_get_ring_bufferindices`).
public struct VMBusPacketDescriptor: Equatable, Sendable {
    public static let size = 16
    public static let trailerSize = 8

    public var type: VMBusPacketType
    public var offset8: UInt16
    public var len8: UInt16
    public var flags: UInt16
    public var transactionID: UInt64

    public init(type: VMBusPacketType, offset8: UInt16, len8: UInt16, flags: UInt16, transactionID: UInt64) {
        self.type = type
        self.offset8 = offset8
        self.len8 = len8
        self.flags = flags
        self.transactionID = transactionID
    }

    /// Bytes of the packet, descriptor included, trailer excluded.
    public var packetLength: Int { Int(len8) * 8 }
    /// Where the payload starts, from the descriptor.
    public var payloadOffset: Int { Int(offset8) * 8 }
}
