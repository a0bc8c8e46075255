import HyperV
import Partition
import Testing

/// The expected bits of each feature, spelled out here independently of
/// `Enlightenments.Feature.cpuidBits` (TLFS bit numbers): (privileges EAX, EBX, features EDX, hints EAX).
private let expectedBits: [Enlightenments.Feature: (UInt32, UInt32, UInt32, UInt32)] = [
    .runtime: (1 << 0, 0, 0, 0),
    .time: (1 << 1 | 1 << 9, 0, 0, 0),
    .reset: (1 << 7, 0, 0, 0),
    .frequencies: (1 << 11, 0, 1 << 8, 0),
    .crash: (0, 0, 1 << 10, 0),
    .relaxed: (0, 0, 0, 1 << 5),
    .ipi: (0, 0, 0, 1 << 10 | 1 << 11),
    .messages: (0, 1 << 4 | 1 << 5, 0, 0),
    .xmmInput: (0, 0, 1 << 4, 0),
    .synic: (1 << 2, 0, 0, 0),
    .synicPolling: (0, 0, 1 << 17, 0),
    .stimer: (1 << 3, 0, 0, 0),
    .stimerDirect: (0, 0, 1 << 19, 0),
]

private func words(_ e: Enlightenments) -> (UInt32, UInt32, UInt32, UInt32) {
    (e.privilegesEAX, e.privilegesEBX, e.featuresEDX, e.hintsEAX)
}

private func allSubsets() -> [Set<Enlightenments.Feature>] {
    let all = Enlightenments.Feature.allCases
    return (0..<(1 << all.count)).map { mask in
        Set(all.enumerated().filter { mask & (1 << $0.offset) != 0 }.map(\.element))
    }
}

@Suite struct CPUIDBitsTests {
    @Test func offAdvertisesNothing() {
        #expect(words(.off) == (0, 0, 0, 0))
        #expect(HvCPUIDLeaves.leaves(for: .off, maxVPs: 4).isEmpty)
    }

    @Test func baseInterface() {
        // Hypercall MSRs (5) and VP index (6); HypercallMsrLock (EDX 18); deprecate AutoEOI (hint 9).
        #expect(words(.base) == (0x60, 0, 0x4_0000, 0x200))
    }

    /// The SynIC and timers (direct mode too) are in `default`; polling mode is not.
    @Test func synicAndTimersAreInDefault() {
        let bits = HvPrivilegeEAX.accessSynicRegs | HvPrivilegeEAX.accessSyntheticTimerRegs
        #expect(Enlightenments.default.privilegesEAX & bits == bits)
        #expect(Enlightenments.default.featuresEDX & HvFeatureEDX.directSyntheticTimers != 0)
        #expect(Enlightenments.default.featuresEDX & HvFeatureEDX.sintPollingMode == 0)
    }

    @Test func defaultSet() {
        // EAX: 0, 1, 2, 3, 5, 6, 7, 9, 11. EBX: 4, 5. EDX: 8, 10, 18, 19. Hints: 5, 9, 10, 11.
        #expect(words(.default) == (0xAEF, 0x30, 0xC_0500, 0xE20))
    }

    @Test func everyFeatureMatchesTheTLFSBits() {
        for f in Enlightenments.Feature.allCases {
            let b = f.cpuidBits
            let e = expectedBits[f]!
            #expect((b.privilegesEAX, b.privilegesEBX, b.featuresEDX, b.hintsEAX) == e, "\(f)")
        }
    }

    /// Adding one feature to any set changes exactly that feature's bits, and nothing else.
    @Test func eachFeatureTogglesExactlyItsBits() {
        for set in allSubsets() {
            let with = Enlightenments(features: set)
            for f in Enlightenments.Feature.allCases where !set.contains(f) {
                let more = Enlightenments(features: set.union([f]))
                let e = expectedBits[f]!
                #expect(more.privilegesEAX ^ with.privilegesEAX == e.0)
                #expect(more.privilegesEBX ^ with.privilegesEBX == e.1)
                #expect(more.featuresEDX ^ with.featuresEDX == e.2)
                #expect(more.hintsEAX ^ with.hintsEAX == e.3)
            }
        }
    }

