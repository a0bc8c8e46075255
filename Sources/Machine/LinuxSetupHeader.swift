/// The real-mode setup header of an x86 Linux bzImage (Linux Documentation/arch/x86/boot.rst,
/// "The Real-Mode Kernel Header"; layout as `struct setup_header` in
/// arch/x86/include/uapi/asm/bootparam.h).
///
/// A bzImage is the real-mode setup code (`setup_sects + 1` sectors of 512 bytes, the header
/// among them at 0x1F1) followed by the protected-mode kernel: a self-decompressor whose
/// compressed payload, the vmlinux ELF, is located by `payload_offset` and `payload_length`.
/// SynthVM decompresses that payload on the host and boots the ELF itself, so the parse checks
/// what that path needs: protocol 2.08 or later (the payload fields), a 64-bit kernel
/// (`XLF_KERNEL_64`, protocol 2.12), and a payload inside the file.
///
/// The file is untrusted: every offset is bounds-checked and every sum computed in `Int` from
/// at most 32-bit fields, so nothing can overflow on a 64-bit host; a bad file is an error,
/// never a trap. Once `parse` returns, `bytes[payloadRange]`, `bytes[setupHeaderRange]` and
/// `bytes[protectedModeOffset + entry64Offset]` are in bounds.
public struct LinuxSetupHeader: Equatable, Sendable {
    /// `boot_flag` at 0x1FE.
    public static let bootFlag: UInt16 = 0xAA55
    /// `header` at 0x202: "HdrS" read as a little-endian u32.
    public static let headerMagic: UInt32 = 0x5372_6448
    /// Protocol 2.08 added `payload_offset` and `payload_length`.
    public static let minimumProtocol: UInt16 = 0x0208
    /// `xloadflags` bit 0: the kernel has the 64-bit entry point at ``entry64Offset``.
    public static let xlfKernel64: UInt16 = 1 << 0
    /// `loadflags` bit 0: the protected-mode kernel is loaded at 0x100000.
    public static let loadedHigh: UInt8 = 1 << 0
    /// The 64-bit entry point (`startup_64`) lies this far into the protected-mode kernel.
    public static let entry64Offset = 0x200
    /// The setup is counted in sectors of this size.
    public static let sectorSize = 512
    /// `setup_sects` 0 means this many, for compatibility with ancient kernels.
    public static let defaultSetupSectors = 4
    /// The setup header starts at this file offset (`setup_sects`).
    public static let headerStart = 0x1F1
    /// `struct boot_params` has room for the setup header up to here (`_pad7` ends at 0x290);
    /// the loader copies `setupHeaderRange` into the zero page at the same offsets.
    public static let zeroPageHeaderLimit = 0x290
    /// Where a protocol-2.15 header ends (after `kernel_info_offset`).
    public static let defaultHeaderEnd = 0x26C

    // Field offsets, file-relative (boot.rst's table).
    static let setupSectsOffset = 0x1F1
    static let bootFlagOffset = 0x1FE
    static let jumpOffset = 0x200
    static let headerOffset = 0x202
    static let versionOffset = 0x206
    static let loadFlagsOffset = 0x211
    static let initrdAddressMaxOffset = 0x22C
    static let kernelAlignmentOffset = 0x230
    static let relocatableOffset = 0x234
    static let xloadFlagsOffset = 0x236
    static let cmdlineSizeOffset = 0x238
    static let payloadOffsetOffset = 0x248
    static let payloadLengthOffset = 0x24C
    static let prefAddressOffset = 0x258
    static let initSizeOffset = 0x260
    /// The fields this parser reads end here (after `init_size`).
    static let fieldsEnd = 0x264

