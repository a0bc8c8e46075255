import Testing

@testable import Machine

/// Guest memory over a byte array, for loader tests without KVM.
final class ArrayGuestMemory: GuestPhysicalMemory, @unchecked Sendable {
    let layout: GuestMemoryLayout
    var bytes: [UInt8]

    init(size: UInt64) throws {
        layout = try GuestMemoryLayout(ramSize: size)
        bytes = [UInt8](repeating: 0xEE, count: Int(size))
    }

    func write(_ src: UnsafeRawBufferPointer, at gpa: UInt64) throws(GuestMemoryError) {
        guard let off = layout.backingOffset(gpa: gpa, length: UInt64(src.count)) else {
            throw .outOfRange(gpa: gpa, length: UInt64(src.count))
        }
        for (i, b) in src.enumerated() { bytes[Int(off) + i] = b }
    }

    func read(into dst: UnsafeMutableRawBufferPointer, at gpa: UInt64) throws(GuestMemoryError) {
        guard let off = layout.backingOffset(gpa: gpa, length: UInt64(dst.count)) else {
            throw .outOfRange(gpa: gpa, length: UInt64(dst.count))
        }
        for i in 0..<dst.count { dst[i] = bytes[Int(off) + i] }
    }

    func zero(at gpa: UInt64, count: UInt64) throws(GuestMemoryError) {
        guard let off = layout.backingOffset(gpa: gpa, length: count) else { throw .outOfRange(gpa: gpa, length: count) }
        for i in 0..<Int(count) { bytes[Int(off) + i] = 0 }
    }

    func u32(_ gpa: UInt64) -> UInt32 { (try? readLE(UInt32.self, at: gpa)) ?? 0xDEAD }
    func u64(_ gpa: UInt64) -> UInt64 { (try? readLE(UInt64.self, at: gpa)) ?? 0xDEAD }
    func string(_ gpa: UInt64) -> String {
        var s: [UInt8] = []
        var a = gpa
        while let b = try? read(count: 1, at: a), b[0] != 0 { s.append(b[0]); a += 1 }
        return String(decoding: s, as: UTF8.self)
    }
}

/// A minimal multiboot kernel: ELF32 with one PT_LOAD at 1 MiB and the header at offset 0x100.
func multibootELF32(entryOffset: UInt32 = 0x10, bss: UInt32 = 0x100) -> [UInt8] {
    var f = [UInt8](repeating: 0, count: 0x400)
    f.replaceSubrange(0..<8, with: [0x7F, 0x45, 0x4C, 0x46, 1, 1, 1, 0])
    f.put16(2, at: 16); f.put16(3, at: 18); f.put32(1, at: 20)
    f.put32(0x10_0000 + entryOffset, at: 24) // e_entry
    f.put32(52, at: 28) // e_phoff
    f.put16(52, at: 40); f.put16(32, at: 42); f.put16(1, at: 44)
    // PT_LOAD: offset 0, vaddr=paddr=1 MiB, filesz = file, memsz = file + bss
    f.put32(1, at: 52); f.put32(0, at: 56); f.put32(0x10_0000, at: 60); f.put32(0x10_0000, at: 64)
    f.put32(0x400, at: 68); f.put32(0x400 + bss, at: 72); f.put32(5, at: 76)
    let magic: UInt32 = 0x1BAD_B002, flags: UInt32 = 3
    f.put32(magic, at: 0x100); f.put32(flags, at: 0x104); f.put32(0 &- (magic &+ flags), at: 0x108)
    return f
}

@Suite struct KernelLoaderTests {
    @Test func detectsFormats() throws {
        #expect(try KernelLoader.detect(BuiltinGuest.elf()) == .elf64Direct)
        #expect(try KernelLoader.detect(multibootELF32()) == .multiboot)
        #expect(throws: BootError.self) { try KernelLoader.detect(Array("#!/bin/sh\necho hi\n".utf8)) }
        var plain32 = multibootELF32()
        plain32.put32(0, at: 0x100) // no multiboot magic
        #expect { try KernelLoader.detect(plain32) } throws: { "\($0)".contains("without a multiboot header") }
    }

