import FuzzSeeds
import Testing

@testable import Machine

/// Builds a synthetic bzImage: boot sector with the setup header, `setupSects` more setup
/// sectors, then the protected-mode kernel (a 0x200-byte area up to the 64-bit entry, a marker
/// byte there) with `payload` at `payloadOffset` into it. Fields use `put*` from ElfImageTests.
private func makeBzImage(
    version: UInt16 = 0x020F, setupSects: UInt8 = 3, xloadFlags: UInt16 = 0x7F, jumpByte: UInt8 = 0x6A,
    payload: [UInt8] = KernelCompression.lz4.magic + [1, 2, 3, 4], payloadOffset: UInt32 = 0x300,
    payloadLength: UInt32? = nil, trailing: Int = 0
) -> [UInt8] {
    let sectors = setupSects == 0 ? 4 : Int(setupSects)
    let pm = (sectors + 1) * 512
    var bytes = [UInt8](repeating: 0, count: pm + Int(payloadOffset) + payload.count + trailing)
    bytes[0x1F1] = setupSects
    bytes.put16(0xAA55, at: 0x1FE)
    bytes[0x200] = 0xEB  // jmp short
    bytes[0x201] = jumpByte
    bytes.put32(0x5372_6448, at: 0x202)  // "HdrS"
    bytes.put16(version, at: 0x206)
    bytes[0x211] = 0x81  // LOADED_HIGH | CAN_USE_HEAP
    bytes.put32(0x7FFF_FFFF, at: 0x22C)  // initrd_addr_max
    bytes.put32(0x20_0000, at: 0x230)
    bytes[0x234] = 1
    bytes.put16(xloadFlags, at: 0x236)
    bytes.put32(2047, at: 0x238)
    bytes.put32(payloadOffset, at: 0x248)
    bytes.put32(payloadLength ?? UInt32(payload.count), at: 0x24C)
    bytes.put64(0x100_0000, at: 0x258)
    bytes.put32(0x2A0_0000, at: 0x260)
    bytes[pm + 0x200] = 0xCC  // where startup_64 would be
    for (i, b) in payload.enumerated() { bytes[pm + Int(payloadOffset) + i] = b }
    return bytes
}

private let bzImage = makeBzImage()

/// What a successful parse guarantees a loader; checked after every fuzzed parse.
private func checkInvariants(_ header: LinuxSetupHeader, _ bytes: [UInt8]) {
    #expect(header.protocolVersion >= LinuxSetupHeader.minimumProtocol)
    #expect(header.xloadFlags & LinuxSetupHeader.xlfKernel64 != 0)
    #expect(header.setupSectors >= 1 && header.setupSectors <= 255)
    #expect(header.protectedModeOffset == (header.setupSectors + 1) * 512)
    #expect(header.protectedModeOffset + LinuxSetupHeader.entry64Offset < bytes.count)
    #expect(!header.payloadRange.isEmpty && header.payloadRange.upperBound <= bytes.count)
    #expect(header.payloadRange.lowerBound == header.protectedModeOffset + Int(header.payloadOffset))
    #expect(header.setupHeaderRange.lowerBound == 0x1F1 && header.setupHeaderRange.upperBound <= bytes.count)
    #expect(header.setupHeaderRange.upperBound <= LinuxSetupHeader.zeroPageHeaderLimit)
    _ = bytes[header.payloadRange]
    _ = bytes[header.setupHeaderRange]
    _ = header.payloadCompression(in: bytes)
}

@Suite struct LinuxSetupHeaderTests {
    @Test func parsesSyntheticBzImage() throws {
        let header = try LinuxSetupHeader.parse(bzImage)
        #expect(header.protocolVersion == 0x020F)
        #expect(header.protocolString == "2.15")
        #expect(header.setupSectors == 3)
        #expect(header.protectedModeOffset == 0x800)
        #expect(header.loadFlags == 0x81)
        #expect(header.loadFlags & LinuxSetupHeader.loadedHigh != 0)
        #expect(header.kernelAlignment == 0x20_0000)
        #expect(header.initrdAddressMax == 0x7FFF_FFFF)
        #expect(header.relocatable)
        #expect(header.xloadFlags == 0x7F)
        #expect(header.commandLineSize == 2047)
        #expect(header.payloadOffset == 0x300)
        #expect(header.payloadLength == 8)
        #expect(header.payloadRange == 0xB00..<0xB08)
        #expect(header.preferredAddress == 0x100_0000)
        #expect(header.initSize == 0x2A0_0000)
        #expect(header.setupHeaderRange == 0x1F1..<0x26C)
        #expect(bzImage[header.protectedModeOffset + LinuxSetupHeader.entry64Offset] == 0xCC)
        #expect(header.payloadCompression(in: bzImage) == .lz4)
    }

