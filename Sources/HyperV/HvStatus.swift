/// `HV_STATUS`: the 16-bit result code of every hypercall (TLFS Appendix B, "Hypercall Status
/// Codes"; Linux include/asm-generic/hyperv-tlfs.h `HV_STATUS_*`).
///
/// A struct, not an enum, because the guest sees raw numbers: a result decoded from a register
/// may hold a code this table does not name, and it must survive a round trip unchanged.
///
/// Values were checked against Linux's `HV_STATUS_*` list and Microsoft's published HvStatus.h.
/// Two traps: TLFS v6.0b prints INSUFFICIENT_BUFFERS as 0x0033 (it is 0x0013; 0x0033 is the
/// different INSUFFICIENT_BUFFER), and [REQ]'s "HV_STATUS_NOT_IMPLEMENTED" has no code at all
/// (unimplemented calls answer INVALID_HYPERCALL_CODE).
///
/// It is also an `Error`, so that input parsers can fail with exactly the status the guest
/// should see (`Result<_, HvStatus>`, `throws(HvStatus)`); nothing throws `.success`.
public struct HvStatus: RawRepresentable, Equatable, Hashable, Sendable, Error, CustomStringConvertible {
    public var rawValue: UInt16

    public init(rawValue: UInt16) {
        self.rawValue = rawValue
    }

    public static let success = HvStatus(rawValue: 0x0000)
    /// The call code is not one the hypervisor implements.
    public static let invalidHypercallCode = HvStatus(rawValue: 0x0002)
    /// The control word is malformed: reserved bit set, rep count on a simple call (or none on a
    /// rep call), start index >= count, a variable header the call does not take.
    public static let invalidHypercallInput = HvStatus(rawValue: 0x0003)
    /// An input/output GPA is not 8-byte aligned, its block crosses a page, or it is outside
    /// the GPA space.
    public static let invalidAlignment = HvStatus(rawValue: 0x0004)
    /// A parameter value inside the input block is invalid.
    public static let invalidParameter = HvStatus(rawValue: 0x0005)
    /// The caller lacks the privilege (CPUID 0x40000003) the call requires.
    public static let accessDenied = HvStatus(rawValue: 0x0006)
    public static let invalidPartitionState = HvStatus(rawValue: 0x0007)
    public static let operationDenied = HvStatus(rawValue: 0x0008)
    public static let unknownProperty = HvStatus(rawValue: 0x0009)
    public static let propertyValueOutOfRange = HvStatus(rawValue: 0x000A)
    public static let insufficientMemory = HvStatus(rawValue: 0x000B)
    public static let partitionTooDeep = HvStatus(rawValue: 0x000C)
    public static let invalidPartitionID = HvStatus(rawValue: 0x000D)
    public static let invalidVPIndex = HvStatus(rawValue: 0x000E)
    public static let notFound = HvStatus(rawValue: 0x0010)
    public static let invalidPortID = HvStatus(rawValue: 0x0011)
    /// No connection with that id exists (HvPostMessage, HvSignalEvent).
    public static let invalidConnectionID = HvStatus(rawValue: 0x0012)
    /// The destination port has no free message buffers; Linux retries HvPostMessage on this.
    public static let insufficientBuffers = HvStatus(rawValue: 0x0013)
    public static let notAcknowledged = HvStatus(rawValue: 0x0014)
    public static let invalidVPState = HvStatus(rawValue: 0x0015)
    public static let acknowledged = HvStatus(rawValue: 0x0016)
    public static let invalidSaveRestoreState = HvStatus(rawValue: 0x0017)
    /// The target VP's SynIC (or its SIM/SIEF page) is disabled.
    public static let invalidSynicState = HvStatus(rawValue: 0x0018)
    public static let objectInUse = HvStatus(rawValue: 0x0019)
    public static let invalidProximityDomainInfo = HvStatus(rawValue: 0x001A)
    public static let noData = HvStatus(rawValue: 0x001B)
    public static let inactive = HvStatus(rawValue: 0x001C)
    public static let noResources = HvStatus(rawValue: 0x001D)
    public static let featureUnavailable = HvStatus(rawValue: 0x001E)
    public static let partialPacket = HvStatus(rawValue: 0x001F)
    public static let processorFeatureNotSupported = HvStatus(rawValue: 0x0020)
    public static let insufficientBuffer = HvStatus(rawValue: 0x0033)
    public static let invalidLPIndex = HvStatus(rawValue: 0x0041)
    public static let invalidRegisterValue = HvStatus(rawValue: 0x0050)
    public static let invalidVTLState = HvStatus(rawValue: 0x0051)
    public static let invalidDeviceID = HvStatus(rawValue: 0x0057)
    public static let invalidDeviceState = HvStatus(rawValue: 0x0058)
    public static let operationFailed = HvStatus(rawValue: 0x0071)
    public static let insufficientContiguousMemory = HvStatus(rawValue: 0x0075)
    public static let timeOut = HvStatus(rawValue: 0x0078)
    public static let callPending = HvStatus(rawValue: 0x0079)
    public static let vtlAlreadyEnabled = HvStatus(rawValue: 0x0086)