    /// `version`, e.g. 0x020F for protocol 2.15.
    public var protocolVersion: UInt16
    /// `setup_sects` with 0 replaced by 4: the real-mode code is this many sectors plus the boot
    /// sector.
    public var setupSectors: Int
    /// `loadflags`.
    public var loadFlags: UInt8
    /// `initrd_addr_max` (protocol 2.03): the highest address the initramfs may occupy.
    public var initrdAddressMax: UInt32
    /// `kernel_alignment`: the physical alignment a relocatable kernel needs.
    public var kernelAlignment: UInt32
    /// `relocatable_kernel` is non-zero.
    public var relocatable: Bool
    /// `xloadflags` (protocol 2.12; 0 for older kernels).
    public var xloadFlags: UInt16
    /// `cmdline_size`: the longest command line, not counting the terminating NUL.
    public var commandLineSize: UInt32
    /// `payload_offset`, relative to the start of the protected-mode kernel.
    public var payloadOffset: UInt32
    /// `payload_length`.
    public var payloadLength: UInt32
    /// `pref_address` (protocol 2.10; 0 for older kernels): the preferred load address.
    public var preferredAddress: UInt64
    /// `init_size` (protocol 2.10; 0 for older kernels): the linear memory the kernel needs
    /// from its load address during decompression and early boot.
    public var initSize: UInt32
    /// File offset of the protected-mode kernel: `(setupSectors + 1) * 512`.
    public var protectedModeOffset: Int
    /// File offsets of the compressed payload.
    public var payloadRange: Range<Int>
    /// File offsets of the setup header to copy into `boot_params.hdr`: from 0x1F1 to
    /// `0x202 + byte at 0x201` (boot.rst), capped at ``zeroPageHeaderLimit``.
    public var setupHeaderRange: Range<Int>

    public init(
        protocolVersion: UInt16, setupSectors: Int, loadFlags: UInt8, initrdAddressMax: UInt32, kernelAlignment: UInt32,
        relocatable: Bool, xloadFlags: UInt16, commandLineSize: UInt32, payloadOffset: UInt32,
        payloadLength: UInt32, preferredAddress: UInt64, initSize: UInt32, protectedModeOffset: Int,
        payloadRange: Range<Int>, setupHeaderRange: Range<Int>
    ) {
        self.protocolVersion = protocolVersion
        self.setupSectors = setupSectors
        self.loadFlags = loadFlags
        self.initrdAddressMax = initrdAddressMax
        self.kernelAlignment = kernelAlignment
        self.relocatable = relocatable
        self.xloadFlags = xloadFlags
        self.commandLineSize = commandLineSize
        self.payloadOffset = payloadOffset
        self.payloadLength = payloadLength
        self.preferredAddress = preferredAddress
        self.initSize = initSize
        self.protectedModeOffset = protectedModeOffset
        self.payloadRange = payloadRange
        self.setupHeaderRange = setupHeaderRange
    }

    /// Protocol version as "major.minor", e.g. "2.15".
    public var protocolString: String { Self.versionString(protocolVersion) }

    /// The compression of the payload in `bytes` (the file this header was parsed from).
    public func payloadCompression(in bytes: [UInt8]) -> KernelCompression? {
        guard payloadRange.upperBound <= bytes.count else { return nil }
        return KernelCompression.detect(bytes[payloadRange])
    }

