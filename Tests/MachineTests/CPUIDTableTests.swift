import Testing

@testable import Machine

private let indexed = CPUIDEntry.flagSignificantIndex

/// Shaped like KVM_GET_SUPPORTED_CPUID on a recent Intel host, with every bit the table must
/// remove set, so each rule is visible.
private let hostSupported: [CPUIDEntry] = [
    CPUIDEntry(function: 0x0, eax: 0x1F, ebx: 0x756E_6547, ecx: 0x6C65_746E, edx: 0x4965_6E69),  // GenuineIntel
    CPUIDEntry(function: 0x1, eax: 0x0009_06EA, ebx: 0x0710_0800, ecx: 0x7FFE_FBFF, edx: 0xFFEB_FBFF),
    CPUIDEntry(function: 0x2, eax: 0x0076_0301, ebx: 0x00F0_B6FF, ecx: 0, edx: 0x00C3_0000),
    CPUIDEntry(function: 0x4, index: 0, flags: indexed, eax: 0x1C00_4121, ebx: 0x01C0_003F, ecx: 0x3F, edx: 0),
    CPUIDEntry(function: 0x4, index: 1, flags: indexed, eax: 0x1C00_4122, ebx: 0x01C0_003F, ecx: 0x3F, edx: 0),
    CPUIDEntry(function: 0x4, index: 2, flags: indexed, eax: 0x1C00_4143, ebx: 0x00C0_003F, ecx: 0x3FF, edx: 0),
    CPUIDEntry(function: 0x4, index: 3, flags: indexed, eax: 0x1C03_C163, ebx: 0x03C0_003F, ecx: 0x2FFF, edx: 6),
    CPUIDEntry(function: 0x4, index: 4, flags: indexed, eax: 0, ebx: 0, ecx: 0, edx: 0),
    CPUIDEntry(function: 0x5, eax: 0x40, ebx: 0x40, ecx: 0x3, edx: 0x0011_2120),
    CPUIDEntry(function: 0x6, eax: 0x0000_27F7, ebx: 0x2, ecx: 0x9, edx: 0),
    CPUIDEntry(function: 0x7, index: 0, flags: indexed, eax: 1, ebx: 0x029C_6FBF, ecx: 0x4040_0024, edx: 0xBC00_0400),
    CPUIDEntry(function: 0x7, index: 1, flags: indexed, eax: 0x0000_0010, ebx: 0, ecx: 0xFFFF_FFFF, edx: 0),
    CPUIDEntry(function: 0xA, eax: 0x0730_0404, ebx: 0, ecx: 0, edx: 0x0000_0603),
    CPUIDEntry(function: 0xB, index: 0, flags: indexed, eax: 1, ebx: 2, ecx: 0x100, edx: 0x0E),
    CPUIDEntry(function: 0xB, index: 1, flags: indexed, eax: 4, ebx: 16, ecx: 0x201, edx: 0x0E),
    CPUIDEntry(function: 0xD, index: 0, flags: indexed, eax: 0x07, ebx: 0x340, ecx: 0x340, edx: 0),
    CPUIDEntry(function: 0xD, index: 1, flags: indexed, eax: 0x0F, ebx: 0, ecx: 0, edx: 0),
    CPUIDEntry(function: 0x12, index: 0, flags: indexed, eax: 0x3, ebx: 0, ecx: 0, edx: 0x241F),
    CPUIDEntry(function: 0x12, index: 1, flags: indexed, eax: 0x36, ebx: 0, ecx: 0x1F, edx: 0),
    CPUIDEntry(function: 0x1F, index: 0, flags: indexed, eax: 1, ebx: 2, ecx: 0x100, edx: 0x0E),
    CPUIDEntry(function: 0x1F, index: 1, flags: indexed, eax: 4, ebx: 16, ecx: 0x201, edx: 0x0E),
    CPUIDEntry(function: 0x4000_0000, eax: 0x4000_0001, ebx: 0x4B4D_564B, ecx: 0x564B_4D56, edx: 0x4D),  // KVMKVMKVM
    CPUIDEntry(function: 0x4000_0001, eax: 0x0100_7AFB, ebx: 0, ecx: 0, edx: 0),
    CPUIDEntry(function: 0x4FFF_FFFF, eax: 1),
    CPUIDEntry(function: 0x5000_0000, eax: 2),  // just outside the hypervisor range: kept
    CPUIDEntry(function: 0x8000_0000, eax: 0x8000_0008),
    CPUIDEntry(function: 0x8000_0001, eax: 0, ebx: 0, ecx: 0x121, edx: 0x2C10_0800),
    CPUIDEntry(function: 0x8000_0008, eax: 0x3027, ebx: 0, ecx: 0, edx: 0),
]

