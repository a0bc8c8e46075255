/// A file to hand to the guest as a module (multiboot) or in the boot-info module list.
public struct BootModule: Sendable {
    public var name: String
    public var bytes: [UInt8]
    public init(name: String, bytes: [UInt8]) {
        self.name = name
        self.bytes = bytes
    }
}

/// What `KernelLoader.load` did: which protocol, where things went, how the boot vCPU starts.
public struct BootPlan: Sendable {
    public enum Format: String, Sendable {
        case elf64Direct = "ELF64 direct boot"
        case multiboot = "multiboot v1"
        /// The PVH entry of a kernel with XEN_ELFNOTE_PHYS32_ENTRY (Linux, or any PVH kernel).
        case pvh = "PVH"
        /// Linux's 64-bit boot protocol: boot_params, entered at startup_64.
        case linux64 = "Linux 64-bit boot protocol"
    }
    public var format: Format
    public var cpu: BootCPUState
    /// [start, end) of the loaded kernel image.
    public var kernelRange: Range<UInt64>
    public var modules: [(name: String, range: Range<UInt64>)]
}

/// Detects the kernel format and loads kernel, modules, command line and boot structures into
/// guest memory. Pure apart from writing through `GuestPhysicalMemory`; runs in unit tests.
public enum KernelLoader {
    /// The boot protocol for `bytes` (``KernelImage/open(_:decompressedSizeLimit:)`` decides).
    public static func detect(_ bytes: [UInt8]) throws(BootError) -> BootPlan.Format {
        try KernelImage.open(bytes, decompressedSizeLimit: KernelDecompressor.maximumOutputSize).format
    }

    /// Recognises (and for a bzImage, unpacks) `kernel`, then loads it. A bzImage payload may
    /// decompress to at most the guest's RAM.
    public static func load(kernel: [UInt8], modules: [BootModule], commandLine: String, cpuCount: Int,
                            into memory: some GuestPhysicalMemory) throws(BootError) -> BootPlan {
        let image = try KernelImage.open(kernel, decompressedSizeLimit: Int(memory.layout.ramSize))
        return try load(kernel: image, modules: modules, commandLine: commandLine, cpuCount: cpuCount, into: memory)
    }

    public static func load(kernel image: KernelImage, modules: [BootModule], commandLine: String, cpuCount: Int,
                            into memory: some GuestPhysicalMemory) throws(BootError) -> BootPlan {
        let format = image.format
        let kernel = image.bytes
        let cmdline = Array(commandLine.utf8)
        if cmdline.count > BootLayout.commandLineMax { throw .commandLineTooLong(cmdline.count) }
        if modules.count > BootLayout.maxModules { throw .tooManyModules(modules.count) }
        if format == .pvh || format == .linux64 {
            return try LinuxLoader.load(image, modules: modules, commandLine: cmdline, memory: memory)
        }
        let layout = memory.layout

        // 1. The kernel image.
        var entry: UInt64
        var kernelRange: Range<UInt64>
        switch format {
        case .elf64Direct, .pvh, .linux64:  // the Linux formats returned above
            let image: ElfImage
            do { image = try ElfImage.parse(kernel) } catch { throw .elf(error) }
            kernelRange = try loadSegments(image, kernel, layout: layout, memory: memory)
            guard let e = image.entryPhysicalAddress() else { throw .entryOutsideImage(image.entry) }
            entry = e
        case .multiboot:
            let header: MultibootHeader
            do {
                guard let h = try MultibootHeader.find(in: kernel) else { throw BootError.unknownFormat }
                header = h
            } catch let e as MultibootError { throw .multiboot(e) } catch { throw error as! BootError }
            if header.addresses != nil {
                (kernelRange, entry) = try loadAout(header, kernel, layout: layout, memory: memory)
            } else {
                let image: ElfImage
                do { image = try ElfImage.parse(kernel) } catch { throw .elf(error) }
                kernelRange = try loadSegments(image, kernel, layout: layout, memory: memory)
                entry = image.entry
                guard image.segments.contains(where: {
                    entry >= $0.physicalAddress && entry - $0.physicalAddress < $0.memorySize
                }) else { throw .entryOutsideImage(entry) }
            }
        }

        // 2. Modules, page-aligned after the kernel, in the order given.
        var placed: [(name: String, range: Range<UInt64>)] = []
        var next = align(kernelRange.upperBound, 0x1000)
        for m in modules {
            let size = UInt64(m.bytes.count)
            guard layout.isUsableForLoading(gpa: next, length: max(size, 1)),
                  format != .multiboot || next + size <= 1 << 32 else {
                throw .modulesDoNotFit(name: m.name, size: size)
            }
            do { try memory.write(m.bytes, at: next) } catch { throw .memory(error) }
            placed.append((m.name, next..<(next + size)))
            next = align(next + size, 0x1000)
        }

        // 3. Boot structures in low memory.
        try writeLowStructures(commandLine: cmdline, memory: memory)
        let names = try writeModuleNames(placed.map(\.name), memory: memory)

        var cpu: BootCPUState
        switch format {
        case .elf64Direct, .pvh, .linux64:  // the Linux formats returned above
            cpu = BootCPUState(mode: .long64, rip: entry)
            cpu.rdi = BootLayout.bootInfo
            cpu.cr3 = BootLayout.pageTables
            do {
                let tables = IdentityPageTables.build(
                    base: BootLayout.pageTables, topOfRAM: layout.topOfRAM,
                    mmioHole: GuestMemoryLayout.mmioHoleStart..<GuestMemoryLayout.highRAMStart)
                try memory.write(tables, at: BootLayout.pageTables)
                try DirectBootInfo.write(layout: layout, cpuCount: cpuCount, commandLineLength: cmdline.count,
                                         modules: zip(placed, names).map { ($0.range, $1) }, memory: memory)
            } catch { throw .memory(error) }
        case .multiboot:
            cpu = BootCPUState(mode: .protected32, rip: entry)
            cpu.rax = UInt64(MultibootHeader.bootloaderMagic)
            cpu.rbx = BootLayout.bootInfo
            do {
                try MultibootInfo.write(layout: layout, modules: zip(placed, names).map { ($0.range, $1) },
                                        memory: memory)
            } catch { throw .memory(error) }
        }
        return BootPlan(format: format, cpu: cpu, kernelRange: kernelRange, modules: placed)
    }

