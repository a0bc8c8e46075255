/// Decompresses the payload of a Linux bzImage (the compressed vmlinux) on the host, so the
/// guest never runs the kernel's own decompressor: on a host that emulates guest kernel code
/// instruction by instruction that saves minutes (issue 6).
///
/// The kernel build appends the uncompressed size to every payload as a 4-byte little-endian
/// trailer (`size_append` in scripts/Makefile.lib; for gzip it is the stream's own ISIZE field),
/// and arch/x86/boot/compressed/mkpiggy reads it from there. That number bounds the output
/// buffer: the decoders write into exactly that many bytes and fail when the stream wants to
/// produce more, so a hostile payload can make the host allocate at most `limit` bytes, never
/// what a stream header claims. The result must then be exactly the declared size.
///
/// gzip, xz and zstd streams carry checksums that the libraries verify. LZMA-alone and LZ4
/// legacy frames do not: there, damaged data that still decodes is caught only by the size
/// check and by the ELF parser that reads the result.
public enum KernelDecompressor {
    /// No decompressed kernel may be larger than this, whatever else allows it (1 GiB; Debian's
    /// vmlinux is about 60 MiB).
    public static let maximumOutputSize = 1 << 30
    /// The little-endian uncompressed-size trailer at the end of every payload.
    public static let trailerSize = 4

    /// The uncompressed size the payload's trailer declares, or nil when it is too short to have one.
    public static func declaredSize<Bytes: RandomAccessCollection>(of payload: Bytes) -> Int?
    where Bytes.Element == UInt8, Bytes.Index == Int {
        guard payload.count >= trailerSize else { return nil }
        let at = payload.endIndex - trailerSize
        return Int(payload[at]) | Int(payload[at + 1]) << 8 | Int(payload[at + 2]) << 16 | Int(payload[at + 3]) << 24
    }

    /// Decompresses `payload` (stream plus size trailer) in `format` into a new array of the
    /// declared size, which must be at least 1 and at most `min(limit, maximumOutputSize)`.
    public static func decompress(_ payload: ArraySlice<UInt8>, format: KernelCompression, limit: Int)
        throws(KernelDecompressionError) -> [UInt8]
    {
        let decoder: PayloadDecoder.Type
        switch format {
        case .gzip: decoder = GzipDecoder.self
        case .xz: decoder = XZDecoder.self
        case .lzma: decoder = LZMAAloneDecoder.self
        case .lz4: decoder = LZ4LegacyDecoder.self
        case .zstd: decoder = ZstdDecoder.self
        case .bzip2, .lzo: throw .unsupported(format)
        }
        guard payload.count > format.magic.count + trailerSize, let declared = declaredSize(of: payload) else {
            throw .payloadTooShort(format, size: payload.count)
        }
        let bound = min(limit, maximumOutputSize)
        guard declared > 0, declared <= bound else { throw .declaredSizeOutOfRange(format, declared: declared, limit: bound) }

        var failure: KernelDecompressionError?
        // UInt8 is trivial, so a buffer reported as 0 bytes initialized may hold anything.
        let output = [UInt8](unsafeUninitializedCapacity: declared) { buffer, initialized in
            initialized = 0
            let result = payload.withUnsafeBytes { input in
                Result { () throws(KernelDecompressionError) in
                    try decoder.decode(input, into: UnsafeMutableRawBufferPointer(buffer))
                }
            }
            switch result {
            case .failure(let error):
                failure = error
            case .success(let produced) where produced != declared:
                failure = .sizeMismatch(format, declared: declared, produced: produced)
            case .success:
                initialized = declared
            }
        }
        if let failure { throw failure }
        return output
    }
}

/// One compression format's decoder: decodes the stream at the start of `input` into `output`
/// and returns how many bytes it wrote. Throws `.largerThanDeclared` when the stream has more
/// output than `output` holds, `.truncated` when the input ends inside the stream, `.corrupt`
/// for anything the library rejects.
protocol PayloadDecoder {
    static func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer)
        throws(KernelDecompressionError) -> Int
}

/// Why a bzImage payload could not be decompressed. Each case prints as one line.
public enum KernelDecompressionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// bzip2 and lzo kernels are recognised but not decompressed (Debian's kernels use neither).
    case unsupported(KernelCompression)
    /// The payload cannot even hold the format's magic and the size trailer.
    case payloadTooShort(KernelCompression, size: Int)
    /// The trailer declares 0 bytes or more than the limit (guest RAM, at most 1 GiB).
    case declaredSizeOutOfRange(KernelCompression, declared: Int, limit: Int)
    /// The input ends before the compressed stream does.
    case truncated(KernelCompression)
    /// The library rejected the data (with its message).
    case corrupt(KernelCompression, String)
    /// The stream decodes to more than the trailer declares.
    case largerThanDeclared(KernelCompression, declared: Int)
    /// The stream ended after `produced` bytes, not the declared number.
    case sizeMismatch(KernelCompression, declared: Int, produced: Int)
    /// The library could not start (out of memory, or a version mismatch).
    case library(KernelCompression, String)

    public var description: String {
        switch self {
        case .unsupported(let f):
            return "\(f)-compressed kernels are not supported (gzip, xz, lzma, lz4 and zstd are)"
        case .payloadTooShort(let f, let size):
            return "\(f) kernel payload of \(size) bytes is too short for a compressed stream and its size trailer"
        case .declaredSizeOutOfRange(let f, let declared, let limit):
            return "\(f) kernel payload declares \(declared) uncompressed bytes; it must be between 1 and \(limit) (guest RAM, at most 1 GiB)"
        case .truncated(let f):
            return "\(f) kernel payload is truncated: the compressed stream ends early"
        case .corrupt(let f, let message):
            return "\(f) kernel payload is corrupt: \(message)"
        case .largerThanDeclared(let f, let declared):
            return "\(f) kernel payload decompresses to more than the \(declared) bytes its size trailer declares"
        case .sizeMismatch(let f, let declared, let produced):
            return "\(f) kernel payload decompressed to \(produced) bytes, but its size trailer declares \(declared) (truncated or corrupt)"
        case .library(let f, let message):
            return "\(f) decompressor failed to start: \(message)"
        }
    }
}
