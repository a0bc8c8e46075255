import Testing

@testable import Machine

@Suite struct CPUIDProbeGuestTests {
    @Test("the probe is a loadable ELF64 whose code ends at the exit device")
    func image() throws {
        let elf = CPUIDProbeGuest.elf()
        let image = try ElfImage.parse(elf)
        #expect(image.segments.count == 1)
        // One CPUID per leaf, and the exit: out dx, eax with dx = 0xf4.
        let cpuids = zip(elf, elf.dropFirst()).filter { $0 == 0x0F && $1 == 0xA2 }.count
        #expect(cpuids == CPUIDProbeGuest.leaves.count)
        #expect(elf.suffix(11).starts(with: [0x66, 0xBA, 0xF4, 0x00, 0x31, 0xC0, 0xEF]))
    }

    @Test("parse reads EAX..EDX per leaf, little-endian, and rejects a wrong size")
    func parse() {
        var bytes: [UInt8] = []
        for i in 0..<CPUIDProbeGuest.leaves.count {
            for r in 0..<4 { bytes += withUnsafeBytes(of: UInt32(i * 16 + r * 0x0101_0101).littleEndian, Array.init) }
        }
        let entries = CPUIDProbeGuest.parse(bytes)!
        #expect(entries.count == CPUIDProbeGuest.leaves.count)
        #expect(entries[1].function == 7 && entries[1].index == 0)
        #expect(entries[1].eax == 16 && entries[1].ebx == 16 + 0x0101_0101 && entries[1].edx == 16 + 3 * 0x0101_0101)
        #expect(CPUIDProbeGuest.parse(Array(bytes.dropLast())) == nil)
        #expect(CPUIDProbeGuest.parse([]) == nil)
    }

    @Test("overrides: stable bits only; run-time bits (OSXSAVE, OSPKE, APIC ID, XSAVE size) never count")
    func overrides() {
        let table = [CPUIDEntry(function: 1, ebx: 0x0000_0800, ecx: 0x8000_2000, edx: 0x078B_FBFF),
                     CPUIDEntry(function: 7, index: 0, flags: CPUIDEntry.flagSignificantIndex, ebx: 0x0180_0002),
                     CPUIDEntry(function: 0xD, index: 0, flags: CPUIDEntry.flagSignificantIndex, eax: 0xE7, ebx: 0x980)]
        var seen = table
        seen[0].ebx = 0x0001_0800
        seen[0].ecx |= 1 << 27
        seen[1].ecx |= 1 << 4
        seen[2].ebx = 0x240
        #expect(CPUIDProbeGuest.overriddenLeaves(table: table, observed: seen).isEmpty)
        seen[0].ecx |= 1 << 23  // POPCNT appears
        seen[2].eax = 0x7
        let o = CPUIDProbeGuest.overriddenLeaves(table: table, observed: seen)
        #expect(o.map(\.leaf) == [1, 0xD])
        // A leaf missing from the table counts as all zero.
        #expect(CPUIDProbeGuest.overriddenLeaves(table: [], observed: [CPUIDEntry(function: 7, index: 1, eax: 0x20)]).count == 1)
    }
}
