import CZstd

/// zstd payloads (CONFIG_KERNEL_ZSTD: one zstd frame, `zstd -22 --ultra`) through libzstd's
/// one-shot decoder, which writes straight into the output and allocates no window.
enum ZstdDecoder: PayloadDecoder {
    static func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer)
        throws(KernelDecompressionError) -> Int
    {
        guard let inBase = input.baseAddress, let outBase = output.baseAddress else { throw .truncated(.zstd) }
        // The frame alone: what follows it is the kernel's size trailer.
        let frameSize = ZSTD_findFrameCompressedSize(inBase, input.count)
        if ZSTD_isError(frameSize) != 0 { throw error(frameSize, declared: output.count) }
        guard let context = ZSTD_createDCtx() else { throw .library(.zstd, "out of memory") }
        defer { ZSTD_freeDCtx(context) }
        let produced = ZSTD_decompressDCtx(context, outBase, output.count, inBase, frameSize)
        if ZSTD_isError(produced) != 0 { throw error(produced, declared: output.count) }
        return produced
    }

    static func error(_ code: Int, declared: Int) -> KernelDecompressionError {
        switch ZSTD_getErrorCode(code) {
        case ZSTD_error_srcSize_wrong: return .truncated(.zstd)
        case ZSTD_error_dstSize_tooSmall: return .largerThanDeclared(.zstd, declared: declared)
        case ZSTD_error_memory_allocation: return .library(.zstd, "out of memory")
        default: return .corrupt(.zstd, String(cString: ZSTD_getErrorName(code)))
        }
    }
}
