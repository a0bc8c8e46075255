import HyperV
import Partition
import Testing

/// The dispatcher's common rules: #UD, access, control word, unknown codes, fast/slow and XMM.
@Suite struct HypercallDispatcherTests {
    let spinWait = HvHypercallControl(callCode: .notifyLongSpinWait, fast: true)

    // MARK: #UD

    @Test func cplThreeRaisesUD() {
        var h = HcHarness()
        for cpl: UInt8 in [1, 2, 3] {
            h.cpl = cpl
            #expect(h.call(spinWait) == .invalidOpcode, "CPL \(cpl)")
        }
    }

    @Test func realAndV86ModeRaiseUD() {
        var h = HcHarness()
        h.mode = .other
        #expect(h.call(spinWait) == .invalidOpcode)
    }

    @Test func disabledInterfaceRaisesUD() {
        var h = HcHarness()
        h.interfaceEnabled = false
        #expect(h.call(spinWait) == .invalidOpcode)
        #expect(h.call(HvHypercallControl(rawValue: 0xBEEF)) == .invalidOpcode)
    }

    @Test func udWinsOverEveryOtherError() {
        var h = HcHarness()
        h.cpl = 3
        h.privilegesEBX = 0
        #expect(h.call(HvHypercallControl(rawValue: .max)) == .invalidOpcode)
        #expect(h.call(HvHypercallControl(callCode: .postMessage), input: 3) == .invalidOpcode)
        #expect(h.interrupts.sent.isEmpty)
    }

    // MARK: Codes

    @Test func unknownCodesAreInvalidHypercallCode() {
        let h = HcHarness()
        for code: UInt16 in [0, 0x4, 0x46, 0x50, 0x7E, 0x99, 0xBEEF, 0x8001, 0xFFFF] {
            #expect(h.status(HvHypercallControl(rawValue: UInt64(code))) == .invalidHypercallCode, "0x\(String(code, radix: 16))")
        }
    }

    @Test func flushCallsAreNotImplemented() {
        var h = HcHarness()
        h.hintsEAX = .max  // even if a profile advertised the flush hints
        h.featuresEDX = .max
        let flushes = [
            HvHypercallControl(callCode: .flushVirtualAddressSpace),
            HvHypercallControl(callCode: .flushVirtualAddressSpace, fast: true),
            HvHypercallControl(callCode: .flushVirtualAddressList, repCount: 4),
            HvHypercallControl(callCode: .flushVirtualAddressSpaceEx, variableHeaderSize: 1),
            HvHypercallControl(callCode: .flushVirtualAddressListEx, variableHeaderSize: 1, repCount: 2),
            HvHypercallControl(callCode: .switchVirtualAddressSpace),
        ]
        for control in flushes {
            #expect(h.result(control, input: 0x1000) == HvHypercallResult(status: .invalidHypercallCode), "\(control.callCode)")
        }
    }

    @Test func reservedBitsWinOverAnUnknownCode() {
        let h = HcHarness()
        #expect(h.status(HvHypercallControl(rawValue: 0xBEEF | 1 << 31)) == .invalidHypercallInput)
    }

    @Test func accessDeniedWinsOverReservedBitsAndBadInput() {
        var h = HcHarness()
        h.privilegesEBX = 0
        let reserved = HvHypercallControl(rawValue: HvHypercallControl(callCode: .postMessage).rawValue | 1 << 63)
        #expect(h.status(reserved, input: 3) == .accessDenied)
        #expect(h.status(HvHypercallControl(callCode: .signalEvent, fast: true, repCount: 5), input: .max) == .accessDenied)
    }

    // MARK: Control word

    @Test func everyReservedBitIsRefused() {
        let h = HcHarness()
        for bit: UInt64 in Array(27...31) + Array(44...47) + Array(60...63) {
            let control = HvHypercallControl(rawValue: spinWait.rawValue | 1 << bit)
            #expect(h.status(control) == .invalidHypercallInput, "bit \(bit)")
        }
    }

    @Test func repCountOnASimpleCallIsRefused() {
        let h = HcHarness()
        for (count, start): (UInt16, UInt16) in [(1, 0), (0, 1), (2, 1), (0xFFF, 0), (0xFFF, 0xFFF), (0, 0xFFF)] {
            let control = HvHypercallControl(callCode: .notifyLongSpinWait, fast: true, repCount: count, repStartIndex: start)
            #expect(h.result(control) == HvHypercallResult(status: .invalidHypercallInput), "count \(count) start \(start)")
        }
    }

    @Test func variableHeaderOnACallWithoutOneIsRefused() {
        let h = HcHarness()
        for size: UInt16 in [1, 2, 0x200, 0x3FF] {
            #expect(h.status(HvHypercallControl(callCode: .notifyLongSpinWait, fast: true, variableHeaderSize: size)) == .invalidHypercallInput)
            #expect(h.status(HvHypercallControl(callCode: .sendSyntheticClusterIpi, fast: true, variableHeaderSize: size), input: 0x30, output: 1) == .invalidHypercallInput)
        }
        #expect(h.interrupts.sent.isEmpty)
    }

    // MARK: HvCallNotifyLongSpinWait

    @Test func spinWaitAlwaysSucceeds() {
        let h = HcHarness()
        #expect(h.result(spinWait, input: 0xFFFF_FFFF) == HvHypercallResult(status: .success))
        // Memory-based: the input is advisory and never read, so its GPA is not checked.
        #expect(h.status(HvHypercallControl(callCode: .notifyLongSpinWait), input: 0xFFFF_FFFF_FFFF_FFF3) == .success)
    }

