/// SCSI vocabulary from SPC-4/SBC-3 (Linux include/scsi/scsi_proto.h names in Swift spelling) and
/// the Windows SRB status codes storvsc reads (Linux drivers/scsi/storvsc_drv.c `SRB_STATUS_*`).
/// Numbers a guest controls are open `RawRepresentable` structs: an unknown value is a value,
/// never a trap.

/// A SCSI operation code (CDB byte 0; scsi_proto.h).
public struct SCSIOpcode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let testUnitReady = SCSIOpcode(rawValue: 0x00)     // TEST_UNIT_READY
    public static let requestSense = SCSIOpcode(rawValue: 0x03)      // REQUEST_SENSE
    public static let read6 = SCSIOpcode(rawValue: 0x08)             // READ_6
    public static let write6 = SCSIOpcode(rawValue: 0x0A)            // WRITE_6
    public static let inquiry = SCSIOpcode(rawValue: 0x12)           // INQUIRY
    public static let modeSense6 = SCSIOpcode(rawValue: 0x1A)        // MODE_SENSE
    public static let startStopUnit = SCSIOpcode(rawValue: 0x1B)     // START_STOP
    public static let readCapacity10 = SCSIOpcode(rawValue: 0x25)    // READ_CAPACITY
    public static let read10 = SCSIOpcode(rawValue: 0x28)            // READ_10
    public static let write10 = SCSIOpcode(rawValue: 0x2A)           // WRITE_10
    public static let verify10 = SCSIOpcode(rawValue: 0x2F)          // VERIFY
    public static let synchronizeCache10 = SCSIOpcode(rawValue: 0x35) // SYNCHRONIZE_CACHE
    public static let writeSame10 = SCSIOpcode(rawValue: 0x41)       // WRITE_SAME
    public static let unmap = SCSIOpcode(rawValue: 0x42)             // UNMAP
    public static let modeSense10 = SCSIOpcode(rawValue: 0x5A)       // MODE_SENSE_10
    public static let read16 = SCSIOpcode(rawValue: 0x88)            // READ_16
    public static let write16 = SCSIOpcode(rawValue: 0x8A)           // WRITE_16
    public static let verify16 = SCSIOpcode(rawValue: 0x8F)          // VERIFY_16
    public static let synchronizeCache16 = SCSIOpcode(rawValue: 0x91) // SYNCHRONIZE_CACHE_16
    public static let writeSame16 = SCSIOpcode(rawValue: 0x93)       // WRITE_SAME_16
    /// SERVICE ACTION IN (16); READ CAPACITY (16) is service action 0x10 (SAI_READ_CAPACITY_16).
    public static let serviceActionIn16 = SCSIOpcode(rawValue: 0x9E)
    public static let reportLUNs = SCSIOpcode(rawValue: 0xA0)        // REPORT_LUNS
    public static let read12 = SCSIOpcode(rawValue: 0xA8)            // READ_12
    public static let write12 = SCSIOpcode(rawValue: 0xAA)           // WRITE_12

    /// The CDB length of the opcode's group (SPC-4 4.2.5.1): 6, 10, 16 or 12 bytes; nil for the
    /// reserved and vendor groups (3, 6, 7).
    public var cdbLength: Int? {
        switch rawValue >> 5 {
        case 0: 6
        case 1, 2: 10
        case 4: 16
        case 5: 12
        default: nil
        }
    }

    public var description: String { "0x" + String(rawValue, radix: 16) }
}

/// SAM status (scsi_proto.h `SAM_STAT_*`).
public struct SCSIStatus: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let good = SCSIStatus(rawValue: 0x00)
    public static let checkCondition = SCSIStatus(rawValue: 0x02)
    public static let busy = SCSIStatus(rawValue: 0x08)
}

/// Sense keys (SPC-4 table 48).
public struct SCSISenseKey: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let noSense = SCSISenseKey(rawValue: 0x0)
    public static let notReady = SCSISenseKey(rawValue: 0x2)
    public static let mediumError = SCSISenseKey(rawValue: 0x3)
    public static let hardwareError = SCSISenseKey(rawValue: 0x4)
    public static let illegalRequest = SCSISenseKey(rawValue: 0x5)
    public static let unitAttention = SCSISenseKey(rawValue: 0x6)
    public static let dataProtect = SCSISenseKey(rawValue: 0x7)
    public static let abortedCommand = SCSISenseKey(rawValue: 0xB)
}

