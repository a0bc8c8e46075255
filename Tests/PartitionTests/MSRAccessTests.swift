import HyperV
import Partition
import Testing

/// Which MSRs each feature opens, spelled out here from the TLFS independently of
/// `SyntheticMSRAccess` (VP_ASSIST_PAGE and the base MSRs are open in every enlightened partition).
private let baseMSRs: Set<UInt32> = [HvMSR.guestOsId, HvMSR.hypercall, HvMSR.vpIndex, HvMSR.vpAssistPage]
private let featureMSRs: [Enlightenments.Feature: Set<UInt32>] = [
    .runtime: [0x4000_0010],
    .time: [0x4000_0020, 0x4000_0021],
    .reset: [0x4000_0003],
    .frequencies: [0x4000_0022, 0x4000_0023],
    .crash: [0x4000_0100, 0x4000_0101, 0x4000_0102, 0x4000_0103, 0x4000_0104, 0x4000_0105],
    .relaxed: [], .ipi: [], .messages: [], .xmmInput: [],
    .synic: Set([0x4000_0080, 0x4000_0081, 0x4000_0082, 0x4000_0083, 0x4000_0084] + Array(0x4000_0090...0x4000_009F)),
    .stimer: Set(0x4000_00B0...0x4000_00B7),
    .synicPolling: [], .stimerDirect: [],
]
/// MSRs a guest may read (VP-scoped values in a fresh partition are fine to read).
private func readable(_ e: Enlightenments) -> Set<UInt32> {
    e.isOff ? [] : e.features.reduce(baseMSRs) { $0.union(featureMSRs[$1]!) }
}
/// MSRs a guest may write (the read-only ones taken out).
private let readOnly: Set<UInt32> = [HvMSR.vpIndex, HvMSR.vpRuntime, HvMSR.timeRefCount, HvMSR.tscFrequency,
                                     HvMSR.apicFrequency, HvMSR.sversion]
/// A value every writable MSR accepts: 0, except SINTx, where 0 is vector 0 unmasked (#GP) and
/// the reset value 0x10000 is the harmless write.
private func harmless(_ index: UInt32) -> UInt64 { HvMSR.sints.contains(index) ? 0x10000 : 0 }

@Suite struct MSRAccessTests {
    private func isGP(_ r: Partition.MSRResult) -> Bool { r == .generalProtection }

    /// Walks the whole trapped range, reading and writing a harmless value (0, or 0x10000 for SINTs).
    private func check(_ e: Enlightenments) {
        let env = FakePartitionEnvironment()
        let p = env.makePartition(e)
        let canRead = readable(e)
        for index in HvMSR.syntheticRange {
            let r = p.readMSR(vp: 0, index: index)
            #expect(isGP(r) == !canRead.contains(index), "read \(String(index, radix: 16)) with \(e)")
            let w = p.writeMSR(vp: 0, index: index, value: harmless(index))
            let canWrite = canRead.contains(index) && !readOnly.contains(index)
            #expect((w == .written) == canWrite, "write \(String(index, radix: 16)) with \(e)")
            #expect(isGP(w) == !canWrite)
        }
        #expect(env.events.resets.isEmpty)
        #expect(env.events.crashes.isEmpty)
    }

    @Test func offFaultsOnEverySyntheticMSR() { check(.off) }
    @Test func baseOpensOnlyTheBaseMSRs() { check(.base) }
    @Test func defaultOpensItsMSRs() { check(.default) }

    @Test(arguments: Enlightenments.Feature.allCases)
    func eachFeatureAloneOpensExactlyItsMSRs(feature: Enlightenments.Feature) {
        check(Enlightenments(features: [feature]))
    }

    @Test(arguments: Enlightenments.Feature.allCases)
    func everythingButOneFeature(feature: Enlightenments.Feature) {
        check(Enlightenments(features: Set(Enlightenments.Feature.allCases).subtracting([feature])))
    }

    /// EOI/ICR/TPR, GUEST_IDLE, SYNDBG, reenlightenment, TSC emulation and TSC invariant control
    /// #GP even with every feature on.
    @Test func unimplementedMSRsFault() {
        let p = FakePartitionEnvironment().makePartition(Enlightenments(features: Set(Enlightenments.Feature.allCases)))
        let unimplemented: [UInt32] = [HvMSR.eoi, HvMSR.icr, HvMSR.tpr, HvMSR.guestIdle, HvMSR.syndbgControl,
                                       HvMSR.syndbgStatus, HvMSR.syndbgSendBuffer, HvMSR.syndbgRecvBuffer,
                                       HvMSR.syndbgPendingBuffer, HvMSR.syndbgOptions,
                                       HvMSR.reenlightenmentControl, HvMSR.tscEmulationControl,
                                       HvMSR.tscEmulationStatus, HvMSR.tscInvariantControl]
        for index in unimplemented {
            #expect(p.readMSR(vp: 0, index: index) == .generalProtection, "\(String(index, radix: 16))")
            #expect(p.writeMSR(vp: 0, index: index, value: 0) == .generalProtection)
            #expect(p.writeMSR(vp: 0, index: index, value: 1) == .generalProtection)
        }
    }

