/// The vstor protocol's wire vocabulary (Linux drivers/scsi/storvsc_drv.c; OpenVMM
/// vm/devices/storage/storvsp_protocol). All fields little-endian.

/// `enum vstor_packet_operation` (VSTOR_OPERATION_*).
public struct VStorOperation: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// VSTOR_OPERATION_COMPLETE_IO (1): every host reply.
    public static let completeIO = VStorOperation(rawValue: 1)
    /// VSTOR_OPERATION_REMOVE_DEVICE (2): host to guest, unsolicited; the guest rescans.
    public static let removeDevice = VStorOperation(rawValue: 2)
    /// VSTOR_OPERATION_EXECUTE_SRB (3).
    public static let executeSRB = VStorOperation(rawValue: 3)
    /// VSTOR_OPERATION_RESET_LUN (4), RESET_ADAPTER (5), RESET_BUS (6).
    public static let resetLUN = VStorOperation(rawValue: 4)
    public static let resetAdapter = VStorOperation(rawValue: 5)
    public static let resetBus = VStorOperation(rawValue: 6)
    /// VSTOR_OPERATION_BEGIN_INITIALIZATION (7).
    public static let beginInitialization = VStorOperation(rawValue: 7)
    /// VSTOR_OPERATION_END_INITIALIZATION (8).
    public static let endInitialization = VStorOperation(rawValue: 8)
    /// VSTOR_OPERATION_QUERY_PROTOCOL_VERSION (9).
    public static let queryProtocolVersion = VStorOperation(rawValue: 9)
    /// VSTOR_OPERATION_QUERY_PROPERTIES (10).
    public static let queryProperties = VStorOperation(rawValue: 10)
    /// VSTOR_OPERATION_ENUMERATE_BUS (11): host to guest, unsolicited; the guest rescans.
    public static let enumerateBus = VStorOperation(rawValue: 11)
    /// VSTOR_OPERATION_FCHBA_DATA (12): Fibre Channel only.
    public static let fcHBAData = VStorOperation(rawValue: 12)
    /// VSTOR_OPERATION_CREATE_SUB_CHANNELS (13).
    public static let createSubChannels = VStorOperation(rawValue: 13)

    public var description: String { "vstor op \(rawValue)" }
}

/// The NTSTATUS in a vstor reply. Linux's init steps need exactly 0; for I/O it only logs it.
public struct VStorStatus: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let success = VStorStatus(rawValue: 0)
    /// STATUS_INVALID_PARAMETER: a malformed packet, a sub-channel count out of range.
    public static let invalidParameter = VStorStatus(rawValue: 0xC000_000D)
    /// STATUS_REVISION_MISMATCH: a protocol version this host does not speak.
    public static let revisionMismatch = VStorStatus(rawValue: 0xC000_0059)
    /// STATUS_DEVICE_DOES_NOT_EXIST: an SRB to a missing LUN.
    public static let deviceDoesNotExist = VStorStatus(rawValue: 0xC000_00C0)
    /// STATUS_INVALID_DEVICE_STATE: an operation out of the init order.
    public static let invalidDeviceState = VStorStatus(rawValue: 0xC000_0184)
    /// STATUS_IO_DEVICE_ERROR: any other failed SRB.
    public static let ioDeviceError = VStorStatus(rawValue: 0xC000_0185)
}

/// A vstor protocol version, major << 8 | minor (`VMSTOR_PROTO_VERSION(MAJOR_, MINOR_)`).
///
/// Linux 6.1 `protocol_version[]` tries, in order: 0x0602 (WIN10), 0x0600 (WIN8_1), 0x0501
/// (WIN8); kernels before the pre-Win8 support was dropped also tried 0x0402 (WIN7) and 0x0200
/// (WIN6), with the short SRB. Windows guests try the same list from their newest down. A
/// posted, never merged Linux patch adds 0x0A00 (WIN10_1); this host answers it
/// REVISION_MISMATCH, like any other number.
public struct VStorProtocolVersion: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// VMSTOR_PROTO_VERSION_WIN6 (2.0).
    public static let win6 = VStorProtocolVersion(rawValue: 0x0200)
    /// VMSTOR_PROTO_VERSION_WIN7 (4.2).
    public static let win7 = VStorProtocolVersion(rawValue: 0x0402)
    /// VMSTOR_PROTO_VERSION_WIN8 (5.1): the Win8 SRB (0x34 bytes, 20 sense bytes), multi-channel.
    public static let win8 = VStorProtocolVersion(rawValue: 0x0501)
    /// VMSTOR_PROTO_VERSION_WIN8_1 (6.0, "Blue").
    public static let win8_1 = VStorProtocolVersion(rawValue: 0x0600)
    /// VMSTOR_PROTO_VERSION_WIN10 (6.2): Linux turns WRITE SAME on for vendor "Msft".
    public static let win10 = VStorProtocolVersion(rawValue: 0x0602)

    /// Every version this host accepts, newest first.
    public static let accepted: [VStorProtocolVersion] = [.win10, .win8_1, .win8, .win7, .win6]

    public var isAccepted: Bool { Self.accepted.contains(self) }

    /// The vmscsi_request size at this version: 0x34 from Win8 on, 0x24 before (storvsc's
    /// `vmscsi_size_delta` = sizeof(struct vmscsi_win8_extension) = 16).
    public var srbSize: Int { self >= .win8 ? VMSCSIRequest.sizeWin8 : VMSCSIRequest.sizePreWin8 }
    /// The sense bytes at this version: 20 (POST_WIN7_STORVSC_SENSE_BUFFER_SIZE) from Win8 on,
    /// 18 (PRE_WIN8_STORVSC_SENSE_BUFFER_SIZE) before.
    public var senseBufferSize: Int { self >= .win8 ? 20 : 18 }
    /// Sub-channels exist from Win8 on (OpenVMM: multi-channel only at >= Win8).
    public var supportsMultiChannel: Bool { self >= .win8 }

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "\(rawValue >> 8).\(rawValue & 0xFF)" }
}

