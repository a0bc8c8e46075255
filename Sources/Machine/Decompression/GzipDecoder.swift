import CZlib

/// gzip payloads (CONFIG_KERNEL_GZIP) through zlib's inflate. The stream's own trailer (CRC32
/// and ISIZE) is the kernel's size trailer; zlib checks both.
enum GzipDecoder: PayloadDecoder {
    /// `windowBits` for inflateInit2: 16 selects the gzip wrapper (not zlib, not raw deflate),
    /// 15 the largest window, which gzip streams may use.
    static let gzipWindowBits: Int32 = 16 + 15

    static func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer)
        throws(KernelDecompressionError) -> Int
    {
        // payload_length and the declared size are 32-bit numbers, so both fit zlib's uInt.
        guard let inBase = input.baseAddress, let outBase = output.baseAddress,
            input.count <= Int(UInt32.max), output.count <= Int(UInt32.max)
        else { throw .truncated(.gzip) }
        var stream = z_stream()
        let initStatus = svm_inflate_init2(&stream, gzipWindowBits)
        guard initStatus == Z_OK else { throw .library(.gzip, "inflateInit2 returned \(initStatus)") }
        defer { inflateEnd(&stream) }
        stream.next_in = UnsafeMutablePointer(mutating: inBase.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(input.count)
        stream.next_out = outBase.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(output.count)
        while true {
            let inBefore = stream.avail_in
            let outBefore = stream.avail_out
            let status = inflate(&stream, Z_FINISH)
            switch status {
            case Z_STREAM_END:
                return output.count - Int(stream.avail_out)
            case Z_OK, Z_BUF_ERROR:
                // Progress: call again. None: either the output is full (the stream has more
                // than declared) or the input ran out inside the stream.
                if stream.avail_in != inBefore || stream.avail_out != outBefore { continue }
                if stream.avail_out == 0 { throw .largerThanDeclared(.gzip, declared: output.count) }
                throw .truncated(.gzip)
            case Z_DATA_ERROR:
                let message = stream.msg.map { String(cString: $0) } ?? "invalid deflate data"
                throw .corrupt(.gzip, message)
            case Z_MEM_ERROR:
                throw .library(.gzip, "out of memory")
            default:
                throw .corrupt(.gzip, "inflate returned \(status)")
            }
        }
    }
}