    /// The SynIC and STIMER MSRs #GP without their features, and answer once they are on.
    @Test func synicAndTimerMSRsNeedTheirFeatures() {
        var msrs: [UInt32] = [HvMSR.scontrol, HvMSR.sversion, HvMSR.siefp, HvMSR.simp, HvMSR.eom]
        msrs += (0..<16).map { HvMSR.sint($0) }
        msrs += (0..<4).flatMap { [HvMSR.stimerConfig($0), HvMSR.stimerCount($0)] }
        let off = FakePartitionEnvironment().makePartition(
            Enlightenments(features: Enlightenments.defaultFeatures.subtracting([.synic, .stimer, .stimerDirect])))
        let on = FakePartitionEnvironment().makePartition(
            Enlightenments(features: Enlightenments.defaultFeatures.union([.synic, .stimer])))
        for index in msrs {
            #expect(off.readMSR(vp: 0, index: index) == .generalProtection, "\(String(index, radix: 16))")
            #expect(off.writeMSR(vp: 0, index: index, value: 0x10000) == .generalProtection)
            #expect(on.readMSR(vp: 0, index: index) != .generalProtection, "\(String(index, radix: 16))")
        }
    }

    @Test func msrsOutsideTheSyntheticRangeFault() {
        let p = FakePartitionEnvironment().makePartition()
        for index: UInt32 in [0, 0x10, 0x1B, 0x3FFF_FFFF, 0x4000_0200, 0x4000_FFFF, 0xC000_0080, .max] {
            #expect(p.readMSR(vp: 0, index: index) == .generalProtection)
            #expect(p.writeMSR(vp: 0, index: index, value: 0) == .generalProtection)
        }
    }

    @Test func unknownVPFaults() {
        let p = FakePartitionEnvironment().makePartition(.default, vpCount: 2)
        #expect(p.readMSR(vp: 1, index: HvMSR.vpIndex) == .value(1))
        for index in [HvMSR.vpIndex, HvMSR.guestOsId, HvMSR.vpAssistPage, HvMSR.timeRefCount] {
            #expect(p.readMSR(vp: 2, index: index) == .generalProtection)
            #expect(p.readMSR(vp: .max, index: index) == .generalProtection)
        }
        #expect(p.writeMSR(vp: 2, index: HvMSR.vpAssistPage, value: 0) == .generalProtection)
    }

    @Test func syntheticRangeIsWhatTheMonitorTraps() {
        #expect(HvMSR.syntheticRange == 0x4000_0000...0x4000_01FF)
        #expect(HvMSR.isSynthetic(0x4000_0118))
        #expect(!HvMSR.isSynthetic(0x4000_0200))
    }
}

/// The MSR numbers, checked against the TLFS / Linux hyperv-tlfs.h values.
@Suite struct MSRNumberTests {
    @Test func numbersMatchTheTLFS() {
        let table: [(UInt32, UInt32)] = [
            (HvMSR.guestOsId, 0x4000_0000), (HvMSR.hypercall, 0x4000_0001), (HvMSR.vpIndex, 0x4000_0002),
            (HvMSR.reset, 0x4000_0003), (HvMSR.vpRuntime, 0x4000_0010), (HvMSR.timeRefCount, 0x4000_0020),
            (HvMSR.referenceTsc, 0x4000_0021), (HvMSR.tscFrequency, 0x4000_0022),
            (HvMSR.apicFrequency, 0x4000_0023), (HvMSR.eoi, 0x4000_0070), (HvMSR.icr, 0x4000_0071),
            (HvMSR.tpr, 0x4000_0072), (HvMSR.vpAssistPage, 0x4000_0073), (HvMSR.scontrol, 0x4000_0080),
            (HvMSR.sversion, 0x4000_0081), (HvMSR.siefp, 0x4000_0082), (HvMSR.simp, 0x4000_0083),
            (HvMSR.eom, 0x4000_0084), (HvMSR.sint(0), 0x4000_0090), (HvMSR.sint(15), 0x4000_009F),
            (HvMSR.stimerConfig(0), 0x4000_00B0), (HvMSR.stimerCount(0), 0x4000_00B1),
            (HvMSR.stimerConfig(3), 0x4000_00B6), (HvMSR.stimerCount(3), 0x4000_00B7),
            (HvMSR.guestIdle, 0x4000_00F0), (HvMSR.crashP(0), 0x4000_0100), (HvMSR.crashP(4), 0x4000_0104),
            (HvMSR.crashCtl, 0x4000_0105), (HvMSR.reenlightenmentControl, 0x4000_0106),
            (HvMSR.tscEmulationControl, 0x4000_0107), (HvMSR.tscEmulationStatus, 0x4000_0108),
            (HvMSR.tscInvariantControl, 0x4000_0118),
        ]
        for (got, want) in table { #expect(got == want, "\(String(want, radix: 16))") }
    }

    @Test func fieldLayouts() {
        #expect(HvMSR.Hypercall.enable == 1 && HvMSR.Hypercall.locked == 2)
        #expect(HvMSR.Hypercall.reservedP == 0xFFC)
        #expect(HvMSR.Hypercall.pageAddressMask == 0xFFFF_FFFF_FFFF_F000)
        #expect(HvMSR.ReferenceTsc.enable == 1 && HvMSR.ReferenceTsc.reservedP == 0xFFE)
        #expect(HvMSR.CrashCtl.crashNotify == 1 << 63 && HvMSR.CrashCtl.crashMessage == 1 << 62)
        #expect(HvMSR.Hypercall.enable | HvMSR.Hypercall.locked | HvMSR.Hypercall.reservedP
            | HvMSR.Hypercall.pageAddressMask == .max)
        #expect(HvMSR.ReferenceTsc.enable | HvMSR.ReferenceTsc.reservedP | HvMSR.ReferenceTsc.pageAddressMask == .max)
    }

    @Test func stubPage() {
        let page = HypercallStubPage.contents(port: 0xE5)
        #expect(page.count == 4096)
        #expect(Array(page[0..<3]) == [0xE6, 0xE5, 0xC3])
        #expect(page[3...].allSatisfy { $0 == 0xCC })
    }
}
