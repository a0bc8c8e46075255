/// A hypercall code: bits 15:0 of the hypercall input value (TLFS "Hypercall Reference";
/// Linux include/asm-generic/hyperv-tlfs.h `HVCALL_*`).
///
/// A struct, not an enum: the guest may put any 16-bit number there, and the dispatcher must be
/// able to hold (and log) a code nobody named before answering HV_STATUS_INVALID_HYPERCALL_CODE.
///
/// The class (simple or rep) and whether a variable-sized input header is accepted are facts of
/// the TLFS interface, not of SynthVM's implementation, so they live here: the dispatcher
/// validates the control word against them even for calls it then refuses.
public struct HvCallCode: RawRepresentable, Equatable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16

    public init(rawValue: UInt16) {
        self.rawValue = rawValue
    }

    public static let switchVirtualAddressSpace = HvCallCode(rawValue: 0x0001)
    public static let flushVirtualAddressSpace = HvCallCode(rawValue: 0x0002)
    /// Rep: one element per GVA range.
    public static let flushVirtualAddressList = HvCallCode(rawValue: 0x0003)
    /// Advisory: "I have spun this long"; always HV_STATUS_SUCCESS.
    public static let notifyLongSpinWait = HvCallCode(rawValue: 0x0008)
    /// {u32 Vector, u8 TargetVtl, u8 pad[3], u64 ProcessorMask}; Linux calls it fast.
    public static let sendSyntheticClusterIpi = HvCallCode(rawValue: 0x000B)
    public static let modifyVtlProtectionMask = HvCallCode(rawValue: 0x000C)
    public static let enablePartitionVtl = HvCallCode(rawValue: 0x000D)
    public static let enableVpVtl = HvCallCode(rawValue: 0x000F)
    public static let vtlCall = HvCallCode(rawValue: 0x0011)
    public static let vtlReturn = HvCallCode(rawValue: 0x0012)
    /// Variable header: the HV_VP_SET banks.
    public static let flushVirtualAddressSpaceEx = HvCallCode(rawValue: 0x0013)
    /// Rep with variable header.
    public static let flushVirtualAddressListEx = HvCallCode(rawValue: 0x0014)
    /// {u32 Vector, u8 TargetVtl, u8 pad[3], HV_VP_SET}; the variable header is the VP set's banks.
    public static let sendSyntheticClusterIpiEx = HvCallCode(rawValue: 0x0015)
    public static let getPartitionId = HvCallCode(rawValue: 0x0046)
    public static let depositMemory = HvCallCode(rawValue: 0x0048)
    public static let createVp = HvCallCode(rawValue: 0x004E)
    public static let getVpRegisters = HvCallCode(rawValue: 0x0050)
    public static let setVpRegisters = HvCallCode(rawValue: 0x0051)
    /// {u32 ConnectionId, u32 RsvdZ, u32 MessageType, u32 PayloadSize, u8 Payload[240]}.
    public static let postMessage = HvCallCode(rawValue: 0x005C)
    /// {u32 ConnectionId, u16 FlagNumber, u16 RsvdZ}; Linux calls it fast (RDX only).
    public static let signalEvent = HvCallCode(rawValue: 0x005D)
    public static let postDebugData = HvCallCode(rawValue: 0x0069)
    public static let retrieveDebugData = HvCallCode(rawValue: 0x006A)
    public static let resetDebugSession = HvCallCode(rawValue: 0x006B)
    public static let addLogicalProcessor = HvCallCode(rawValue: 0x0076)
    public static let mapDeviceInterrupt = HvCallCode(rawValue: 0x007C)
    public static let unmapDeviceInterrupt = HvCallCode(rawValue: 0x007D)
    /// Variable header when the target is an HV_VP_SET (Linux pci-hyperv).
    public static let retargetDeviceInterrupt = HvCallCode(rawValue: 0x007E)
    public static let startVirtualProcessor = HvCallCode(rawValue: 0x0099)
    public static let getVpIndexFromApicId = HvCallCode(rawValue: 0x009A)
    public static let flushGuestPhysicalAddressSpace = HvCallCode(rawValue: 0x00AF)
    public static let flushGuestPhysicalAddressList = HvCallCode(rawValue: 0x00B0)
    public static let modifySparseGpaPageHostVisibility = HvCallCode(rawValue: 0x00DB)
    /// Extended hypercalls (0x8001 and up) exist only with privilege EnableExtendedHypercalls.
    public static let extQueryCapabilities = HvCallCode(rawValue: 0x8001)
    public static let extGetBootZeroedMemory = HvCallCode(rawValue: 0x8002)
    public static let extMemoryHeatHint = HvCallCode(rawValue: 0x8003)

    /// TLFS "Rep" class: the control word must carry rep count >= 1 and start index < count.
    /// Every other call is "Simple" and must carry rep count = start index = 0.
    public var isRep: Bool {
        switch self {
        case .flushVirtualAddressList, .flushVirtualAddressListEx, .modifyVtlProtectionMask,
            .getVpRegisters, .setVpRegisters, .getVpIndexFromApicId,
            .flushGuestPhysicalAddressList, .modifySparseGpaPageHostVisibility, .depositMemory,
            .extMemoryHeatHint:
            true
        default:
            false
        }
    }

    /// Whether the TLFS documents a variable-sized input header for this call. A non-zero
    /// variable header size on any other call is HV_STATUS_INVALID_HYPERCALL_INPUT.
    public var acceptsVariableHeader: Bool {
        switch self {
        case .flushVirtualAddressSpaceEx, .flushVirtualAddressListEx, .sendSyntheticClusterIpiEx,
            .retargetDeviceInterrupt, .mapDeviceInterrupt:
            true
        default:
            false
        }
    }

    /// The TLFS name ("HvCallPostMessage"), or nil for a code this file does not name.
    public var name: String? {
        switch rawValue {
        case 0x0001: "HvCallSwitchVirtualAddressSpace"
        case 0x0002: "HvCallFlushVirtualAddressSpace"
        case 0x0003: "HvCallFlushVirtualAddressList"
        case 0x0008: "HvCallNotifyLongSpinWait"
        case 0x000B: "HvCallSendSyntheticClusterIpi"
        case 0x000C: "HvCallModifyVtlProtectionMask"
        case 0x000D: "HvCallEnablePartitionVtl"
        case 0x000F: "HvCallEnableVpVtl"
        case 0x0011: "HvCallVtlCall"
        case 0x0012: "HvCallVtlReturn"
        case 0x0013: "HvCallFlushVirtualAddressSpaceEx"
        case 0x0014: "HvCallFlushVirtualAddressListEx"
        case 0x0015: "HvCallSendSyntheticClusterIpiEx"
        case 0x0046: "HvCallGetPartitionId"
        case 0x0048: "HvCallDepositMemory"
        case 0x004E: "HvCallCreateVp"
        case 0x0050: "HvCallGetVpRegisters"
        case 0x0051: "HvCallSetVpRegisters"
        case 0x005C: "HvCallPostMessage"
        case 0x005D: "HvCallSignalEvent"
        case 0x0069: "HvCallPostDebugData"
        case 0x006A: "HvCallRetrieveDebugData"
        case 0x006B: "HvCallResetDebugSession"
        case 0x0076: "HvCallAddLogicalProcessor"
        case 0x007C: "HvCallMapDeviceInterrupt"
        case 0x007D: "HvCallUnmapDeviceInterrupt"
        case 0x007E: "HvCallRetargetDeviceInterrupt"
        case 0x0099: "HvCallStartVirtualProcessor"
        case 0x009A: "HvCallGetVpIndexFromApicId"
        case 0x00AF: "HvCallFlushGuestPhysicalAddressSpace"
        case 0x00B0: "HvCallFlushGuestPhysicalAddressList"
        case 0x00DB: "HvCallModifySparseGpaPageHostVisibility"
        case 0x8001: "HvExtCallQueryCapabilities"
        case 0x8002: "HvExtCallGetBootZeroedMemory"
        case 0x8003: "HvExtCallMemoryHeatHint"
        default: nil
        }
    }

    public var description: String {
        name ?? "HvCall(0x" + String(rawValue, radix: 16, uppercase: true) + ")"
    }
}
