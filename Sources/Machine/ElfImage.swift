/// A validated view of an ELF executable's load-relevant parts (System V gABI, "ELF Header"
/// and "Program Header" chapters), for the direct-boot (ELF64) and multiboot (ELF32) loaders.
///
/// Kernel files come from the operator, but a loader bug on a hostile or damaged file must be an
/// error message, not a crash of the monitor. So every field read from the file is bounds-checked
/// and every sum is computed with overflow reporting; once `parse` returns, the loader can copy
/// `bytes[fileOffset ..< fileOffset + fileSize]` and compute `physicalAddress + memorySize`
/// without further checks. Section headers are not read: loading needs only program headers.
public struct ElfImage: Sendable, Equatable {
    /// `EI_CLASS`: the width of addresses and of the header layouts.
    public enum Class: Sendable, Equatable {
        case elf32
        case elf64
    }

    /// `\x7fELF`.
    public static let magic: [UInt8] = [0x7F, 0x45, 0x4C, 0x46]
    public static let machineX86_64: UInt16 = 62  // EM_X86_64
    public static let machine386: UInt16 = 3  // EM_386
    public static let typeExecutable: UInt16 = 2  // ET_EXEC
    public static let typeShared: UInt16 = 3  // ET_DYN (position-independent kernels)
    static let programTypeLoad: UInt32 = 1  // PT_LOAD
    static let programTypeNote: UInt32 = 4  // PT_NOTE

    public let elfClass: Class
    /// `e_machine`: always ``machineX86_64`` for ELF64 and ``machine386`` for ELF32.
    public let machine: UInt16
    /// `e_type`: ``typeExecutable`` or ``typeShared``.
    public let type: UInt16
    /// `e_entry`, a virtual address; see ``entryPhysicalAddress()``.
    public let entry: UInt64
    /// The `PT_LOAD` segments with a non-zero memory size, in program-header order.
    public let segments: [ElfSegment]
    /// The `PT_NOTE` segments, in program-header order, unvalidated; read with ``notes(in:)``.
    public let noteSegments: [ElfNoteSegment]

    /// The physical address of `entry`: the loader copies segments to their physical addresses
    /// and starts the vCPU with paging off (multiboot) or identity-mapped (direct boot), so
    /// a kernel linked at a high virtual address must be entered at the matching physical one.
    /// Nil when no segment's virtual range contains the entry point.
    public func entryPhysicalAddress() -> UInt64? {
        for segment in segments where entry >= segment.virtualAddress {
            let offset = entry - segment.virtualAddress
            if offset < segment.memorySize {
                // Cannot overflow: parse checked physicalAddress + memorySize.
                return segment.physicalAddress + offset
            }
        }
        return nil
    }

