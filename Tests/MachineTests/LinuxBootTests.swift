import FuzzSeeds
import Testing
import TestFixtures

@testable import Machine

/// One ELF note for `linuxELF`.
struct TestNote {
    var name: String
    var type: UInt32
    var descriptor: [UInt8]
    static func pvh(_ entry: UInt64, width: Int = 8) -> TestNote {
        TestNote(name: "Xen", type: 18, descriptor: (0..<width).map { UInt8(truncatingIfNeeded: entry >> (8 * UInt64($0))) })
    }
    static let linux = TestNote(name: "Linux", type: 0x100, descriptor: [0, 0, 0, 0])
    static let gnuBuildID = TestNote(name: "GNU", type: 3, descriptor: [UInt8](repeating: 0xAB, count: 20))
}

/// A vmlinux-shaped ELF: one PT_LOAD of 0x1000 bytes (filled with 0x90) at physical 1 MiB and
/// virtual `virtualBase`, and a PT_NOTE with `notes` (padded to `noteAlignment`). `entry` is
/// `e_entry` as written.
func linuxELF(elf64: Bool = true, entry: UInt64 = 0x10_0000, virtualBase: UInt64 = 0xFFFF_FFFF_8100_0000,
              notes: [TestNote], noteAlignment: Int = 4) -> [UInt8] {
    var noteBytes: [UInt8] = []
    func pad() { while noteBytes.count % noteAlignment != 0 { noteBytes.append(0) } }
    for n in notes {
        let name = Array(n.name.utf8) + [0]
        noteBytes += CompressedPayload.littleEndian32(UInt32(name.count))
        noteBytes += CompressedPayload.littleEndian32(UInt32(n.descriptor.count))
        noteBytes += CompressedPayload.littleEndian32(n.type)
        noteBytes += name
        pad()
        noteBytes += n.descriptor
        pad()
    }
    var f = [UInt8](repeating: 0, count: 0x2000)
    f.replaceSubrange(0..<7, with: [0x7F, 0x45, 0x4C, 0x46, elf64 ? 2 : 1, 1, 1])
    f.put16(2, at: 16)
    f.put16(elf64 ? 62 : 3, at: 18)
    f.put32(1, at: 20)
    let noteOffset = 0x100
    f.replaceSubrange(noteOffset..<(noteOffset + noteBytes.count), with: noteBytes)
    for i in 0x1000..<0x2000 { f[i] = 0x90 }
    let va = elf64 ? virtualBase : 0x10_0000
    if elf64 {
        f.put64(entry, at: 24); f.put64(64, at: 32); f.put16(64, at: 52); f.put16(56, at: 54); f.put16(2, at: 56)
        // PT_LOAD
        f.put32(1, at: 64); f.put32(5, at: 68); f.put64(0x1000, at: 72); f.put64(va, at: 80)
        f.put64(0x10_0000, at: 88); f.put64(0x1000, at: 96); f.put64(0x1000, at: 104); f.put64(0x1000, at: 112)
        // PT_NOTE
        f.put32(4, at: 120); f.put32(4, at: 124); f.put64(UInt64(noteOffset), at: 128)
        f.put64(UInt64(noteBytes.count), at: 152); f.put64(UInt64(noteBytes.count), at: 160)
        f.put64(UInt64(noteAlignment), at: 168)
    } else {
        f.put32(UInt32(truncatingIfNeeded: entry), at: 24); f.put32(52, at: 28); f.put16(52, at: 40)
        f.put16(32, at: 42); f.put16(2, at: 44)
        f.put32(1, at: 52); f.put32(0x1000, at: 56); f.put32(UInt32(va), at: 60); f.put32(0x10_0000, at: 64)
        f.put32(0x1000, at: 68); f.put32(0x1000, at: 72); f.put32(5, at: 76); f.put32(0x1000, at: 80)
        f.put32(4, at: 84); f.put32(UInt32(noteOffset), at: 88); f.put32(UInt32(noteBytes.count), at: 100)
        f.put32(UInt32(noteBytes.count), at: 104); f.put32(4, at: 108); f.put32(UInt32(noteAlignment), at: 112)
    }
    return f
}