    /// Every status this file names, for lookups and tests.
    public static let known: [HvStatus] = [
        .success, .invalidHypercallCode, .invalidHypercallInput, .invalidAlignment,
        .invalidParameter, .accessDenied, .invalidPartitionState, .operationDenied,
        .unknownProperty, .propertyValueOutOfRange, .insufficientMemory, .partitionTooDeep,
        .invalidPartitionID, .invalidVPIndex, .notFound, .invalidPortID, .invalidConnectionID,
        .insufficientBuffers, .notAcknowledged, .invalidVPState, .acknowledged,
        .invalidSaveRestoreState, .invalidSynicState, .objectInUse, .invalidProximityDomainInfo,
        .noData, .inactive, .noResources, .featureUnavailable, .partialPacket,
        .processorFeatureNotSupported, .insufficientBuffer, .invalidLPIndex,
        .invalidRegisterValue, .invalidVTLState, .invalidDeviceID, .invalidDeviceState,
        .operationFailed, .insufficientContiguousMemory, .timeOut, .callPending,
        .vtlAlreadyEnabled,
    ]

    /// The TLFS name ("HV_STATUS_INVALID_HYPERCALL_CODE"), or nil for a code this file does not name.
    public var name: String? {
        switch rawValue {
        case 0x0000: "HV_STATUS_SUCCESS"
        case 0x0002: "HV_STATUS_INVALID_HYPERCALL_CODE"
        case 0x0003: "HV_STATUS_INVALID_HYPERCALL_INPUT"
        case 0x0004: "HV_STATUS_INVALID_ALIGNMENT"
        case 0x0005: "HV_STATUS_INVALID_PARAMETER"
        case 0x0006: "HV_STATUS_ACCESS_DENIED"
        case 0x0007: "HV_STATUS_INVALID_PARTITION_STATE"
        case 0x0008: "HV_STATUS_OPERATION_DENIED"
        case 0x0009: "HV_STATUS_UNKNOWN_PROPERTY"
        case 0x000A: "HV_STATUS_PROPERTY_VALUE_OUT_OF_RANGE"
        case 0x000B: "HV_STATUS_INSUFFICIENT_MEMORY"
        case 0x000C: "HV_STATUS_PARTITION_TOO_DEEP"
        case 0x000D: "HV_STATUS_INVALID_PARTITION_ID"
        case 0x000E: "HV_STATUS_INVALID_VP_INDEX"
        case 0x0010: "HV_STATUS_NOT_FOUND"
        case 0x0011: "HV_STATUS_INVALID_PORT_ID"
        case 0x0012: "HV_STATUS_INVALID_CONNECTION_ID"
        case 0x0013: "HV_STATUS_INSUFFICIENT_BUFFERS"
        case 0x0014: "HV_STATUS_NOT_ACKNOWLEDGED"
        case 0x0015: "HV_STATUS_INVALID_VP_STATE"
        case 0x0016: "HV_STATUS_ACKNOWLEDGED"
        case 0x0017: "HV_STATUS_INVALID_SAVE_RESTORE_STATE"
        case 0x0018: "HV_STATUS_INVALID_SYNIC_STATE"
        case 0x0019: "HV_STATUS_OBJECT_IN_USE"
        case 0x001A: "HV_STATUS_INVALID_PROXIMITY_DOMAIN_INFO"
        case 0x001B: "HV_STATUS_NO_DATA"
        case 0x001C: "HV_STATUS_INACTIVE"
        case 0x001D: "HV_STATUS_NO_RESOURCES"
        case 0x001E: "HV_STATUS_FEATURE_UNAVAILABLE"
        case 0x001F: "HV_STATUS_PARTIAL_PACKET"
        case 0x0020: "HV_STATUS_PROCESSOR_FEATURE_NOT_SUPPORTED"
        case 0x0033: "HV_STATUS_INSUFFICIENT_BUFFER"
        case 0x0041: "HV_STATUS_INVALID_LP_INDEX"
        case 0x0050: "HV_STATUS_INVALID_REGISTER_VALUE"
        case 0x0051: "HV_STATUS_INVALID_VTL_STATE"
        case 0x0057: "HV_STATUS_INVALID_DEVICE_ID"
        case 0x0058: "HV_STATUS_INVALID_DEVICE_STATE"
        case 0x0071: "HV_STATUS_OPERATION_FAILED"
        case 0x0075: "HV_STATUS_INSUFFICIENT_CONTIGUOUS_MEMORY"
        case 0x0078: "HV_STATUS_TIME_OUT"
        case 0x0079: "HV_STATUS_CALL_PENDING"
        case 0x0086: "HV_STATUS_VTL_ALREADY_ENABLED"
        default: nil
        }
    }

    public var description: String {
        name ?? "HV_STATUS(0x" + String(rawValue, radix: 16, uppercase: true) + ")"
    }
}
