import CLz4

/// lz4 payloads (CONFIG_KERNEL_LZ4): the LZ4 *legacy* frame that `lz4 -l` writes, which has
/// no frame descriptor and no checksum, so liblz4's frame API (LZ4F) does not read it. The
/// frame is parsed here and each block goes through `LZ4_decompress_safe`:
///
///     u32 magic 0x184C2102, then blocks { u32 compressed size, compressed bytes },
///
/// each block decoding to at most 8 MiB. As in Linux's lib/decompress_unlz4.c, the input
/// ends at its end, at a zero block size, or where fewer than 4 bytes are left; a repeated
/// magic (concatenated frames) is skipped. The kernel's 4-byte size trailer is what is left
/// after the last block, so exactly 4 remaining bytes also end the frame.
enum LZ4LegacyDecoder: PayloadDecoder {
    static let magic: UInt32 = 0x184C_2102
    /// The legacy format's fixed uncompressed block size.
    static let blockSize = 8 << 20

    static func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer)
        throws(KernelDecompressionError) -> Int
    {
        guard input.count >= 4, le32(input, 0) == magic else { throw .corrupt(.lz4, "no LZ4 legacy magic") }
        let maximumBlock = Int(LZ4_compressBound(Int32(blockSize)))
        // Blocks decode into this scratch block first, so a stream with more output than
        // declared is told apart from a corrupt one.
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 16)
        defer { scratch.deallocate() }
        var at = 4
        var produced = 0
        while true {
            let remaining = input.count - at
            if remaining <= KernelDecompressor.trailerSize { break }
            let size = le32(input, at)
            at += 4
            if size == magic { continue }
            if size == 0 { break }
            guard Int(size) <= maximumBlock else {
                throw .corrupt(.lz4, "block at offset \(at - 4) claims \(size) bytes, more than a legacy block can hold")
            }
            guard Int(size) <= input.count - at else { throw .truncated(.lz4) }
            let n = LZ4_decompress_safe(
                (input.baseAddress! + at).assumingMemoryBound(to: CChar.self),
                scratch.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(size), Int32(blockSize))
            guard n >= 0 else { throw .corrupt(.lz4, "block at offset \(at - 4) does not decode") }
            guard Int(n) <= output.count - produced else { throw .largerThanDeclared(.lz4, declared: output.count) }
            (output.baseAddress! + produced).copyMemory(from: scratch.baseAddress!, byteCount: Int(n))
            produced += Int(n)
            at += Int(size)
        }
        return produced
    }

    /// Little-endian u32 at `offset`; callers have checked `offset + 4 <= bytes.count`.
    private static func le32(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
            | UInt32(bytes[offset + 3]) << 24
    }
}
