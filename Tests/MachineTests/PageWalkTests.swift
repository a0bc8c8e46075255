import FuzzSeeds
import Testing

@testable import Machine

/// Guest-physical memory made of sparse 4 KiB pages; reads outside them fail like reads outside
/// guest RAM. Unaligned reads fail too: table entries must be read 8-byte aligned.
private struct FakeMemory {
    var pages: Set<UInt64> = []
    var words: [UInt64: UInt64] = [:]

    mutating func addPage(_ address: UInt64) { pages.insert(address & ~0xFFF) }

    mutating func write64(_ address: UInt64, _ value: UInt64) {
        addPage(address)
        words[address] = value
    }

    mutating func write32(_ address: UInt64, _ value: UInt32) {
        addPage(address)
        let word = address & ~7
        let shift = (address & 4) * 8
        let old = words[word] ?? 0
        words[word] = old & ~(0xFFFF_FFFF << shift) | UInt64(value) << shift
    }

    func read(_ address: UInt64) -> UInt64? {
        guard address % 8 == 0, pages.contains(address & ~0xFFF) else { return nil }
        return words[address] ?? 0
    }
}

private let PG: UInt64 = 1 << 31
private let PE: UInt64 = 1
private let PSE: UInt64 = 1 << 4
private let PAE: UInt64 = 1 << 5
private let LA57: UInt64 = 1 << 12
private let LMA: UInt64 = 1 << 10
private let LME: UInt64 = 1 << 8
private let P: UInt64 = 1, W: UInt64 = 2, PS: UInt64 = 1 << 7, NX: UInt64 = 1 << 63

private func walk(
    _ memory: FakeMemory, _ virtual: UInt64, cr0: UInt64 = PE | PG, cr3: UInt64, cr4: UInt64, efer: UInt64
) -> UInt64? {
    PageWalk.translate(virtual: virtual, cr0: cr0, cr3: cr3, cr4: cr4, efer: efer) { memory.read($0) }
}

private func longMode(_ memory: FakeMemory, _ virtual: UInt64, cr3: UInt64 = 0x1000, cr4: UInt64 = PAE) -> UInt64? {
    walk(memory, virtual, cr3: cr3, cr4: cr4, efer: LME | LMA)
}

@Suite struct PageWalkTests {
    @Test func pagingOffIsIdentity() {
        let none = FakeMemory()
        func off(_ va: UInt64, efer: UInt64 = 0) -> UInt64? {
            walk(none, va, cr0: PE, cr3: 0xDEAD_B000, cr4: 0, efer: efer)
        }
        #expect(off(0x7C00) == 0x7C00)
        #expect(off(0xFFFF_FFFF) == 0xFFFF_FFFF)
        #expect(off(0x1_2345_6789) == 0x2345_6789)  // 32-bit linear addresses
        #expect(off(0x1_2345_6789, efer: LMA) == 0x1_2345_6789)
        #expect(walk(none, 0x1234, cr0: 0, cr3: 0, cr4: 0, efer: 0) == 0x1234)  // real mode
    }

    /// PML4 at 0x1000 -> PDPT at 0x2000 -> PD at 0x3000 -> PT at 0x4000.
    private func fourLevelTables() -> FakeMemory {
        var m = FakeMemory()
        m.write64(0x1000 + 0 * 8, 0x2000 | P | W)
        m.write64(0x2000 + 0 * 8, 0x3000 | P | W)
        m.write64(0x3000 + 1 * 8, 0x4000 | P | W)  // VA 0x200000..0x3FFFFF through a PT
        m.write64(0x4000 + 5 * 8, 0x0000_0001_2345_6000 | NX | P)  // VA 0x205000 -> 0x1_23456000
        m.write64(0x4000 + 6 * 8, 0x0000_0000_0077_7000)  // not present
        m.write64(0x3000 + 2 * 8, 0x0000_0000_4060_0000 | PS | P | (1 << 12))  // 2 MiB at VA 0x400000, PAT bit set
        m.write64(0x2000 + 1 * 8, 0x0000_0008_4000_0000 | PS | P)  // 1 GiB at VA 0x40000000
        m.write64(0x3000 + 3 * 8, 0x9000 | P)  // PT at 0x9000, a page that does not exist
        // Higher half: PML4[511] -> PDPT at 0x5000, PDPT[510] -> 1 GiB at 0 (VA 0xFFFFFFFF80000000).
        m.write64(0x1000 + 511 * 8, 0x5000 | P)
        m.write64(0x5000 + 510 * 8, PS | P)
        return m
    }