/// `struct vstor_packet`: a 12-byte header and a union, 64 bytes in all at the Win8 SRB size
/// (48 with the pre-Win8 SRB).
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | operation (`VStorOperation`) |
/// | 4 | 4 | flags (bit 0 REQUEST_COMPLETION_FLAG; Linux always sets it, the host sends 0) |
/// | 8 | 4 | status (NTSTATUS, host replies) |
/// | 12 | 52 | union: vm_srb (`VMSCSIRequest`), storage_channel_properties (`VStorChannelProperties`), version (`struct vmstorage_protocol_version`: +12 u16 major_minor, +14 u16 revision 0), sub_channel_count (+12 u16) |
///
/// Host-to-guest packets must be exactly 12 + the SRB size of the negotiated version: Linux reads
/// each storvsc packet into an 80-byte buffer (16-byte VMBus descriptor + 64), so a longer one
/// desynchronises its ring, and a shorter one is dropped as "Invalid pkt".
public enum VStorPacket {
    public static let headerSize = 12
    /// 12 + 0x34.
    public static let maxSize = headerSize + VMSCSIRequest.sizeWin8
    public static let operationOffset = 0
    public static let flagsOffset = 4
    public static let statusOffset = 8
    public static let unionOffset = 12
    /// `struct vmstorage_protocol_version` at +12: u16 major_minor, u16 revision.
    public static let versionOffset = 12
    /// `sub_channel_count` at +12 (u16).
    public static let subChannelCountOffset = 12
    /// REQUEST_COMPLETION_FLAG.
    public static let requestCompletionFlag: UInt32 = 1
}

/// `struct vmstorage_channel_properties`, at +12 of the packet (24 bytes).
///
/// | packet offset | size | field |
/// |---|---|---|
/// | 12 | 4 | reserved |
/// | 16 | 2 | max_channel_cnt (sub-channels the host can offer) |
/// | 18 | 2 | reserved1 |
/// | 20 | 4 | flags (bit 0 STORAGE_CHANNEL_SUPPORTS_MULTI_CHANNEL) |
/// | 24 | 4 | max_transfer_bytes (Linux: max_sectors = round_down(x, 4096) / 512) |
/// | 28 | 8 | reserved2 |
public struct VStorChannelProperties: Hashable, Sendable {
    public static let size = 24
    public static let maxChannelCountOffset = 16
    public static let flagsOffset = 20
    public static let maxTransferBytesOffset = 24
    public static let supportsMultiChannel: UInt32 = 1

    public var maxChannelCount: UInt16
    public var flags: UInt32
    public var maxTransferBytes: UInt32

    public init(maxChannelCount: UInt16, flags: UInt32, maxTransferBytes: UInt32) {
        self.maxChannelCount = maxChannelCount
        self.flags = flags
        self.maxTransferBytes = maxTransferBytes
    }
}

