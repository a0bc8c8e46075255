import HyperV
import Partition
import Testing

/// VP_INDEX, RESET, VP_RUNTIME, the frequency MSRs, VP_ASSIST_PAGE and `Partition.reset()`.
@Suite struct MSRRegisterTests {
    @Test func vpIndexIsTheVPAndReadOnly() {
        let p = FakePartitionEnvironment().makePartition(.base, vpCount: 4)
        for vp: UInt32 in 0..<4 {
            #expect(p.readMSR(vp: vp, index: HvMSR.vpIndex) == .value(UInt64(vp)))
            #expect(p.writeMSR(vp: vp, index: HvMSR.vpIndex, value: UInt64(vp)) == .generalProtection)
            #expect(p.writeMSR(vp: vp, index: HvMSR.vpIndex, value: 7) == .generalProtection)
        }
    }

    @Test func resetMSRRequestsAResetOnBit0() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition(Enlightenments(features: [.reset]))
        #expect(p.readMSR(vp: 0, index: HvMSR.reset) == .value(0))
        #expect(p.writeMSR(vp: 1, index: HvMSR.reset, value: 0) == .written)
        #expect(p.writeMSR(vp: 1, index: HvMSR.reset, value: 2) == .written)
        #expect(env.events.resets.isEmpty)
        #expect(p.writeMSR(vp: 1, index: HvMSR.reset, value: 1) == .written)
        #expect(env.events.resets == [1])
        #expect(p.writeMSR(vp: 0, index: HvMSR.reset, value: 0x8000_0000_0000_0003) == .written)
        #expect(env.events.resets == [1, 0])
        #expect(p.readMSR(vp: 0, index: HvMSR.reset) == .value(0), "reads 0 after a write too")
    }

    @Test func resetMSRNeedsItsPrivilege() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition(Enlightenments(features: Enlightenments.defaultFeatures.subtracting([.reset])))
        #expect(p.writeMSR(vp: 0, index: HvMSR.reset, value: 1) == .generalProtection)
        #expect(p.readMSR(vp: 0, index: HvMSR.reset) == .generalProtection)
        #expect(env.events.resets.isEmpty)
    }

    @Test func vpRuntimeIsPerVPIn100ns() {
        let env = FakePartitionEnvironment()
        env.clock.setRuntime(vp: 0, nanoseconds: 12_345)
        env.clock.setRuntime(vp: 1, nanoseconds: 7_000_000_099)
        let p = env.makePartition(Enlightenments(features: [.runtime]))
        #expect(p.readMSR(vp: 0, index: HvMSR.vpRuntime) == .value(123))
        #expect(p.readMSR(vp: 1, index: HvMSR.vpRuntime) == .value(70_000_000))
        env.clock.setRuntime(vp: 1, nanoseconds: .max)
        #expect(p.readMSR(vp: 1, index: HvMSR.vpRuntime) == .value(UInt64.max / 100))
        #expect(p.writeMSR(vp: 0, index: HvMSR.vpRuntime, value: 1) == .generalProtection)
    }

    @Test func frequenciesAreReadOnly() {
        let env = FakePartitionEnvironment(tscFrequencyHz: 2_893_000_000)
        let p = env.makePartition(Enlightenments(features: [.frequencies]), apicFrequencyHz: 25_000_000)
        #expect(p.readMSR(vp: 0, index: HvMSR.tscFrequency) == .value(2_893_000_000))
        #expect(p.readMSR(vp: 1, index: HvMSR.apicFrequency) == .value(25_000_000))
        #expect(p.writeMSR(vp: 0, index: HvMSR.tscFrequency, value: 1) == .generalProtection)
        #expect(p.writeMSR(vp: 0, index: HvMSR.apicFrequency, value: 1) == .generalProtection)
        #expect(p.readMSR(vp: 0, index: HvMSR.tscFrequency) == .value(2_893_000_000))
    }

    @Test func apicFrequencyDefaultsToKVMsBusRate() {
        #expect(PartitionConfiguration(enlightenments: .default, vpCount: 1).apicFrequencyHz == 1_000_000_000)
        #expect(PartitionConfiguration(enlightenments: .default, vpCount: 1).hypercallPort == 0xE5)
        let p = FakePartitionEnvironment().makePartition()
        #expect(p.readMSR(vp: 0, index: HvMSR.apicFrequency) == .value(1_000_000_000))
    }

    /// Accepted without AccessIntrCtrlRegs, because Linux writes it unconditionally.
    @Test func vpAssistPageIsPerVPEvenInTheBaseInterface() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition(.base, vpCount: 2)
        #expect(Enlightenments.base.privilegesEAX & HvPrivilegeEAX.accessIntrCtrlRegs == 0)
        #expect(p.readMSR(vp: 0, index: HvMSR.vpAssistPage) == .value(0))
        #expect(p.writeMSR(vp: 0, index: HvMSR.vpAssistPage, value: 0x3000 | 1) == .written)
        #expect(p.writeMSR(vp: 1, index: HvMSR.vpAssistPage, value: 0x4000 | 1) == .written)
        #expect(p.readMSR(vp: 0, index: HvMSR.vpAssistPage) == .value(0x3000 | 1))
        #expect(p.readMSR(vp: 1, index: HvMSR.vpAssistPage) == .value(0x4000 | 1))
        // Reserved bits are stored; disabling accepts any GPA.
        #expect(p.writeMSR(vp: 0, index: HvMSR.vpAssistPage, value: 0x3000 | 0xFFE | 1) == .written)
        #expect(p.readMSR(vp: 0, index: HvMSR.vpAssistPage) == .value(0x3FFF))
        #expect(p.writeMSR(vp: 1, index: HvMSR.vpAssistPage, value: 0xFFFF_FFFF_FFFF_F000) == .written)
        #expect(env.memory.writes.isEmpty, "SynthVM never writes into the VP assist page")
    }

    @Test func vpAssistPageOutsideRAMFaultsWhenEnabled() {
        let env = FakePartitionEnvironment(memorySize: 1 << 20)
        let p = env.makePartition()
        #expect(p.writeMSR(vp: 0, index: HvMSR.vpAssistPage, value: (1 << 20) | 1) == .generalProtection)
        #expect(p.writeMSR(vp: 0, index: HvMSR.vpAssistPage, value: 0xFFFF_FFFF_FFFF_F001) == .generalProtection)
        #expect(p.readMSR(vp: 0, index: HvMSR.vpAssistPage) == .value(0))
    }

    @Test func vpAssistPageFaultsWhenOff() {
        let p = FakePartitionEnvironment().makePartition(.off)
        #expect(p.writeMSR(vp: 0, index: HvMSR.vpAssistPage, value: 0x3001) == .generalProtection)
        #expect(p.readMSR(vp: 0, index: HvMSR.vpAssistPage) == .generalProtection)
    }

    @Test func resetRestoresEveryResetValue() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition(.default, vpCount: 2)
        _ = p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: linuxGuestOsId)
        _ = p.writeMSR(vp: 0, index: HvMSR.hypercall, value: 0x5000 | 3)
        _ = p.writeMSR(vp: 0, index: HvMSR.referenceTsc, value: 0x6000 | 1)
        _ = p.writeMSR(vp: 1, index: HvMSR.vpAssistPage, value: 0x7000 | 1)
        for i in 0..<5 { _ = p.writeMSR(vp: 0, index: HvMSR.crashP(i), value: UInt64(i + 1)) }
        #expect(p.hypercallInterfaceEnabled)
        env.clock.advance(ticks: 2_500_000_000)
        let before = p.referenceTime()

        p.reset()

        for index in [HvMSR.guestOsId, HvMSR.hypercall, HvMSR.referenceTsc] {
            #expect(p.readMSR(vp: 0, index: index) == .value(0))
        }
        #expect(p.readMSR(vp: 1, index: HvMSR.vpAssistPage) == .value(0))
        for i in 0..<5 { #expect(p.readMSR(vp: 0, index: HvMSR.crashP(i)) == .value(0)) }
        #expect(!p.hypercallInterfaceEnabled)
        #expect(p.readMSR(vp: 0, index: HvMSR.crashCtl) == .value(0xC000_0000_0000_0000))
        // Reference time is the partition's, not the boot's: it keeps counting.
        #expect(p.referenceTime() >= before)
        #expect(env.events.resets.isEmpty, "reset() is the effect, not a request")
    }
}