    @Test func successfulCallPreservesEverythingButRAX() {
        let h = HcHarness()
        guard case .completed(let regs) = h.call(spinWait, input: 0x1234, output: 0x5678, xmm: [1, 2]) else {
            Issue.record("#UD")
            return
        }
        var expected = h.registers(spinWait, input: 0x1234, output: 0x5678, xmm: [1, 2])
        expected.rax = 0
        #expect(regs == expected)
    }

    // MARK: Fast vs slow, XMM

    @Test func postMessageHasNoFastForm() {
        let h = HcHarness()
        #expect(h.status(HvHypercallControl(callCode: .postMessage, fast: true), input: 0x1000) == .invalidHypercallCode)
        var xmm = h
        xmm.featuresEDX = HvFeatureEDX.xmmHypercallInput
        #expect(xmm.status(HvHypercallControl(callCode: .postMessage, fast: true), input: 0x1000, xmm: [UInt64](repeating: 0, count: 12)) == .invalidHypercallCode)
    }

    @Test func xmmInputWithoutTheFeatureRaisesUD() {
        let h = HcHarness()  // featuresEDX = 0
        let ex = HvHypercallControl(callCode: .sendSyntheticClusterIpiEx, fast: true)
        #expect(h.call(ex, input: hcVectorWord(0x30), output: 1, xmm: [0, 0]) == .invalidOpcode)
        #expect(h.interrupts.sent.isEmpty)
        // A 16-byte fast call needs no XMM registers and works without the feature.
        #expect(h.status(HvHypercallControl(callCode: .sendSyntheticClusterIpi, fast: true), input: hcVectorWord(0x30), output: 1) == .success)
    }

    @Test func xmmInputTheMonitorDidNotFetchIsRefused() {
        var h = HcHarness()
        h.featuresEDX = HvFeatureEDX.xmmHypercallInput
        let ex = HvHypercallControl(callCode: .sendSyntheticClusterIpiEx, fast: true, variableHeaderSize: 1)
        #expect(h.status(ex, input: hcVectorWord(0x30), output: 0, xmm: []) == .invalidHypercallInput)
        #expect(h.status(ex, input: hcVectorWord(0x30), output: 0, xmm: [1]) == .invalidHypercallInput, "bank in XMM0 high missing")
        #expect(h.status(ex, input: hcVectorWord(0x30), output: 0, xmm: [1, 1]) == .success)
    }

    @Test func needsXMMInputOnlyForLargeFastInputsWithTheFeature() {
        let xmm = HvFeatureEDX.xmmHypercallInput
        func needs(_ control: HvHypercallControl, _ features: UInt32 = HvFeatureEDX.xmmHypercallInput) -> Bool {
            HypercallDispatcher.needsXMMInput(HypercallInput(control: control), featuresEDX: features)
        }
        #expect(needs(HvHypercallControl(callCode: .sendSyntheticClusterIpiEx, fast: true)))
        #expect(needs(HvHypercallControl(callCode: .sendSyntheticClusterIpiEx, fast: true, variableHeaderSize: 11)))
        #expect(!needs(HvHypercallControl(callCode: .sendSyntheticClusterIpiEx, fast: true, variableHeaderSize: 12)), "cannot fit")
        #expect(!needs(HvHypercallControl(callCode: .sendSyntheticClusterIpiEx, fast: true), 0))
        #expect(!needs(HvHypercallControl(callCode: .sendSyntheticClusterIpiEx, fast: false)))
        #expect(!needs(HvHypercallControl(callCode: .sendSyntheticClusterIpi, fast: true)))
        #expect(!needs(HvHypercallControl(callCode: .signalEvent, fast: true)))
        #expect(!needs(HvHypercallControl(callCode: .postMessage, fast: true)))
        #expect(!needs(HvHypercallControl(callCode: .flushVirtualAddressSpaceEx, fast: true), xmm))
        #expect(!needs(HvHypercallControl(rawValue: 0xBEEF | 1 << 16), xmm))
    }

    @Test func fastInputLargerThanTheRegistersIsRefused() {
        var h = HcHarness()
        h.featuresEDX = HvFeatureEDX.xmmHypercallInput
        // 24 + 8 * 12 = 120 bytes > 112.
        let ex = HvHypercallControl(callCode: .sendSyntheticClusterIpiEx, fast: true, variableHeaderSize: 12)
        let mask: UInt64 = (1 << 12) - 1
        #expect(h.status(ex, input: hcVectorWord(0x30), output: 0, xmm: [mask] + [UInt64](repeating: 1, count: 11)) == .invalidHypercallInput)
    }

    @Test func xmmOutputFeatureChangesNothingForCallsWithoutOutput() {
        var h = HcHarness()
        h.featuresEDX = HvFeatureEDX.xmmHypercallOutput | HvFeatureEDX.xmmHypercallInput
        let xmm: [UInt64] = Array(1...12)
        guard case .completed(let regs) = h.call(spinWait, input: 1, output: 2, xmm: xmm) else {
            Issue.record("#UD")
            return
        }
        #expect(regs.xmm == xmm && regs.rdx == 1 && regs.r8 == 2)
    }

    @Test func outputGPAIsIgnoredForCallsWithoutOutput() {
        // HvCallPostMessage has no output: Linux passes NULL, and any value is ignored.
        let h = HcHarness()
        h.memory.write(gpa: 0x2000, bytes: HvPostMessageInput(connectionID: 1, messageType: 1, payload: [1]).encoded())
        for output: UInt64 in [0, 3, 0x2000, .max] {
            #expect(h.status(HvHypercallControl(callCode: .postMessage), input: 0x2000, output: output) == .invalidConnectionID)
        }
    }
}