    /// Parses and validates `bytes` as a little-endian x86 ELF executable.
    public static func parse(_ bytes: [UInt8]) throws(ElfError) -> ElfImage {
        let reader = ByteReader(bytes: bytes)
        guard bytes.count >= 4, bytes[0] == 0x7F, bytes[1] == 0x45, bytes[2] == 0x4C, bytes[3] == 0x46 else {
            throw .notELF
        }
        guard bytes.count >= 6 else { throw .truncatedHeader(size: bytes.count) }

        let elfClass: Class
        switch bytes[4] {
        case 1: elfClass = .elf32
        case 2: elfClass = .elf64
        default: throw .unsupportedClass(bytes[4])
        }
        guard bytes[5] == 1 else { throw .unsupportedEndianness(bytes[5]) }

        let headerSize = elfClass == .elf64 ? 64 : 52
        guard bytes.count >= headerSize else { throw .truncatedHeader(size: bytes.count) }

        let type = reader.u16(16)
        let machine = reader.u16(18)
        let expectedMachine = elfClass == .elf64 ? machineX86_64 : machine386
        guard machine == expectedMachine else { throw .unsupportedMachine(elfClass, machine) }
        guard type == typeExecutable || type == typeShared else { throw .unsupportedType(type) }

        let entry: UInt64
        let programHeaderOffset: UInt64
        let programHeaderEntrySize: UInt16
        let programHeaderCount: UInt16
        switch elfClass {
        case .elf64:
            entry = reader.u64(24)
            programHeaderOffset = reader.u64(32)
            programHeaderEntrySize = reader.u16(54)
            programHeaderCount = reader.u16(56)
        case .elf32:
            entry = UInt64(reader.u32(24))
            programHeaderOffset = UInt64(reader.u32(28))
            programHeaderEntrySize = reader.u16(42)
            programHeaderCount = reader.u16(44)
        }

        if programHeaderCount == 0 { throw .noLoadableSegment }
        let expectedEntrySize: UInt16 = elfClass == .elf64 ? 56 : 32
        guard programHeaderEntrySize == expectedEntrySize else {
            throw .invalidProgramHeaderSize(programHeaderEntrySize)
        }
        // count <= 0xFFFF and entry size <= 56, so the product fits easily.
        let tableSize = UInt64(programHeaderCount) * UInt64(programHeaderEntrySize)
        guard reader.contains(offset: programHeaderOffset, length: tableSize) else {
            throw .programHeadersOutOfFile(offset: programHeaderOffset, count: programHeaderCount, fileSize: bytes.count)
        }

        // The end address (`address + memorySize`) must be representable: in 64 bits for
        // ELF64, and at most 4 GiB for ELF32, whose addresses would otherwise wrap.
        let addressLimit: UInt64 = elfClass == .elf64 ? UInt64.max : 0x1_0000_0000
        var segments: [ElfSegment] = []
        var noteSegments: [ElfNoteSegment] = []
        for index in 0..<Int(programHeaderCount) {
            // In bounds: the whole table was checked above.
            let base = Int(programHeaderOffset) + index * Int(programHeaderEntrySize)
            let programType = reader.u32(base)
            if programType == programTypeNote {
                let (offset, size, alignment) = elfClass == .elf64
                    ? (reader.u64(base + 8), reader.u64(base + 32), reader.u64(base + 48))
                    : (UInt64(reader.u32(base + 4)), UInt64(reader.u32(base + 16)), UInt64(reader.u32(base + 28)))
                // Checked when the notes are read (``notes(in:)``): a loader that needs no notes
                // does not care about a bad note header.
                noteSegments.append(ElfNoteSegment(index: index, fileOffset: offset, fileSize: size, alignment: alignment))
                continue
            }
            guard programType == programTypeLoad else { continue }
            let segment: ElfSegment
            switch elfClass {
            case .elf64:
                segment = ElfSegment(
                    fileOffset: reader.u64(base + 8), virtualAddress: reader.u64(base + 16),
                    physicalAddress: reader.u64(base + 24), fileSize: reader.u64(base + 32),
                    memorySize: reader.u64(base + 40), flags: reader.u32(base + 4))
            case .elf32:
                segment = ElfSegment(
                    fileOffset: UInt64(reader.u32(base + 4)), virtualAddress: UInt64(reader.u32(base + 8)),
                    physicalAddress: UInt64(reader.u32(base + 12)), fileSize: UInt64(reader.u32(base + 16)),
                    memorySize: UInt64(reader.u32(base + 20)), flags: reader.u32(base + 24))
            }
            guard reader.contains(offset: segment.fileOffset, length: segment.fileSize) else {
                throw .segmentOutOfFile(index: index)
            }
            guard segment.fileSize <= segment.memorySize else {
                throw .segmentFileSizeExceedsMemorySize(index: index)
            }
            // memorySize <= addressLimit always holds for ELF32 (32-bit field) and ELF64 (limit
            // is UInt64.max), so the subtraction cannot wrap.
            guard segment.physicalAddress <= addressLimit - segment.memorySize,
                segment.virtualAddress <= addressLimit - segment.memorySize
            else {
                throw .addressOverflow(index: index)
            }
            if segment.memorySize > 0 { segments.append(segment) }
        }
        if segments.isEmpty { throw .noLoadableSegment }
        return ElfImage(
            elfClass: elfClass, machine: machine, type: type, entry: entry, segments: segments,
            noteSegments: noteSegments)
    }
}

