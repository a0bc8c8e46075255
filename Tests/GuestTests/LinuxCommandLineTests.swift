import Foundation
import Machine
import TestFixtures
import Testing

/// `synthvm run --kernel` with Linux images, as an operator types it.
@Suite("synthvm run with Linux images")
struct LinuxCommandLineTests {
    @Test("a damaged bzImage is refused with one line on stderr and status 64, before any VM exists")
    func damagedBzImage() throws {
        let elf = try [UInt8](Data(contentsOf: URL(fileURLWithPath: try GuestHarness.guestPath("pvh64"))))
        var image = try SyntheticBzImage.wrapping(elf, format: .lz4)
        image.payload = Array(image.payload.prefix(image.payload.count - 40)) + CompressedPayload.littleEndian32(UInt32(elf.count))
        let truncated = try GuestHarness.temporaryFile(image.bytes, name: "truncated.bzImage")
        let bz2 = try SyntheticBzImage.wrapping(elf, format: .bzip2)
        let unsupported = try GuestHarness.temporaryFile(bz2.bytes, name: "bzip2.bzImage")
        var old = try SyntheticBzImage.wrapping(elf, format: .gzip)
        old.version = 0x0206
        let tooOld = try GuestHarness.temporaryFile(old.bytes, name: "old.bzImage")
        for (path, message) in [
            (truncated, "cannot decompress the Linux bzImage: lz4 kernel payload is truncated"),
            (unsupported, "cannot decompress the Linux bzImage: bzip2-compressed kernels are not supported"),
            (tooOld, "bad Linux bzImage: Linux boot protocol 2.6 is too old"),
        ] {
            let r = try CommandLineTests.synthvm(["run", "--kernel", path])
            #expect(r.status == 64, "\(path): \(r.stderr)")
            #expect(r.stderr.hasPrefix("synthvm: error: \(path): \(message)"), "\(r.stderr)")
            #expect(r.stderr.filter { $0 == "\n" }.count == 1, "\(r.stderr)")
            #expect(r.stdout.isEmpty)
        }
    }

    @Test("`synthvm run --kernel <bzImage> --initrd` boots the PVH guest inside it")
    func bzImageFromTheCommandLine() throws {
        try GuestHarness.requireKVM()
        let elf = try [UInt8](Data(contentsOf: URL(fileURLWithPath: try GuestHarness.guestPath("pvh64"))))
        let kernel = try GuestHarness.temporaryFile(try SyntheticBzImage.wrapping(elf, format: .xz).bytes, name: "cli.bzImage")
        let initrd = try GuestHarness.temporaryFile(Array("initramfs".utf8), name: "cli-initrd")
        let r = try CommandLineTests.synthvm(["run", "--kernel", kernel, "--initrd", initrd, "--memory", "32M",
                                              "--cmdline", "from-cli"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("cmdline: from-cli\n"))
        #expect(r.stdout.contains("modules: 1\n"))
        #expect(r.stdout.contains("pvh: ok\n"))
    }
}