    @Test func zeroSetupSectorsMeansFour() throws {
        let bytes = makeBzImage(setupSects: 0)
        let header = try LinuxSetupHeader.parse(bytes)
        #expect(header.setupSectors == 4)
        #expect(header.protectedModeOffset == 5 * 512)
        #expect(header.payloadRange.lowerBound == 5 * 512 + 0x300)
        #expect(bytes[header.protectedModeOffset + 0x200] == 0xCC)
    }

    @Test func maximumSetupSectors() throws {
        let header = try LinuxSetupHeader.parse(makeBzImage(setupSects: 255))
        #expect(header.protectedModeOffset == 256 * 512)
    }

    @Test(arguments: KernelCompression.allCases)
    func detectsEachPayloadCompression(format: KernelCompression) throws {
        let bytes = makeBzImage(payload: format.magic + [0xAB, 0xCD])
        let header = try LinuxSetupHeader.parse(bytes)
        #expect(header.payloadCompression(in: bytes) == format)
    }

    @Test func unknownPayloadCompression() throws {
        let bytes = makeBzImage(payload: [0x7F, 0x45, 0x4C, 0x46])  // an uncompressed ELF
        #expect(try LinuxSetupHeader.parse(bytes).payloadCompression(in: bytes) == nil)
        // Detection looks only inside the payload: a magic cut by payload_length does not count.
        let cut = makeBzImage(payload: KernelCompression.xz.magic, payloadLength: 5)
        #expect(try LinuxSetupHeader.parse(cut).payloadCompression(in: cut) == nil)
        // A file other than the parsed one, too short for the payload, gives nil, not a trap.
        #expect(try LinuxSetupHeader.parse(bzImage).payloadCompression(in: []) == nil)
    }

    @Test func payloadAtEndOfFileAndHeaderCap() throws {
        // payload_offset 0: the payload starts right at the protected-mode kernel.
        let atStart = makeBzImage(payload: [UInt8](repeating: 0x28, count: 0x300), payloadOffset: 0)
        #expect(try LinuxSetupHeader.parse(atStart).payloadRange == 0x800..<0xB00)
        // The header length byte can claim more than boot_params holds; the copy is capped.
        #expect(try LinuxSetupHeader.parse(makeBzImage(jumpByte: 0xFF)).setupHeaderRange == 0x1F1..<0x290)
        #expect(try LinuxSetupHeader.parse(makeBzImage(jumpByte: 0x62)).setupHeaderRange == 0x1F1..<0x264)
    }

