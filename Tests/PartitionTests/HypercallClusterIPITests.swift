import HyperV
import Partition
import Testing

/// HvCallSendSyntheticClusterIpi and HvCallSendSyntheticClusterIpiEx.
@Suite struct HypercallClusterIPITests {
    let fastIPI = HvHypercallControl(callCode: .sendSyntheticClusterIpi, fast: true)
    let slowIPI = HvHypercallControl(callCode: .sendSyntheticClusterIpi)

    private func sent(_ vps: [UInt32], _ vector: UInt8) -> [FakeInterrupts.Sent] {
        vps.map { FakeInterrupts.Sent(vp: $0, vector: vector) }
    }

    private func ex(banks: UInt16, fast: Bool = false) -> HvHypercallControl {
        HvHypercallControl(callCode: .sendSyntheticClusterIpiEx, fast: fast, variableHeaderSize: banks)
    }

    // MARK: Access

    @Test func needsTheClusterIpiHint() {
        var h = HcHarness()
        h.hintsEAX = HvHintEAX.exProcessorMasks
        #expect(h.status(fastIPI, input: hcVectorWord(0x30), output: 1) == .accessDenied)
        h.store([hcVectorWord(0x30), 1, 0], at: 0x1000)
        #expect(h.status(ex(banks: 0), input: 0x1000) == .accessDenied)
        #expect(h.interrupts.sent.isEmpty)
    }

    @Test func exNeedsTheExProcessorMasksHintToo() {
        var h = HcHarness()
        h.hintsEAX = HvHintEAX.syntheticClusterIpi
        h.store([hcVectorWord(0x30), 1, 0], at: 0x1000)
        #expect(h.status(ex(banks: 0), input: 0x1000) == .accessDenied)
        #expect(h.status(fastIPI, input: hcVectorWord(0x30), output: 1) == .success, "the plain call is fine")
    }

    // MARK: HvCallSendSyntheticClusterIpi

    @Test func fastIPIAsLinuxSendsIt() {
        var h = HcHarness()
        h.vp = 2
        #expect(h.result(fastIPI, input: 0xFC, output: 0b1011) == HvHypercallResult(status: .success))
        #expect(h.interrupts.sent == sent([0, 1, 3], 0xFC), "self included when targeted")
    }

    @Test func slowIPIReadsTheSameLayoutFromMemory() {
        let h = HcHarness()
        h.store([hcVectorWord(0x41), 0b0110], at: 0x8000)
        #expect(h.status(slowIPI, input: 0x8000, output: 0) == .success)
        #expect(h.interrupts.sent == sent([1, 2], 0x41))
    }

    @Test func vectorMustBe0x10Through0xFF() {
        let h = HcHarness()
        for vector: UInt32 in [0, 1, 0x0F, 0x100, 0x1_0030, .max] {
            #expect(h.status(fastIPI, input: hcVectorWord(vector), output: 1) == .invalidParameter, "vector \(vector)")
            h.store([hcVectorWord(vector), 1], at: 0x1000)
            #expect(h.status(slowIPI, input: 0x1000) == .invalidParameter, "vector \(vector)")
        }
        #expect(h.interrupts.sent.isEmpty)
        #expect(h.status(fastIPI, input: hcVectorWord(0x10), output: 1) == .success)
        #expect(h.status(fastIPI, input: hcVectorWord(0xFF), output: 1) == .success)
        #expect(h.interrupts.sent == sent([0], 0x10) + sent([0], 0xFF))
    }

    @Test func targetVtlAndPaddingMustBeZero() {
        let h = HcHarness()
        for reserved: UInt32 in [1, 0x10, 0x100, 0x8000_0000] {
            #expect(h.status(fastIPI, input: hcVectorWord(0x30, reserved: reserved), output: 1) == .invalidHypercallInput)
            h.store([hcVectorWord(0x30, reserved: reserved), 1], at: 0x1000)
            #expect(h.status(slowIPI, input: 0x1000) == .invalidHypercallInput)
        }
        #expect(h.interrupts.sent.isEmpty)
    }

    @Test func targetsBeyondTheVPCountAreIgnored() {
        var h = HcHarness()
        h.vpCount = 4
        #expect(h.status(fastIPI, input: 0x30, output: 1 << 63 | 1 << 4 | 1 << 2) == .success)
        #expect(h.interrupts.sent == sent([2], 0x30))
        #expect(h.status(fastIPI, input: 0x31, output: 0xFFFF_FFFF_FFFF_FFF0) == .success)
        #expect(h.interrupts.sent == sent([2], 0x30), "nothing in range, nothing sent")
    }

