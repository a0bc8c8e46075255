import HyperV
import Partition
import Testing

/// The SynIC MSRs: SCONTROL, SVERSION, SIEFP, SIMP, EOM, SINT0-15.
@Suite struct SynICMSRTests {
    private let synicMSRs: [UInt32] = [HvMSR.scontrol, HvMSR.sversion, HvMSR.siefp, HvMSR.simp, HvMSR.eom]
        + (0..<16).map { HvMSR.sint($0) }

    @Test func gatedByTheSynicFeature() {
        let without = SynICFixture(Enlightenments(features: Enlightenments.defaultFeatures
            .subtracting([.synic, .stimer, .stimerDirect])))
        for index in synicMSRs {
            #expect(without.p.readMSR(vp: 0, index: index) == .generalProtection)
            #expect(without.p.writeMSR(vp: 0, index: index, value: 0x10000) == .generalProtection)
        }
        let with = SynICFixture(Enlightenments(features: [.synic]))
        for index in synicMSRs { #expect(with.rdmsr(index) != nil, "\(String(index, radix: 16))") }
        #expect(with.p.readMSR(vp: 2, index: HvMSR.scontrol) == .generalProtection, "no VP 2")
    }

    @Test func resetValues() {
        let f = SynICFixture()
        for vp: UInt32 in [0, 1] {
            #expect(f.rdmsr(HvMSR.scontrol, vp: vp) == 0)
            #expect(f.rdmsr(HvMSR.sversion, vp: vp) == 1)
            #expect(f.rdmsr(HvMSR.siefp, vp: vp) == 0)
            #expect(f.rdmsr(HvMSR.simp, vp: vp) == 0)
            #expect(f.rdmsr(HvMSR.eom, vp: vp) == 0)
            for sint in 0..<16 { #expect(f.rdmsr(HvMSR.sint(sint), vp: vp) == 0x10000) }
        }
    }

    @Test func sversionIsReadOnly() {
        let f = SynICFixture()
        #expect(f.wrmsr(HvMSR.sversion, 1) == .generalProtection)
        #expect(f.wrmsr(HvMSR.sversion, 0) == .generalProtection)
        #expect(f.rdmsr(HvMSR.sversion) == 1)
    }

    @Test func scontrolStoresEveryBit() {
        let f = SynICFixture()
        for value: UInt64 in [1, 0, 0xFFFF_FFFF_FFFF_FFFE, .max, 0] {
            #expect(f.wrmsr(HvMSR.scontrol, value) == .written)
            #expect(f.rdmsr(HvMSR.scontrol) == value)
        }
        #expect(f.rdmsr(HvMSR.scontrol, vp: 1) == 0, "per VP")
    }

    @Test(arguments: [HvMSR.simp, HvMSR.siefp])
    func pageRegisterStoresAndZeroesOnEnable(index: UInt32) {
        let f = SynICFixture()
        let gpa: UInt64 = 0x40000
        f.env.memory.fill(0xAB, at: gpa - 16, count: 4096 + 32)
        // Disabled: stored as written (RsvdP bits too), page untouched.
        #expect(f.wrmsr(index, gpa | 0xFFE) == .written)
        #expect(f.rdmsr(index) == gpa | 0xFFE)
        #expect(f.env.memory.bytes(at: gpa, count: 4096).allSatisfy { $0 == 0xAB })
        // Enabled: the page is zeroed before the write returns.
        #expect(f.wrmsr(index, gpa | 0xFFF) == .written)
        #expect(f.rdmsr(index) == gpa | 0xFFF)
        #expect(f.env.memory.bytes(at: gpa, count: 4096).allSatisfy { $0 == 0 })
        #expect(f.env.memory.bytes(at: gpa - 1, count: 1) == [0xAB] && f.env.memory.bytes(at: gpa + 4096, count: 1) == [0xAB])
        // Rewriting the same enabled value (e.g. to change RsvdP bits) does not wipe the page.
        f.env.memory.fill(0xCD, at: gpa, count: 16)
        #expect(f.wrmsr(index, gpa | 1) == .written)
        #expect(f.env.memory.bytes(at: gpa, count: 16).allSatisfy { $0 == 0xCD })
        // Moving the enabled page zeroes the new one; disabling and re-enabling zeroes again.
        f.env.memory.fill(0xEE, at: gpa + 0x1000, count: 4096)
        #expect(f.wrmsr(index, (gpa + 0x1000) | 1) == .written)
        #expect(f.env.memory.bytes(at: gpa + 0x1000, count: 4096).allSatisfy { $0 == 0 })
        #expect(f.env.memory.bytes(at: gpa, count: 16).allSatisfy { $0 == 0xCD }, "the old page is left alone")
        f.env.memory.fill(0x11, at: gpa + 0x1000, count: 8)
        #expect(f.wrmsr(index, gpa + 0x1000) == .written)
        #expect(f.env.memory.bytes(at: gpa + 0x1000, count: 8).allSatisfy { $0 == 0x11 }, "disable writes nothing")
        #expect(f.wrmsr(index, (gpa + 0x1000) | 1) == .written)
        #expect(f.env.memory.bytes(at: gpa + 0x1000, count: 8).allSatisfy { $0 == 0 })
    }

    @Test(arguments: [HvMSR.simp, HvMSR.siefp])
    func pageOutsideRAMFaults(index: UInt32) {
        let f = SynICFixture()
        let end = UInt64(f.env.memory.size)
        for gpa in [end, end + 0x1000, 0xFFFF_FFFF_FFFF_F000] {
            #expect(f.wrmsr(index, gpa | 1) == .generalProtection, "\(String(gpa, radix: 16))")
        }
        #expect(f.rdmsr(index) == 0, "nothing stored on #GP")
        // Disabled, any GPA is fine: nothing is accessed.
        #expect(f.wrmsr(index, 0xFFFF_FFFF_FFFF_F000) == .written)
        #expect(f.wrmsr(index, (end - 4096) | 1) == .written, "the last page of RAM")
    }

    @Test func eomReadsZeroAndAcceptsAnyValue() {
        let f = SynICFixture()
        for value: UInt64 in [0, 1, .max] {
            #expect(f.wrmsr(HvMSR.eom, value) == .written)
            #expect(f.rdmsr(HvMSR.eom) == 0)
        }
    }

    @Test func sintVectorRules() {
        let f = SynICFixture()
        for sint in [0, 2, 15] {
            let index = HvMSR.sint(sint)
            // Unmasked with a vector below 16: #GP, nothing stored.
            for vector: UInt64 in [0, 1, 15] {
                #expect(f.wrmsr(index, vector) == .generalProtection)
                #expect(f.wrmsr(index, vector | HvMSR.Sint.autoEOI) == .generalProtection)
            }
            #expect(f.rdmsr(index) == 0x10000)
            // Valid vectors, unmasked.
            for vector: UInt64 in [16, 0xF3, 255] {
                #expect(f.wrmsr(index, vector) == .written)
                #expect(f.rdmsr(index) == vector)
            }
            // Masked: any vector, including the reset value 0x10000 (nested Hyper-V writes it).
            for value: UInt64 in [0x10000, 0x10005, 0x1000F, 0x100F3] {
                #expect(f.wrmsr(index, value) == .written)
                #expect(f.rdmsr(index) == value)
            }
        }
    }

    @Test func sintReservedAndFlagBitsAreStored() {
        let f = SynICFixture()
        // RsvdP 15:8 and 63:19, AutoEOI, Polling: stored as written, no #GP.
        for value: UInt64 in [0xAB20, 0x200F3, 0x400F3, 0xFFFF_FFFF_FFF8_FF20, 0x7_00F3] {
            #expect(f.wrmsr(HvMSR.sint(3), value) == .written)
            #expect(f.rdmsr(HvMSR.sint(3)) == value)
        }
        #expect(HvMSR.Sint.reservedP == 0xFFFF_FFFF_FFF8_FF00)
    }

    @Test func sintChangesAreReported() {
        let f = SynICFixture()
        f.wrmsr(HvMSR.sint(2), 0xF3, vp: 1)
        f.wrmsr(HvMSR.sint(2), 0x5, vp: 1) // #GP: not reported
        f.wrmsr(HvMSR.sint(5), 0x200F3)
        #expect(f.env.sints.changed == [.init(vp: 1, sint: 2, value: 0xF3), .init(vp: 0, sint: 5, value: 0x200F3)])
    }

    @Test func registersArePerVP() {
        let f = SynICFixture()
        f.enableSynIC(vp: 1, sints: [4: 0x44])
        #expect(f.rdmsr(HvMSR.simp, vp: 1) == SynICFixture.simp(1) | 1)
        #expect(f.rdmsr(HvMSR.simp, vp: 0) == 0)
        #expect(f.rdmsr(HvMSR.sint(4), vp: 1) == 0x44)
        #expect(f.rdmsr(HvMSR.sint(4), vp: 0) == 0x10000)
        let snap = f.p.synicSnapshot(vp: 1)
        #expect(snap?.scontrol == 1 && snap?.siefp == SynICFixture.siefp(1) | 1 && snap?.sints[4] == 0x44)
        #expect(f.p.synicSnapshot(vp: 2) == nil)
    }

    @Test func partitionResetRestoresTheSynIC() {
        let f = SynICFixture()
        f.enableSynIC(sints: [2: 0xF3, 7: 0x10070])
        f.wrmsr(HvMSR.scontrol, 1, vp: 1)
        f.wrmsr(HvMSR.sint(2), 0xFF)
        // The first message takes the slot, the second waits behind it.
        #expect(f.p.postMessage(SynICFixture.vmbus(1), vp: 0, sint: 2) == .success)
        #expect(f.p.postMessage(SynICFixture.vmbus(2), vp: 0, sint: 2) == .success)
        #expect(f.p.synicSnapshot(vp: 0)?.queuedMessages[2] == 1)
        let changesBefore = f.env.sints.changed.count
        f.p.reset()
        for vp: UInt32 in [0, 1] {
            #expect(f.rdmsr(HvMSR.scontrol, vp: vp) == 0)
            #expect(f.rdmsr(HvMSR.simp, vp: vp) == 0 && f.rdmsr(HvMSR.siefp, vp: vp) == 0)
            for sint in 0..<16 { #expect(f.rdmsr(HvMSR.sint(sint), vp: vp) == 0x10000) }
        }
        #expect(f.p.synicSnapshot(vp: 0)?.queuedMessages == [Int](repeating: 0, count: 16))
        // SINT2 (0xFF) and SINT7 (0x10070) went back to 0x10000 and the routes are told.
        #expect(Array(f.env.sints.changed[changesBefore...])
            == [.init(vp: 0, sint: 2, value: 0x10000), .init(vp: 0, sint: 7, value: 0x10000)])
    }
}
