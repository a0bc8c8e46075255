/// Guest virtual-to-physical translation by walking the guest's page tables (Intel SDM vol. 3A,
/// chapter 4 "Paging": 32-bit, PAE and 4-level paging).
///
/// Used only to fetch the instruction bytes at RIP for crash reports, so it is best-effort and
/// read-only: it does not check reserved bits or access rights, does not set accessed/dirty
/// bits, and gives up (nil) on anything it cannot follow rather than guessing. 5-level paging
/// (CR4.LA57) is not used by SynthVM guests and yields nil.
public enum PageWalk {
    static let cr0PG: UInt64 = 1 << 31
    static let cr4PSE: UInt64 = 1 << 4
    static let cr4PAE: UInt64 = 1 << 5
    static let cr4LA57: UInt64 = 1 << 12
    static let eferLMA: UInt64 = 1 << 10

    static let present: UInt64 = 1 << 0
    static let pageSize: UInt64 = 1 << 7  // PS: this entry maps a large page
    /// Physical-address bits 51:12 of a 64-bit (PAE / 4-level) entry.
    static let frameMask: UInt64 = 0x000F_FFFF_FFFF_F000

    /// Translates `virtual` under the given control registers.
    ///
    /// `readPhysical64` returns the 8 bytes (little-endian) at a guest-physical address, or nil
    /// if that address is not readable RAM. Table entries are always read from 8-byte aligned
    /// addresses; 32-bit paging picks the right half, so a 4-byte entry at the end of RAM is
    /// still readable.
    public static func translate(
        virtual: UInt64, cr0: UInt64, cr3: UInt64, cr4: UInt64, efer: UInt64,
        readPhysical64: (UInt64) -> UInt64?
    ) -> UInt64? {
        guard cr0 & cr0PG != 0 else {
            // Paging off: linear = physical; outside long mode addresses are 32 bits.
            return efer & eferLMA != 0 ? virtual : virtual & 0xFFFF_FFFF
        }
        if efer & eferLMA != 0 {
            if cr4 & cr4LA57 != 0 { return nil }
            return walkFourLevel(virtual, cr3: cr3, read: readPhysical64)
        }
        let linear = virtual & 0xFFFF_FFFF
        if cr4 & cr4PAE != 0 {
            return walkPAE(linear, cr3: cr3, read: readPhysical64)
        }
        return walk32(linear, cr3: cr3, pse: cr4 & cr4PSE != 0, read: readPhysical64)
    }

    /// 4-level paging: PML4 -> PDPT (1 GiB pages) -> PD (2 MiB pages) -> PT.
    static func walkFourLevel(_ va: UInt64, cr3: UInt64, read: (UInt64) -> UInt64?) -> UInt64? {
        // Non-canonical addresses fault before any table is consulted.
        let upper = va >> 47
        guard upper == 0 || upper == 0x1_FFFF else { return nil }

        guard let pml4e = entry(table: cr3 & frameMask, index: (va >> 39) & 0x1FF, read: read) else { return nil }
        guard let pdpte = entry(table: pml4e & frameMask, index: (va >> 30) & 0x1FF, read: read) else { return nil }
        if pdpte & pageSize != 0 {
            return (pdpte & 0x000F_FFFF_C000_0000) | (va & 0x3FFF_FFFF)
        }
        return walkDirectory(va, directory: pdpte & frameMask, read: read)
    }

    /// PAE paging: a 4-entry PDPT at CR3[31:5] -> PD (2 MiB pages) -> PT.
    static func walkPAE(_ va: UInt64, cr3: UInt64, read: (UInt64) -> UInt64?) -> UInt64? {
        guard let pdpte = entry(table: cr3 & 0xFFFF_FFE0, index: (va >> 30) & 0x3, read: read) else { return nil }
        return walkDirectory(va, directory: pdpte & frameMask, read: read)
    }

    /// The page-directory and page-table levels shared by PAE and 4-level paging.
    static func walkDirectory(_ va: UInt64, directory: UInt64, read: (UInt64) -> UInt64?) -> UInt64? {
        guard let pde = entry(table: directory, index: (va >> 21) & 0x1FF, read: read) else { return nil }
        if pde & pageSize != 0 {
            return (pde & 0x000F_FFFF_FFE0_0000) | (va & 0x1F_FFFF)
        }
        guard let pte = entry(table: pde & frameMask, index: (va >> 12) & 0x1FF, read: read) else { return nil }
        return (pte & frameMask) | (va & 0xFFF)
    }

    /// 32-bit paging: PD at CR3[31:12] (4 MiB pages when CR4.PSE) -> PT, 4-byte entries.
    static func walk32(_ va: UInt64, cr3: UInt64, pse: Bool, read: (UInt64) -> UInt64?) -> UInt64? {
        guard let pde = entry32(table: cr3 & 0xFFFF_F000, index: (va >> 22) & 0x3FF, read: read) else { return nil }
        if pse, pde & pageSize != 0 {
            // PSE-36: PDE bits 20:13 supply physical-address bits 39:32.
            let high = ((pde >> 13) & 0xFF) << 32
            return high | (pde & 0xFFC0_0000) | (va & 0x3F_FFFF)
        }
        guard let pte = entry32(table: pde & 0xFFFF_F000, index: (va >> 12) & 0x3FF, read: read) else { return nil }
        return (pte & 0xFFFF_F000) | (va & 0xFFF)
    }

    /// A present 8-byte entry, or nil if unreadable or not present.
    static func entry(table: UInt64, index: UInt64, read: (UInt64) -> UInt64?) -> UInt64? {
        guard let value = read(table + index * 8), value & present != 0 else { return nil }
        return value
    }

    /// A present 4-byte entry, read through the aligned 8-byte word that contains it.
    static func entry32(table: UInt64, index: UInt64, read: (UInt64) -> UInt64?) -> UInt64? {
        let address = table + index * 4
        guard let word = read(address & ~7) else { return nil }
        let value = (word >> ((address & 4) * 8)) & 0xFFFF_FFFF
        return value & present != 0 ? value : nil
    }
}
