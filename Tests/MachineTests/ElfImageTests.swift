import FuzzSeeds
import Testing

@testable import Machine

/// One program header for `makeElf`.
private struct ProgramHeader {
    var type: UInt32 = 1  // PT_LOAD
    var flags: UInt32 = 5  // R+X
    var offset: UInt64 = 0
    var vaddr: UInt64 = 0
    var paddr: UInt64 = 0
    var filesz: UInt64 = 0
    var memsz: UInt64 = 0
}

/// Little-endian field writes into a byte array, growing it as needed.
extension Array where Element == UInt8 {
    mutating func put(_ value: UInt64, at offset: Int, width: Int) {
        if count < offset + width { append(contentsOf: [UInt8](repeating: 0, count: offset + width - count)) }
        for i in 0..<width { self[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }
    mutating func put16(_ value: UInt16, at offset: Int) { put(UInt64(value), at: offset, width: 2) }
    mutating func put32(_ value: UInt32, at offset: Int) { put(UInt64(value), at: offset, width: 4) }
    mutating func put64(_ value: UInt64, at offset: Int) { put(value, at: offset, width: 8) }
}

/// Builds an ELF file: header, program headers right after it, then zero padding up to
/// `fileSize` (or just past the headers) with a recognisable byte pattern.
private func makeElf(
    elf64: Bool = true, machine: UInt16? = nil, type: UInt16 = 2, entry: UInt64 = 0,
    headers: [ProgramHeader], fileSize: Int? = nil
) -> [UInt8] {
    let headerSize = elf64 ? 64 : 52
    let entrySize = elf64 ? 56 : 32
    let tableEnd = headerSize + headers.count * entrySize
    var bytes = [UInt8](repeating: 0, count: max(fileSize ?? tableEnd, tableEnd))
    for i in tableEnd..<bytes.count { bytes[i] = UInt8(truncatingIfNeeded: i) }
    bytes[0] = 0x7F
    bytes[1] = 0x45
    bytes[2] = 0x4C
    bytes[3] = 0x46
    bytes[4] = elf64 ? 2 : 1
    bytes[5] = 1
    bytes[6] = 1
    bytes.put16(type, at: 16)
    bytes.put16(machine ?? (elf64 ? 62 : 3), at: 18)
    bytes.put32(1, at: 20)
    if elf64 {
        bytes.put64(entry, at: 24)
        bytes.put64(UInt64(headerSize), at: 32)
        bytes.put16(UInt16(headerSize), at: 52)
        bytes.put16(UInt16(entrySize), at: 54)
        bytes.put16(UInt16(headers.count), at: 56)
    } else {
        bytes.put32(UInt32(truncatingIfNeeded: entry), at: 24)
        bytes.put32(UInt32(headerSize), at: 28)
        bytes.put16(UInt16(headerSize), at: 40)
        bytes.put16(UInt16(entrySize), at: 42)
        bytes.put16(UInt16(headers.count), at: 44)
    }
    for (i, h) in headers.enumerated() {
        let base = headerSize + i * entrySize
        bytes.put32(h.type, at: base)
        if elf64 {
            bytes.put32(h.flags, at: base + 4)
            bytes.put64(h.offset, at: base + 8)
            bytes.put64(h.vaddr, at: base + 16)
            bytes.put64(h.paddr, at: base + 24)
            bytes.put64(h.filesz, at: base + 32)
            bytes.put64(h.memsz, at: base + 40)
            bytes.put64(0x1000, at: base + 48)
        } else {
            bytes.put32(UInt32(truncatingIfNeeded: h.offset), at: base + 4)
            bytes.put32(UInt32(truncatingIfNeeded: h.vaddr), at: base + 8)
            bytes.put32(UInt32(truncatingIfNeeded: h.paddr), at: base + 12)
            bytes.put32(UInt32(truncatingIfNeeded: h.filesz), at: base + 16)
            bytes.put32(UInt32(truncatingIfNeeded: h.memsz), at: base + 20)
            bytes.put32(h.flags, at: base + 24)
            bytes.put32(0x1000, at: base + 28)
        }
    }
    return bytes
}

/// A typical higher-half x86-64 kernel: text and data (with bss), a note, and an empty PT_LOAD.
/// Its last segment ends exactly at the end of the file.
private let kernel64 = makeElf(
    entry: 0xFFFF_FFFF_8000_0010,
    headers: [
        ProgramHeader(offset: 0x200, vaddr: 0xFFFF_FFFF_8000_0000, paddr: 0x10_0000, filesz: 0x100, memsz: 0x100),
        ProgramHeader(type: 4, offset: 0x300, filesz: 0x10, memsz: 0x10),  // PT_NOTE
        ProgramHeader(offset: 0x300, vaddr: 0xFFFF_FFFF_8000_1000, paddr: 0x10_1000, filesz: 0, memsz: 0),
        ProgramHeader(flags: 6, offset: 0x300, vaddr: 0xFFFF_FFFF_8000_2000, paddr: 0x10_2000, filesz: 0x100, memsz: 0x3000),
    ], fileSize: 0x400)

/// A multiboot-style i386 kernel linked at its load address.
private let kernel32 = makeElf(
    elf64: false, entry: 0x10_0020,
    headers: [
        ProgramHeader(offset: 0x100, vaddr: 0x10_0000, paddr: 0x10_0000, filesz: 0x80, memsz: 0x80),
        ProgramHeader(flags: 6, offset: 0x180, vaddr: 0x10_1000, paddr: 0x10_1000, filesz: 0x80, memsz: 0x1000),
    ], fileSize: 0x200)


/// What a successful parse guarantees a loader; checked after every fuzzed parse.
private func checkInvariants(_ image: ElfImage, fileSize: Int) {
    #expect(!image.segments.isEmpty)
    for s in image.segments {
        #expect(s.memorySize > 0)
        #expect(s.fileSize <= s.memorySize)
        #expect(s.fileOffset <= UInt64(fileSize) && s.fileSize <= UInt64(fileSize) - s.fileOffset)
        #expect(!s.physicalAddress.addingReportingOverflow(s.memorySize).overflow)
        #expect(!s.virtualAddress.addingReportingOverflow(s.memorySize).overflow)
    }
    _ = image.entryPhysicalAddress()
}

@Suite struct ElfImageTests {
    @Test func parsesElf64Kernel() throws {
        let image = try ElfImage.parse(kernel64)
        #expect(image.elfClass == .elf64)
        #expect(image.machine == 62)
        #expect(image.type == 2)
        #expect(image.entry == 0xFFFF_FFFF_8000_0010)
        #expect(
            image.segments == [
                ElfSegment(
                    fileOffset: 0x200, virtualAddress: 0xFFFF_FFFF_8000_0000, physicalAddress: 0x10_0000,
                    fileSize: 0x100, memorySize: 0x100, flags: 5),
                ElfSegment(
                    fileOffset: 0x300, virtualAddress: 0xFFFF_FFFF_8000_2000, physicalAddress: 0x10_2000,
                    fileSize: 0x100, memorySize: 0x3000, flags: 6),
            ])
        #expect(image.entryPhysicalAddress() == 0x10_0010)
    }

    @Test func parsesElf32Kernel() throws {
        let image = try ElfImage.parse(kernel32)
        #expect(image.elfClass == .elf32)
        #expect(image.machine == 3)
        #expect(image.entry == 0x10_0020)
        #expect(image.segments.count == 2)
        #expect(image.segments[1] == ElfSegment(
            fileOffset: 0x180, virtualAddress: 0x10_1000, physicalAddress: 0x10_1000, fileSize: 0x80,
            memorySize: 0x1000, flags: 6))
        #expect(image.entryPhysicalAddress() == 0x10_0020)
    }

    @Test func acceptsPositionIndependentKernel() throws {
        let bytes = makeElf(type: 3, entry: 0x1000, headers: [ProgramHeader(offset: 0, vaddr: 0x1000, paddr: 0x20_0000, filesz: 0x78, memsz: 0x2000)])
        let image = try ElfImage.parse(bytes)
        #expect(image.type == 3)
        #expect(image.entryPhysicalAddress() == 0x20_0000)
    }

    @Test func entryPhysicalAddress() throws {
        let headers = [
            ProgramHeader(offset: 0, vaddr: 0x40_0000, paddr: 0x10_0000, filesz: 0, memsz: 0x1000),
            ProgramHeader(offset: 0, vaddr: 0x50_0000, paddr: 0x30_0000, filesz: 0, memsz: 0x1000),
        ]
        func entryPA(_ entry: UInt64) throws -> UInt64? {
            try ElfImage.parse(makeElf(entry: entry, headers: headers)).entryPhysicalAddress()
        }
        #expect(try entryPA(0x40_0000) == 0x10_0000)
        #expect(try entryPA(0x40_0FFF) == 0x10_0FFF)
        #expect(try entryPA(0x40_1000) == nil)  // one past the end of the first segment
        #expect(try entryPA(0x50_0123) == 0x30_0123)
        #expect(try entryPA(0x3F_FFFF) == nil)
        #expect(try entryPA(0) == nil)
        #expect(try entryPA(UInt64.max) == nil)
    }

    @Test func headerErrors() {
        #expect(throws: ElfError.notELF) { try ElfImage.parse([]) }
        #expect(throws: ElfError.notELF) { try ElfImage.parse([0x7F, 0x45, 0x4C]) }
        #expect(throws: ElfError.notELF) { try ElfImage.parse(Array("MZ\u{90}\u{0}this is not elf".utf8)) }
        #expect(throws: ElfError.truncatedHeader(size: 4)) { try ElfImage.parse([0x7F, 0x45, 0x4C, 0x46]) }
        #expect(throws: ElfError.truncatedHeader(size: 63)) { try ElfImage.parse(Array(kernel64[..<63])) }
        #expect(throws: ElfError.truncatedHeader(size: 51)) { try ElfImage.parse(Array(kernel32[..<51])) }

        var bytes = kernel64
        bytes[4] = 3
        #expect(throws: ElfError.unsupportedClass(3)) { try ElfImage.parse(bytes) }
        bytes[4] = 0
        #expect(throws: ElfError.unsupportedClass(0)) { try ElfImage.parse(bytes) }
        bytes = kernel64
        bytes[5] = 2
        #expect(throws: ElfError.unsupportedEndianness(2)) { try ElfImage.parse(bytes) }

        #expect(throws: ElfError.unsupportedMachine(.elf64, 3)) {
            try ElfImage.parse(makeElf(machine: 3, headers: []))
        }
        #expect(throws: ElfError.unsupportedMachine(.elf64, 183)) {  // AArch64
            try ElfImage.parse(makeElf(machine: 183, headers: []))
        }
        #expect(throws: ElfError.unsupportedMachine(.elf32, 62)) {
            try ElfImage.parse(makeElf(elf64: false, machine: 62, headers: []))
        }
        #expect(throws: ElfError.unsupportedType(1)) { try ElfImage.parse(makeElf(type: 1, headers: [])) }  // ET_REL
        #expect(throws: ElfError.unsupportedType(4)) { try ElfImage.parse(makeElf(type: 4, headers: [])) }  // ET_CORE
        #expect(throws: ElfError.unsupportedType(0)) { try ElfImage.parse(makeElf(elf64: false, type: 0, headers: [])) }
    }

    @Test func programHeaderTableErrors() {
        #expect(throws: ElfError.noLoadableSegment) { try ElfImage.parse(makeElf(headers: [])) }

        var bytes = kernel64
        bytes.put16(64, at: 54)
        #expect(throws: ElfError.invalidProgramHeaderSize(64)) { try ElfImage.parse(bytes) }
        bytes.put16(0, at: 54)
        #expect(throws: ElfError.invalidProgramHeaderSize(0)) { try ElfImage.parse(bytes) }
        bytes = kernel32
        bytes.put16(56, at: 42)  // an ELF64 entry size in an ELF32 file
        #expect(throws: ElfError.invalidProgramHeaderSize(56)) { try ElfImage.parse(bytes) }

        bytes = kernel64
        bytes.put64(UInt64(bytes.count) - 56 * 4 + 1, at: 32)
        #expect(throws: ElfError.programHeadersOutOfFile(offset: UInt64(bytes.count) - 223, count: 4, fileSize: bytes.count)) {
            try ElfImage.parse(bytes)
        }
        for offset in [UInt64.max, UInt64.max - 55, UInt64(Int.max), 1 << 63, UInt64(bytes.count)] {
            bytes.put64(offset, at: 32)
            #expect(throws: ElfError.programHeadersOutOfFile(offset: offset, count: 4, fileSize: bytes.count)) {
                try ElfImage.parse(bytes)
            }
        }
        bytes = kernel64
        bytes.put16(0xFFFF, at: 56)  // PN_XNUM is not supported: the table would be 3.6 MB
        #expect(throws: ElfError.programHeadersOutOfFile(offset: 64, count: 0xFFFF, fileSize: bytes.count)) {
            try ElfImage.parse(bytes)
        }
        bytes = kernel32
        bytes.put32(0xFFFF_FFFF, at: 28)
        #expect(throws: ElfError.programHeadersOutOfFile(offset: 0xFFFF_FFFF, count: 2, fileSize: bytes.count)) {
            try ElfImage.parse(bytes)
        }
    }

    @Test func segmentErrors() {
        func parse64(_ h: ProgramHeader, fileSize: Int = 0x200) throws(ElfError) -> ElfImage {
            try ElfImage.parse(makeElf(headers: [ProgramHeader(type: 6), h], fileSize: fileSize))  // PT_PHDR first
        }
        #expect(throws: ElfError.segmentOutOfFile(index: 1)) {
            try parse64(ProgramHeader(offset: 0x1F0, paddr: 0x10_0000, filesz: 0x11, memsz: 0x11))
        }
        #expect(throws: ElfError.segmentOutOfFile(index: 1)) {
            try parse64(ProgramHeader(offset: 0x201, paddr: 0x10_0000, filesz: 0, memsz: 0x10))
        }
        #expect(throws: ElfError.segmentOutOfFile(index: 1)) {
            try parse64(ProgramHeader(offset: UInt64.max, paddr: 0x10_0000, filesz: 1, memsz: 1))
        }
        #expect(throws: ElfError.segmentOutOfFile(index: 1)) {
            try parse64(ProgramHeader(offset: 0x10, paddr: 0x10_0000, filesz: UInt64.max, memsz: UInt64.max))
        }
        #expect(throws: ElfError.segmentOutOfFile(index: 1)) {
            try parse64(ProgramHeader(offset: UInt64.max, paddr: 0x10_0000, filesz: UInt64.max, memsz: UInt64.max))
        }
        #expect(throws: ElfError.segmentFileSizeExceedsMemorySize(index: 1)) {
            try parse64(ProgramHeader(offset: 0, paddr: 0x10_0000, filesz: 0x20, memsz: 0x1F))
        }
        // A PT_LOAD with memsz 0 is still validated, though not returned.
        #expect(throws: ElfError.segmentFileSizeExceedsMemorySize(index: 1)) {
            try parse64(ProgramHeader(offset: 0, paddr: 0x10_0000, filesz: 0x20, memsz: 0))
        }
        #expect(throws: ElfError.addressOverflow(index: 1)) {
            try parse64(ProgramHeader(offset: 0, paddr: UInt64.max, filesz: 0, memsz: 1))
        }
        #expect(throws: ElfError.addressOverflow(index: 1)) {
            try parse64(ProgramHeader(offset: 0, paddr: 0x10_0000, filesz: 0, memsz: UInt64.max))
        }
        #expect(throws: ElfError.addressOverflow(index: 1)) {
            try parse64(ProgramHeader(offset: 0, vaddr: 0xFFFF_FFFF_FFFF_F000, paddr: 0x10_0000, filesz: 0, memsz: 0x1001))
        }
        // Ending exactly at the top of the 64-bit space minus one byte is fine.
        #expect(throws: Never.self) {
            try parse64(ProgramHeader(offset: 0, paddr: UInt64.max - 1, filesz: 0, memsz: 1))
        }
        // Only non-PT_LOAD headers, or only empty PT_LOADs: nothing to load.
        #expect(throws: ElfError.noLoadableSegment) {
            try ElfImage.parse(makeElf(headers: [ProgramHeader(type: 4), ProgramHeader(type: 0x6474_E551)]))
        }
        #expect(throws: ElfError.noLoadableSegment) {
            try ElfImage.parse(makeElf(headers: [ProgramHeader(offset: 0, paddr: 0x10_0000, filesz: 0, memsz: 0)]))
        }
        // Non-PT_LOAD headers are not validated: their garbage does not matter to a loader.
        #expect(throws: Never.self) {
            try ElfImage.parse(makeElf(headers: [
                ProgramHeader(type: 4, offset: UInt64.max, paddr: UInt64.max, filesz: UInt64.max, memsz: 1),
                ProgramHeader(offset: 0, paddr: 0x10_0000, filesz: 0x40, memsz: 0x40),
            ]))
        }
    }

    @Test func elf32AddressesMustEndAtOrBelowFourGiB() throws {
        func parse32(paddr: UInt64, vaddr: UInt64, memsz: UInt64) throws(ElfError) -> ElfImage {
            try ElfImage.parse(makeElf(
                elf64: false, headers: [ProgramHeader(offset: 0, vaddr: vaddr, paddr: paddr, filesz: 0, memsz: memsz)]))
        }
        _ = try parse32(paddr: 0xFFFF_F000, vaddr: 0x10_0000, memsz: 0x1000)
        #expect(throws: ElfError.addressOverflow(index: 0)) { try parse32(paddr: 0xFFFF_F000, vaddr: 0x10_0000, memsz: 0x1001) }
        #expect(throws: ElfError.addressOverflow(index: 0)) { try parse32(paddr: 0x10_0000, vaddr: 0xC000_0000, memsz: 0xFFFF_FFFF) }
        #expect(throws: ElfError.addressOverflow(index: 0)) { try parse32(paddr: 2, vaddr: 1, memsz: 0xFFFF_FFFF) }
        _ = try parse32(paddr: 1, vaddr: 1, memsz: 0xFFFF_FFFF)  // ends exactly at 4 GiB
    }

    @Test func messagesAreOneLine() {
        let errors: [ElfError] = [
            .notELF, .truncatedHeader(size: 3), .unsupportedClass(9), .unsupportedEndianness(2),
            .unsupportedMachine(.elf64, 3), .unsupportedMachine(.elf32, 62), .unsupportedType(1),
            .invalidProgramHeaderSize(7), .programHeadersOutOfFile(offset: 1, count: 2, fileSize: 3),
            .segmentOutOfFile(index: 4), .segmentFileSizeExceedsMemorySize(index: 5), .addressOverflow(index: 6),
            .noLoadableSegment,
        ]
        var seen = Set<String>()
        for error in errors {
            #expect(!error.description.isEmpty && !error.description.contains("\n"))
            #expect(seen.insert(error.description).inserted)
        }
        #expect(ElfError.segmentOutOfFile(index: 4).description.contains("segment 4"))
        #expect(ElfError.unsupportedMachine(.elf64, 183).description.contains("183"))
    }

    @Test(arguments: ["elf64", "elf32"])
    func everyTruncationFailsCleanly(kernel: String) throws {
        let full = kernel == "elf64" ? kernel64 : kernel32
        _ = try ElfImage.parse(full)
        for length in 0..<full.count {
            #expect(throws: ElfError.self) { try ElfImage.parse(Array(full[..<length])) }
        }
    }

    @Test func randomGarbageNeverTraps() {
        var rng = SplitMix64(state: 0x5EED_0001)
        var parsed = 0
        for round in 0..<20_000 {
            let length = Int(rng.next() % 400)
            var bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            // Most rounds get a plausible identification so the parser gets past the magic.
            if round % 4 != 0, length >= 20 {
                bytes[0] = 0x7F
                bytes[1] = 0x45
                bytes[2] = 0x4C
                bytes[3] = 0x46
                bytes[4] = UInt8(1 + rng.next() % 2)
                bytes[5] = 1
                bytes.put16(bytes[4] == 2 ? 62 : 3, at: 18)
                bytes.put16(UInt16(2 + rng.next() % 2), at: 16)
            }
            if let image = try? ElfImage.parse(bytes) {
                parsed += 1
                checkInvariants(image, fileSize: bytes.count)
            }
        }
        _ = parsed
    }

    @Test(arguments: ["elf64", "elf32"])
    func mutatedKernelsNeverTrap(kernel: String) {
        let original = kernel == "elf64" ? kernel64 : kernel32
        var rng = SplitMix64(state: 0xE1F)
        let extremes: [UInt64] = [0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 32,
                                  UInt64(Int.max), 1 << 63, UInt64.max - 1, UInt64.max]
        let headerEnd = original[4] == 2 ? 64 + 4 * 56 : 52 + 2 * 32
        var accepted = 0
        for _ in 0..<20_000 {
            var bytes = original
            for _ in 0..<(1 + rng.next() % 3) {
                let offset = Int(rng.next() % UInt64(headerEnd - 8))
                switch rng.next() % 3 {
                case 0: bytes[offset] = UInt8(truncatingIfNeeded: rng.next())
                case 1: bytes.put64(extremes[Int(rng.next() % UInt64(extremes.count))], at: offset)
                default: bytes.put32(UInt32(truncatingIfNeeded: extremes[Int(rng.next() % UInt64(extremes.count))]), at: offset)
                }
            }
            if rng.next() % 8 == 0 { bytes.removeLast(Int(rng.next() % UInt64(bytes.count))) }
            if let image = try? ElfImage.parse(bytes) {
                accepted += 1
                checkInvariants(image, fileSize: bytes.count)
            }
        }
        #expect(accepted > 0)  // some mutations hit don't-care bytes; the fuzz reached success paths
    }
}
