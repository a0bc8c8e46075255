/// The Multiboot Specification version 0.6.96, section 3.1 "OS image format": the header a
/// kernel embeds so that a boot loader knows how to load it.
///
/// SynthVM is the boot loader here (docs/boot-protocol.md, "Multiboot v1"). The header decides
/// two things: whether a file is a multiboot kernel at all, and, for non-ELF kernels (flag 16,
/// the "a.out kludge"), where the file's bytes go. Both come from an untrusted file, so the
/// search and the load plan are bounds- and overflow-checked throughout.
public struct MultibootHeader: Equatable, Sendable {
    /// `magic` field of the OS image header.
    public static let magic: UInt32 = 0x1BAD_B002
    /// Value in EAX when the boot loader jumps to the kernel.
    public static let bootloaderMagic: UInt32 = 0x2BAD_B002
    /// The header must lie within this many bytes from the start of the file.
    public static let searchLimit = 8192

    /// Flag 0: align modules on 4 KiB boundaries.
    public static let flagPageAlignModules: UInt32 = 1 << 0
    /// Flag 1: provide `mem_*` (and the memory map) in the multiboot info.
    public static let flagMemoryInfo: UInt32 = 1 << 1
    /// Flag 2: video mode fields present. Accepted and ignored: there is no display.
    public static let flagVideoMode: UInt32 = 1 << 2
    /// Flag 16: the address fields are valid; load by them instead of by the ELF headers.
    public static let flagAddressFields: UInt32 = 1 << 16
    /// The low 16 flags are requirements: a loader that does not understand one must refuse
    /// the kernel. These are the ones SynthVM understands.
    public static let supportedRequiredFlags: UInt32 = flagPageAlignModules | flagMemoryInfo | flagVideoMode

    /// The flag-16 fields, at header offsets 12 to 31. All are physical addresses.
    public struct Addresses: Equatable, Sendable {
        /// Address the header's `magic` field is loaded to; ties file offsets to addresses.
        public var headerAddress: UInt32
        /// Start of the text segment; the file is loaded from the matching offset.
        public var loadAddress: UInt32
        /// End of the data segment; 0 means the rest of the file.
        public var loadEndAddress: UInt32
        /// End of the bss, zeroed by the loader; 0 means no bss.
        public var bssEndAddress: UInt32
        /// Where to jump.
        public var entryAddress: UInt32

        public init(
            headerAddress: UInt32, loadAddress: UInt32, loadEndAddress: UInt32, bssEndAddress: UInt32,
            entryAddress: UInt32
        ) {
            self.headerAddress = headerAddress
            self.loadAddress = loadAddress
            self.loadEndAddress = loadEndAddress
            self.bssEndAddress = bssEndAddress
            self.entryAddress = entryAddress
        }
    }

    /// Offset of the `magic` field in the file.
    public var fileOffset: Int
    public var flags: UInt32
    /// Present exactly when flag 16 is set.
    public var addresses: Addresses?

    public init(fileOffset: Int, flags: UInt32, addresses: Addresses?) {
        self.fileOffset = fileOffset
        self.flags = flags
        self.addresses = addresses
    }

    /// Finds the first valid header: a 32-bit aligned `magic` in the first 8192 bytes whose
    /// `magic + flags + checksum` is 0 modulo 2^32. A `magic` with a wrong checksum is just a
    /// coincidental bit pattern, so the search continues past it.
    ///
    /// Returns nil when the file has no header. Throws when it has one SynthVM must not boot:
    /// it requires a feature (low-16 flag) other than 0, 1 and 2, or its address fields are cut
    /// off by the end of the file.
    public static func find(in bytes: [UInt8]) throws(MultibootError) -> MultibootHeader? {
        let limit = min(bytes.count, searchLimit)
        var offset = 0
        while offset + 12 <= limit {
            defer { offset += 4 }
            guard readU32(bytes, offset) == magic else { continue }
            let flags = readU32(bytes, offset + 4)
            let checksum = readU32(bytes, offset + 8)
            guard magic &+ flags &+ checksum == 0 else { continue }

            let unsupported = flags & 0xFFFF & ~supportedRequiredFlags
            if unsupported != 0 { throw .unsupportedFlags(unsupported) }

            var addresses: Addresses?
            if flags & flagAddressFields != 0 {
                guard bytes.count - offset >= 32 else { throw .truncatedAddressFields(headerOffset: offset) }
                addresses = Addresses(
                    headerAddress: readU32(bytes, offset + 12), loadAddress: readU32(bytes, offset + 16),
                    loadEndAddress: readU32(bytes, offset + 20), bssEndAddress: readU32(bytes, offset + 24),
                    entryAddress: readU32(bytes, offset + 28))
            }
            return MultibootHeader(fileOffset: offset, flags: flags, addresses: addresses)
        }
        return nil
    }

