import Foundation
import Machine
@testable import Monitor
import TestFixtures
import Testing

/// The Linux boot protocols end to end: the pvh guest (PVH entry note, hvm_start_info) and the
/// bootparams guest (a "Linux" note, boot_params), each as a plain ELF and inside synthetic
/// bzImages whose payload the system's compressors packed during the test.
@Suite("Linux boot protocols: PVH and the 64-bit boot protocol")
struct LinuxBootGuestTests {
    static let memory = "64M"
    static let commandLine = "console=ttyS0 root=/dev/ram0 marker=pvh-42"
    /// Deterministic initramfs stand-in, not page-sized, so the placement rounding shows.
    static let initrd: [UInt8] = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ ($0 >> 7)) }

    static func fnv1a(_ bytes: [UInt8]) -> String {
        var h: UInt32 = 2_166_136_261
        for b in bytes { h = (h ^ UInt32(b)) &* 16_777_619 }
        return String(format: "0x%08x", h)
    }

    /// The memory map every guest must see: the layout's e820, entry by entry.
    static func expectedMap(prefix: String) throws -> [String] {
        try GuestMemoryLayout(ramSize: 64 << 20).e820.map {
            String(format: "\(prefix) 0x%016llx 0x%016llx %u", $0.address, $0.size, $0.type.rawValue)
        }
    }

    /// Where the documented rule puts the initrd: page-aligned, ending at the top of RAM.
    static var initrdAddress: UInt64 { (64 << 20) - (UInt64(initrd.count) + 0xFFF) / 0x1000 * 0x1000 }

    static func bzImage(wrapping guest: String, format: KernelCompression, configure: (inout SyntheticBzImage) -> Void = { _ in })
        throws -> String
    {
        let elf = try [UInt8](Data(contentsOf: URL(fileURLWithPath: try GuestHarness.guestPath(guest))))
        var image = try SyntheticBzImage.wrapping(elf, format: format)
        configure(&image)
        return try GuestHarness.temporaryFile(image.bytes, name: "\(guest)-\(format).bzImage")
    }

    func bootPVH(_ kernelPath: String) throws -> GuestHarness.Run {
        let initrd = try GuestHarness.temporaryFile(Self.initrd, name: "pvh-initrd")
        let run = try GuestHarness.boot(kernelPath: kernelPath, memory: Self.memory, cmdline: Self.commandLine,
                                        modules: [initrd])
        let lines = run.lines
        #expect(lines.first == "pvh: start", "\(run.serial)")
        #expect(lines.contains("entry pe=1 pg=0 cr4=0x0 if=0"))
        #expect(lines.contains("start_info 0x\(String(BootLayout.linuxBootData, radix: 16)) version=1 flags=0 reserved=0"))
        #expect(lines.contains("cmdline: \(Self.commandLine)"))
        #expect(lines.contains("modules: 1"))
        #expect(lines.contains(String(format: "module 0 0x%llx 0x%llx fnv=%@ %@", Self.initrdAddress,
                                      UInt64(Self.initrd.count), Self.fnv1a(Self.initrd), initrd)), "\(run.serial)")
        #expect(lines.filter { $0.hasPrefix("memmap ") } == (try Self.expectedMap(prefix: "memmap")))
        #expect(lines.contains("rsdp 0x\(String(ACPITables.defaultBase, radix: 16)) revision=2"))
        #expect(lines.contains("pvh: ok"), "\(run.serial)")
        #expect(run.status == 0)
        return run
    }

    @Test("an ELF32 with a PVH note boots at the note's entry with hvm_start_info")
    func pvhELF32() throws {
        _ = try bootPVH(try GuestHarness.guestPath("pvh"))
    }

    @Test("an ELF64 with a PVH note (like a 64-bit vmlinux) boots through PVH too")
    func pvhELF64() throws {
        _ = try bootPVH(try GuestHarness.guestPath("pvh64"))
    }

    @Test("a bzImage is decompressed on the host and its vmlinux booted through PVH",
          arguments: [KernelCompression.gzip, .xz, .lzma, .lz4, .zstd])
    func pvhInBzImage(format: KernelCompression) throws {
        _ = try bootPVH(try Self.bzImage(wrapping: "pvh64", format: format))
    }

    func bootParams(_ kernelPath: String, initrd: Bool = true) throws -> GuestHarness.Run {
        let modules = initrd ? [try GuestHarness.temporaryFile(Self.initrd, name: "bp-initrd")] : []
        let run = try GuestHarness.boot(kernelPath: kernelPath, memory: Self.memory, cmdline: Self.commandLine,
                                        modules: modules)
        let lines = run.lines
        #expect(lines.first == "bootparams: start", "\(run.serial)")
        #expect(lines.contains("entry boot_params=0x\(String(BootLayout.linuxBootData, radix: 16)) pg=1 pae=1"))
        #expect(lines.contains("cmdline: \(Self.commandLine)"))
        if initrd {
            #expect(lines.contains(String(format: "ramdisk 0x%llx 0x%llx fnv=%@", Self.initrdAddress,
                                          UInt64(Self.initrd.count), Self.fnv1a(Self.initrd))), "\(run.serial)")
        } else {
            #expect(lines.contains("ramdisk: none"))
        }
        #expect(lines.filter { $0.hasPrefix("e820 ") } == (try Self.expectedMap(prefix: "e820")))
        #expect(lines.contains("rsdp 0x\(String(ACPITables.defaultBase, radix: 16)) revision=2"))
        #expect(lines.contains("bootparams: ok"), "\(run.serial)")
        #expect(run.status == 0)
        return run
    }

    @Test("an ELF64 with a Linux note gets boot_params with a synthesized setup header")
    func bootParamsELF() throws {
        let run = try bootParams(try GuestHarness.guestPath("bootparams"))
        #expect(run.lines.contains(
            "hdr version=0x20f setup_sects=0 loadflags=0x1 xloadflags=0x1 initrd_addr_max=0x37ffffff "
                + "cmdline_size=\(BootLayout.commandLineMax) kernel_alignment=0x200000 init_size=0x0 type_of_loader=0xff"))
        _ = try bootParams(try GuestHarness.guestPath("bootparams"), initrd: false)
    }

    @Test("a bzImage without a PVH note gets boot_params with its own setup header copied",
          arguments: [KernelCompression.lz4, .gzip])
    func bootParamsInBzImage(format: KernelCompression) throws {
        let path = try Self.bzImage(wrapping: "bootparams", format: format) { $0.initrdAddressMax = 0x3FF_FFFF }
        let run = try bootParams(path)
        // Loader-owned fields are overwritten; the rest is the image's header (SyntheticBzImage).
        #expect(run.lines.contains(
            "hdr version=0x20f setup_sects=3 loadflags=0x1 xloadflags=0x3 initrd_addr_max=0x3ffffff "
                + "cmdline_size=2047 kernel_alignment=0x200000 init_size=0x4000000 type_of_loader=0xff"))
    }

    @Test("the initramfs stays below the kernel's initrd_addr_max")
    func initrdBelowAddressMax() throws {
        let path = try Self.bzImage(wrapping: "bootparams", format: .zstd) { $0.initrdAddressMax = 0x1FF_FFFF }
        let initrd = try GuestHarness.temporaryFile(Self.initrd, name: "bp-initrd-max")
        let run = try GuestHarness.boot(kernelPath: path, memory: Self.memory, modules: [initrd])
        let expected: UInt64 = 0x200_0000 - 0x3000
        #expect(run.lines.contains(String(format: "ramdisk 0x%llx 0x%llx fnv=%@", expected, UInt64(Self.initrd.count),
                                          Self.fnv1a(Self.initrd))), "\(run.serial)")
        #expect(run.status == 0)
    }
}
