/// Identity-mapping page tables for direct boot: PML4 -> one PDPT -> one page directory per
/// GiB, 2 MiB pages. They cover [0, max(4 GiB, top of RAM)) so the LAPIC/IOAPIC MMIO in the
/// 3-4 GiB hole is reachable as well as all RAM. The hole is mapped uncached.
public enum IdentityPageTables {
    static let present: UInt64 = 1 << 0
    static let writable: UInt64 = 1 << 1
    static let writeThrough: UInt64 = 1 << 3
    static let cacheDisable: UInt64 = 1 << 4
    static let pageSize: UInt64 = 1 << 7

    /// Number of GiB the tables cover.
    public static func coveredGiB(topOfRAM: UInt64) -> UInt64 {
        let top = max(topOfRAM, 1 << 32)
        return (top + (1 << 30) - 1) >> 30
    }

    /// The tables as bytes to place at `base`: PML4, PDPT, then the page directories.
    public static func build(base: UInt64, topOfRAM: UInt64, mmioHole: Range<UInt64>) -> [UInt8] {
        let gib = Int(coveredGiB(topOfRAM: topOfRAM))
        precondition(gib <= 512, "one PDPT covers 512 GiB")
        var entries = [UInt64](repeating: 0, count: 512 * (2 + gib))
        let pdpt = base + 0x1000
        entries[0] = pdpt | present | writable
        for g in 0..<gib {
            let pd = base + 0x2000 + UInt64(g) * 0x1000
            entries[512 + g] = pd | present | writable
            for i in 0..<512 {
                let addr = (UInt64(g) << 30) | (UInt64(i) << 21)
                var e = addr | present | writable | pageSize
                if mmioHole.contains(addr) { e |= cacheDisable | writeThrough }
                entries[1024 + g * 512 + i] = e
            }
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(entries.count * 8)
        for e in entries { withUnsafeBytes(of: e.littleEndian) { bytes.append(contentsOf: $0) } }
        return bytes
    }
}
