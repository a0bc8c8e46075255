import Testing
import TestFixtures

@testable import Machine

/// Compressible but not trivial test data: text-like runs mixed with pseudo-random bytes.
func sampleKernelBytes(count: Int, seed: UInt64 = 0x5EED) -> [UInt8] {
    var state = seed
    var out = [UInt8]()
    out.reserveCapacity(count)
    let words = Array("vmlinux startup_64 pvh_start_xen boot_params e820 initrd ".utf8)
    while out.count < count {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        if state >> 60 < 10 {
            out += words[Int(state >> 32 % 16)...].prefix(Int(state >> 40 & 31))
        } else {
            out.append(UInt8(truncatingIfNeeded: state >> 33))
        }
    }
    return Array(out.prefix(count))
}

/// The formats SynthVM decompresses (bzip2 and lzo are only detected).
let decodableFormats: [KernelCompression] = [.gzip, .xz, .lzma, .lz4, .zstd]

private func replacingTrailer(_ payload: [UInt8], with size: UInt32) -> [UInt8] {
    Array(payload.dropLast(4)) + CompressedPayload.littleEndian32(size)
}

@Suite struct KernelDecompressorTests {
    static let data = sampleKernelBytes(count: 300_000)

    @Test(arguments: decodableFormats)
    func roundTripsWhatTheSystemToolWrote(format: KernelCompression) throws {
        let payload = try CompressedPayload.make(Self.data, format: format)
        #expect(KernelCompression.detect(payload) == format)
        #expect(KernelDecompressor.declaredSize(of: payload) == Self.data.count)
        let out = try KernelDecompressor.decompress(payload[...], format: format, limit: 1 << 24)
        #expect(out.count == Self.data.count)
        #expect(out == Self.data)
    }