@Suite struct ElfNoteTests {
    @Test func readsNotesWithFourAndEightByteDescriptors() throws {
        let elf = linuxELF(notes: [.gnuBuildID, .linux, .pvh(0x100_0850)])
        let image = try ElfImage.parse(elf)
        let notes = try image.notes(in: elf)
        #expect(notes.map(\.nameString) == ["GNU", "Linux", "Xen"])
        #expect(notes.map(\.type) == [3, 0x100, 18])
        #expect(Array(elf[notes[2].descriptor]) == [0x50, 0x08, 0x00, 0x01, 0, 0, 0, 0])
        let elf32 = linuxELF(elf64: false, notes: [.pvh(0x10_0010, width: 4)])
        let notes32 = try ElfImage.parse(elf32).notes(in: elf32)
        #expect(notes32.count == 1 && notes32[0].descriptor.count == 4)
    }

    @Test func eightByteAlignedNoteSegments() throws {
        // .note.gnu.property style: names and descriptors padded to 8.
        let elf = linuxELF(notes: [TestNote(name: "GNU", type: 5, descriptor: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
                                   .pvh(0x10_0000)], noteAlignment: 8)
        let notes = try ElfImage.parse(elf).notes(in: elf)
        #expect(notes.map(\.nameString) == ["GNU", "Xen"])
        #expect(Array(elf[notes[1].descriptor]) == [0, 0, 0x10, 0, 0, 0, 0, 0])
    }

    @Test func malformedNotesAreErrors() throws {
        var elf = linuxELF(notes: [.linux])
        elf.put32(0xFFFF_FFF0, at: 0x100)  // namesz far beyond the segment
        #expect(throws: ElfError.malformedNote(index: 1, offset: 0x100)) { try ElfImage.parse(elf).notes(in: elf) }
        elf = linuxELF(notes: [.linux])
        elf.put32(0xFFFF_FFFF, at: 0x104)  // descsz
        #expect(throws: ElfError.malformedNote(index: 1, offset: 0x100)) { try ElfImage.parse(elf).notes(in: elf) }
        // A PT_NOTE outside the file: ElfImage.parse does not care, reading the notes does.
        elf = linuxELF(notes: [.linux])
        elf.put64(0xFFFF_FFFF_FFFF_FF00, at: 128)
        let image = try ElfImage.parse(elf)
        #expect(throws: ElfError.segmentOutOfFile(index: 1)) { try image.notes(in: elf) }
        #expect(throws: BootError.self) { try KernelImage.open(elf, decompressedSizeLimit: 1 << 20) }
    }

    @Test func mutatedNotesNeverTrap() {
        let original = linuxELF(notes: [.gnuBuildID, .linux, .pvh(0x10_0000)])
        var rng = SplitMix64(state: 0x0E1F)
        for _ in 0..<5_000 {
            var elf = original
            for _ in 0..<2 {
                let at = 0x100 + Int(rng.next() % 0x60)
                elf[at] = UInt8(truncatingIfNeeded: rng.next())
            }
            if let notes = try? ElfImage.parse(elf).notes(in: elf) {
                for n in notes { _ = elf[n.descriptor] }
            }
            _ = try? KernelImage.open(elf, decompressedSizeLimit: 1 << 20)
        }
    }
}

@Suite struct KernelImageTests {
    @Test func formatDecisions() throws {
        func format(_ bytes: [UInt8]) throws -> BootPlan.Format {
            try KernelImage.open(bytes, decompressedSizeLimit: 1 << 24).format
        }
        #expect(try format(linuxELF(notes: [.linux, .pvh(0x10_0000)])) == .pvh)
        #expect(try format(linuxELF(elf64: false, notes: [.pvh(0x10_0000, width: 4)])) == .pvh)
        #expect(try format(linuxELF(notes: [.linux])) == .linux64)
        #expect(try format(linuxELF(notes: [.gnuBuildID])) == .elf64Direct)
        #expect(try format(linuxELF(notes: [])) == .elf64Direct)
        #expect(try format(BuiltinGuest.elf()) == .elf64Direct)
        #expect(try format(multibootELF32()) == .multiboot)
        // The PVH entry is taken from the note, not e_entry.
        let image = try KernelImage.open(linuxELF(notes: [.pvh(0x10_0080)]), decompressedSizeLimit: 1 << 20)
        #expect(image.pvhEntry == 0x10_0080)
        #expect(image.bzImage == nil)
        #expect(image.summary == "PVH")
    }

