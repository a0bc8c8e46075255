import HyperV
import Testing

/// The hypercall input value (control word), the result value, status and call-code tables.
@Suite struct HypercallControlTests {
    @Test func decodesEveryField() {
        let control = HvHypercallControl(rawValue: 0x0ABC_0123_0402_005C | 1 << 16)
        #expect(control.callCode == .postMessage)
        #expect(control.isFast)
        #expect(control.variableHeaderSize == 0x201)
        #expect(control.repCount == 0x123)
        #expect(control.repStartIndex == 0xABC)
        #expect(!control.hasReservedBits)
    }

    @Test func variableHeaderIncludesBit26LikeLinuxAndKVM() {
        let control = HvHypercallControl(rawValue: 1 << 26 | 0x15)
        #expect(control.variableHeaderSize == 0x200)
        #expect(!control.hasReservedBits, "bit 26 is not the TLFS 6.0b IsNested bit here")
        #expect(HvHypercallControl(rawValue: HvHypercallControl.variableHeaderMask).variableHeaderSize == 0x3FF)
    }

    @Test func encodesAndRoundTrips() {
        let control = HvHypercallControl(
            callCode: .flushVirtualAddressListEx, fast: true, variableHeaderSize: 3, repCount: 0xFFF,
            repStartIndex: 7)
        #expect(control.rawValue == 0x0007_0FFF_0007_0014)
        #expect(HvHypercallControl(rawValue: control.rawValue) == control)
        #expect(control.callCode == .flushVirtualAddressListEx && control.isFast)
        #expect(control.variableHeaderSize == 3 && control.repCount == 0xFFF && control.repStartIndex == 7)
    }

    @Test func fieldsWiderThanTheirBitsAreTruncatedNotSpilled() {
        let control = HvHypercallControl(
            callCode: .signalEvent, variableHeaderSize: 0xFFFF, repCount: 0xFFFF, repStartIndex: 0xFFFF)
        #expect(!control.hasReservedBits)
        #expect(control.variableHeaderSize == 0x3FF)
        #expect(control.repCount == 0xFFF)
        #expect(control.repStartIndex == 0xFFF)
    }

    @Test func reservedBitsAreExactly31to27And47to44And63to60() {
        let reserved = Set(Array(27...31) + Array(44...47) + Array(60...63))
        for bit in 0..<64 {
            let control = HvHypercallControl(rawValue: 1 << UInt64(bit))
            #expect(control.hasReservedBits == reserved.contains(bit), "bit \(bit)")
            // On a simple call that takes a variable header, only reserved and rep bits fail.
            let repField = (32...43).contains(bit) || (48...59).contains(bit)
            let fails = control.validate(isRep: false, acceptsVariableHeader: true) == .invalidHypercallInput
            #expect(fails == (reserved.contains(bit) || repField), "bit \(bit)")
        }
        #expect(HvHypercallControl.reservedMask == 0xF000_F000_F800_0000)
    }

    @Test func reservedBitsFailValidationEvenOnAWellFormedCall() {
        for bit: UInt64 in [27, 31, 44, 47, 60, 63] {
            let control = HvHypercallControl(rawValue: HvHypercallControl(callCode: .signalEvent).rawValue | 1 << bit)
            #expect(control.validate() == .invalidHypercallInput)
            #expect(control.reservedBits == 1 << bit)
        }
    }

    @Test func simpleCallsCarryNoRepFields() {
        #expect(HvHypercallControl(callCode: .signalEvent).validate() == nil)
        #expect(HvHypercallControl(callCode: .signalEvent, repCount: 1).validate() == .invalidHypercallInput)
        #expect(HvHypercallControl(callCode: .signalEvent, repStartIndex: 1).validate() == .invalidHypercallInput)
        #expect(HvHypercallControl(callCode: .signalEvent, repCount: 0xFFF).validate() == .invalidHypercallInput)
    }

    @Test func repCallsNeedACountAboveTheStartIndex() {
        let list = HvCallCode.flushVirtualAddressList
        #expect(HvHypercallControl(callCode: list).validate() == .invalidHypercallInput, "zero reps")
        #expect(HvHypercallControl(callCode: list, repStartIndex: 3).validate() == .invalidHypercallInput)
        #expect(HvHypercallControl(callCode: list, repCount: 1).validate() == nil)
        #expect(HvHypercallControl(callCode: list, repCount: 5, repStartIndex: 4).validate() == nil)
        #expect(HvHypercallControl(callCode: list, repCount: 5, repStartIndex: 5).validate() == .invalidHypercallInput)
        #expect(HvHypercallControl(callCode: list, repCount: 5, repStartIndex: 6).validate() == .invalidHypercallInput)
        #expect(HvHypercallControl(callCode: list, repCount: 0xFFF, repStartIndex: 0xFFE).validate() == nil)
        #expect(HvHypercallControl(callCode: list, repCount: 0xFFF, repStartIndex: 0xFFF).validate() == .invalidHypercallInput)
    }