    /// Parses and validates the setup header of the bzImage `bytes`.
    public static func parse(_ bytes: [UInt8]) throws(LinuxSetupHeaderError) -> LinuxSetupHeader {
        // The identification needs bytes up to the end of "HdrS"; a shorter file cannot be told
        // apart from any other short file.
        guard bytes.count >= versionOffset,
            u16(bytes, bootFlagOffset) == bootFlag, u32(bytes, headerOffset) == headerMagic
        else { throw .notBzImage }
        guard bytes.count >= versionOffset + 2 else {
            throw .truncated(size: bytes.count, needed: versionOffset + 2)
        }
        let version = u16(bytes, versionOffset)
        guard version >= minimumProtocol else { throw .protocolTooOld(version) }
        guard bytes.count >= fieldsEnd else { throw .truncated(size: bytes.count, needed: fieldsEnd) }

        // Fields added after 2.08 are padding in older headers; read them as absent.
        let xloadFlags = version >= 0x020C ? u16(bytes, xloadFlagsOffset) : 0
        guard xloadFlags & xlfKernel64 != 0 else { throw .no64BitEntry(version) }

        let rawSetupSectors = Int(bytes[setupSectsOffset])
        let setupSectors = rawSetupSectors == 0 ? defaultSetupSectors : rawSetupSectors
        let protectedModeOffset = (setupSectors + 1) * sectorSize  // at most 256 * 512
        // The 64-bit entry point must be in the file, or the kernel is cut off.
        let entryNeeded = protectedModeOffset + entry64Offset + 1
        guard bytes.count >= entryNeeded else { throw .truncated(size: bytes.count, needed: entryNeeded) }

        let headerEnd = min(headerOffset + Int(bytes[jumpOffset + 1]), zeroPageHeaderLimit)
        // The jump must land at or after the fields read here; otherwise they are not header.
        guard headerEnd >= fieldsEnd else { throw .headerTooShort(end: headerEnd) }

        let payloadOffset = u32(bytes, payloadOffsetOffset)
        let payloadLength = u32(bytes, payloadLengthOffset)
        // Int is 64 bits on every supported host: these sums of 32-bit values cannot overflow.
        let payloadStart = protectedModeOffset + Int(payloadOffset)
        let payloadEnd = payloadStart + Int(payloadLength)
        guard payloadLength > 0, payloadEnd <= bytes.count else {
            throw .payloadOutsideFile(
                offset: payloadStart, length: Int(payloadLength), fileSize: bytes.count)
        }

        let hasV210 = version >= 0x020A
        return LinuxSetupHeader(
            protocolVersion: version, setupSectors: setupSectors, loadFlags: bytes[loadFlagsOffset],
            initrdAddressMax: u32(bytes, initrdAddressMaxOffset),
            kernelAlignment: u32(bytes, kernelAlignmentOffset), relocatable: bytes[relocatableOffset] != 0,
            xloadFlags: xloadFlags, commandLineSize: u32(bytes, cmdlineSizeOffset),
            payloadOffset: payloadOffset, payloadLength: payloadLength,
            preferredAddress: hasV210 ? u64(bytes, prefAddressOffset) : 0,
            initSize: hasV210 ? u32(bytes, initSizeOffset) : 0, protectedModeOffset: protectedModeOffset,
            payloadRange: payloadStart..<payloadEnd, setupHeaderRange: headerStart..<headerEnd)
    }

    static func versionString(_ version: UInt16) -> String {
        "\(version >> 8).\(version & 0xFF)"
    }
}

/// Why a file is not a bootable 64-bit bzImage.
public enum LinuxSetupHeaderError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No boot flag 0xAA55 at 0x1FE or no "HdrS" at 0x202.
    case notBzImage
    /// The boot protocol is older than 2.08, which has no payload fields.
    case protocolTooOld(UInt16)
    /// `xloadflags` lacks `XLF_KERNEL_64` (or the protocol predates it, 2.12).
    case no64BitEntry(UInt16)
    /// The header's end (`0x202 + byte at 0x201`) lies before the fields it must contain.
    case headerTooShort(end: Int)
    /// `payload_offset`/`payload_length` describe an empty range or one past the end of the file.
    case payloadOutsideFile(offset: Int, length: Int, fileSize: Int)
    /// The file ends at `size` bytes; at least `needed` are required.
    case truncated(size: Int, needed: Int)

    public var description: String {
        switch self {
        case .notBzImage:
            return "not a Linux bzImage (no boot flag 0xAA55 at 0x1FE and \"HdrS\" at 0x202)"
        case .protocolTooOld(let version):
            return "Linux boot protocol \(LinuxSetupHeader.versionString(version)) is too old (2.08 or later is needed for the payload fields)"
        case .no64BitEntry(let version):
            return "Linux kernel (boot protocol \(LinuxSetupHeader.versionString(version))) has no 64-bit entry point (XLF_KERNEL_64 not set)"
        case .headerTooShort(let end):
            return "Linux setup header ends at 0x\(String(end, radix: 16)), before its payload and init_size fields"
        case .payloadOutsideFile(let offset, let length, let fileSize):
            return "Linux kernel payload (\(length) bytes at file offset \(offset)) is empty or extends past the end of the \(fileSize)-byte file"
        case .truncated(let size, let needed):
            return "Linux bzImage truncated: the file has \(size) bytes, at least \(needed) are needed"
        }
    }
}

// Little-endian reads; callers have checked `offset + width <= bytes.count`.
private func u16(_ bytes: [UInt8], _ offset: Int) -> UInt16 {
    UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
}

private func u32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    UInt32(u16(bytes, offset)) | UInt32(u16(bytes, offset + 2)) << 16
}

private func u64(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
    UInt64(u32(bytes, offset)) | UInt64(u32(bytes, offset + 4)) << 32
}