/// An additional sense code and qualifier (ASC, ASCQ; SPC-4 table 49).
public struct SCSIAdditionalSense: Hashable, Sendable {
    public var code: UInt8
    public var qualifier: UInt8
    public init(code: UInt8, qualifier: UInt8 = 0) { self.code = code; self.qualifier = qualifier }

    public static let none = SCSIAdditionalSense(code: 0x00)
    /// 0C/00 WRITE ERROR.
    public static let writeError = SCSIAdditionalSense(code: 0x0C)
    /// 11/00 UNRECOVERED READ ERROR.
    public static let unrecoveredReadError = SCSIAdditionalSense(code: 0x11)
    /// 1A/00 PARAMETER LIST LENGTH ERROR.
    public static let parameterListLengthError = SCSIAdditionalSense(code: 0x1A)
    /// 20/00 INVALID COMMAND OPERATION CODE.
    public static let invalidCommandOperationCode = SCSIAdditionalSense(code: 0x20)
    /// 21/00 LOGICAL BLOCK ADDRESS OUT OF RANGE.
    public static let lbaOutOfRange = SCSIAdditionalSense(code: 0x21)
    /// 24/00 INVALID FIELD IN CDB.
    public static let invalidFieldInCDB = SCSIAdditionalSense(code: 0x24)
    /// 26/00 INVALID FIELD IN PARAMETER LIST.
    public static let invalidFieldInParameterList = SCSIAdditionalSense(code: 0x26)
    /// 27/00 WRITE PROTECTED.
    public static let writeProtected = SCSIAdditionalSense(code: 0x27)
    /// 39/00 SAVING PARAMETERS NOT SUPPORTED.
    public static let savingParametersNotSupported = SCSIAdditionalSense(code: 0x39)
}

/// Sense data in fixed format (SPC-4 4.5.3), 18 bytes:
///
/// | byte | field |
/// |---|---|
/// | 0 | 0x70: current error, fixed format (VALID bit 7 clear: no INFORMATION) |
/// | 2 | sense key (bits 3:0) |
/// | 7 | additional sense length: 10 |
/// | 12 | ASC |
/// | 13 | ASCQ |
public struct SCSISense: Hashable, Sendable {
    public static let fixedFormatSize = 18
    public var key: SCSISenseKey
    public var additional: SCSIAdditionalSense

    public init(key: SCSISenseKey, _ additional: SCSIAdditionalSense) {
        self.key = key
        self.additional = additional
    }

    public var bytes: [UInt8] {
        var b = [UInt8](repeating: 0, count: Self.fixedFormatSize)
        b[0] = 0x70
        b[2] = key.rawValue & 0x0F
        b[7] = 10
        b[12] = additional.code
        b[13] = additional.qualifier
        return b
    }

    public static func illegalRequest(_ asc: SCSIAdditionalSense) -> SCSISense { SCSISense(key: .illegalRequest, asc) }
}

/// The SRB status byte of a completion (storvsc_drv.c `SRB_STATUS_*`), without its flag bits.
/// Linux compares the whole byte with SUCCESS (0x01): success with a flag set is not success.
public struct SRBStatus: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let pending = SRBStatus(rawValue: 0x00)
    public static let success = SRBStatus(rawValue: 0x01)
    public static let aborted = SRBStatus(rawValue: 0x02)
    public static let error = SRBStatus(rawValue: 0x04)
    public static let invalidRequest = SRBStatus(rawValue: 0x06)
    public static let dataOverrun = SRBStatus(rawValue: 0x12)
    /// Linux: DID_NO_CONNECT, and the scsi_device is removed.
    public static let invalidLUN = SRBStatus(rawValue: 0x20)

    /// SRB_STATUS_AUTOSENSE_VALID: the sense data in the reply is valid.
    public static let autosenseValid: UInt8 = 0x80
    /// SRB_STATUS_QUEUE_FROZEN.
    public static let queueFrozen: UInt8 = 0x40
}

