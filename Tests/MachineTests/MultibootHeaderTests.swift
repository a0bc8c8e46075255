import FuzzSeeds
import Testing

@testable import Machine

/// A multiboot header at `offset` in a file of `fileSize` bytes. `checksum` defaults to the
/// correct one; `addresses` are written after it when given (regardless of flag 16, so tests
/// can make inconsistent headers).
private func makeKernel(
    fileSize: Int = 0x2000, offset: Int = 0x40, flags: UInt32, checksum: UInt32? = nil,
    addresses: MultibootHeader.Addresses? = nil
) -> [UInt8] {
    var bytes = [UInt8](repeating: 0xCC, count: fileSize)
    bytes.put32(MultibootHeader.magic, at: offset)
    bytes.put32(flags, at: offset + 4)
    bytes.put32(checksum ?? (0 &- MultibootHeader.magic &- flags), at: offset + 8)
    if let a = addresses {
        bytes.put32(a.headerAddress, at: offset + 12)
        bytes.put32(a.loadAddress, at: offset + 16)
        bytes.put32(a.loadEndAddress, at: offset + 20)
        bytes.put32(a.bssEndAddress, at: offset + 24)
        bytes.put32(a.entryAddress, at: offset + 28)
    }
    return bytes
}

private let aout = MultibootHeader.flagAddressFields | MultibootHeader.flagPageAlignModules | MultibootHeader.flagMemoryInfo

private func addresses(
    header: UInt32 = 0x10_0040, load: UInt32 = 0x10_0000, loadEnd: UInt32 = 0x10_1000, bssEnd: UInt32 = 0x10_3000,
    entry: UInt32 = 0x10_0060
) -> MultibootHeader.Addresses {
    MultibootHeader.Addresses(
        headerAddress: header, loadAddress: load, loadEndAddress: loadEnd, bssEndAddress: bssEnd, entryAddress: entry)
}

/// The a.out plan for a header with `a` at file offset 0x40 in a 0x2000-byte file.
private func plan(_ a: MultibootHeader.Addresses, fileSize: Int = 0x2000) throws -> AoutLoadPlan {
    let header = try #require(try MultibootHeader.find(in: makeKernel(flags: aout, addresses: a)))
    return try header.aoutLoadPlan(fileSize: fileSize)
}

@Suite struct MultibootHeaderTests {
    @Test func constants() {
        #expect(MultibootHeader.magic == 0x1BAD_B002)
        #expect(MultibootHeader.bootloaderMagic == 0x2BAD_B002)
    }

    @Test func findsPlainHeader() throws {
        let header = try MultibootHeader.find(in: makeKernel(offset: 0x1000, flags: 0x3))
        #expect(header == MultibootHeader(fileOffset: 0x1000, flags: 0x3, addresses: nil))
    }

    @Test func findsAtStartAndAtTheSearchLimit() throws {
        #expect(try MultibootHeader.find(in: makeKernel(offset: 0, flags: 0))?.fileOffset == 0)
        // The last position whose 12 bytes fit in the first 8192 bytes.
        #expect(try MultibootHeader.find(in: makeKernel(fileSize: 0x3000, offset: 8192 - 12, flags: 0))?.fileOffset == 8180)
        #expect(try MultibootHeader.find(in: makeKernel(fileSize: 0x3000, offset: 8192 - 8, flags: 0)) == nil)
        #expect(try MultibootHeader.find(in: makeKernel(fileSize: 0x3000, offset: 8192, flags: 0)) == nil)
        // A file that is exactly the header.
        #expect(try MultibootHeader.find(in: makeKernel(fileSize: 12, offset: 0, flags: 0))?.fileOffset == 0)
    }

    @Test func requiresAlignment() throws {
        #expect(try MultibootHeader.find(in: makeKernel(offset: 0x42, flags: 0)) == nil)
        #expect(try MultibootHeader.find(in: makeKernel(offset: 0x41, flags: 0)) == nil)
    }

    @Test func skipsMagicWithBadChecksum() throws {
        var bytes = makeKernel(offset: 0x100, flags: 0x2)
        bytes.put32(MultibootHeader.magic, at: 0x20)
        bytes.put32(0x0001_0000, at: 0x24)  // would be an a.out header ...
        bytes.put32(0x1234_5678, at: 0x28)  // ... but the checksum is wrong
        #expect(try MultibootHeader.find(in: bytes) == MultibootHeader(fileOffset: 0x100, flags: 0x2, addresses: nil))
        #expect(try MultibootHeader.find(in: makeKernel(flags: 0, checksum: 1)) == nil)
    }