    @Test func fourLevelPages() {
        let m = fourLevelTables()
        #expect(longMode(m, 0x20_5ABC) == 0x1_2345_6ABC)  // 4 KiB page; NX does not leak in
        #expect(longMode(m, 0x20_5000) == 0x1_2345_6000)
        #expect(longMode(m, 0x20_6000) == nil)  // not present PTE
        #expect(longMode(m, 0x20_7000) == nil)  // zero PTE
        #expect(longMode(m, 0x40_0000) == 0x4060_0000)  // 2 MiB page; PAT bit does not leak in
        #expect(longMode(m, 0x5F_FFFF) == 0x407F_FFFF)
        #expect(longMode(m, 0x4000_0000) == 0x8_4000_0000)  // 1 GiB page
        #expect(longMode(m, 0x7FFF_FFFF) == 0x8_7FFF_FFFF)
        #expect(longMode(m, 0xFFFF_FFFF_8000_1234) == 0x1234)
        #expect(longMode(m, 0xFFFF_FFFF_BFFF_FFFF) == 0x3FFF_FFFF)
        #expect(longMode(m, 0x60_0000) == nil)  // PT page missing from memory
        #expect(longMode(m, 0x8000_0000) == nil)  // PDPT entry 2 empty
        #expect(longMode(m, 0x0000_0080_0000_0000) == nil)  // PML4 entry 1 empty
    }

    @Test func fourLevelRejectsNonCanonicalAndLA57() {
        let m = fourLevelTables()
        #expect(longMode(m, 0x0000_8000_0000_0000) == nil)
        #expect(longMode(m, 0xFFFF_7FFF_FFFF_F000) == nil)
        #expect(longMode(m, 0x8000_0000_0020_5000) == nil)
        #expect(longMode(m, 0x20_5000, cr4: PAE | LA57) == nil)
    }

    @Test func missingRootTable() {
        let m = fourLevelTables()
        #expect(longMode(m, 0x20_5000, cr3: 0x7_0000) == nil)
        #expect(longMode(m, 0x20_5000, cr3: 0x1000 | 0x18) == 0x1_2345_6000)  // PCD/PWT bits in CR3 ignored
        #expect(longMode(m, 0x20_5000, cr3: 0x1000 | 0x8000_0000_0000_0000) == 0x1_2345_6000)  // no-flush bit
    }

    @Test func directBootIdentityMap() {
        // The tables docs/boot-protocol.md describes: CR3 = 0x10000, PML4 -> PDPT -> four page
        // directories of 2 MiB pages covering [0, 4 GiB).
        var m = FakeMemory()
        m.write64(0x10000, 0x11000 | P | W)
        for pdpt in 0..<UInt64(4) {
            let pd = 0x12000 + pdpt * 0x1000
            m.write64(0x11000 + pdpt * 8, pd | P | W)
            for i in 0..<UInt64(512) {
                m.write64(pd + i * 8, (pdpt << 30 | i << 21) | PS | P | W)
            }
        }
        for address: UInt64 in [0, 0x1000, 0x10_0000, 0x12_3456, 0xBFFF_FFFF, 0xFEE0_0000, 0xFFFF_FFFF] {
            #expect(walk(m, address, cr0: 0x8005_0033, cr3: 0x10000, cr4: PAE, efer: LME | LMA) == address)
        }
        #expect(walk(m, 0x1_0000_0000, cr0: 0x8005_0033, cr3: 0x10000, cr4: PAE, efer: LME | LMA) == nil)
    }