    @Test func lz4LegacyFramesWithSeveralBlocks() throws {
        // lz4 -l cuts its input into 8 MiB blocks: 9 MiB gives two.
        let big = sampleKernelBytes(count: 9 << 20, seed: 7)
        let payload = try CompressedPayload.make(big, format: .lz4)
        #expect(try KernelDecompressor.decompress(payload[...], format: .lz4, limit: 16 << 20) == big)
        // A second frame header between blocks (concatenated frames) is skipped, as Linux does.
        let single = try CompressedPayload.compressedStream(Array(big.prefix(1000)), format: .lz4)
        let twice = single + single.dropFirst(0) + CompressedPayload.littleEndian32(2000)
        #expect(try KernelDecompressor.decompress(twice[...], format: .lz4, limit: 1 << 20)
            == Array(big.prefix(1000)) + Array(big.prefix(1000)))
    }

    @Test(arguments: decodableFormats)
    func truncatedPayloadsFail(format: KernelCompression) throws {
        let payload = try CompressedPayload.make(Self.data, format: format)
        let stream = Array(payload.dropLast(4))
        for fraction in [0.1, 0.5, 0.9, 0.999] {
            let cut = Array(stream.prefix(max(format.magic.count + 1, Int(Double(stream.count) * fraction))))
            // Stream cut, correct trailer re-appended: what a damaged download of a real image looks like.
            let damaged = cut + CompressedPayload.littleEndian32(UInt32(Self.data.count))
            #expect(throws: KernelDecompressionError.self, "\(format) cut at \(fraction)") {
                try KernelDecompressor.decompress(damaged[...], format: format, limit: 1 << 24)
            }
        }
        // Cut inside the stream so that its last 4 bytes become the "trailer".
        let cut = Array(payload.prefix(payload.count / 2))
        #expect(throws: KernelDecompressionError.self) {
            try KernelDecompressor.decompress(cut[...], format: format, limit: Int(UInt32.max))
        }
    }

    @Test(arguments: [KernelCompression.gzip, .xz, .zstd])
    func corruptDataIsCaughtByTheChecksum(format: KernelCompression) throws {
        var payload = try CompressedPayload.make(Self.data, format: format)
        payload[payload.count / 2] ^= 0x55
        #expect {
            try KernelDecompressor.decompress(payload[...], format: format, limit: 1 << 24)
        } throws: { error in
            guard let e = error as? KernelDecompressionError else { return false }
            switch e {
            case .corrupt(let f, _), .largerThanDeclared(let f, _), .sizeMismatch(let f, _, _): return f == format
            default: return false
            }
        }
    }

    @Test func corruptFramingWithoutChecksum() throws {
        // LZ4 legacy: a block size no legacy block can have.
        var lz4 = try CompressedPayload.make(Self.data, format: .lz4)
        lz4.replaceSubrange(4..<8, with: CompressedPayload.littleEndian32(0x7FFF_FFF0))
        #expect {
            try KernelDecompressor.decompress(lz4[...], format: .lz4, limit: 1 << 24)
        } throws: { "\($0)".contains("more than a legacy block can hold") }
        // LZ4 legacy: a block whose data is garbage that cannot decode.
        var garbage = Array(try CompressedPayload.make(Self.data, format: .lz4).prefix(8))
        garbage += [UInt8](repeating: 0xFF, count: 64) + CompressedPayload.littleEndian32(1000)
        garbage.replaceSubrange(4..<8, with: CompressedPayload.littleEndian32(64))
        #expect(throws: KernelDecompressionError.corrupt(.lz4, "block at offset 4 does not decode")) {
            try KernelDecompressor.decompress(garbage[...], format: .lz4, limit: 1 << 24)
        }
        // LZMA-alone: an impossible properties byte (lc/lp/pb beyond 9*5*5).
        var lzma = try CompressedPayload.make(Self.data, format: .lzma)
        lzma[0] = 0xFF
        #expect(throws: KernelDecompressionError.self) {
            try KernelDecompressor.decompress(lzma[...], format: .lzma, limit: 1 << 24)
        }
    }

    @Test(arguments: decodableFormats)
    func declaredSizeBoundsTheOutput(format: KernelCompression) throws {
        let payload = try CompressedPayload.make(Self.data, format: format)
        // A trailer beyond the limit is refused before anything is allocated.
        #expect(throws: KernelDecompressionError.declaredSizeOutOfRange(format, declared: Int(UInt32.max), limit: 1 << 24)) {
            try KernelDecompressor.decompress(replacingTrailer(payload, with: UInt32.max)[...], format: format, limit: 1 << 24)
        }
        #expect(throws: KernelDecompressionError.declaredSizeOutOfRange(format, declared: 0, limit: 1 << 24)) {
            try KernelDecompressor.decompress(replacingTrailer(payload, with: 0)[...], format: format, limit: 1 << 24)
        }
        // The limit is capped at 1 GiB whatever the caller passes.
        #expect(throws: KernelDecompressionError.declaredSizeOutOfRange(format, declared: Int(UInt32.max), limit: 1 << 30)) {
            try KernelDecompressor.decompress(replacingTrailer(payload, with: UInt32.max)[...], format: format, limit: Int.max)
        }
        // A stream with more data than declared stops at the declared size and fails.
        let small = replacingTrailer(payload, with: UInt32(Self.data.count - 1))
        #expect {
            try KernelDecompressor.decompress(small[...], format: format, limit: 1 << 24)
        } throws: { error in
            // gzip's trailer is its ISIZE: changing it is also a failed length check.
            if case .largerThanDeclared(format, Self.data.count - 1)? = error as? KernelDecompressionError { return true }
            return format == .gzip && "\(error)".contains("corrupt")
        }
        // A stream with less data than declared fails too.
        let large = replacingTrailer(payload, with: UInt32(Self.data.count + 100))
        #expect {
            try KernelDecompressor.decompress(large[...], format: format, limit: 1 << 24)
        } throws: { error in
            if case .sizeMismatch(format, Self.data.count + 100, Self.data.count)? = error as? KernelDecompressionError {
                return true
            }
            return format == .gzip && "\(error)".contains("corrupt")
        }
    }

    @Test func bzip2AndLzoAreDetectedButUnsupported() throws {
        let bzip2 = try CompressedPayload.make(Self.data, format: .bzip2)
        #expect(KernelCompression.detect(bzip2) == .bzip2)
        #expect(throws: KernelDecompressionError.unsupported(.bzip2)) {
            try KernelDecompressor.decompress(bzip2[...], format: .bzip2, limit: 1 << 24)
        }
        let lzo = KernelCompression.lzo.magic + [0x0A, 0x1A, 0x0A] + [UInt8](repeating: 0, count: 32)
        #expect(throws: KernelDecompressionError.unsupported(.lzo)) {
            try KernelDecompressor.decompress(lzo[...], format: .lzo, limit: 1 << 24)
        }
        #expect("\(KernelDecompressionError.unsupported(.bzip2))".contains("bzip2-compressed kernels are not supported"))
    }

    @Test(arguments: decodableFormats)
    func tinyPayloadsFailCleanly(format: KernelCompression) {
        for n in 0...(format.magic.count + 4) {
            let bytes = Array((format.magic + [UInt8](repeating: 0x11, count: 8)).prefix(n))
            #expect(throws: KernelDecompressionError.self) {
                try KernelDecompressor.decompress(bytes[...], format: format, limit: 1 << 20)
            }
        }
    }

    @Test(arguments: decodableFormats)
    func mutatedPayloadsNeverTrap(format: KernelCompression) throws {
        let original = try CompressedPayload.make(Array(Self.data.prefix(20_000)), format: format)
        var state: UInt64 = 0xC0FFEE
        for _ in 0..<200 {
            var bytes = original
            for _ in 0..<3 {
                state = state &* 6_364_136_223_846_793_005 &+ 1
                bytes[Int(state >> 33) % bytes.count] = UInt8(truncatingIfNeeded: state >> 17)
            }
            // Any outcome is fine except a trap; output never exceeds the declared size.
            if let out = try? KernelDecompressor.decompress(bytes[...], format: format, limit: 1 << 20) {
                #expect(out.count == KernelDecompressor.declaredSize(of: bytes))
            }
        }
    }

    @Test func decompressesASliceOfALargerFile() throws {
        let payload = try CompressedPayload.make(Self.data, format: .zstd)
        let file = [UInt8](repeating: 0xAB, count: 100) + payload + [1, 2, 3]
        let slice = file[100..<(100 + payload.count)]
        #expect(try KernelDecompressor.decompress(slice, format: .zstd, limit: 1 << 24) == Self.data)
    }
}