    static func align(_ v: UInt64, _ a: UInt64) -> UInt64 { (v + a - 1) & ~(a - 1) }

    static func loadSegments(_ image: ElfImage, _ file: [UInt8], layout: GuestMemoryLayout,
                             memory: some GuestPhysicalMemory) throws(BootError) -> Range<UInt64> {
        var low = UInt64.max
        var high: UInt64 = 0
        for (i, s) in image.segments.enumerated() {
            guard layout.isUsableForLoading(gpa: s.physicalAddress, length: s.memorySize) else {
                throw .segmentOutsideRAM(index: i, address: s.physicalAddress, size: s.memorySize)
            }
            low = min(low, s.physicalAddress)
            high = max(high, s.physicalAddress + s.memorySize)
        }
        for s in image.segments {
            do {
                // The parser guarantees the file range is inside the file.
                let start = Int(s.fileOffset)
                try memory.write(file, range: start..<(start + Int(s.fileSize)), at: s.physicalAddress)
                try memory.zero(at: s.physicalAddress + s.fileSize, count: s.memorySize - s.fileSize)
            } catch { throw .memory(error) }
        }
        return low..<high
    }

    static func loadAout(_ header: MultibootHeader, _ file: [UInt8], layout: GuestMemoryLayout,
                         memory: some GuestPhysicalMemory) throws(BootError) -> (Range<UInt64>, UInt64) {
        let plan: AoutLoadPlan
        do { plan = try header.aoutLoadPlan(fileSize: file.count) } catch { throw .multiboot(error) }
        let load = UInt64(plan.loadAddress)
        let end = max(UInt64(plan.loadAddress) + UInt64(plan.loadSize), UInt64(plan.bssEnd))
        guard layout.isUsableForLoading(gpa: load, length: end - load) else {
            throw .segmentOutsideRAM(index: 0, address: load, size: end - load)
        }
        do {
            let start = plan.fileOffset
            try memory.write(file, range: start..<(start + plan.loadSize), at: load)
            try memory.zero(at: load + UInt64(plan.loadSize), count: end - load - UInt64(plan.loadSize))
        } catch { throw .memory(error) }
        let entry = UInt64(plan.entry)
        guard entry >= load && entry < end else { throw .entryOutsideImage(entry) }
        return (load..<end, entry)
    }

    /// The structures every boot path puts in low memory: the page-table area zeroed, the GDT,
    /// and the NUL-terminated command line (docs/boot-protocol.md).
    static func writeLowStructures(commandLine cmdline: [UInt8], memory: some GuestPhysicalMemory) throws(BootError) {
        do {
            try memory.zero(at: 0, count: BootLayout.pageTables)
            var gdt = [UInt8]()
            for d in BootLayout.gdtEntries { withUnsafeBytes(of: d.littleEndian) { gdt.append(contentsOf: $0) } }
            try memory.write(gdt, at: BootLayout.gdt)
            try memory.write(cmdline + [0], at: BootLayout.commandLine)
        } catch { throw .memory(error) }
    }

    /// Writes NUL-terminated names into the name area; returns their GPAs.
    static func writeModuleNames(_ names: [String], memory: some GuestPhysicalMemory) throws(BootError) -> [UInt64] {
        var at = BootLayout.moduleNames
        var out: [UInt64] = []
        for n in names {
            let bytes = Array(n.utf8) + [0]
            guard at + UInt64(bytes.count) <= BootLayout.moduleNamesEnd else { throw .moduleNamesTooLong }
            do { try memory.write(bytes, at: at) } catch { throw .memory(error) }
            out.append(at)
            at += UInt64(bytes.count)
        }
        return out
    }
}