    @Test(arguments: [KernelCompression.gzip, .xz, .lzma, .lz4, .zstd])
    func bzImagesAreUnpacked(format: KernelCompression) throws {
        let pvh = linuxELF(notes: [.linux, .pvh(0x10_0000)])
        let image = try KernelImage.open(try SyntheticBzImage.wrapping(pvh, format: format).bytes, decompressedSizeLimit: 1 << 24)
        #expect(image.format == .pvh)
        #expect(image.bytes == pvh)
        #expect(image.bzImage?.compression == format)
        #expect(image.bzImage?.header.protocolString == "2.15")
        #expect(image.bzImage?.setupHeaderBytes.count == 0x26C - 0x1F1)
        #expect(image.summary == "bzImage (boot protocol 2.15, \(format) payload) -> PVH")
        // Without a PVH note, a bzImage's vmlinux gets the 64-bit protocol even without a Linux note.
        let plain = linuxELF(notes: [])
        #expect(try KernelImage.open(try SyntheticBzImage.wrapping(plain, format: format).bytes,
                                     decompressedSizeLimit: 1 << 24).format == .linux64)
    }

    @Test func uncompressedPayloadIsTakenAsIs() throws {
        let elf = linuxELF(notes: [.linux])
        let image = try KernelImage.open(SyntheticBzImage(payload: elf).bytes, decompressedSizeLimit: 1 << 20)
        #expect(image.format == .linux64 && image.bytes == elf && image.bzImage?.compression == nil)
    }

    @Test func badBzImages() throws {
        let elf = linuxELF(notes: [.linux])
        func open(_ b: [UInt8], limit: Int = 1 << 24) throws { _ = try KernelImage.open(b, decompressedSizeLimit: limit) }
        func message(_ b: [UInt8], limit: Int = 1 << 24) -> String {
            do { try open(b, limit: limit); return "" } catch { return "\(error)" }
        }
        // Setup header problems surface as such.
        var old = try SyntheticBzImage.wrapping(elf, format: .gzip)
        old.version = 0x0207
        #expect(message(old.bytes).hasPrefix("bad Linux bzImage: Linux boot protocol 2.7 is too old"))
        var cut = try SyntheticBzImage.wrapping(elf, format: .gzip).bytes
        cut.removeLast(10)
        #expect(message(cut).contains("extends past the end"))
        // Unknown compression.
        let unknown = SyntheticBzImage(payload: [0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4]).bytes
        #expect(message(unknown).contains("unknown compression format (starts with de ad be ef"))
        // bzip2 is recognised and refused.
        let bz2 = try SyntheticBzImage.wrapping(elf, format: .bzip2).bytes
        #expect(message(bz2) == "cannot decompress the Linux bzImage: bzip2-compressed kernels are not supported (gzip, xz, lzma, lz4 and zstd are)")
        // Corrupt and truncated payloads.
        var corrupt = try SyntheticBzImage.wrapping(elf, format: .xz)
        corrupt.payload[corrupt.payload.count / 2] ^= 0xFF
        #expect(message(corrupt.bytes).hasPrefix("cannot decompress the Linux bzImage: xz kernel payload"))
        var truncated = try SyntheticBzImage.wrapping(elf, format: .zstd)
        truncated.payload = Array(truncated.payload.prefix(truncated.payload.count / 2)) + CompressedPayload.littleEndian32(UInt32(elf.count))
        #expect(message(truncated.bytes) == "cannot decompress the Linux bzImage: zstd kernel payload is truncated: the compressed stream ends early")
        // The decompressed size is bounded by the caller's limit (guest RAM).
        #expect(message(try SyntheticBzImage.wrapping(elf, format: .lz4).bytes, limit: 4096)
            .contains("declares \(elf.count) uncompressed bytes; it must be between 1 and 4096"))
        // A payload that is not an ELF.
        let notELF = try SyntheticBzImage.wrapping([UInt8](repeating: 0x41, count: 5000), format: .gzip).bytes
        #expect(message(notELF).hasPrefix("the Linux bzImage payload is not a vmlinux ELF: not an ELF file"))
        // An ELF32 vmlinux without PVH: no usable entry.
        let elf32 = linuxELF(elf64: false, notes: [])
        #expect(throws: BootError.self) { try open(try SyntheticBzImage.wrapping(elf32, format: .gzip).bytes) }
        // Every message is one line.
        for b in [old.bytes, cut, unknown, bz2, corrupt.bytes, truncated.bytes, notELF] {
            #expect(!message(b).isEmpty && !message(b).contains("\n"))
        }
    }

    @Test func badPVHNotes() throws {
        #expect { try KernelImage.open(linuxELF(notes: [.pvh(0x10_0000, width: 3)]), decompressedSizeLimit: 1 << 20) }
            throws: { "\($0)".contains("descriptor of 3 bytes, expected 4 or 8") }
        #expect { try KernelImage.open(linuxELF(notes: [.pvh(0x1_0000_0000)]), decompressedSizeLimit: 1 << 20) }
            throws: { "\($0)".contains("is not a 32-bit physical address") }
        // An entry outside every loaded segment fails at load time.
        let mem = try ArrayGuestMemory(size: 8 << 20)
        #expect { try KernelLoader.load(kernel: linuxELF(notes: [.pvh(0x20_0000)]), modules: [], commandLine: "",
                                        cpuCount: 1, into: mem) }
            throws: { "\($0)" == "kernel entry point 0x200000 is not inside a loaded segment" }
    }

    @Test func everyTruncatedBzImageFailsCleanly() throws {
        let full = try SyntheticBzImage.wrapping(linuxELF(notes: [.linux]), format: .lz4).bytes
        _ = try KernelImage.open(full, decompressedSizeLimit: 1 << 20)
        for length in stride(from: 0, to: full.count, by: 7) {
            #expect(throws: BootError.self) { try KernelImage.open(Array(full.prefix(length)), decompressedSizeLimit: 1 << 20) }
        }
    }
}

