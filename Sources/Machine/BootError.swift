/// Why a kernel could not be loaded. Each case prints as one line for the operator.
public enum BootError: Error, CustomStringConvertible {
    case unknownFormat
    case elf(ElfError)
    case multiboot(MultibootError)
    case elf32WithoutMultiboot
    case segmentOutsideRAM(index: Int, address: UInt64, size: UInt64)
    case entryOutsideImage(UInt64)
    case commandLineTooLong(Int)
    case tooManyModules(Int)
    case moduleNamesTooLong
    case modulesDoNotFit(name: String, size: UInt64)
    case memory(GuestMemoryError)
    /// A bzImage whose setup header is unusable.
    case bzImage(LinuxSetupHeaderError)
    /// A bzImage payload that is neither a known compression format nor an ELF (first bytes).
    case unknownPayloadCompression([UInt8])
    case decompression(KernelDecompressionError)
    case bzImagePayloadNotELF(ElfError)
    /// A bzImage whose vmlinux is ELF32 without a PVH note: no entry SynthVM can use.
    case bzImageWithoutEntry
    case badPVHNote(String)
    /// The Linux 64-bit boot protocol has one ramdisk.
    case linuxTakesOneInitrd(Int)
    /// Longer than the bzImage's `cmdline_size`.
    case commandLineTooLongForKernel(Int, maximum: Int)

    public var description: String {
        switch self {
        case .unknownFormat:
            return "unknown kernel format: not an ELF64 x86-64 image and no multiboot header"
        case let .elf(e):
            return "bad ELF kernel: \(e)"
        case let .multiboot(e):
            return "bad multiboot kernel: \(e)"
        case .elf32WithoutMultiboot:
            return "ELF32 kernel without a multiboot header (32-bit kernels must be multiboot)"
        case let .segmentOutsideRAM(i, a, s):
            return "kernel segment \(i) at 0x\(String(a, radix: 16)) (0x\(String(s, radix: 16)) bytes) "
                + "does not fit in guest RAM at or above 1 MiB (is the kernel larger than --memory?)"
        case let .entryOutsideImage(e):
            return "kernel entry point 0x\(String(e, radix: 16)) is not inside a loaded segment"
        case let .commandLineTooLong(n):
            return "command line is \(n) bytes; at most \(BootLayout.commandLineMax) fit"
        case let .tooManyModules(n):
            return "\(n) modules given; at most \(BootLayout.maxModules) are supported"
        case .moduleNamesTooLong:
            return "module names do not fit in 4 KiB"
        case let .modulesDoNotFit(name, size):
            return "module \(name) (\(size) bytes) does not fit in guest RAM after the kernel"
        case let .memory(e):
            return "loading failed: \(e)"
        case let .bzImage(e):
            return "bad Linux bzImage: \(e)"
        case let .unknownPayloadCompression(bytes):
            let hex = bytes.map { String($0, radix: 16) }.joined(separator: " ")
            return "Linux bzImage payload has an unknown compression format (starts with \(hex); "
                + "known: gzip, xz, lzma, lz4, zstd, bzip2, lzo, or an uncompressed ELF)"
        case let .decompression(e):
            return "cannot decompress the Linux bzImage: \(e)"
        case let .bzImagePayloadNotELF(e):
            return "the Linux bzImage payload is not a vmlinux ELF: \(e)"
        case .bzImageWithoutEntry:
            return "the Linux bzImage holds a 32-bit vmlinux without a PVH entry note; SynthVM boots 64-bit kernels or PVH"
        case let .badPVHNote(why):
            return "bad PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): \(why)"
        case let .linuxTakesOneInitrd(n):
            return "\(n) --initrd/--module files given; the Linux 64-bit boot protocol takes one initramfs"
        case let .commandLineTooLongForKernel(n, maximum):
            return "command line is \(n) bytes; this kernel accepts at most \(maximum) (its cmdline_size)"
        }
    }
}