    @Test func emptyMaskSucceedsAndSendsNothing() {
        let h = HcHarness()
        #expect(h.status(fastIPI, input: 0x30, output: 0) == .success)
        #expect(h.interrupts.sent.isEmpty)
    }

    @Test func sixtyFourVPs() {
        var h = HcHarness()
        h.vpCount = 64
        #expect(h.status(fastIPI, input: 0xEF, output: .max) == .success)
        #expect(h.interrupts.sent == sent(Array(0..<64), 0xEF))
    }

    // MARK: HvCallSendSyntheticClusterIpiEx

    @Test func exSparseBanksAsLinuxSendsThem() {
        var h = HcHarness()
        h.vpCount = 200
        // Linux: hv_do_rep_hypercall(HVCALL_SEND_IPI_EX, 0, nr_bank, ...), memory-based.
        h.store([hcVectorWord(0xF3), 0, 0b111, 0x21, 0, 0x4], at: 0x4000)
        #expect(h.result(ex(banks: 3), input: 0x4000) == HvHypercallResult(status: .success))
        #expect(h.interrupts.sent == sent([0, 5, 130], 0xF3))
    }

    @Test func exTheTLFSExample() {
        var h = HcHarness()
        h.vpCount = 200
        h.store([hcVectorWord(0x30), 0, 0x5, 0x21, 0x04], at: 0x4000)
        #expect(h.status(ex(banks: 2), input: 0x4000) == .success)
        #expect(h.interrupts.sent == sent([0, 5, 130], 0x30))
    }

    @Test func exAllFormat() {
        var h = HcHarness()
        h.vpCount = 3
        h.store([hcVectorWord(0x30), 1, 0], at: 0x4000)
        #expect(h.status(ex(banks: 0), input: 0x4000) == .success)
        #expect(h.interrupts.sent == sent([0, 1, 2], 0x30))
    }

    @Test func exAllFormatWithBanksStillNeedsTheCountToMatch() {
        let h = HcHarness()
        h.store([hcVectorWord(0x30), 1, 0b1, 0], at: 0x4000)
        #expect(h.status(ex(banks: 0), input: 0x4000) == .invalidHypercallInput)
        #expect(h.status(ex(banks: 1), input: 0x4000) == .success)
        #expect(h.interrupts.sent == sent([0, 1, 2, 3], 0x30))
    }

    @Test func exBankCountMismatchIsInvalidHypercallInput() {
        var h = HcHarness()
        h.vpCount = 200
        h.store([hcVectorWord(0x30), 0, 0b101, 1, 1, 1], at: 0x4000)
        #expect(h.status(ex(banks: 1), input: 0x4000) == .invalidHypercallInput)
        #expect(h.status(ex(banks: 3), input: 0x4000) == .invalidHypercallInput)
        #expect(h.interrupts.sent.isEmpty)
    }

    @Test func exHugeVariableHeaderIsInvalidHypercallInputNotAlignment() {
        let h = HcHarness()
        for banks: UInt16 in [65, 0x1FF, 0x200, 0x3FF] {
            #expect(h.status(ex(banks: banks), input: 0x4000) == .invalidHypercallInput, "\(banks) banks")
        }
    }

    @Test func exSixtyFourBanksFitInOnePage() {
        var h = HcHarness()
        h.vpCount = 4096
        h.store([hcVectorWord(0x30), 0, .max] + [UInt64](repeating: 1, count: 64), at: 0x5000)
        #expect(h.status(ex(banks: 64), input: 0x5000) == .success)
        #expect(h.interrupts.sent == sent((0..<64).map { UInt32($0 * 64) }, 0x30))
        // The same set 8 bytes before the page end crosses it.
        #expect(h.status(ex(banks: 64), input: 0x5FF8) == .invalidAlignment)
    }

    @Test func exUnknownFormatIsInvalidParameter() {
        let h = HcHarness()
        h.store([hcVectorWord(0x30), 2, 0], at: 0x4000)
        #expect(h.status(ex(banks: 0), input: 0x4000) == .invalidParameter)
        #expect(h.interrupts.sent.isEmpty)
    }