@Suite struct LinuxLoaderTests {
    static let initrd = (0..<5000).map { UInt8(truncatingIfNeeded: $0 * 7) }

    @Test func pvhLoadWritesStartInfo() throws {
        let mem = try ArrayGuestMemory(size: 16 << 20)
        let elf = linuxELF(notes: [.linux, .pvh(0x10_0040)])
        let plan = try KernelLoader.load(kernel: elf, modules: [BootModule(name: "initrd.img", bytes: Self.initrd)],
                                         commandLine: "console=ttyS0", cpuCount: 2, into: mem)
        #expect(plan.format == .pvh)
        #expect(plan.cpu.mode == .protected32 && plan.cpu.rip == 0x10_0040 && plan.cpu.rbx == BootLayout.linuxBootData)
        #expect(plan.kernelRange == 0x10_0000..<0x10_1000)
        // The initramfs: page-aligned, ending at the top of RAM.
        let initrdAt: UInt64 = (16 << 20) - 0x2000
        #expect(plan.modules.count == 1 && plan.modules[0].range == initrdAt..<(initrdAt + 5000))
        #expect(try mem.read(count: 5000, at: initrdAt) == Self.initrd)
        let si = BootLayout.linuxBootData
        #expect(mem.u32(si) == 0x336E_C578 && mem.u32(si + 4) == 1 && mem.u32(si + 8) == 0)
        #expect(mem.u32(si + 12) == 1)
        #expect(mem.string(mem.u64(si + 24)) == "console=ttyS0")
        #expect(mem.u64(si + 32) == ACPITables.defaultBase)
        let modlist = mem.u64(si + 16)
        #expect(mem.u64(modlist) == initrdAt && mem.u64(modlist + 8) == 5000 && mem.string(mem.u64(modlist + 16)) == "initrd.img")
        let memmap = mem.u64(si + 40)
        let e820 = mem.layout.e820
        #expect(mem.u32(si + 48) == UInt32(e820.count))
        for (i, e) in e820.enumerated() {
            let at = memmap + UInt64(i) * 24
            #expect(mem.u64(at) == e.address && mem.u64(at + 8) == e.size && mem.u32(at + 16) == e.type.rawValue)
        }
        // The kernel itself went to its physical address.
        #expect(try mem.read(count: 4, at: 0x10_0000) == [0x90, 0x90, 0x90, 0x90])
    }

    @Test func pvhTakesSeveralModulesInOrder() throws {
        let mem = try ArrayGuestMemory(size: 16 << 20)
        let plan = try KernelLoader.load(kernel: linuxELF(notes: [.pvh(0x10_0000)]),
                                         modules: [BootModule(name: "a", bytes: [1, 2, 3]), BootModule(name: "b", bytes: Self.initrd)],
                                         commandLine: "", cpuCount: 1, into: mem)
        let top: UInt64 = 16 << 20
        let expected: [Range<UInt64>] = [(top - 0x3000)..<(top - 0x2FFD), (top - 0x2000)..<(top - 0x2000 + 5000)]
        #expect(plan.modules.map(\.range) == expected)
        #expect(mem.u32(BootLayout.linuxBootData + 12) == 2)
        // No modules: nr_modules 0 and no list.
        let none = try ArrayGuestMemory(size: 16 << 20)
        _ = try KernelLoader.load(kernel: linuxELF(notes: [.pvh(0x10_0000)]), modules: [], commandLine: "", cpuCount: 1, into: none)
        #expect(none.u32(BootLayout.linuxBootData + 12) == 0 && none.u64(BootLayout.linuxBootData + 16) == 0)
    }