/// `struct vmscsi_request` (the SRB), at +12 of the packet: 0x34 bytes from Win8 on, 0x24 before
/// (without the Win8 extension at +48).
///
/// | packet offset | size | field |
/// |---|---|---|
/// | 12 | 2 | length (Linux sends 0x34; ignored) |
/// | 14 | 1 | srb_status (reply: `SRBStatus` \| 0x80 AUTOSENSE_VALID) |
/// | 15 | 1 | scsi_status (reply: SAM status) |
/// | 16 | 1 | port_number (the guest's host number: ignored) |
/// | 17 | 1 | path_id |
/// | 18 | 1 | target_id |
/// | 19 | 1 | lun |
/// | 20 | 1 | cdb_length (1...16) |
/// | 21 | 1 | sense_info_length (Linux: 20) |
/// | 22 | 1 | data_in (0 write, 1 read, 2 none) |
/// | 23 | 1 | reserved |
/// | 24 | 4 | data_transfer_length (request: buffer bytes; reply: bytes moved) |
/// | 28 | 20 | cdb[16] (request) / sense_data[20] (reply) |
/// | 48 | 2 | reserve (Win8 extension from here) |
/// | 50 | 1 | queue_tag |
/// | 51 | 1 | queue_action |
/// | 52 | 4 | srb_flags |
/// | 56 | 4 | time_out_value |
/// | 60 | 4 | queue_sort_key |
public enum VMSCSIRequest {
    public static let sizeWin8 = 0x34
    public static let sizePreWin8 = 0x24
    public static let lengthOffset = 12
    public static let srbStatusOffset = 14
    public static let scsiStatusOffset = 15
    public static let portNumberOffset = 16
    public static let pathIDOffset = 17
    public static let targetIDOffset = 18
    public static let lunOffset = 19
    public static let cdbLengthOffset = 20
    public static let senseInfoLengthOffset = 21
    public static let dataInOffset = 22
    public static let dataTransferLengthOffset = 24
    public static let cdbOffset = 28
    public static let senseOffset = 28
    public static let srbFlagsOffset = 52
    public static let maxCDBLength = 16
    /// STORVSC_MAX_BUF_LEN_WITH_PADDING: the cdb/sense union.
    public static let senseAreaSize = 20
}

/// An EXECUTE_SRB request, parsed from a copy of the packet: the SCSI address, the command and
/// what the guest's buffer is.
public struct VStorSRB: Hashable, Sendable {
    public var transactionID: UInt64
    public var pathID: UInt8
    public var targetID: UInt8
    public var lun: UInt8
    public var cdb: SCSICDB
    /// The sense bytes the guest can take (clamped to the version's buffer when replying).
    public var senseInfoLength: UInt8
    public var direction: SCSIDataDirection
    /// The guest buffer's size in bytes (0: no buffer).
    public var dataTransferLength: UInt32
    /// 0 before Win8 (no extension).
    public var srbFlags: UInt32
    /// The version the request was parsed at: sizes the reply.
    public var version: VStorProtocolVersion

    public init(transactionID: UInt64, pathID: UInt8 = 0, targetID: UInt8 = 0, lun: UInt8, cdb: SCSICDB,
                senseInfoLength: UInt8 = 20, direction: SCSIDataDirection, dataTransferLength: UInt32,
                srbFlags: UInt32 = 0, version: VStorProtocolVersion = .win10) {
        self.transactionID = transactionID
        self.pathID = pathID
        self.targetID = targetID
        self.lun = lun
        self.cdb = cdb
        self.senseInfoLength = senseInfoLength
        self.direction = direction
        self.dataTransferLength = dataTransferLength
        self.srbFlags = srbFlags
        self.version = version
    }

    /// What the disk sees.
    public var scsiRequest: SCSIRequest {
        SCSIRequest(cdb: cdb, dataTransferLength: dataTransferLength, direction: direction)
    }
}

/// A host-to-guest vstor packet payload, inline (no allocation): exactly the bytes to put after
/// the VMBus descriptor, 48 or 64 of them.
public struct VStorPacketBytes: Hashable, Sendable {
    private var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    public let count: Int

    /// `count` zero bytes (12 + an SRB size: at most 64).
    public init(count: Int) {
        precondition(count >= VStorPacket.headerSize && count <= VStorPacket.maxSize)
        self.count = count
    }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: words) { try body(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
    }

    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    public subscript(i: Int) -> UInt8 {
        get { Swift.withUnsafeBytes(of: words) { $0[i] } }
        set {
            precondition(i >= 0 && i < count)
            Swift.withUnsafeMutableBytes(of: &words) { $0[i] = newValue }
        }
    }

    mutating func put16(_ v: UInt16, at i: Int) { self[i] = UInt8(v & 0xFF); self[i + 1] = UInt8(v >> 8) }
    mutating func put32(_ v: UInt32, at i: Int) { put16(UInt16(v & 0xFFFF), at: i); put16(UInt16(v >> 16), at: i + 2) }

    public func u16(at i: Int) -> UInt16 { UInt16(self[i]) | UInt16(self[i + 1]) << 8 }
    public func u32(at i: Int) -> UInt32 { UInt32(u16(at: i)) | UInt32(u16(at: i + 2)) << 16 }

    public static func == (a: Self, b: Self) -> Bool { a.bytes == b.bytes }
    public func hash(into h: inout Hasher) { h.combine(bytes) }

    public var operation: VStorOperation { VStorOperation(rawValue: u32(at: VStorPacket.operationOffset)) }
    public var status: VStorStatus { VStorStatus(rawValue: u32(at: VStorPacket.statusOffset)) }
}