    @Test func directBootWritesImageBootInfoAndTables() throws {
        let mem = try ArrayGuestMemory(size: 16 << 20)
        let module = BootModule(name: "initrd.img", bytes: Array("payload".utf8))
        let plan = try KernelLoader.load(kernel: BuiltinGuest.elf(), modules: [module], commandLine: "console=ttyS0",
                                         cpuCount: 3, into: mem)
        #expect(plan.format == .elf64Direct)
        #expect(plan.cpu.mode == .long64)
        #expect(plan.cpu.rip == BuiltinGuest.loadAddress + 120)
        #expect(plan.cpu.rdi == BootLayout.bootInfo && plan.cpu.cr3 == BootLayout.pageTables)
        // The image is where its program header says.
        let image = BuiltinGuest.elf()
        #expect(try mem.read(count: image.count, at: 0x10_0000) == image)
        // Boot info.
        let b = BootLayout.bootInfo
        #expect(mem.u64(b) == DirectBootInfo.magic)
        #expect(mem.u32(b + 8) == 1 && mem.u32(b + 12) == 88)
        #expect(mem.u64(b + 16) == 16 << 20)
        #expect(mem.u32(b + 24) == 3)
        #expect(mem.u32(b + 28) == 3) // e820 entries
        #expect(mem.string(mem.u64(b + 32)) == "console=ttyS0" && mem.u32(b + 40) == 13)
        #expect(mem.u32(b + 44) == 1)
        let m = mem.u64(b + 48)
        #expect(mem.u64(m) == plan.modules[0].range.lowerBound && mem.u64(m) % 4096 == 0)
        #expect(mem.u64(m + 8) == 7 && mem.string(mem.u64(m + 16)) == "initrd.img")
        #expect(try mem.read(count: 7, at: mem.u64(m)) == Array("payload".utf8))
        // e820 entries as the layout says.
        let e = mem.u64(b + 56)
        for (i, entry) in mem.layout.e820.enumerated() {
            #expect(mem.u64(e + UInt64(i) * 24) == entry.address)
            #expect(mem.u64(e + UInt64(i) * 24 + 8) == entry.size)
            #expect(mem.u32(e + UInt64(i) * 24 + 16) == entry.type.rawValue)
        }
        // GDT: 64-bit code at 0x08.
        #expect(mem.u64(BootLayout.gdt + 8) == BootLayout.gdtEntries[1])
        // Page tables: PML4[0] -> PDPT, PDPT[0] -> PD0, PD0[1] maps 2 MiB as a large page.
        #expect(mem.u64(BootLayout.pageTables) == (BootLayout.pageTables + 0x1000) | 3)
        #expect(mem.u64(BootLayout.pageTables + 0x1000) == (BootLayout.pageTables + 0x2000) | 3)
        #expect(mem.u64(BootLayout.pageTables + 0x2000 + 8) == 0x20_0000 | 0x83)
    }