private func entry(_ table: [CPUIDEntry], _ function: UInt32, _ index: UInt32 = 0) -> CPUIDEntry? {
    table.first { $0.function == function && $0.index == index }
}

@Suite struct CPUIDTableTests {
    let table = CPUIDTable.build(supported: hostSupported, vcpuIndex: 3, vcpuCount: 4)

    @Test func dropsHypervisorAndSGXLeaves() {
        #expect(!table.contains { (0x4000_0000...0x4FFF_FFFF).contains($0.function) })
        #expect(!table.contains { $0.function == 0x12 })
        #expect(entry(table, 0x5000_0000) != nil)
        #expect(table.count == hostSupported.count - 5)
    }

    @Test func keepsOtherLeavesUnchangedAndInOrder() throws {
        let touched: Set<UInt32> = [0x1, 0x4, 0x5, 0x6, 0x7, 0xA, 0xB, 0x1F]
        let expected = hostSupported.filter { !(0x4000_0000...0x4FFF_FFFF).contains($0.function) && $0.function != 0x12 }
        #expect(table.map { "\($0.function).\($0.index)" } == expected.map { "\($0.function).\($0.index)" })
        for (built, host) in zip(table, expected) {
            #expect(built.flags == host.flags)
            if !touched.contains(host.function) || (host.function == 0x7 && host.index != 0) {
                #expect(built == host)
            }
        }
    }

    @Test func leaf1() throws {
        let leaf = try #require(entry(table, 0x1))
        let host = hostSupported[1]
        #expect(leaf.eax == host.eax)
        #expect(leaf.ebx == 0x0304_0800)  // APIC ID 3, 4 logical processors, CLFLUSH size/brand kept
        #expect(leaf.ecx & (1 << 31) != 0)
        for bit: UInt32 in [2, 3, 4, 5, 6, 7, 8, 14, 15, 18] {
            #expect(leaf.ecx & (1 << bit) == 0, "ECX bit \(bit)")
        }
        for bit: UInt32 in [21, 22, 29, 31] {
            #expect(leaf.edx & (1 << bit) == 0, "EDX bit \(bit)")
        }
        // Everything else passes through.
        let clearedECX: UInt32 = 0x0004_C1FC
        let clearedEDX: UInt32 = 0xA060_0000
        #expect(leaf.ecx == (host.ecx & ~clearedECX) | 0x8000_0000)
        #expect(leaf.edx == host.edx & ~clearedEDX)
    }

    @Test func leaf1TopologyLimits() throws {
        let single = try #require(entry(CPUIDTable.build(supported: hostSupported, vcpuIndex: 0, vcpuCount: 1), 0x1))
        #expect(single.ebx >> 16 == 0x0001)
        #expect(single.edx & (1 << 28) == 0)  // HTT only with more than one logical processor
        let zero = try #require(entry(CPUIDTable.build(supported: hostSupported, vcpuIndex: 0, vcpuCount: 0), 0x1))
        #expect(zero.ebx >> 16 == 0x0001)  // a count of 0 is treated as 1
        let many = try #require(entry(CPUIDTable.build(supported: hostSupported, vcpuIndex: 300, vcpuCount: 300), 0x1))
        #expect(many.ebx >> 24 == 300 & 0xFF)  // 8-bit field; x2APIC leaves carry the full ID
        #expect((many.ebx >> 16) & 0xFF == 0xFF)
        #expect(many.edx & (1 << 28) != 0)
        let bigX2 = CPUIDTable.build(supported: hostSupported, vcpuIndex: 300, vcpuCount: 300)
        #expect(entry(bigX2, 0xB, 1)?.edx == 300)
    }

    @Test func powerAndPerformanceLeaves() throws {
        #expect(entry(table, 0x5) == CPUIDEntry(function: 0x5))
        #expect(entry(table, 0x6) == CPUIDEntry(function: 0x6, eax: 0x4))
        #expect(entry(table, 0xA) == CPUIDEntry(function: 0xA))
        let noARAT = [CPUIDEntry(function: 0x6, eax: 0x0000_27F3, ebx: 1, ecx: 1, edx: 1)]
        #expect(CPUIDTable.build(supported: noARAT, vcpuIndex: 0, vcpuCount: 1) == [CPUIDEntry(function: 0x6)])
    }

