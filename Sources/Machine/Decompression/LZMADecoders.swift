import CLzma

/// xz payloads (CONFIG_KERNEL_XZ: an .xz stream, CRC32-checked, with the x86 BCJ filter)
/// through liblzma's stream decoder.
enum XZDecoder: PayloadDecoder {
    static func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer)
        throws(KernelDecompressionError) -> Int
    {
        var stream = lzma_stream()
        // No LZMA_CONCATENATED: the decoder stops at the end of the first stream, before the
        // kernel's size trailer.
        let status = lzma_stream_decoder(&stream, LiblzmaStream.memoryLimit, 0)
        guard status == LZMA_OK else { throw .library(.xz, LiblzmaStream.describe(status)) }
        defer { lzma_end(&stream) }
        return try LiblzmaStream.run(&stream, .xz, input, output)
    }
}

/// lzma payloads (CONFIG_KERNEL_LZMA: the legacy LZMA-alone format of `lzma -9`, no
/// checksum) through liblzma's alone decoder.
enum LZMAAloneDecoder: PayloadDecoder {
    static func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer)
        throws(KernelDecompressionError) -> Int
    {
        var stream = lzma_stream()
        let status = lzma_alone_decoder(&stream, LiblzmaStream.memoryLimit)
        guard status == LZMA_OK else { throw .library(.lzma, LiblzmaStream.describe(status)) }
        defer { lzma_end(&stream) }
        return try LiblzmaStream.run(&stream, .lzma, input, output)
    }
}

/// The decode loop both liblzma formats share.
enum LiblzmaStream {
    /// The most decoder memory a payload may ask for. The dictionary size comes from the
    /// (untrusted) stream header; the kernel's own formats use at most 64 MiB (`lzma -9`).
    static let memoryLimit: UInt64 = 256 << 20

    static func run(_ stream: inout lzma_stream, _ format: KernelCompression, _ input: UnsafeRawBufferPointer,
                    _ output: UnsafeMutableRawBufferPointer) throws(KernelDecompressionError) -> Int
    {
        guard let inBase = input.baseAddress, let outBase = output.baseAddress else { throw .truncated(format) }
        stream.next_in = inBase.assumingMemoryBound(to: UInt8.self)
        stream.avail_in = input.count
        stream.next_out = outBase.assumingMemoryBound(to: UInt8.self)
        stream.avail_out = output.count
        while true {
            // LZMA_FINISH: all input is there. liblzma returns LZMA_BUF_ERROR only after a call
            // that could make no progress, so this loop ends.
            let status = lzma_code(&stream, LZMA_FINISH)
            switch status {
            case LZMA_STREAM_END:
                return output.count - stream.avail_out
            case LZMA_OK:
                continue
            case LZMA_BUF_ERROR:
                if stream.avail_out == 0 { throw .largerThanDeclared(format, declared: output.count) }
                throw .truncated(format)
            case LZMA_MEM_ERROR, LZMA_MEMLIMIT_ERROR:
                throw .library(format, describe(status))
            default:
                throw .corrupt(format, describe(status))
            }
        }
    }

    static func describe(_ status: lzma_ret) -> String {
        switch status {
        case LZMA_FORMAT_ERROR: return "not a stream in this format"
        case LZMA_OPTIONS_ERROR: return "unsupported compression options"
        case LZMA_DATA_ERROR: return "compressed data is invalid"
        case LZMA_MEM_ERROR: return "out of memory"
        case LZMA_MEMLIMIT_ERROR: return "the stream needs more than \(memoryLimit >> 20) MiB of decoder memory"
        case LZMA_UNSUPPORTED_CHECK: return "unsupported integrity check"
        case LZMA_PROG_ERROR: return "liblzma programming error"
        default: return "liblzma status \(status.rawValue)"
        }
    }
}
