/// Loads a kernel for the two Linux protocols, PVH and the 64-bit boot protocol
/// (docs/boot-protocol.md, "Linux"). Both load the vmlinux ELF at its physical addresses (no
/// relocation: the kernel runs where it was linked, `CONFIG_PHYSICAL_START`), the command line
/// at ``BootLayout/commandLine``, the initramfs at the top of RAM below 4 GiB and below the
/// kernel's `initrd_addr_max`, and their boot structure at ``BootLayout/linuxBootData``.
enum LinuxLoader {
    static func load(_ image: KernelImage, modules: [BootModule], commandLine cmdline: [UInt8],
                     memory: some GuestPhysicalMemory) throws(BootError) -> BootPlan {
        let layout = memory.layout
        if let h = image.bzImage?.header, h.commandLineSize > 0, cmdline.count > Int(h.commandLineSize) {
            throw .commandLineTooLongForKernel(cmdline.count, maximum: Int(h.commandLineSize))
        }
        if image.format == .linux64, modules.count > 1 { throw .linuxTakesOneInitrd(modules.count) }
        if modules.count > HVMStartInfo.maxModules { throw .tooManyModules(modules.count) }

        let elf: ElfImage
        do { elf = try ElfImage.parse(image.bytes) } catch { throw .elf(error) }
        let kernelRange = try KernelLoader.loadSegments(elf, image.bytes, layout: layout, memory: memory)
        let entry = try entryPoint(image, elf)

        let initrdLimit = UInt64(image.bzImage?.header.initrdAddressMax ?? LinuxBootParams.defaultInitrdAddressMax) + 1
        let placed = try placeModules(modules, above: kernelRange.upperBound, below: initrdLimit, memory: memory)

        try KernelLoader.writeLowStructures(commandLine: cmdline, memory: memory)
        let names = try KernelLoader.writeModuleNames(placed.map(\.name), memory: memory)
        let rsdp = ACPITables.defaultBase  // the RSDP is the first thing in the ACPI blob

        var cpu: BootCPUState
        switch image.format {
        case .pvh:
            // start_info.h: 32-bit protected mode, paging off, flat CS/DS/ES/SS, EBX = start info.
            cpu = BootCPUState(mode: .protected32, rip: entry)
            cpu.rbx = BootLayout.linuxBootData
            let page = HVMStartInfo.page(
                base: BootLayout.linuxBootData, commandLine: BootLayout.commandLine,
                modules: zip(placed, names).map { ($0.range, $1) }, memoryMap: layout.e820, rsdp: rsdp)
            do { try memory.write(page, at: BootLayout.linuxBootData) } catch { throw .memory(error) }
        default:
            // boot.rst, 64-bit protocol: long mode, identity-mapped, RSI = boot_params.
            cpu = BootCPUState(mode: .long64, rip: entry)
            cpu.rsi = BootLayout.linuxBootData
            cpu.cr3 = BootLayout.pageTables
            let header = image.bzImage?.setupHeaderBytes ?? LinuxBootParams.defaultSetupHeader()
            let page = LinuxBootParams.page(
                setupHeader: header, commandLine: BootLayout.commandLine, ramdisk: placed.first?.range,
                memoryMap: layout.e820, rsdp: rsdp)
            do {
                try memory.write(page, at: BootLayout.linuxBootData)
                let tables = IdentityPageTables.build(
                    base: BootLayout.pageTables, topOfRAM: layout.topOfRAM,
                    mmioHole: GuestMemoryLayout.mmioHoleStart..<GuestMemoryLayout.highRAMStart)
                try memory.write(tables, at: BootLayout.pageTables)
            } catch { throw .memory(error) }
        }
        return BootPlan(format: image.format, cpu: cpu, kernelRange: kernelRange, modules: placed)
    }

    /// PVH: the note's address. 64-bit: `e_entry`, which a vmlinux gives as a physical address
    /// (`ENTRY(phys_startup_64)` in arch/x86/kernel/vmlinux.lds.S); a kernel linked with equal
    /// virtual and physical addresses is found either way. It must lie in a loaded segment.
    static func entryPoint(_ image: KernelImage, _ elf: ElfImage) throws(BootError) -> UInt64 {
        let inPhysicalSegment = { (a: UInt64) in
            elf.segments.contains { a >= $0.physicalAddress && a - $0.physicalAddress < $0.memorySize }
        }
        if let pvh = image.pvhEntry {
            guard inPhysicalSegment(pvh) else { throw .entryOutsideImage(pvh) }
            return pvh
        }
        if inPhysicalSegment(elf.entry) { return elf.entry }
        guard let e = elf.entryPhysicalAddress() else { throw .entryOutsideImage(elf.entry) }
        return e
    }

    /// Places the modules in command-line order, page-aligned, ending as high as possible below
    /// `limit` and the 4 GiB hole (where GRUB and QEMU put an initramfs), above the kernel.
    static func placeModules(_ modules: [BootModule], above kernelEnd: UInt64, below limit: UInt64,
                             memory: some GuestPhysicalMemory) throws(BootError) -> [(name: String, range: Range<UInt64>)] {
        guard !modules.isEmpty else { return [] }
        let layout = memory.layout
        let page = GuestMemoryLayout.pageSize
        let top = min(limit, min(layout.ramSize, GuestMemoryLayout.mmioHoleStart)) / page * page
        let floor = KernelLoader.align(kernelEnd, page)
        var total: UInt64 = 0
        for m in modules { total += KernelLoader.align(UInt64(m.bytes.count), page) }
        guard top >= floor, top - floor >= total else {
            let m = modules[0]
            throw .modulesDoNotFit(name: m.name, size: UInt64(m.bytes.count))
        }
        var at = top - total
        var placed: [(name: String, range: Range<UInt64>)] = []
        for m in modules {
            let size = UInt64(m.bytes.count)
            guard layout.isUsableForLoading(gpa: at, length: size) else { throw .modulesDoNotFit(name: m.name, size: size) }
            do { try memory.write(m.bytes, at: at) } catch { throw .memory(error) }
            placed.append((m.name, at..<(at + size)))
            at += KernelLoader.align(size, page)
        }
        return placed
    }
}