    @Test func bootParamsLoad() throws {
        let mem = try ArrayGuestMemory(size: 16 << 20)
        let elf = linuxELF(entry: 0x10_0010, notes: [.linux])
        let bz = try SyntheticBzImage.wrapping(elf, format: .gzip)
        let plan = try KernelLoader.load(kernel: bz.bytes, modules: [BootModule(name: "initrd", bytes: Self.initrd)],
                                         commandLine: "quiet", cpuCount: 1, into: mem)
        #expect(plan.format == .linux64)
        // e_entry of a vmlinux is physical (phys_startup_64).
        #expect(plan.cpu.mode == .long64 && plan.cpu.rip == 0x10_0010)
        #expect(plan.cpu.rsi == BootLayout.linuxBootData && plan.cpu.cr3 == BootLayout.pageTables)
        let bp = BootLayout.linuxBootData
        let header = try mem.read(count: 0x26C - 0x1F1, at: bp + 0x1F1)
        var expected = Array(bz.bytes[0x1F1..<0x26C])
        expected[0x210 - 0x1F1] = 0xFF  // type_of_loader
        let initrdAt: UInt64 = (16 << 20) - 0x2000
        expected.putLE(UInt32(initrdAt), at: 0x218 - 0x1F1)
        expected.putLE(UInt32(5000), at: 0x21C - 0x1F1)
        expected.putLE(UInt32(BootLayout.commandLine), at: 0x228 - 0x1F1)
        #expect(header == expected)
        #expect(mem.string(BootLayout.commandLine) == "quiet")
        #expect(mem.u64(bp + 0x70) == ACPITables.defaultBase)
        #expect(try mem.read(count: 1, at: bp + 0x1E8) == [UInt8(mem.layout.e820.count)])
        #expect(mem.u64(bp + 0x2D0 + 20) == mem.layout.e820[1].address)
        // The identity page tables are there.
        #expect(mem.u64(BootLayout.pageTables) & ~0xFFF == BootLayout.pageTables + 0x1000)
        // A virtual e_entry (a kernel linked higher-half with a virtual entry) is translated.
        let virtualEntry = linuxELF(entry: 0xFFFF_FFFF_8100_0020, notes: [.linux])
        #expect(try KernelLoader.load(kernel: virtualEntry, modules: [], commandLine: "", cpuCount: 1,
                                      into: try ArrayGuestMemory(size: 16 << 20)).cpu.rip == 0x10_0020)
    }

    @Test func linuxLoadErrors() throws {
        let mem = try ArrayGuestMemory(size: 16 << 20)
        let elf = linuxELF(notes: [.linux])
        #expect { try KernelLoader.load(kernel: elf, modules: [BootModule(name: "a", bytes: [1]), BootModule(name: "b", bytes: [2])],
                                        commandLine: "", cpuCount: 1, into: mem) }
            throws: { "\($0)" == "2 --initrd/--module files given; the Linux 64-bit boot protocol takes one initramfs" }
        // The bzImage's cmdline_size (2047) bounds the command line.
        let bz = try SyntheticBzImage.wrapping(elf, format: .lz4).bytes
        let long = String(repeating: "x", count: 2048)
        #expect { try KernelLoader.load(kernel: bz, modules: [], commandLine: long, cpuCount: 1, into: mem) }
            throws: { "\($0)" == "command line is 2048 bytes; this kernel accepts at most 2047 (its cmdline_size)" }
        _ = try KernelLoader.load(kernel: bz, modules: [], commandLine: String(long.dropLast()), cpuCount: 1, into: mem)
        // An initramfs that does not fit between the kernel and the top of RAM.
        let huge = BootModule(name: "huge", bytes: [UInt8](repeating: 0, count: 15 << 20))
        #expect { try KernelLoader.load(kernel: elf, modules: [huge], commandLine: "", cpuCount: 1, into: mem) }
            throws: { "\($0)".contains("module huge") && "\($0)".contains("does not fit") }
        // initrd_addr_max below the kernel's end: nowhere to put it.
        var low = try SyntheticBzImage.wrapping(elf, format: .gzip)
        low.initrdAddressMax = 0xF_FFFF
        #expect(throws: BootError.self) {
            try KernelLoader.load(kernel: low.bytes, modules: [BootModule(name: "i", bytes: [1])], commandLine: "", cpuCount: 1, into: mem)
        }
    }
}

