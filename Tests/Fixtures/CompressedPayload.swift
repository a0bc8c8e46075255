import Foundation
import Machine

/// Payloads compressed by the machine's own tools, exactly as the kernel build packs vmlinux
/// (scripts/Makefile.lib): the compressor's output plus, for every format but gzip (whose ISIZE
/// field serves), the uncompressed size as a 4-byte little-endian trailer (`size_append`).
public enum CompressedPayload {
    public struct ToolFailure: Error, CustomStringConvertible {
        public let description: String
    }

    /// The command line that compresses a file to stdout in `format`.
    public static func command(_ format: KernelCompression) -> [String] {
        switch format {
        case .gzip: return ["gzip", "-n", "-9", "-c"]
        // The kernel's scripts/xz_wrap.sh: CRC32 check and the x86 BCJ filter before LZMA2.
        case .xz: return ["xz", "--format=xz", "--check=crc32", "--x86", "--lzma2=dict=1MiB", "-c"]
        case .lzma: return ["xz", "--format=lzma", "-9", "-c"]
        case .lz4: return ["lz4", "-l", "-9", "-c"]
        case .zstd: return ["zstd", "-q", "-19", "-c"]
        case .bzip2: return ["bzip2", "-9", "-c"]
        case .lzo: return ["lzop", "-9", "-c"]
        }
    }

    /// `data` compressed by the system tool, without the size trailer.
    public static func compressedStream(_ data: [UInt8], format: KernelCompression) throws -> [UInt8] {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("synthvm-payload-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let input = directory.appendingPathComponent("input")
        try Data(data).write(to: input)
        let tool = command(format)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = tool + [input.path]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let bytes = out.fileHandleForReading.readDataToEndOfFile()
        let message = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw ToolFailure(description: "\(tool.joined(separator: " ")) failed (status \(p.terminationStatus)): "
                + String(decoding: message, as: UTF8.self) + " (scripts/install-deps.sh installs the tools)")
        }
        return [UInt8](bytes)
    }

    /// `data` packed as a bzImage payload in `format`: stream plus size trailer.
    public static func make(_ data: [UInt8], format: KernelCompression) throws -> [UInt8] {
        let stream = try compressedStream(data, format: format)
        if format == .gzip { return stream }
        return stream + littleEndian32(UInt32(data.count))
    }

    public static func littleEndian32(_ v: UInt32) -> [UInt8] {
        [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)]
    }
}
