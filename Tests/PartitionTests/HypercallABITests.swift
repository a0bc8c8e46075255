import HyperV
import Partition
import Testing

/// The x64 and x86 register conventions (TLFS "Hypercall Inputs" / "Hypercall Outputs").
@Suite struct HypercallABITests {
    @Test func longModeReadsRCXRDXR8() throws {
        let regs = VPRegisters(rax: 1, rbx: 2, rcx: 0x1_005D, rdx: 0x1234_5678_9ABC_DEF0, rsi: 3, rdi: 4, r8: 0xFEDC_BA98_7654_3210)
        let input = try #require(HypercallInput(registers: regs, mode: .long64))
        #expect(input.control.rawValue == 0x1_005D)
        #expect(input.inputValue == 0x1234_5678_9ABC_DEF0)
        #expect(input.outputValue == 0xFEDC_BA98_7654_3210)
    }

    @Test func protectedModeReadsRegisterPairsAndIgnoresHighHalves() throws {
        let regs = VPRegisters(
            rax: 0xFFFF_FFFF_0001_005D, rbx: 0xFFFF_FFFF_1111_2222, rcx: 0xFFFF_FFFF_3333_4444,
            rdx: 0xFFFF_FFFF_0000_0001, rsi: 0xFFFF_FFFF_7777_8888, rdi: 0xFFFF_FFFF_5555_6666, r8: 0x9999)
        let input = try #require(HypercallInput(registers: regs, mode: .protected32))
        #expect(input.control.rawValue == 0x0000_0001_0001_005D)
        #expect(input.inputValue == 0x1111_2222_3333_4444)
        #expect(input.outputValue == 0x5555_6666_7777_8888)
    }

    @Test func otherModesHaveNoConvention() {
        #expect(HypercallInput(registers: VPRegisters(rcx: 0x5D), mode: .other) == nil)
    }

    @Test func encodeIsTheInverseOfDecode() throws {
        let input = HypercallInput(
            control: HvHypercallControl(rawValue: 0x0123_0456_0000_0015), inputValue: 0xAAAA_BBBB_CCCC_DDDD,
            outputValue: 0x1111_2222_3333_4444)
        for mode in [VPExecutionMode.long64, .protected32] {
            let regs = input.encode(into: hcSentinelRegisters, mode: mode)
            #expect(HypercallInput(registers: regs, mode: mode) == input)
        }
        let x86 = input.encode(into: VPRegisters(), mode: .protected32)
        #expect(x86 == VPRegisters(rax: 0x0000_0015, rbx: 0xAAAA_BBBB, rcx: 0xCCCC_DDDD, rdx: 0x0123_0456, rsi: 0x3333_4444, rdi: 0x1111_2222))
        #expect(input.encode(into: hcSentinelRegisters, mode: .other) == hcSentinelRegisters)
    }

    @Test func resultGoesToRAXInLongMode() {
        let control = HvHypercallControl(callCode: .signalEvent, fast: true)
        let out = HypercallABI.complete(
            hcSentinelRegisters, mode: .long64, control: control, result: HvHypercallResult(status: .invalidConnectionID))
        var expected = hcSentinelRegisters
        expected.rax = 0x12
        #expect(out == expected, "only RAX changes; RCX, RDX, R8 (fast input) are preserved")
    }

    @Test func resultGoesToEDXEAXInProtectedMode() {
        let control = HvHypercallControl(callCode: .flushVirtualAddressList, repCount: 0x10)
        let result = HvHypercallResult(status: .success, repsCompleted: 0x10)
        let out = HypercallABI.complete(hcSentinelRegisters, mode: .protected32, control: control, result: result)
        var expected = hcSentinelRegisters
        expected.rdx = 0x10
        expected.rax = 0
        #expect(out == expected, "EDX:EAX zero-extended; EBX:ECX and EDI:ESI untouched")
        #expect(HypercallABI.result(in: out, mode: .protected32) == result)
    }

    @Test func repCallsGetTheirStartIndexAdvancedInRCX() {
        let control = HvHypercallControl(callCode: .flushVirtualAddressList, repCount: 0x20, repStartIndex: 3)
        let out = HypercallABI.complete(
            hcSentinelRegisters, mode: .long64, control: control,
            result: HvHypercallResult(status: .success, repsCompleted: 0x20))
        #expect(out.rax == 0x0000_0020_0000_0000)
        #expect(HvHypercallControl(rawValue: out.rcx) == control.withRepStartIndex(0x20))
        #expect(out.rdx == hcSentinelRegisters.rdx && out.r8 == hcSentinelRegisters.r8)
    }

    @Test func failedRepCallsLeaveRCXAlone() {
        let control = HvHypercallControl(callCode: .flushVirtualAddressList, repCount: 0x20, repStartIndex: 3)
        var regs = hcSentinelRegisters
        regs.rcx = control.rawValue
        let out = HypercallABI.complete(
            regs, mode: .long64, control: control, result: HvHypercallResult(status: .invalidHypercallCode))
        #expect(out.rcx == control.rawValue)
        #expect(out.rax == 2)
    }

    @Test func simpleCallsLeaveRCXAlone() {
        let control = HvHypercallControl(rawValue: hcSentinelRegisters.rcx)
        let out = HypercallABI.complete(
            hcSentinelRegisters, mode: .long64, control: control, result: HvHypercallResult(status: .success))
        #expect(out.rcx == hcSentinelRegisters.rcx)
    }

    @Test func dispatchUsesTheCallersConvention() {
        // HvCallSignalEvent, fast, connection 7: the same call in both modes.
        let control = HvHypercallControl(callCode: .signalEvent, fast: true)
        let connections = HcConnections(answer: .success)
        for mode in [VPExecutionMode.long64, .protected32] {
            var h = HcHarness()
            h.mode = mode
            h.connections = connections
            guard case .completed(let regs) = h.call(control, input: 7) else {
                Issue.record("#UD in \(mode)")
                continue
            }
            var expected = h.registers(control, input: 7)
            switch mode {
            case .long64: expected.rax = 0
            default: (expected.rdx, expected.rax) = (0, 0)
            }
            #expect(regs == expected, "\(mode)")
        }
        #expect(connections.events.map(\.event) == [HvSignalEventInput(connectionID: 7, flagNumber: 0), HvSignalEventInput(connectionID: 7, flagNumber: 0)])
    }

    @Test func protectedModeResultIsSplitAcrossEDXAndEAX() throws {
        var h = HcHarness()
        h.mode = .protected32
        // A rep count on a simple call: INVALID_HYPERCALL_INPUT, reps completed 0.
        let control = HvHypercallControl(callCode: .signalEvent, fast: true, repCount: 1)
        guard case .completed(let regs) = h.call(control, input: 7) else {
            Issue.record("#UD")
            return
        }
        #expect(regs.rax == 3 && regs.rdx == 0)
        #expect(regs.rbx == 0 && regs.rcx == 7, "EBX:ECX still hold the input")
    }

    @Test func protectedModeIgnoresHighHalvesOfTheControlRegisters() {
        var h = HcHarness()
        h.mode = .protected32
        h.connections = HcConnections(answer: .success)
        var regs = h.registers(HvHypercallControl(callCode: .signalEvent, fast: true), input: 9)
        regs.rax |= 0xFFFF_FFFF_0000_0000  // would be reserved bits 63:60 if taken as the control word
        regs.rdx |= 0xFFFF_FFFF_0000_0000
        guard case .completed(let out) = HypercallDispatcher.dispatch(regs, context: h.context) else {
            Issue.record("#UD")
            return
        }
        #expect(HypercallABI.result(in: out, mode: .protected32).status == .success)
    }
}