    @Test func notBzImage() {
        #expect(throws: LinuxSetupHeaderError.notBzImage) { try LinuxSetupHeader.parse([]) }
        #expect(throws: LinuxSetupHeaderError.notBzImage) { try LinuxSetupHeader.parse(Array(bzImage[..<0x205])) }
        #expect(throws: LinuxSetupHeaderError.notBzImage) {
            try LinuxSetupHeader.parse([0x7F, 0x45, 0x4C, 0x46] + [UInt8](repeating: 0, count: 0x1000))
        }
        var bytes = bzImage
        bytes[0x1FE] = 0xAA
        bytes[0x1FF] = 0x55  // byte-swapped boot flag (the file has 55 AA)
        #expect(throws: LinuxSetupHeaderError.notBzImage) { try LinuxSetupHeader.parse(bytes) }
        bytes = bzImage
        bytes[0x205] = 0x73  // "Hdrs"
        #expect(throws: LinuxSetupHeaderError.notBzImage) { try LinuxSetupHeader.parse(bytes) }
    }

    @Test func protocolVersions() {
        for version: UInt16 in [0, 0x0100, 0x0200, 0x0206, 0x0207] {
            #expect(throws: LinuxSetupHeaderError.protocolTooOld(version)) {
                try LinuxSetupHeader.parse(makeBzImage(version: version))
            }
        }
        // 2.08 to 2.11 pass the version check but predate xloadflags: the byte is padding, so
        // even a set bit there does not announce a 64-bit entry.
        for version: UInt16 in [0x0208, 0x020A, 0x020B] {
            #expect(throws: LinuxSetupHeaderError.no64BitEntry(version)) {
                try LinuxSetupHeader.parse(makeBzImage(version: version, xloadFlags: 1))
            }
        }
        #expect(throws: Never.self) { try LinuxSetupHeader.parse(makeBzImage(version: 0x020C, xloadFlags: 1)) }
        #expect(throws: Never.self) { try LinuxSetupHeader.parse(makeBzImage(version: 0xFFFF, xloadFlags: 1)) }
    }

    @Test func no64BitEntry() {
        #expect(throws: LinuxSetupHeaderError.no64BitEntry(0x020F)) {
            try LinuxSetupHeader.parse(makeBzImage(xloadFlags: 0))
        }
        #expect(throws: LinuxSetupHeaderError.no64BitEntry(0x020F)) {
            try LinuxSetupHeader.parse(makeBzImage(xloadFlags: 0xFFFE))  // everything but XLF_KERNEL_64
        }
    }

    @Test func headerTooShort() {
        #expect(throws: LinuxSetupHeaderError.headerTooShort(end: 0x202)) {
            try LinuxSetupHeader.parse(makeBzImage(jumpByte: 0))
        }
        #expect(throws: LinuxSetupHeaderError.headerTooShort(end: 0x263)) {
            try LinuxSetupHeader.parse(makeBzImage(jumpByte: 0x61))
        }
    }

    @Test func payloadOutsideFile() {
        // Empty payload.
        #expect(throws: LinuxSetupHeaderError.payloadOutsideFile(offset: 0xB00, length: 0, fileSize: 0xB08)) {
            try LinuxSetupHeader.parse(makeBzImage(payloadLength: 0))
        }
        // One byte too long.
        #expect(throws: LinuxSetupHeaderError.payloadOutsideFile(offset: 0xB00, length: 9, fileSize: 0xB08)) {
            try LinuxSetupHeader.parse(makeBzImage(payloadLength: 9))
        }
        // Extreme values: nothing wraps.
        var bytes = bzImage
        for (offset, length): (UInt32, UInt32) in [
            (0xFFFF_FFFF, 1), (0x308, 1), (0, 0xFFFF_FFFF), (0xFFFF_FFFF, 0xFFFF_FFFF), (0x8000_0000, 0x8000_0000),
        ] {
            bytes.put32(offset, at: 0x248)
            bytes.put32(length, at: 0x24C)
            #expect(
                throws: LinuxSetupHeaderError.payloadOutsideFile(
                    offset: 0x800 + Int(offset), length: Int(length), fileSize: bytes.count)
            ) { try LinuxSetupHeader.parse(bytes) }
        }
    }

    @Test func truncated() {
        // Cut right after the magic: the version is missing.
        #expect(throws: LinuxSetupHeaderError.truncated(size: 0x207, needed: 0x208)) {
            try LinuxSetupHeader.parse(Array(bzImage[..<0x207]))
        }
        // Cut inside the header fields.
        #expect(throws: LinuxSetupHeaderError.truncated(size: 0x240, needed: 0x264)) {
            try LinuxSetupHeader.parse(Array(bzImage[..<0x240]))
        }
        // Cut before the 64-bit entry point of the protected-mode kernel.
        #expect(throws: LinuxSetupHeaderError.truncated(size: 0xA00, needed: 0xA01)) {
            try LinuxSetupHeader.parse(Array(bzImage[..<0xA00]))
        }
        // Setup sectors claimed beyond the file.
        var bytes = bzImage
        bytes[0x1F1] = 200
        #expect(throws: LinuxSetupHeaderError.truncated(size: bytes.count, needed: 201 * 512 + 0x201)) {
            try LinuxSetupHeader.parse(bytes)
        }
    }

    @Test func messagesAreOneLine() {
        let errors: [LinuxSetupHeaderError] = [
            .notBzImage, .protocolTooOld(0x0207), .no64BitEntry(0x020B), .headerTooShort(end: 0x240),
            .payloadOutsideFile(offset: 1, length: 2, fileSize: 3), .truncated(size: 4, needed: 5),
        ]
        var seen = Set<String>()
        for error in errors {
            #expect(!error.description.isEmpty && !error.description.contains("\n"))
            #expect(seen.insert(error.description).inserted)
        }
        #expect(LinuxSetupHeaderError.protocolTooOld(0x0207).description.contains("2.7"))
        #expect(LinuxSetupHeaderError.no64BitEntry(0x020B).description.contains("2.11"))
    }

    @Test func everyTruncationFailsCleanly() throws {
        _ = try LinuxSetupHeader.parse(bzImage)
        for length in 0..<bzImage.count {
            #expect(throws: LinuxSetupHeaderError.self) { try LinuxSetupHeader.parse(Array(bzImage[..<length])) }
        }
    }

    @Test func randomGarbageNeverTraps() {
        var rng = SplitMix64(state: 0xB2_1A6E)
        for round in 0..<5_000 {
            let length = Int(rng.next() % 0xC00)
            var bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            // Most rounds get the identification so the parser gets past the magic.
            if round % 4 != 0, length >= 0x208 {
                bytes.put16(0xAA55, at: 0x1FE)
                bytes.put32(0x5372_6448, at: 0x202)
                if round % 2 == 0 { bytes[0x1F1] = UInt8(truncatingIfNeeded: rng.next() % 4) }
            }
            if let header = try? LinuxSetupHeader.parse(bytes) { checkInvariants(header, bytes) }
        }
    }

    @Test func mutatedHeadersNeverTrap() {
        var rng = SplitMix64(state: 0x4864_7253)
        let extremes: [UInt64] = [0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, UInt64.max]
        var accepted = 0
        for _ in 0..<20_000 {
            var bytes = bzImage
            for _ in 0..<(1 + rng.next() % 3) {
                let offset = 0x1F1 + Int(rng.next() % UInt64(0x270 - 0x1F1 - 8))
                switch rng.next() % 3 {
                case 0: bytes[offset] = UInt8(truncatingIfNeeded: rng.next())
                case 1: bytes.put64(extremes[Int(rng.next() % UInt64(extremes.count))], at: offset)
                default:
                    bytes.put32(UInt32(truncatingIfNeeded: extremes[Int(rng.next() % UInt64(extremes.count))]), at: offset)
                }
            }
            if rng.next() % 8 == 0 { bytes.removeLast(Int(rng.next() % UInt64(bytes.count))) }
            if let header = try? LinuxSetupHeader.parse(bytes) {
                accepted += 1
                checkInvariants(header, bytes)
            }
        }
        #expect(accepted > 0)
    }
}