    @Test func variableHeaderOnlyWhereTheTLFSAllowsIt() {
        #expect(HvHypercallControl(callCode: .signalEvent, variableHeaderSize: 1).validate() == .invalidHypercallInput)
        #expect(HvHypercallControl(callCode: .sendSyntheticClusterIpi, variableHeaderSize: 1).validate() == .invalidHypercallInput)
        #expect(HvHypercallControl(callCode: .flushVirtualAddressList, variableHeaderSize: 1, repCount: 1).validate() == .invalidHypercallInput)
        #expect(HvHypercallControl(callCode: .sendSyntheticClusterIpiEx, variableHeaderSize: 2).validate() == nil)
        #expect(HvHypercallControl(callCode: .flushVirtualAddressSpaceEx, variableHeaderSize: 0x3FF).validate() == nil)
        #expect(HvHypercallControl(callCode: .flushVirtualAddressListEx, variableHeaderSize: 1, repCount: 2).validate() == nil)
    }

    @Test func repStartIndexUpdateKeepsEverythingElse() {
        let control = HvHypercallControl(callCode: .flushVirtualAddressList, fast: true, repCount: 9, repStartIndex: 2)
        let moved = control.withRepStartIndex(9)
        #expect(moved.repStartIndex == 9)
        #expect(moved.repCount == 9 && moved.isFast && moved.callCode == .flushVirtualAddressList)
        #expect(control.withRepStartIndex(0xFFFF).repStartIndex == 0xFFF, "truncated to the field")
    }

    @Test func resultValueLayout() {
        #expect(HvHypercallResult(status: .success).rawValue == 0)
        #expect(HvHypercallResult(status: .invalidConnectionID).rawValue == 0x12)
        #expect(HvHypercallResult(status: .success, repsCompleted: 0xFFF).rawValue == 0x0000_0FFF_0000_0000)
        #expect(HvHypercallResult(status: .invalidAlignment, repsCompleted: 0xFFFF).rawValue == 0x0000_0FFF_0000_0004)
        // Callers ignore bits 31:16 and 63:44.
        let decoded = HvHypercallResult(rawValue: 0xFFFF_F123_FFFF_0005)
        #expect(decoded == HvHypercallResult(status: .invalidParameter, repsCompleted: 0x123))
    }