    @Test func absentOrTooShort() throws {
        #expect(try MultibootHeader.find(in: []) == nil)
        #expect(try MultibootHeader.find(in: [0x02, 0xB0, 0xAD, 0x1B]) == nil)
        #expect(try MultibootHeader.find(in: [UInt8](repeating: 0, count: 100_000)) == nil)
        #expect(try MultibootHeader.find(in: Array(makeKernel(offset: 0, flags: 0)[..<11])) == nil)
    }

    @Test func flags() throws {
        // Bit 2 (video) is accepted and ignored; high flags other than 16 are informational.
        #expect(try MultibootHeader.find(in: makeKernel(flags: 0x7))?.flags == 0x7)
        #expect(try MultibootHeader.find(in: makeKernel(flags: 0x8000_0003))?.addresses == nil)
        #expect(throws: MultibootError.unsupportedFlags(0x8)) { try MultibootHeader.find(in: makeKernel(flags: 0xB)) }
        #expect(throws: MultibootError.unsupportedFlags(0x8000)) { try MultibootHeader.find(in: makeKernel(flags: 0x8000)) }
        #expect(throws: MultibootError.unsupportedFlags(0xFFF8)) { try MultibootHeader.find(in: makeKernel(flags: 0xFFFF_FFFF)) }
    }

    @Test func addressFields() throws {
        let a = addresses()
        let header = try MultibootHeader.find(in: makeKernel(flags: aout, addresses: a))
        #expect(header == MultibootHeader(fileOffset: 0x40, flags: aout, addresses: a))
    }

    @Test func truncatedAddressFields() throws {
        // The header's 12 bytes fit but the 20 bytes of address fields do not.
        for size in 12..<32 {
            let bytes = Array(makeKernel(offset: 0, flags: aout, addresses: addresses())[..<size])
            #expect(throws: MultibootError.truncatedAddressFields(headerOffset: 0)) { try MultibootHeader.find(in: bytes) }
        }
        let exact = Array(makeKernel(offset: 0, flags: aout, addresses: addresses())[..<32])
        #expect(try MultibootHeader.find(in: exact)?.addresses == addresses())
    }

