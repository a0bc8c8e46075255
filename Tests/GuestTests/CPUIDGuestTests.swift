import Foundation
import Machine
@testable import Monitor
import Testing

@Suite("The guest sees the CPUID table SynthVM builds")
struct CPUIDGuestTests {
    /// Parses `cpuid <leaf> <subleaf> <eax> <ebx> <ecx> <edx>` lines.
    static func parse(_ lines: [String]) -> [CPUIDEntry] {
        lines.compactMap { line in
            let f = line.split(separator: " ")
            guard f.count == 7, f[0] == "cpuid" else { return nil }
            let v = f.dropFirst().compactMap { UInt32($0, radix: 16) }
            guard v.count == 6 else { return nil }
            return CPUIDEntry(function: v[0], index: v[1], eax: v[2], ebx: v[3], ecx: v[4], edx: v[5])
        }
    }

    @Test("leaves SynthVM controls match its table; the host's overrides are reported")
    func cpuidMatchesTable() throws {
        let run = try GuestHarness.boot("cpuid")
        #expect(run.lines.contains("cpuid: ok"))
        let observed = Self.parse(run.lines)
        try #require(observed.count > 20)
        let table = run.cpuidTables[0]
        func seen(_ leaf: UInt32, _ sub: UInt32 = 0) -> CPUIDEntry? {
            observed.first { $0.function == leaf && $0.index == sub }
        }
        func built(_ leaf: UInt32, _ sub: UInt32 = 0) -> CPUIDEntry? {
            table.first { $0.function == leaf && ($0.index == sub || $0.flags & CPUIDEntry.flagSignificantIndex == 0) }
        }
        // Leaf 0 (max leaf, vendor) and leaf 1 EBX (initial APIC ID, logical count) are ours.
        let l0 = try #require(seen(0)), t0 = try #require(built(0))
        #expect(l0 == CPUIDEntry(function: 0, eax: t0.eax, ebx: t0.ebx, ecx: t0.ecx, edx: t0.edx))
        let l1 = try #require(seen(1)), t1 = try #require(built(1))
        #expect(l1.ebx == t1.ebx)
        #expect(l1.ebx >> 24 == 0)
        // No KVM paravirtual signature: that range is kept for the Hyper-V leaves.
        let pv = try #require(seen(0x4000_0000))
        #expect(!(pv.ebx == 0x4B4D_564B && pv.ecx == 0x564B_4D56 && pv.edx == 0x4D), "KVM signature visible")
        // The extended range comes from our table.
        let e0 = try #require(seen(0x8000_0000)), te0 = try #require(built(0x8000_0000))
        #expect(e0.eax == te0.eax)

        // Report, not assert, where the host overrides our table (PVM: leaves 1 ECX/EDX, 7, 0xD).
        let expected = observed.compactMap { o in built(o.function, o.index).map {
            CPUIDEntry(function: o.function, index: o.index, eax: $0.eax, ebx: $0.ebx, ecx: $0.ecx, edx: $0.edx)
        } }
        let differences = CPUIDTable.describeDifferences(expected: expected, observed: observed)
        print("CPUID leaves this host overrides (\(differences.count)):")
        for d in differences { print("  \(d)") }
        // Only the leaves this kind of host is known to pass through may differ (none on a
        // normal KVM); anything else is a new override someone must look at.
        let known = ["leaf 0x00000001 ", "leaf 0x00000007 ", "leaf 0x0000000d "]
        for d in differences {
            #expect(known.contains { d.hasPrefix($0) }, "unexpected CPUID override: \(d)")
        }
    }
}