@Suite struct LinuxBootStructureTests {
    @Test func bootParamsFieldOffsets() {
        let map = [E820Entry(address: 0, size: 0x9FC00, type: .ram), E820Entry(address: 0x1_0000_0000, size: 0x4000_0000, type: .ram)]
        let page = LinuxBootParams.page(setupHeader: LinuxBootParams.defaultSetupHeader(), commandLine: 0x3000,
                                        ramdisk: 0x1_2345_6000..<0x1_2345_7001, memoryMap: map, rsdp: 0xE0000)
        func u32(_ o: Int) -> UInt32 { UInt32(page[o]) | UInt32(page[o + 1]) << 8 | UInt32(page[o + 2]) << 16 | UInt32(page[o + 3]) << 24 }
        func u64(_ o: Int) -> UInt64 { UInt64(u32(o)) | UInt64(u32(o + 4)) << 32 }
        #expect(page.count == 4096)
        #expect(page[0x1FE] == 0x55 && page[0x1FF] == 0xAA && u32(0x202) == 0x5372_6448)
        #expect(page[0x206] == 0x0F && page[0x207] == 0x02)
        #expect(page[0x210] == 0xFF && page[0x211] & 1 == 1)
        #expect(u32(0x228) == 0x3000 && u32(0xC8) == 0)
        // A ramdisk above 4 GiB uses the ext_ fields for the high bits.
        #expect(u32(0x218) == 0x2345_6000 && u32(0xC0) == 1)
        #expect(u32(0x21C) == 0x1001 && u32(0xC4) == 0)
        #expect(u64(0x70) == 0xE0000)
        #expect(page[0x1E8] == 2)
        #expect(u64(0x2D0) == 0 && u64(0x2D8) == 0x9FC00 && u32(0x2E0) == 1)
        #expect(u64(0x2E4) == 0x1_0000_0000 && u64(0x2EC) == 0x4000_0000 && u32(0x2F4) == 1)
        #expect(u32(0x22C) == 0x37FF_FFFF && u32(0x238) == 4095)
        // Nothing outside the written fields.
        #expect(page[0..<0x70].allSatisfy { $0 == 0 } && page[0xCD0...].allSatisfy { $0 == 0 })
    }

    @Test func bootParamsMapIsCappedAt128() {
        let map = (0..<200).map { E820Entry(address: UInt64($0) << 20, size: 0x1000, type: .reserved) }
        let page = LinuxBootParams.page(setupHeader: LinuxBootParams.defaultSetupHeader(), commandLine: 0, ramdisk: nil,
                                        memoryMap: map, rsdp: 0)
        #expect(page[0x1E8] == 128)
        #expect(page[0x218..<0x220].allSatisfy { $0 == 0 })
    }

    @Test func startInfoLayout() {
        let page = HVMStartInfo.page(base: 0x5000, commandLine: 0x3000, modules: [(0x200_0000..<0x200_0100, 0x4000)],
                                     memoryMap: [E820Entry(address: 0x10_0000, size: 0x100_0000, type: .ram)], rsdp: 0xE0000)
        #expect(page.count == 4096)
        #expect(Array(page[0..<4]) == [0x78, 0xC5, 0x6E, 0x33])
        #expect(page[4] == 1 && page[12] == 1)
        #expect(Array(page[16..<24]) == [0x40, 0x50, 0, 0, 0, 0, 0, 0])  // modlist at base + 0x40
        #expect(Array(page[40..<48]) == [0x40, 0x58, 0, 0, 0, 0, 0, 0])  // memmap at base + 0x840
        #expect(page[48] == 1 && page[52..<56].allSatisfy { $0 == 0 })
        #expect(Array(page[0x40..<0x48]) == [0, 0, 0, 2, 0, 0, 0, 0] && page[0x48] == 0 && page[0x49] == 1)
        #expect(page[0x850] == 1 && HVMStartInfo.maxMemmapEntries == 82 && HVMStartInfo.maxModules == 64)
    }
}