    @Test func aoutPlanWithExplicitEnds() throws {
        #expect(
            try plan(addresses())
                == AoutLoadPlan(fileOffset: 0, loadAddress: 0x10_0000, loadSize: 0x1000, bssEnd: 0x10_3000, entry: 0x10_0060))
        // Header later in the file than its distance from load_addr: the image starts mid-file.
        #expect(try plan(addresses(header: 0x10_0010)).fileOffset == 0x30)
    }

    @Test func aoutPlanDefaults() throws {
        // load_end_addr 0: the rest of the file; bss_end_addr 0: no bss.
        let p = try plan(addresses(loadEnd: 0, bssEnd: 0))
        #expect(p == AoutLoadPlan(fileOffset: 0, loadAddress: 0x10_0000, loadSize: 0x2000, bssEnd: 0, entry: 0x10_0060))
        let q = try plan(addresses(header: 0x10_0020, loadEnd: 0, bssEnd: 0x10_2020))
        #expect(q.fileOffset == 0x20 && q.loadSize == 0x1FE0)
        #expect(throws: MultibootError.bssEndBeforeLoadEnd(bssEndAddress: 0x10_1000, loadEnd: 0x10_2000)) {
            try plan(addresses(loadEnd: 0, bssEnd: 0x10_1000))
        }
    }

    @Test func aoutPlanErrors() throws {
        #expect(throws: MultibootError.noAddressFields) {
            try #require(try MultibootHeader.find(in: makeKernel(flags: 0x3))).aoutLoadPlan(fileSize: 0x2000)
        }
        #expect(throws: MultibootError.loadAddressAboveHeaderAddress(loadAddress: 0x10_0041, headerAddress: 0x10_0040)) {
            try plan(addresses(load: 0x10_0041))
        }
        #expect(throws: MultibootError.loadStartsBeforeFile(headerOffset: 0x40, headerDistance: 0x41)) {
            try plan(addresses(load: 0x0F_FFFF))
        }
        #expect(throws: MultibootError.loadStartsBeforeFile(headerOffset: 0x40, headerDistance: 0xFFFF_FFFF)) {
            try plan(addresses(header: 0xFFFF_FFFF, load: 0, loadEnd: 0, bssEnd: 0))
        }
        #expect(throws: MultibootError.loadEndBeforeLoadAddress(loadEndAddress: 0xF_FFFF, loadAddress: 0x10_0000)) {
            try plan(addresses(loadEnd: 0xF_FFFF))
        }
        #expect(throws: MultibootError.loadPastEndOfFile(fileOffset: 0, loadSize: 0x2001, fileSize: 0x2000)) {
            try plan(addresses(loadEnd: 0x10_2001, bssEnd: 0))
        }
        #expect(throws: MultibootError.loadPastEndOfFile(fileOffset: 0, loadSize: 0xFFEF_FFFF, fileSize: 0x2000)) {
            try plan(addresses(loadEnd: 0xFFFF_FFFF, bssEnd: 0))
        }
        #expect(throws: MultibootError.loadPastEndOfFile(fileOffset: 0, loadSize: 0x1000, fileSize: 0x800)) {
            try plan(addresses(), fileSize: 0x800)
        }
        #expect(throws: MultibootError.loadPastEndOfFile(fileOffset: 0, loadSize: 0x1000, fileSize: -1)) {
            try plan(addresses(), fileSize: -1)
        }
        #expect(throws: MultibootError.bssEndBeforeLoadEnd(bssEndAddress: 0x10_0FFF, loadEnd: 0x10_1000)) {
            try plan(addresses(bssEnd: 0x10_0FFF))
        }
        // The whole file loaded just below 4 GiB would run past it.
        #expect(throws: MultibootError.addressOverflow) {
            try plan(addresses(header: 0xFFFF_F040, load: 0xFFFF_F000, loadEnd: 0, bssEnd: 0, entry: 0xFFFF_F000))
        }
        // ... while ending exactly at 4 GiB is representable.
        let top = try plan(addresses(header: 0xFFFF_E040, load: 0xFFFF_E000, loadEnd: 0, bssEnd: 0, entry: 0))
        #expect(UInt64(top.loadSize) + top.loadAddress == 0x1_0000_0000)
    }

    @Test func messagesAreOneLine() {
        let errors: [MultibootError] = [
            .unsupportedFlags(8), .truncatedAddressFields(headerOffset: 4), .noAddressFields,
            .loadAddressAboveHeaderAddress(loadAddress: 2, headerAddress: 1),
            .loadStartsBeforeFile(headerOffset: 0, headerDistance: 4), .loadEndBeforeLoadAddress(loadEndAddress: 1, loadAddress: 2),
            .loadPastEndOfFile(fileOffset: 0, loadSize: 9, fileSize: 8), .bssEndBeforeLoadEnd(bssEndAddress: 1, loadEnd: 2),
            .addressOverflow,
        ]
        for error in errors {
            #expect(!error.description.isEmpty && !error.description.contains("\n"))
        }
    }

    @Test func randomHeadersNeverTrap() {
        var rng = SplitMix64(state: 0xB002)
        for _ in 0..<20_000 {
            let size = Int(rng.next() % 200)
            var bytes = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if size >= 12 {
                let offset = Int(rng.next() % UInt64(size - 11)) & ~3
                let flags = UInt32(truncatingIfNeeded: rng.next()) & (rng.next() % 2 == 0 ? 0x0001_0007 : 0xFFFF_FFFF)
                bytes.put32(MultibootHeader.magic, at: offset)
                bytes.put32(flags, at: offset + 4)
                bytes.put32(0 &- MultibootHeader.magic &- flags, at: offset + 8)
            }
            guard let header = try? MultibootHeader.find(in: bytes) else { continue }
            let fileSize = rng.next() % 4 == 0 ? Int(truncatingIfNeeded: rng.next()) : bytes.count
            if let p = try? header.aoutLoadPlan(fileSize: fileSize) {
                #expect(p.fileOffset >= 0 && p.loadSize >= 0 && p.loadSize <= fileSize - p.fileOffset)
                #expect(p.loadAddress + UInt64(p.loadSize) <= 0x1_0000_0000)
                #expect(p.bssEnd == 0 || p.bssEnd >= p.loadAddress + UInt64(p.loadSize))
            }
        }
    }
}