    @Test func leaf7() throws {
        let leaf = try #require(entry(table, 0x7, 0))
        #expect(leaf.ebx == 0x029C_6FBF & ~UInt32(0x4))
        #expect(leaf.ecx == 0x4040_0024 & ~UInt32(0x4000_0020))
        #expect(leaf.eax == 1 && leaf.edx == 0xBC00_0400)
        #expect(entry(table, 0x7, 1) == hostSupported[11])  // subleaf 1 is untouched
    }

    @Test func topologyLeavesCarryX2APICID() {
        for function: UInt32 in [0xB, 0x1F] {
            for index: UInt32 in [0, 1] {
                let built = entry(table, function, index)
                let host = entry(hostSupported, function, index)
                #expect(built?.edx == 3)
                #expect(built?.eax == host?.eax && built?.ebx == host?.ebx && built?.ecx == host?.ecx)
            }
        }
    }

    @Test func cacheLeafCoreCount() {
        for index: UInt32 in 0...3 {
            let built = entry(table, 0x4, index)
            let host = entry(hostSupported, 0x4, index)
            #expect(built?.eax == (host!.eax & 0x03FF_FFFF) | (3 << 26))
            #expect(built?.ebx == host?.ebx && built?.ecx == host?.ecx && built?.edx == host?.edx)
        }
        #expect(entry(table, 0x4, 4) == hostSupported[7])  // the null subleaf stays all zero

        let one = CPUIDTable.build(supported: hostSupported, vcpuIndex: 0, vcpuCount: 1)
        #expect(entry(one, 0x4, 0)?.eax == 0x0000_4121)
        let hundred = CPUIDTable.build(supported: hostSupported, vcpuIndex: 0, vcpuCount: 100)
        #expect(entry(hundred, 0x4, 0)?.eax == 0xFC00_4121)  // 63 << 26
    }

    @Test func emptyInput() {
        #expect(CPUIDTable.build(supported: [], vcpuIndex: 0, vcpuCount: 1).isEmpty)
    }

    @Test func describeDifferencesListsOverriddenRegisters() {
        let expected = CPUIDTable.build(supported: hostSupported, vcpuIndex: 0, vcpuCount: 2)
        #expect(CPUIDTable.describeDifferences(expected: expected, observed: expected).isEmpty)

        var observed = expected
        // The host forces a bit on in leaf 1 ECX and rewrites leaf 0xD.1 EAX and EBX.
        let i1 = observed.firstIndex { $0.function == 0x1 }!
        observed[i1].ecx |= 0x10
        let iD = observed.firstIndex { $0.function == 0xD && $0.index == 1 }!
        observed[iD].eax = 0x0B
        observed[iD].ebx = 0x240
        observed[iD].flags = 7  // flags are not registers: ignored
        // Leaves missing from either side are not reported.
        observed.removeAll { $0.function == 0x8000_0008 }
        observed.append(CPUIDEntry(function: 0x8000_001F, eax: 1))

        let lines = CPUIDTable.describeDifferences(expected: expected, observed: observed)
        #expect(lines.count == 2)
        #expect(lines.first?.hasPrefix("leaf 0x00000001 subleaf 0: ecx expected ") == true)
        #expect(lines.first?.contains("(set 0x00000010, cleared 0x00000000)") == true)
        #expect(!lines[0].contains("eax") && !lines[0].contains("edx"))
        #expect(lines.last == "leaf 0x0000000d subleaf 1: eax expected 0x0000000f observed 0x0000000b (set 0x00000000, cleared 0x00000004); ebx expected 0x00000000 observed 0x00000240 (set 0x00000240, cleared 0x00000000)")
        #expect(lines.allSatisfy { !$0.contains("\n") })
    }

    @Test func describeDifferencesUsesFirstOfDuplicates() {
        let a = [CPUIDEntry(function: 1, eax: 1), CPUIDEntry(function: 1, eax: 9)]
        let b = [CPUIDEntry(function: 1, eax: 1), CPUIDEntry(function: 1, eax: 2)]
        #expect(CPUIDTable.describeDifferences(expected: a, observed: b).isEmpty)
    }
}