/// A 16-byte CDB, stored inline (no allocation per request), with its length.
public struct SCSICDB: Hashable, Sendable {
    private var low: UInt64 = 0
    private var high: UInt64 = 0
    /// Bytes the initiator gave (1...16).
    public private(set) var count: Int

    public init<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        count = min(bytes.count, 16)
        for (i, b) in bytes.prefix(16).enumerated() { self[i] = b }
    }

    public init(_ bytes: UInt8...) { self.init(bytes) }

    /// Byte `i` (0...15); bytes past `count` read as 0.
    public subscript(i: Int) -> UInt8 {
        get {
            guard i >= 0, i < 16 else { return 0 }
            return i < 8 ? UInt8(truncatingIfNeeded: low >> (8 * UInt64(i))) : UInt8(truncatingIfNeeded: high >> (8 * UInt64(i - 8)))
        }
        set {
            guard i >= 0, i < 16 else { return }
            if i < 8 {
                let s = 8 * UInt64(i)
                low = low & ~(0xFF << s) | UInt64(newValue) << s
            } else {
                let s = 8 * UInt64(i - 8)
                high = high & ~(0xFF << s) | UInt64(newValue) << s
            }
        }
    }

    public var opcode: SCSIOpcode { SCSIOpcode(rawValue: self[0]) }
    public var bytes: [UInt8] { (0..<count).map { self[$0] } }

    /// Big-endian fields at byte offsets.
    public func be16(_ at: Int) -> UInt16 { UInt16(self[at]) << 8 | UInt16(self[at + 1]) }
    public func be24(_ at: Int) -> UInt32 { UInt32(self[at]) << 16 | UInt32(self[at + 1]) << 8 | UInt32(self[at + 2]) }
    public func be32(_ at: Int) -> UInt32 { UInt32(be16(at)) << 16 | UInt32(be16(at + 2)) }
    public func be64(_ at: Int) -> UInt64 { UInt64(be32(at)) << 32 | UInt64(be32(at + 4)) }
}

/// Which way data moves (the SRB's `data_in`: SCSI_IOCTL_DATA_OUT 0, DATA_IN 1, UNSPECIFIED 2).
public enum SCSIDataDirection: UInt8, Hashable, Sendable {
    /// Guest to disk (a write).
    case toDevice = 0
    /// Disk to guest (a read).
    case fromDevice = 1
    case none = 2
}

/// One SCSI command as the disk sees it.
public struct SCSIRequest: Hashable, Sendable {
    public var cdb: SCSICDB
    /// The size of the data buffer the initiator gave (the SRB's `data_transfer_length`).
    public var dataTransferLength: UInt32
    public var direction: SCSIDataDirection

    public init(cdb: SCSICDB, dataTransferLength: UInt32, direction: SCSIDataDirection) {
        self.cdb = cdb
        self.dataTransferLength = dataTransferLength
        self.direction = direction
    }
}

/// How a command ended: the SAM status, the sense (with CHECK CONDITION), the SRB status the
/// transport reports, and the bytes moved.
public struct SCSICompletion: Hashable, Sendable {
    public var srbStatus: SRBStatus
    public var scsiStatus: SCSIStatus
    public var sense: SCSISense?
    public var transferred: UInt32

    public init(srbStatus: SRBStatus, scsiStatus: SCSIStatus, sense: SCSISense? = nil, transferred: UInt32 = 0) {
        self.srbStatus = srbStatus
        self.scsiStatus = scsiStatus
        self.sense = sense
        self.transferred = transferred
    }

    public static func good(transferred: UInt32 = 0) -> SCSICompletion {
        SCSICompletion(srbStatus: .success, scsiStatus: .good, transferred: transferred)
    }

    /// CHECK CONDITION with fixed-format sense: SRB_STATUS_ERROR (the reply adds
    /// AUTOSENSE_VALID), which Linux hands to the midlayer with the sense.
    public static func checkCondition(_ sense: SCSISense, srbStatus: SRBStatus = .error) -> SCSICompletion {
        SCSICompletion(srbStatus: srbStatus, scsiStatus: .checkCondition, sense: sense)
    }

    public static func illegalRequest(_ asc: SCSIAdditionalSense) -> SCSICompletion { checkCondition(.illegalRequest(asc)) }
}