    @Test func exBadVectorOrReservedWord() {
        let h = HcHarness()
        h.store([hcVectorWord(0x0F), 1, 0], at: 0x4000)
        #expect(h.status(ex(banks: 0), input: 0x4000) == .invalidParameter)
        h.store([hcVectorWord(0x30, reserved: 1), 1, 0], at: 0x4000)
        #expect(h.status(ex(banks: 0), input: 0x4000) == .invalidHypercallInput)
        h.store([hcVectorWord(0x100), 0, 0], at: 0x4000)
        #expect(h.status(ex(banks: 0), input: 0x4000) == .invalidParameter, "even with an empty set")
        #expect(h.interrupts.sent.isEmpty)
    }

    @Test func exEmptySparseSetSucceeds() {
        let h = HcHarness()
        h.store([hcVectorWord(0x30), 0, 0], at: 0x4000)
        #expect(h.status(ex(banks: 0), input: 0x4000) == .success)
        h.store([hcVectorWord(0x30), 0, 0b1, 0], at: 0x4000)
        #expect(h.status(ex(banks: 1), input: 0x4000) == .success, "a present bank may be empty")
        #expect(h.interrupts.sent.isEmpty)
    }

    @Test func exBanksBeyondTheVPCountAreIgnored() {
        var h = HcHarness()
        h.vpCount = 65
        h.store([hcVectorWord(0x30), 0, 0b1011, 0x1, 0x3, 0xFF], at: 0x4000)
        #expect(h.status(ex(banks: 3), input: 0x4000) == .success)
        #expect(h.interrupts.sent == sent([0, 64], 0x30))
    }

    @Test func exFastWithXMMInput() {
        var h = HcHarness()
        h.vpCount = 200
        h.featuresEDX = HvFeatureEDX.xmmHypercallInput
        // RDX = vector word, R8 = format, XMM0 low = ValidBanksMask, then the banks.
        let xmm: [UInt64] = [0b101, 0x21, 0x04] + [UInt64](repeating: 0xDEAD, count: 9)
        #expect(h.status(ex(banks: 2, fast: true), input: hcVectorWord(0x30), output: 0, xmm: xmm) == .success)
        #expect(h.interrupts.sent == sent([0, 5, 130], 0x30))
    }

    @Test func exFastAllFormat() {
        var h = HcHarness()
        h.vpCount = 2
        h.featuresEDX = HvFeatureEDX.xmmHypercallInput
        #expect(h.status(ex(banks: 0, fast: true), input: 0xFE, output: 1, xmm: [0, 0]) == .success)
        #expect(h.interrupts.sent == sent([0, 1], 0xFE))
    }

    @Test func exFastElevenBanksIsTheLimit() {
        var h = HcHarness()
        h.vpCount = 4096
        h.featuresEDX = HvFeatureEDX.xmmHypercallInput
        let mask: UInt64 = (1 << 11) - 1
        let xmm = [mask] + [UInt64](repeating: 1, count: 11)
        #expect(h.status(ex(banks: 11, fast: true), input: 0x30, output: 0, xmm: xmm) == .success)
        #expect(h.interrupts.sent == sent((0..<11).map { UInt32($0 * 64) }, 0x30))
    }

    @Test func exFastWithoutXMMFeatureRaisesUD() {
        let h = HcHarness()
        #expect(h.call(ex(banks: 0, fast: true), input: 0x30, output: 1, xmm: [0, 0]) == .invalidOpcode)
    }

    @Test func exMalformedFastSet() {
        var h = HcHarness()
        h.featuresEDX = HvFeatureEDX.xmmHypercallInput
        let xmm = [UInt64](repeating: 0, count: 12)
        #expect(h.status(ex(banks: 1, fast: true), input: 0x30, output: 0, xmm: xmm) == .invalidHypercallInput, "mask has no bits")
        #expect(h.status(ex(banks: 0, fast: true), input: 0x30, output: 7, xmm: xmm) == .invalidParameter, "format 7")
    }

    @Test func exIsNotARepCall() {
        let h = HcHarness()
        h.store([hcVectorWord(0x30), 1, 0], at: 0x4000)
        let control = HvHypercallControl(callCode: .sendSyntheticClusterIpiEx, repCount: 1)
        #expect(h.status(control, input: 0x4000) == .invalidHypercallInput)
        #expect(h.interrupts.sent.isEmpty)
    }

    @Test func worksIn32BitMode() {
        var h = HcHarness()
        h.mode = .protected32
        h.store([hcVectorWord(0x30), 0b10], at: 0x1000)
        #expect(h.status(slowIPI, input: 0x1000) == .success)
        #expect(h.status(fastIPI, input: 0x31, output: 0b1) == .success)
        #expect(h.interrupts.sent == sent([1], 0x30) + sent([0], 0x31))
    }
}
