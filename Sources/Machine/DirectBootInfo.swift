/// The boot-info block for ELF64 direct boot (docs/boot-protocol.md, "Boot info").
public enum DirectBootInfo {
    public static let magic: UInt64 = 0x544F_4F42_4D56_5953 // "SYVMBOOT"
    public static let version: UInt32 = 1
    public static let size: UInt32 = 88

    static func write(layout: GuestMemoryLayout, cpuCount: Int, commandLineLength: Int,
                      modules: [(range: Range<UInt64>, name: UInt64)],
                      memory: some GuestPhysicalMemory) throws(GuestMemoryError) {
        let e820 = layout.e820
        for (i, e) in e820.enumerated() {
            let at = BootLayout.memoryMap + UInt64(i) * 24
            try memory.writeLE(e.address, at: at)
            try memory.writeLE(e.size, at: at + 8)
            try memory.writeLE(e.type.rawValue, at: at + 16)
            try memory.writeLE(UInt32(0), at: at + 20)
        }
        for (i, m) in modules.enumerated() {
            let at = BootLayout.moduleList + UInt64(i) * 24
            try memory.writeLE(m.range.lowerBound, at: at)
            try memory.writeLE(m.range.upperBound - m.range.lowerBound, at: at + 8)
            try memory.writeLE(m.name, at: at + 16)
        }
        let b = BootLayout.bootInfo
        try memory.writeLE(magic, at: b)
        try memory.writeLE(version, at: b + 8)
        try memory.writeLE(size, at: b + 12)
        try memory.writeLE(layout.ramSize, at: b + 16)
        try memory.writeLE(UInt32(cpuCount), at: b + 24)
        try memory.writeLE(UInt32(e820.count), at: b + 28)
        try memory.writeLE(BootLayout.commandLine, at: b + 32)
        try memory.writeLE(UInt32(commandLineLength), at: b + 40)
        try memory.writeLE(UInt32(modules.count), at: b + 44)
        try memory.writeLE(BootLayout.moduleList, at: b + 48)
        try memory.writeLE(BootLayout.memoryMap, at: b + 56)
        try memory.writeLE(BootLayout.pageTables, at: b + 64)
        try memory.writeLE(BootLayout.gdt, at: b + 72)
        try memory.writeLE(UInt32(BootLayout.gdtLimit), at: b + 80)
        try memory.writeLE(UInt32(0), at: b + 84)
    }
}