@Suite struct KernelCompressionTests {
    @Test(arguments: KernelCompression.allCases)
    func detectsMagic(format: KernelCompression) {
        #expect(KernelCompression.detect(format.magic) == format)
        #expect(KernelCompression.detect(format.magic + [0, 0xFF, 0x12]) == format)
        #expect(KernelCompression.detect(ArraySlice([0xEE] + format.magic).dropFirst()) == format)
        // Every strict prefix of the magic is not enough.
        for length in 0..<format.magic.count {
            #expect(KernelCompression.detect(format.magic[..<length]) == nil)
        }
    }

    @Test func documentedMagics() {
        #expect(KernelCompression.detect([0x1F, 0x8B, 0x08]) == .gzip)
        #expect(KernelCompression.detect([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00, 0x00]) == .xz)
        #expect(KernelCompression.detect([0x5D, 0x00, 0x00, 0x80, 0x00]) == .lzma)
        #expect(KernelCompression.detect([0x02, 0x21, 0x4C, 0x18, 0x00]) == .lz4)
        #expect(KernelCompression.detect([0x28, 0xB5, 0x2F, 0xFD, 0x00]) == .zstd)
        #expect(KernelCompression.detect(Array("BZh9".utf8)) == .bzip2)
        #expect(KernelCompression.detect([0x89, 0x4C, 0x5A, 0x4F, 0x00]) == .lzo)
        #expect(KernelCompression.lz4.description == "lz4")
    }

    @Test func unknownData() {
        #expect(KernelCompression.detect([UInt8]()) == nil)
        #expect(KernelCompression.detect([0x7F, 0x45, 0x4C, 0x46]) == nil)  // ELF: uncompressed
        #expect(KernelCompression.detect([0x04, 0x22, 0x4D, 0x18]) == nil)  // LZ4 frame format, not legacy
        #expect(KernelCompression.detect([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x01]) == nil)
        #expect(KernelCompression.detect([0x5D, 0x00, 0x01]) == nil)
    }

    @Test func magicsAreUnambiguous() {
        for a in KernelCompression.allCases {
            for b in KernelCompression.allCases where a != b {
                #expect(!a.magic.starts(with: b.magic))
            }
        }
    }
}
