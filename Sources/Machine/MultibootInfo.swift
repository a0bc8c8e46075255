/// The multiboot v1 information structure (Multiboot Specification 0.6.96, section 3.3).
public enum MultibootInfo {
    public static let flagMemory: UInt32 = 1 << 0
    public static let flagCommandLine: UInt32 = 1 << 2
    public static let flagModules: UInt32 = 1 << 3
    public static let flagMemoryMap: UInt32 = 1 << 6

    static func write(layout: GuestMemoryLayout, modules: [(range: Range<UInt64>, name: UInt64)],
                      memory: some GuestPhysicalMemory) throws(GuestMemoryError) {
        let b = BootLayout.bootInfo
        let flags = flagMemory | flagCommandLine | flagModules | flagMemoryMap
        // mem_lower: KiB below 640 KiB; mem_upper: KiB from 1 MiB to the first hole.
        let lowEnd = GuestMemoryLayout.lowRAMEnd
        let upperEnd = min(layout.ramSize, GuestMemoryLayout.mmioHoleStart)
        try memory.writeLE(flags, at: b)
        try memory.writeLE(UInt32(lowEnd / 1024), at: b + 4)
        try memory.writeLE(UInt32((upperEnd - 0x10_0000) / 1024), at: b + 8)
        try memory.writeLE(UInt32(BootLayout.commandLine), at: b + 16)
        try memory.writeLE(UInt32(modules.count), at: b + 20)
        try memory.writeLE(UInt32(BootLayout.moduleList), at: b + 24)
        for (i, m) in modules.enumerated() {
            let at = BootLayout.moduleList + UInt64(i) * 16
            try memory.writeLE(UInt32(m.range.lowerBound), at: at)
            try memory.writeLE(UInt32(m.range.upperBound), at: at + 4)
            try memory.writeLE(UInt32(m.name), at: at + 8)
            try memory.writeLE(UInt32(0), at: at + 12)
        }
        // mmap entries: u32 size (20, not counting itself), u64 base, u64 length, u32 type.
        let e820 = layout.e820
        for (i, e) in e820.enumerated() {
            let at = BootLayout.memoryMap + UInt64(i) * 24
            try memory.writeLE(UInt32(20), at: at)
            try memory.writeLE(e.address, at: at + 4)
            try memory.writeLE(e.size, at: at + 12)
            try memory.writeLE(e.type.rawValue, at: at + 20)
        }
        try memory.writeLE(UInt32(e820.count * 24), at: b + 44)
        try memory.writeLE(UInt32(BootLayout.memoryMap), at: b + 48)
    }
}
