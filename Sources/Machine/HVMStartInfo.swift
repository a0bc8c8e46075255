/// The PVH boot information, `struct hvm_start_info` version 1, with its module list and memory
/// map (xen/include/public/arch-x86/hvm/start_info.h). The PVH entry gets its address in EBX.
///
/// SynthVM lays the three out in one page at ``BootLayout/linuxBootData``:
///
/// | offset | what |
/// |---|---|
/// | 0x000 | `hvm_start_info` (56 bytes) |
/// | 0x040 | `hvm_modlist_entry[nr_modules]` (32 bytes each: paddr, size, cmdline_paddr, reserved) |
/// | 0x840 | `hvm_memmap_table_entry[memmap_entries]` (24 bytes each: addr, size, type, reserved) |
///
/// `hvm_start_info` (all little-endian):
///
/// | offset | field |
/// |---|---|
/// | 0 | u32 magic 0x336ec578 |
/// | 4 | u32 version (1: has the memory map fields) |
/// | 8 | u32 flags (0) |
/// | 12 | u32 nr_modules |
/// | 16 | u64 modlist_paddr |
/// | 24 | u64 cmdline_paddr |
/// | 32 | u64 rsdp_paddr |
/// | 40 | u64 memmap_paddr |
/// | 48 | u32 memmap_entries |
/// | 52 | u32 reserved (0) |
public enum HVMStartInfo {
    public static let magic: UInt32 = 0x336E_C578
    public static let version: UInt32 = 1
    public static let size = 56
    public static let modlistOffset = 0x40
    public static let modlistEntrySize = 32
    public static let memmapOffset = 0x840
    public static let memmapEntrySize = 24
    public static let maxModules = (memmapOffset - modlistOffset) / modlistEntrySize  // 64
    public static let maxMemmapEntries = (Int(BootLayout.linuxBootDataEnd - BootLayout.linuxBootData) - memmapOffset) / memmapEntrySize

    /// The page to write at `base`. `modules` are (where, GPA of a NUL-terminated name used as
    /// the module's command line); the memory map has the e820 types, which PVH shares.
    public static func page(base: UInt64, commandLine: UInt64, modules: [(range: Range<UInt64>, name: UInt64)],
                            memoryMap: [E820Entry], rsdp: UInt64) -> [UInt8] {
        precondition(modules.count <= maxModules && memoryMap.count <= maxMemmapEntries)
        var page = [UInt8](repeating: 0, count: Int(BootLayout.linuxBootDataEnd - BootLayout.linuxBootData))
        page.putLE(magic, at: 0)
        page.putLE(version, at: 4)
        page.putLE(UInt32(0), at: 8)
        page.putLE(UInt32(modules.count), at: 12)
        page.putLE(modules.isEmpty ? 0 : base + UInt64(modlistOffset), at: 16)
        page.putLE(commandLine, at: 24)
        page.putLE(rsdp, at: 32)
        page.putLE(base + UInt64(memmapOffset), at: 40)
        page.putLE(UInt32(memoryMap.count), at: 48)
        for (i, m) in modules.enumerated() {
            let at = modlistOffset + i * modlistEntrySize
            page.putLE(m.range.lowerBound, at: at)
            page.putLE(m.range.upperBound - m.range.lowerBound, at: at + 8)
            page.putLE(m.name, at: at + 16)
        }
        for (i, e) in memoryMap.enumerated() {
            let at = memmapOffset + i * memmapEntrySize
            page.putLE(e.address, at: at)
            page.putLE(e.size, at: at + 8)
            page.putLE(e.type.rawValue, at: at + 16)
        }
        return page
    }
}

extension Array where Element == UInt8 {
    /// Stores `value` little-endian at `offset`, which must leave room for it.
    mutating func putLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        for i in 0..<(T.bitWidth / 8) { self[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }
}