/// One `PT_LOAD` program header: copy `fileSize` bytes from `fileOffset` to `physicalAddress`
/// and zero the rest up to `memorySize`.
public struct ElfSegment: Equatable, Sendable {
    public var fileOffset: UInt64
    public var virtualAddress: UInt64
    public var physicalAddress: UInt64
    public var fileSize: UInt64
    public var memorySize: UInt64
    /// `p_flags`: PF_X = 1, PF_W = 2, PF_R = 4.
    public var flags: UInt32

    public init(
        fileOffset: UInt64, virtualAddress: UInt64, physicalAddress: UInt64, fileSize: UInt64,
        memorySize: UInt64, flags: UInt32
    ) {
        self.fileOffset = fileOffset
        self.virtualAddress = virtualAddress
        self.physicalAddress = physicalAddress
        self.fileSize = fileSize
        self.memorySize = memorySize
        self.flags = flags
    }
}

/// Why a kernel file is not a loadable ELF image. Program headers are numbered from 0 in file
/// order, as `readelf -l` numbers them in its section-to-segment mapping.
public enum ElfError: Error, Equatable, Sendable, CustomStringConvertible {
    case notELF
    case truncatedHeader(size: Int)
    case unsupportedClass(UInt8)
    case unsupportedEndianness(UInt8)
    case unsupportedMachine(ElfImage.Class, UInt16)
    case unsupportedType(UInt16)
    case invalidProgramHeaderSize(UInt16)
    case programHeadersOutOfFile(offset: UInt64, count: UInt16, fileSize: Int)
    case segmentOutOfFile(index: Int)
    case segmentFileSizeExceedsMemorySize(index: Int)
    case addressOverflow(index: Int)
    case noLoadableSegment
    /// A note in the `PT_NOTE` segment with program-header `index` runs past the segment.
    case malformedNote(index: Int, offset: Int)

    public var description: String {
        switch self {
        case .notELF:
            return "not an ELF file (no \\x7fELF magic)"
        case .truncatedHeader(let size):
            return "ELF header truncated: the file has only \(size) bytes"
        case .unsupportedClass(let value):
            return "unsupported ELF class \(value) (expected 1 for ELF32 or 2 for ELF64)"
        case .unsupportedEndianness(let value):
            return "unsupported ELF data encoding \(value) (only little-endian, 1, is supported)"
        case .unsupportedMachine(let elfClass, let machine):
            return elfClass == .elf64
                ? "unsupported ELF64 machine \(machine) (expected x86-64, 62)"
                : "unsupported ELF32 machine \(machine) (expected i386, 3)"
        case .unsupportedType(let type):
            return "unsupported ELF type \(type) (expected ET_EXEC, 2, or ET_DYN, 3)"
        case .invalidProgramHeaderSize(let size):
            return "ELF program header entry size \(size) does not match the ELF class"
        case .programHeadersOutOfFile(let offset, let count, let fileSize):
            return "ELF program headers (\(count) at offset \(offset)) extend past the end of the \(fileSize)-byte file"
        case .segmentOutOfFile(let index):
            return "ELF segment \(index) extends past the end of the file"
        case .segmentFileSizeExceedsMemorySize(let index):
            return "ELF segment \(index) has a file size larger than its memory size"
        case .addressOverflow(let index):
            return "ELF segment \(index) wraps around the end of the address space"
        case .noLoadableSegment:
            return "ELF file has no loadable (PT_LOAD) segment"
        case .malformedNote(let index, let offset):
            return "ELF note at file offset \(offset) runs past the end of its note segment \(index)"
        }
    }
}

/// Little-endian field reads from a byte array. Callers check bounds first (`contains`); the
/// reads themselves go through `Array`'s own checks, so a missed check traps at the read rather
/// than reading out of bounds.
fileprivate struct ByteReader {
    let bytes: [UInt8]

    /// Whether `[offset, offset + length)` lies inside the bytes, without overflow.
    func contains(offset: UInt64, length: UInt64) -> Bool {
        let count = UInt64(bytes.count)
        return offset <= count && length <= count - offset
    }

    func u16(_ offset: Int) -> UInt16 {
        UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }

    func u32(_ offset: Int) -> UInt32 {
        UInt32(u16(offset)) | UInt32(u16(offset + 2)) << 16
    }

    func u64(_ offset: Int) -> UInt64 {
        UInt64(u32(offset)) | UInt64(u32(offset + 4)) << 32
    }
}