    /// Where the a.out-kludge image goes, checked against a file of `fileSize` bytes.
    ///
    /// Per the specification: the file offset of the text is `fileOffset - (header_addr -
    /// load_addr)`; `load_end_addr - load_addr` bytes are copied (to the end of the file when
    /// `load_end_addr` is 0); memory up to `bss_end_addr` is zeroed. Whether the target range is
    /// RAM is the caller's question for ``GuestMemoryLayout``.
    public func aoutLoadPlan(fileSize: Int) throws(MultibootError) -> AoutLoadPlan {
        guard let a = addresses else { throw .noAddressFields }
        guard a.loadAddress <= a.headerAddress else {
            throw .loadAddressAboveHeaderAddress(loadAddress: a.loadAddress, headerAddress: a.headerAddress)
        }
        let headerDistance = Int(a.headerAddress - a.loadAddress)
        guard headerDistance <= fileOffset else {
            throw .loadStartsBeforeFile(headerOffset: fileOffset, headerDistance: headerDistance)
        }
        let loadFileOffset = fileOffset - headerDistance

        let loadSize: Int
        if a.loadEndAddress == 0 {
            guard fileSize >= loadFileOffset else {
                throw .loadPastEndOfFile(fileOffset: loadFileOffset, loadSize: 0, fileSize: fileSize)
            }
            loadSize = fileSize - loadFileOffset
        } else {
            guard a.loadEndAddress >= a.loadAddress else {
                throw .loadEndBeforeLoadAddress(loadEndAddress: a.loadEndAddress, loadAddress: a.loadAddress)
            }
            loadSize = Int(a.loadEndAddress - a.loadAddress)
            guard fileSize >= loadFileOffset, loadSize <= fileSize - loadFileOffset else {
                throw .loadPastEndOfFile(fileOffset: loadFileOffset, loadSize: loadSize, fileSize: fileSize)
            }
        }

        // The image is loaded in 32-bit physical space; it may end at 4 GiB but not past it.
        let loadAddress = UInt64(a.loadAddress)
        guard UInt64(loadSize) <= 0x1_0000_0000 - loadAddress else { throw .addressOverflow }
        let loadEnd = loadAddress + UInt64(loadSize)

        let bssEnd = UInt64(a.bssEndAddress)
        if bssEnd != 0, bssEnd < loadEnd {
            throw .bssEndBeforeLoadEnd(bssEndAddress: a.bssEndAddress, loadEnd: loadEnd)
        }
        return AoutLoadPlan(
            fileOffset: loadFileOffset, loadAddress: loadAddress, loadSize: loadSize, bssEnd: bssEnd,
            entry: UInt64(a.entryAddress))
    }
}

/// How to load a flag-16 multiboot kernel: copy `loadSize` bytes from `fileOffset` in the file to
/// `loadAddress`, zero `[loadAddress + loadSize, bssEnd)` when `bssEnd` is non-zero, and jump to
/// `entry`. All values are validated against the file and the 32-bit address space.
public struct AoutLoadPlan: Equatable, Sendable {
    public var fileOffset: Int
    public var loadAddress: UInt64
    public var loadSize: Int
    /// End of the bss; 0 means no bss.
    public var bssEnd: UInt64
    public var entry: UInt64

    public init(fileOffset: Int, loadAddress: UInt64, loadSize: Int, bssEnd: UInt64, entry: UInt64) {
        self.fileOffset = fileOffset
        self.loadAddress = loadAddress
        self.loadSize = loadSize
        self.bssEnd = bssEnd
        self.entry = entry
    }
}

/// Why a multiboot kernel cannot be booted.
public enum MultibootError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The header requires features (low-16 flag bits, given here) SynthVM does not implement.
    case unsupportedFlags(UInt32)
    /// Flag 16 is set but the file ends before the five address fields.
    case truncatedAddressFields(headerOffset: Int)
    /// An a.out load plan was asked for but flag 16 is not set.
    case noAddressFields
    case loadAddressAboveHeaderAddress(loadAddress: UInt32, headerAddress: UInt32)
    /// `header_addr - load_addr` is larger than the header's own file offset.
    case loadStartsBeforeFile(headerOffset: Int, headerDistance: Int)
    case loadEndBeforeLoadAddress(loadEndAddress: UInt32, loadAddress: UInt32)
    case loadPastEndOfFile(fileOffset: Int, loadSize: Int, fileSize: Int)
    case bssEndBeforeLoadEnd(bssEndAddress: UInt32, loadEnd: UInt64)
    /// The loaded image would extend past 4 GiB.
    case addressOverflow

    public var description: String {
        switch self {
        case .unsupportedFlags(let bits):
            return "multiboot header requires unsupported features (flags 0x\(String(bits, radix: 16)))"
        case .truncatedAddressFields(let offset):
            return "multiboot header at offset \(offset) sets flag 16 but the file ends before its address fields"
        case .noAddressFields:
            return "multiboot header has no address fields (flag 16 is not set)"
        case .loadAddressAboveHeaderAddress(let load, let header):
            return "multiboot load_addr 0x\(String(load, radix: 16)) is above header_addr 0x\(String(header, radix: 16))"
        case .loadStartsBeforeFile(let headerOffset, let distance):
            return "multiboot image would start \(distance) bytes before the header at file offset \(headerOffset), before the start of the file"
        case .loadEndBeforeLoadAddress(let end, let load):
            return "multiboot load_end_addr 0x\(String(end, radix: 16)) is below load_addr 0x\(String(load, radix: 16))"
        case .loadPastEndOfFile(let offset, let size, let fileSize):
            return "multiboot image (\(size) bytes at file offset \(offset)) extends past the end of the \(fileSize)-byte file"
        case .bssEndBeforeLoadEnd(let bss, let loadEnd):
            return "multiboot bss_end_addr 0x\(String(bss, radix: 16)) is below the end of the loaded image 0x\(String(loadEnd, radix: 16))"
        case .addressOverflow:
            return "multiboot image extends past 4 GiB"
        }
    }
}

/// Little-endian u32 at `offset`; callers have checked `offset + 4 <= bytes.count`.
private func readU32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
        | UInt32(bytes[offset + 3]) << 24
}
