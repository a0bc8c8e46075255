import Glibc
import Testing

@testable import Machine
import FuzzSeeds

/// The loader and decompressor fuzz targets' seeds stay what they are meant to be: each kernel
/// file is recognised as its format, each payload decompresses to the ELF it was made from. A
/// loader change that stops accepting them fails here (re-run Fuzz/make-seeds.py, or fix the seed).
@Suite("Fuzz seeds: kernel files and payloads")
struct KernelFuzzSeedTests {
    func format(_ bytes: [UInt8]) throws -> BootPlan.Format {
        try KernelImage.open(bytes, decompressedSizeLimit: 4 << 20).format
    }

    @Test func elfSeeds() throws {
        let seeds = fuzzSeeds("elf")
        let expected: [String: BootPlan.Format] = ["direct": .elf64Direct, "pie": .elf64Direct, "pvh": .pvh,
                                                   "linux": .linux64, "elf32-multiboot": .multiboot]
        #expect(Set(seeds.keys) == Set(expected.keys))
        for (name, bytes) in seeds { #expect(try format(bytes) == expected[name], "\(name)") }
    }

    @Test func multibootSeeds() throws {
        let seeds = fuzzSeeds("multiboot")
        #expect(seeds.count == 3)
        for (name, bytes) in seeds { #expect(try format(bytes) == .multiboot, "\(name)") }
    }

    @Test func bzImageSeedsUnpackEveryCompression() throws {
        let seeds = fuzzSeeds("bzimage")
        #expect(Set(seeds.keys) == ["uncompressed", "gzip", "xz", "lzma", "lz4", "zstd"])
        for (name, bytes) in seeds {
            let image = try KernelImage.open(bytes, decompressedSizeLimit: 4 << 20)
            #expect(image.bzImage?.compression?.rawValue ?? "uncompressed" == name)
            #expect(image.format == (name == "lz4" ? .linux64 : .pvh), "\(name)")
        }
    }

    @Test func decompressSeedsDecompressToAnELF() throws {
        let seeds = fuzzSeeds("decompress")
        let formats: [KernelCompression] = [.gzip, .xz, .lzma, .lz4, .zstd]
        #expect(Set(seeds.keys) == Set(formats.map(\.rawValue)))
        for (name, bytes) in seeds {
            // The harness's layout: a format byte, then the payload.
            let format = formats[Int(bytes[0])]
            #expect(format.rawValue == name)
            let out = try KernelDecompressor.decompress(bytes[1...], format: format, limit: 4 << 20)
            #expect(out.starts(with: ElfImage.magic), "\(name)")
        }
    }
}