    @Test func statusCodesMatchLinux() {
        let linux: [(HvStatus, UInt16, String)] = [
            (.success, 0, "HV_STATUS_SUCCESS"),
            (.invalidHypercallCode, 2, "HV_STATUS_INVALID_HYPERCALL_CODE"),
            (.invalidHypercallInput, 3, "HV_STATUS_INVALID_HYPERCALL_INPUT"),
            (.invalidAlignment, 4, "HV_STATUS_INVALID_ALIGNMENT"),
            (.invalidParameter, 5, "HV_STATUS_INVALID_PARAMETER"),
            (.accessDenied, 6, "HV_STATUS_ACCESS_DENIED"),
            (.invalidPartitionState, 7, "HV_STATUS_INVALID_PARTITION_STATE"),
            (.operationDenied, 8, "HV_STATUS_OPERATION_DENIED"),
            (.unknownProperty, 9, "HV_STATUS_UNKNOWN_PROPERTY"),
            (.propertyValueOutOfRange, 0xA, "HV_STATUS_PROPERTY_VALUE_OUT_OF_RANGE"),
            (.insufficientMemory, 0xB, "HV_STATUS_INSUFFICIENT_MEMORY"),
            (.invalidPartitionID, 0xD, "HV_STATUS_INVALID_PARTITION_ID"),
            (.invalidVPIndex, 0xE, "HV_STATUS_INVALID_VP_INDEX"),
            (.notFound, 0x10, "HV_STATUS_NOT_FOUND"),
            (.invalidPortID, 0x11, "HV_STATUS_INVALID_PORT_ID"),
            (.invalidConnectionID, 0x12, "HV_STATUS_INVALID_CONNECTION_ID"),
            (.insufficientBuffers, 0x13, "HV_STATUS_INSUFFICIENT_BUFFERS"),
            (.notAcknowledged, 0x14, "HV_STATUS_NOT_ACKNOWLEDGED"),
            (.invalidVPState, 0x15, "HV_STATUS_INVALID_VP_STATE"),
            (.acknowledged, 0x16, "HV_STATUS_ACKNOWLEDGED"),
            (.invalidSaveRestoreState, 0x17, "HV_STATUS_INVALID_SAVE_RESTORE_STATE"),
            (.invalidSynicState, 0x18, "HV_STATUS_INVALID_SYNIC_STATE"),
            (.objectInUse, 0x19, "HV_STATUS_OBJECT_IN_USE"),
            (.noResources, 0x1D, "HV_STATUS_NO_RESOURCES"),
            (.processorFeatureNotSupported, 0x20, "HV_STATUS_PROCESSOR_FEATURE_NOT_SUPPORTED"),
            (.insufficientBuffer, 0x33, "HV_STATUS_INSUFFICIENT_BUFFER"),
            (.invalidLPIndex, 0x41, "HV_STATUS_INVALID_LP_INDEX"),
            (.invalidRegisterValue, 0x50, "HV_STATUS_INVALID_REGISTER_VALUE"),
            (.operationFailed, 0x71, "HV_STATUS_OPERATION_FAILED"),
            (.timeOut, 0x78, "HV_STATUS_TIME_OUT"),
            (.callPending, 0x79, "HV_STATUS_CALL_PENDING"),
            (.vtlAlreadyEnabled, 0x86, "HV_STATUS_VTL_ALREADY_ENABLED"),
        ]
        for (status, value, name) in linux {
            #expect(status.rawValue == value, "\(name)")
            #expect(status.name == name)
            #expect(HvStatus.known.contains(status))
        }
        #expect(Set(HvStatus.known).count == HvStatus.known.count, "no duplicates")
        #expect(HvStatus.known.allSatisfy { $0.name != nil })
        #expect(HvStatus(rawValue: 0x1234).name == nil)
        #expect(HvStatus(rawValue: 0x1234).description == "HV_STATUS(0x1234)")
        #expect(HvStatus.timeOut.description == "HV_STATUS_TIME_OUT")
    }

    @Test func callCodesMatchLinuxAndTheTLFS() {
        let codes: [(HvCallCode, UInt16, String, Bool)] = [
            (.switchVirtualAddressSpace, 0x1, "HvCallSwitchVirtualAddressSpace", false),
            (.flushVirtualAddressSpace, 0x2, "HvCallFlushVirtualAddressSpace", false),
            (.flushVirtualAddressList, 0x3, "HvCallFlushVirtualAddressList", true),
            (.notifyLongSpinWait, 0x8, "HvCallNotifyLongSpinWait", false),
            (.sendSyntheticClusterIpi, 0xB, "HvCallSendSyntheticClusterIpi", false),
            (.flushVirtualAddressSpaceEx, 0x13, "HvCallFlushVirtualAddressSpaceEx", false),
            (.flushVirtualAddressListEx, 0x14, "HvCallFlushVirtualAddressListEx", true),
            (.sendSyntheticClusterIpiEx, 0x15, "HvCallSendSyntheticClusterIpiEx", false),
            (.getVpRegisters, 0x50, "HvCallGetVpRegisters", true),
            (.postMessage, 0x5C, "HvCallPostMessage", false),
            (.signalEvent, 0x5D, "HvCallSignalEvent", false),
            (.retargetDeviceInterrupt, 0x7E, "HvCallRetargetDeviceInterrupt", false),
            (.getVpIndexFromApicId, 0x9A, "HvCallGetVpIndexFromApicId", true),
            (.flushGuestPhysicalAddressList, 0xB0, "HvCallFlushGuestPhysicalAddressList", true),
            (.extQueryCapabilities, 0x8001, "HvExtCallQueryCapabilities", false),
        ]
        for (code, value, name, isRep) in codes {
            #expect(code.rawValue == value)
            #expect(code.name == name)
            #expect(code.isRep == isRep, "\(name)")
        }
        #expect(HvCallCode.sendSyntheticClusterIpiEx.acceptsVariableHeader)
        #expect(!HvCallCode.sendSyntheticClusterIpi.acceptsVariableHeader)
        #expect(!HvCallCode.postMessage.acceptsVariableHeader)
        #expect(HvCallCode(rawValue: 0xBEEF).name == nil)
        #expect(HvCallCode(rawValue: 0xBEEF).description == "HvCall(0xBEEF)")
    }
}