    @Test func paePaging() {
        var m = FakeMemory()
        // PDPT is 32-byte aligned, not page aligned: CR3 = 0x3020.
        m.write64(0x3020 + 0 * 8, 0x4000 | P)
        m.write64(0x3020 + 3 * 8, 0x6000 | P)
        m.write64(0x4000 + 1 * 8, 0x5000 | P)  // PT for VA 0x200000
        m.write64(0x5000 + 0x10 * 8, 0x0000_0002_0000_0000 | NX | P)  // above 4 GiB physical
        m.write64(0x6000 + 511 * 8, 0x00E0_0000 | PS | P)  // VA 0xFFE00000 -> 2 MiB page
        func pae(_ va: UInt64, cr3: UInt64 = 0x3020) -> UInt64? { walk(m, va, cr3: cr3, cr4: PAE, efer: 0) }
        #expect(pae(0x21_0123) == 0x2_0000_0123)
        #expect(pae(0xFFE0_1234) == 0xE0_1234)
        #expect(pae(0xFFFF_FFFF) == 0xFF_FFFF)
        #expect(pae(0x1_FFE0_1234) == 0xE0_1234)  // linear addresses are 32 bits
        #expect(pae(0x4000_0000) == nil)  // PDPTE 1 not present
        #expect(pae(0x21_1000) == nil)  // PTE not present
        #expect(pae(0x21_0123, cr3: 0x3000) == nil)  // a different, empty PDPT
    }

    @Test func thirtyTwoBitPaging() {
        var m = FakeMemory()
        m.write32(0x1000 + 0 * 4, 0x2000 | 0x3)  // PD[0] -> PT at 0x2000
        m.write32(0x2000 + 0xB8 * 4, 0x000B_8000 | 0x3)  // VA 0xB8000 -> 0xB8000
        m.write32(0x2000 + 0x01 * 4, 0x0050_0000 | 0x1)  // VA 0x1000 -> 0x500000 (odd slot: high half of a word)
        m.write32(0x1000 + 0x300 * 4, 0x0040_0000 | 0x83)  // VA 0xC0000000: 4 MiB page at 4 MiB
        m.write32(0x1000 + 0x3FF * 4, 0x00C0_0000 | UInt32(0x12 << 13) | 0x83)  // PSE-36: phys 0x12_00C00000
        m.write32(0x1000 + 0x301 * 4, 0x0000_0082)  // PS but not present
        func legacy(_ va: UInt64, cr4: UInt64 = PSE) -> UInt64? { walk(m, va, cr3: 0x1000, cr4: cr4, efer: 0) }
        #expect(legacy(0xB8123) == 0xB8123)
        #expect(legacy(0x1FFF) == 0x50_0FFF)
        #expect(legacy(0xC012_3456) == 0x52_3456)
        #expect(legacy(0xFFFF_FFFF) == 0x12_00FF_FFFF)
        #expect(legacy(0xC040_0000) == nil)
        #expect(legacy(0x2000) == nil)  // PTE 2 empty
        #expect(legacy(0x1_000B_8123) == 0xB8123)
        // Without CR4.PSE the PS bit is ignored: the PDE points to a page table (here 0x400000,
        // which does not exist).
        #expect(legacy(0xC012_3456, cr4: 0) == nil)
        #expect(legacy(0xB8123, cr4: 0) == 0xB8123)
    }

    @Test func thirtyTwoBitTableInLastPageOfRAM() {
        // The last PDE sits in the last 4 bytes of RAM; it is read through its aligned word.
        var m = FakeMemory()
        m.write32(0xFFC, 0x0080_0000 | 0x83)
        // FakeMemory refuses unaligned reads, so success also shows the read was aligned.
        #expect(walk(m, 0xFFC0_0010, cr3: 0x0, cr4: PSE, efer: 0) == 0x80_0010)
    }

    @Test func hostileTablesNeverTrap() {
        // Every entry all-ones or random: the walk may fail but must not trap.
        var rng = SplitMix64(state: 0x9A6E)
        for _ in 0..<2_000 {
            let fill = rng.next()
            let reader: (UInt64) -> UInt64? = { address in address & 0x8 == 0 ? fill : UInt64.max }
            for (cr4, efer) in [(PAE, LMA), (PAE, UInt64(0)), (PSE, UInt64(0)), (UInt64(0), UInt64(0))] {
                _ = PageWalk.translate(
                    virtual: rng.next(), cr0: PG | PE, cr3: rng.next(), cr4: cr4, efer: efer, readPhysical64: reader)
            }
        }
    }
}
