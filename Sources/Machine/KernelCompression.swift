/// The compression formats a Linux bzImage payload can use (the kernel's CONFIG_KERNEL_*
/// choices), told apart by the magic bytes at the start of the payload.
///
/// Detection only: decompression is done by the host's libraries, chosen by this value.
public enum KernelCompression: String, CaseIterable, Equatable, Sendable, CustomStringConvertible {
    case gzip
    case xz
    case lzma
    /// LZ4 legacy frame format (`lz4 -l`), which is what the kernel build produces.
    case lz4
    case zstd
    case bzip2
    /// lzop's file format.
    case lzo

    /// The bytes a payload in this format starts with.
    public var magic: [UInt8] {
        switch self {
        case .gzip: return [0x1F, 0x8B]
        case .xz: return [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]
        // An LZMA-alone header: properties byte 0x5D (lc=3, lp=0, pb=2), then the low bytes of
        // the little-endian dictionary size, which are 0 for the kernel's power-of-two sizes.
        case .lzma: return [0x5D, 0x00, 0x00]
        case .lz4: return [0x02, 0x21, 0x4C, 0x18]
        case .zstd: return [0x28, 0xB5, 0x2F, 0xFD]
        case .bzip2: return [0x42, 0x5A, 0x68]
        case .lzo: return [0x89, 0x4C, 0x5A, 0x4F]
        }
    }

    public var description: String { rawValue }

    /// The format whose magic `bytes` starts with, or nil when none matches (uncompressed or
    /// unknown). No magic is a prefix of another, so at most one format matches.
    public static func detect<Bytes: Collection>(_ bytes: Bytes) -> KernelCompression?
    where Bytes.Element == UInt8 {
        allCases.first { bytes.starts(with: $0.magic) }
    }
}
