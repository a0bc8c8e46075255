// The bzImage payload decoders (Sources/Machine/Decompression: gzip, xz, lzma, lz4 legacy,
// zstd, through `KernelDecompressor.decompress`, with its declared-size trailer). The first
// input byte picks the format; the rest is the payload.
//
// Checked: nothing traps; a result is exactly the size the trailer declared.
import FuzzSupport
import Machine

let formats: [KernelCompression] = [.gzip, .xz, .lzma, .lz4, .zstd, .bzip2]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDecompress(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let format = formats[Int(input.u8()) % formats.count]
    let payload = input.rest()
    _ = KernelCompression.detect(payload)
    if let out = try? KernelDecompressor.decompress(payload[...], format: format, limit: KernelFile.decompressedSizeLimit) {
        precondition(out.count == KernelDecompressor.declaredSize(of: payload), "output size is not the declared size")
    }
    return 0
}
