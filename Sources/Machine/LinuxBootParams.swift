/// The Linux "zero page", `struct boot_params` (arch/x86/include/uapi/asm/bootparam.h), as the
/// 64-bit boot protocol hands it to `startup_64` in RSI (Documentation/arch/x86/boot.rst, "64-bit
/// Boot Protocol"): zeroed, the kernel's setup header copied to 0x1F1, then the fields a boot
/// loader fills in.
///
/// | offset | field | SynthVM writes |
/// |---|---|---|
/// | 0x070 | u64 acpi_rsdp_addr | the RSDP (`ACPITables.defaultBase`) |
/// | 0x0C0 | u32 ext_ramdisk_image | bits 32-63 of the initramfs address |
/// | 0x0C4 | u32 ext_ramdisk_size | bits 32-63 of its size |
/// | 0x0C8 | u32 ext_cmd_line_ptr | bits 32-63 of the command line address (0) |
/// | 0x1E8 | u8 e820_entries | the e820 map's length |
/// | 0x1F1 | struct setup_header | the bzImage's header (or ``defaultSetupHeader``) |
/// | 0x210 | u8 hdr.type_of_loader | 0xFF (undefined loader) |
/// | 0x211 | u8 hdr.loadflags | the header's, with LOADED_HIGH set |
/// | 0x218 | u32 hdr.ramdisk_image | the initramfs address (0 without) |
/// | 0x21C | u32 hdr.ramdisk_size | its size |
/// | 0x228 | u32 hdr.cmd_line_ptr | the command line |
/// | 0x2D0 | boot_e820_entry[128] | the e820 map: packed {u64 addr, u64 size, u32 type} |
public enum LinuxBootParams {
    public static let size = 4096
    public static let acpiRSDPAddress = 0x070
    public static let extRamdiskImage = 0x0C0
    public static let extRamdiskSize = 0x0C4
    public static let extCommandLinePointer = 0x0C8
    public static let e820Entries = 0x1E8
    public static let setupHeader = LinuxSetupHeader.headerStart
    public static let typeOfLoader = 0x210
    public static let loadFlags = 0x211
    public static let ramdiskImage = 0x218
    public static let ramdiskSize = 0x21C
    public static let commandLinePointer = 0x228
    public static let e820Table = 0x2D0
    public static let e820EntrySize = 20
    /// E820_MAX_ENTRIES_ZEROPAGE.
    public static let e820Max = 128
    /// "Undefined" boot loader (boot.rst, type_of_loader): no registered ID.
    public static let undefinedLoader: UInt8 = 0xFF

    /// The zero page for a kernel with `setupHeader` (bytes from 0x1F1, at most up to 0x290).
    public static func page(setupHeader: [UInt8], commandLine: UInt64, ramdisk: Range<UInt64>?,
                            memoryMap: [E820Entry], rsdp: UInt64) -> [UInt8] {
        precondition(setupHeader.count <= LinuxSetupHeader.zeroPageHeaderLimit - self.setupHeader)
        var page = [UInt8](repeating: 0, count: size)
        page.replaceSubrange(self.setupHeader..<(self.setupHeader + setupHeader.count), with: setupHeader)
        page[typeOfLoader] = undefinedLoader
        page[loadFlags] |= LinuxSetupHeader.loadedHigh
        page.putLE(UInt32(truncatingIfNeeded: commandLine), at: commandLinePointer)
        page.putLE(UInt32(truncatingIfNeeded: commandLine >> 32), at: extCommandLinePointer)
        if let r = ramdisk {
            let size = r.upperBound - r.lowerBound
            page.putLE(UInt32(truncatingIfNeeded: r.lowerBound), at: ramdiskImage)
            page.putLE(UInt32(truncatingIfNeeded: size), at: ramdiskSize)
            page.putLE(UInt32(truncatingIfNeeded: r.lowerBound >> 32), at: extRamdiskImage)
            page.putLE(UInt32(truncatingIfNeeded: size >> 32), at: extRamdiskSize)
        }
        page.putLE(rsdp, at: acpiRSDPAddress)
        let entries = memoryMap.prefix(e820Max)
        page[e820Entries] = UInt8(entries.count)
        for (i, e) in entries.enumerated() {
            let at = e820Table + i * e820EntrySize
            page.putLE(e.address, at: at)
            page.putLE(e.size, at: at + 8)
            page.putLE(e.type.rawValue, at: at + 16)
        }
        return page
    }

    /// The setup header for a vmlinux ELF booted without a bzImage around it (0x1F1..<0x26C):
    /// what a protocol-2.15 header of a 64-bit kernel says, minus anything about the real-mode
    /// code and the compressed payload that do not exist. `initrd_addr_max` is the protocol's
    /// default for kernels that do not state one, 0x37FFFFFF.
    public static func defaultSetupHeader(commandLineSize: UInt32 = defaultCommandLineSize) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: LinuxSetupHeader.defaultHeaderEnd - LinuxSetupHeader.headerStart)
        func put<T: FixedWidthInteger>(_ v: T, _ fileOffset: Int) { h.putLE(v, at: fileOffset - LinuxSetupHeader.headerStart) }
        put(LinuxSetupHeader.bootFlag, 0x1FE)
        put(UInt8(0xEB), 0x200)  // jmp short: the header length, as in a real one
        put(UInt8(LinuxSetupHeader.defaultHeaderEnd - 0x202), 0x201)
        put(LinuxSetupHeader.headerMagic, 0x202)
        put(UInt16(0x020F), 0x206)
        put(LinuxSetupHeader.loadedHigh, 0x211)
        put(defaultInitrdAddressMax, 0x22C)
        put(UInt32(0x20_0000), 0x230)  // kernel_alignment
        put(LinuxSetupHeader.xlfKernel64, 0x236)
        put(commandLineSize, 0x238)
        return h
    }

    /// boot.rst: "If this field is 0, the initrd max is 0x37FFFFFF."
    public static let defaultInitrdAddressMax: UInt32 = 0x37FF_FFFF
    /// The longest command line SynthVM passes (``BootLayout/commandLineMax``).
    public static let defaultCommandLineSize = UInt32(BootLayout.commandLineMax)
}