    @Test func identityTablesCoverFourGiBAndMarkTheHoleUncached() {
        let bytes = IdentityPageTables.build(base: 0x10000, topOfRAM: 64 << 20, mmioHole: 0xC000_0000..<0x1_0000_0000)
        #expect(bytes.count == 0x1000 * (2 + 4))
        func entry(_ i: Int) -> UInt64 {
            bytes[(i * 8)..<(i * 8 + 8)].enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * $1.offset) }
        }
        // PD entry for 0xFEE00000 (LAPIC): GiB 3, index 503.
        let lapic = entry(1024 + 3 * 512 + 503)
        #expect(lapic & ~0xFFF == 0xFEE0_0000)
        #expect(lapic & 0x18 == 0x18) // PCD | PWT
        #expect(entry(1024 + 5) & 0x18 == 0) // RAM is cached
        #expect(IdentityPageTables.coveredGiB(topOfRAM: 5 << 30) == 5)
    }

    @Test func multibootInfoAndEntryState() throws {
        let mem = try ArrayGuestMemory(size: 32 << 20)
        let mods = [BootModule(name: "a", bytes: [1, 2, 3]), BootModule(name: "bb", bytes: [4])]
        let plan = try KernelLoader.load(kernel: multibootELF32(), modules: mods, commandLine: "quiet", cpuCount: 1, into: mem)
        #expect(plan.format == .multiboot && plan.cpu.mode == .protected32)
        #expect(plan.cpu.rax == 0x2BAD_B002 && plan.cpu.rbx == BootLayout.bootInfo && plan.cpu.rip == 0x10_0010)
        let b = BootLayout.bootInfo
        #expect(mem.u32(b) == 0x4D) // mem, cmdline, mods, mmap
        #expect(mem.u32(b + 4) == 639 && mem.u32(b + 8) == (32 << 10) - 1024)
        #expect(mem.string(UInt64(mem.u32(b + 16))) == "quiet")
        #expect(mem.u32(b + 20) == 2)
        let list = UInt64(mem.u32(b + 24))
        let start0 = mem.u32(list), end0 = mem.u32(list + 4), start1 = mem.u32(list + 16)
        #expect(start0 % 4096 == 0 && end0 == start0 + 3 && start1 % 4096 == 0 && start1 > end0)
        #expect(UInt64(start0) >= 0x10_0000 + 0x400 + 0x100) // after kernel and bss
        #expect(mem.string(UInt64(mem.u32(list + 8))) == "a" && mem.string(UInt64(mem.u32(list + 24))) == "bb")
        // bss zeroed (memory was filled with 0xEE).
        #expect(try mem.read(count: 0x100, at: 0x10_0400) == [UInt8](repeating: 0, count: 0x100))
        // mmap entries: size 20, then base/length/type.
        let mmap = UInt64(mem.u32(b + 48))
        #expect(mem.u32(b + 44) == UInt32(mem.layout.e820.count * 24))
        #expect(mem.u32(mmap) == 20 && mem.u64(mmap + 4) == 0 && mem.u64(mmap + 12) == 0x9FC00 && mem.u32(mmap + 20) == 1)
    }

    @Test func rejectsWhatDoesNotFit() throws {
        let mem = try ArrayGuestMemory(size: 4 << 20)
        var big = BuiltinGuest.elf()
        big.put64(8 << 20, at: 64 + 40) // p_memsz = 8 MiB in 4 MiB of RAM
        #expect { try KernelLoader.load(kernel: big, modules: [], commandLine: "", cpuCount: 1, into: mem) } throws: {
            "\($0)".contains("does not fit in guest RAM")
        }
        var low = BuiltinGuest.elf()
        low.put64(0x8000, at: 64 + 24) // p_paddr below 1 MiB
        #expect(throws: BootError.self) { try KernelLoader.load(kernel: low, modules: [], commandLine: "", cpuCount: 1, into: mem) }
        let longLine = String(repeating: "x", count: 4096)
        #expect { try KernelLoader.load(kernel: BuiltinGuest.elf(), modules: [], commandLine: longLine, cpuCount: 1, into: mem) }
            throws: { "\($0)".contains("4096 bytes") }
        let huge = BootModule(name: "huge", bytes: [UInt8](repeating: 1, count: 4 << 20))
        #expect { try KernelLoader.load(kernel: BuiltinGuest.elf(), modules: [huge], commandLine: "", cpuCount: 1, into: mem) }
            throws: { "\($0)".contains("module huge") }
        let many = (0..<65).map { BootModule(name: "m\($0)", bytes: [0]) }
        #expect(throws: BootError.self) { try KernelLoader.load(kernel: BuiltinGuest.elf(), modules: many, commandLine: "", cpuCount: 1, into: mem) }
        let longName = BootModule(name: String(repeating: "n", count: 5000), bytes: [0])
        #expect { try KernelLoader.load(kernel: BuiltinGuest.elf(), modules: [longName], commandLine: "", cpuCount: 1, into: mem) }
            throws: { "\($0)".contains("module names") }
    }

    @Test func builtinGuestIsAValidELF64() throws {
        let image = try ElfImage.parse(BuiltinGuest.elf())
        #expect(image.elfClass == .elf64 && image.segments.count == 1)
        #expect(image.entryPhysicalAddress() == BuiltinGuest.loadAddress + 120)
    }
}