    @Test func featureBitsAreDisjointFromEachOtherAndFromBase() {
        let all = Enlightenments.Feature.allCases
        for (i, a) in all.enumerated() {
            #expect(!a.cpuidBits.intersects(Enlightenments.baseBits), "\(a)")
            for b in all[(i + 1)...] { #expect(!a.cpuidBits.intersects(b.cpuidBits), "\(a) \(b)") }
        }
    }

    /// Bits SynthVM must never set, whatever the operator asks for.
    @Test func forbiddenBitsStayClear() {
        let forbiddenHints: UInt32 = HvHintEAX.localTlbFlush | HvHintEAX.remoteTlbFlush | HvHintEAX.resetMsr
            | HvHintEAX.apicMsrs | HvHintEAX.addressSpaceSwitch | HvHintEAX.enlightenedVmcs | HvHintEAX.nested
        // [REQ]: EBX bits 0, 1, 2, 3, 6, 8, 12, 13 must be clear; 22 (isolation) too.
        let forbiddenEBX: UInt32 = 1 << 0 | 1 << 1 | 1 << 2 | 1 << 3 | 1 << 6 | 1 << 8 | 1 << 12 | 1 << 13 | 1 << 22
        // Not implemented: APIC MSRs, stats, guest idle, debug, reenlightenment.
        let unimplementedEAX: UInt32 = HvPrivilegeEAX.accessIntrCtrlRegs | HvPrivilegeEAX.accessStatsReg
            | HvPrivilegeEAX.accessGuestIdleReg | HvPrivilegeEAX.accessDebugRegs
            | HvPrivilegeEAX.accessReenlightenmentControls
        let unimplementedEDX: UInt32 = HvFeatureEDX.guestIdleState | HvFeatureEDX.xmmHypercallOutput
            | HvFeatureEDX.guestDebugging
        for set in allSubsets() {
            let e = Enlightenments(features: set)
            #expect(e.hintsEAX & forbiddenHints == 0)
            #expect(e.privilegesEBX & forbiddenEBX == 0)
            #expect(e.privilegesEAX & unimplementedEAX == 0)
            #expect(e.featuresEDX & unimplementedEDX == 0)
        }
    }

    /// Every MSR privilege SynthVM can advertise names at least one MSR it implements.
    @Test func everyAdvertisedMSRPrivilegeHasAnImplementedMSR() {
        let everything = Enlightenments(features: Set(Enlightenments.Feature.allCases))
        for bit in 0..<32 {
            let mask = UInt32(1) << UInt32(bit)
            guard everything.privilegesEAX & mask != 0 else { continue }
            let implemented = HvMSR.syntheticRange.contains { SyntheticMSRAccess.of($0) == .privilege(mask) }
            #expect(implemented, "EAX bit \(bit)")
        }
        #expect(HvMSR.syntheticRange.contains { SyntheticMSRAccess.of($0) == .feature(HvFeatureEDX.guestCrashMsrs) })
    }
}

@Suite struct CPUIDLeavesTests {
    private func leaf(_ leaves: [HvCPUIDLeaf], _ function: UInt32) throws -> HvCPUIDLeaf {
        try #require(leaves.first { $0.function == function })
    }

    @Test func leafRangeAndOrder() {
        let leaves = HvCPUIDLeaves.leaves(for: .default, maxVPs: 4)
        #expect(leaves.map(\.function) == Array(0x4000_0000...0x4000_000A))
    }

    @Test func vendorAndInterface() throws {
        let leaves = HvCPUIDLeaves.leaves(for: .base, maxVPs: 1)
        let l0 = try leaf(leaves, 0x4000_0000)
        #expect(l0.eax == 0x4000_000A)
        let vendor = [l0.ebx, l0.ecx, l0.edx].flatMap { w in (0..<4).map { UInt8(truncatingIfNeeded: w >> (8 * $0)) } }
        #expect(String(decoding: vendor, as: UTF8.self) == "Microsoft Hv")
        let l1 = try leaf(leaves, 0x4000_0001)
        let sig = (0..<4).map { UInt8(truncatingIfNeeded: l1.eax >> (8 * $0)) }
        #expect(String(decoding: sig, as: UTF8.self) == "Hv#1")
        #expect((l1.ebx, l1.ecx, l1.edx) == (0, 0, 0))
    }

    @Test func versionLeaf() throws {
        let l2 = try leaf(HvCPUIDLeaves.leaves(for: .default, maxVPs: 1), 0x4000_0002)
        #expect(l2 == HvCPUIDLeaf(function: 0x4000_0002, eax: 1, ebx: 0 << 16 | 1, ecx: 0, edx: 0))
    }

    @Test(arguments: ["off", "base", "default", "time,crash", "default,xmm-input", "messages,ipi"])
    func featureAndHintLeavesAreTheDerivedBits(text: String) throws {
        let e = try Enlightenments.parse(text)
        let leaves = HvCPUIDLeaves.leaves(for: e, maxVPs: 8)
        if e.isOff {
            #expect(leaves.isEmpty)
            return
        }
        #expect(try leaf(leaves, 0x4000_0003)
            == HvCPUIDLeaf(function: 0x4000_0003, eax: e.privilegesEAX, ebx: e.privilegesEBX, ecx: 0, edx: e.featuresEDX))
        #expect(try leaf(leaves, 0x4000_0004)
            == HvCPUIDLeaf(function: 0x4000_0004, eax: e.hintsEAX, ebx: 0xFFFF_FFFF, ecx: 0, edx: 0))
    }

    @Test func limitsLeaf() throws {
        let l5 = try leaf(HvCPUIDLeaves.leaves(for: .default, maxVPs: 6), 0x4000_0005)
        #expect(l5 == HvCPUIDLeaf(function: 0x4000_0005, eax: 6, ebx: 6, ecx: 0, edx: 0))
    }

    @Test func leaves6ThroughAAreZero() {
        for l in HvCPUIDLeaves.leaves(for: .default, maxVPs: 2) where l.function >= 0x4000_0006 {
            #expect((l.eax, l.ebx, l.ecx, l.edx) == (0, 0, 0, 0))
        }
    }

    @Test func partitionPublishesTheLeavesOfItsConfiguration() {
        let env = FakePartitionEnvironment()
        #expect(env.makePartition(.default, vpCount: 3).cpuidLeaves == HvCPUIDLeaves.leaves(for: .default, maxVPs: 3))
        #expect(env.makePartition(.off, vpCount: 3).cpuidLeaves.isEmpty)
    }
}
