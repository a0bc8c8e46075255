import HyperV
import Testing

/// HV_VP_SET parsing: the TLFS layout, and every way a hostile guest can get it wrong.
@Suite struct HvVPSetTests {
    /// The TLFS's own example: 200 VPs, the set {0, 5, 130} is ValidBanksMask 0x5 with banks
    /// {0x21, 0x04}.
    @Test func parsesTheTLFSExample() throws {
        let set = try HvVPSet.parse(quadwords: [0, 0x5, 0x21, 0x04], bankCount: 2)
        #expect(set.format == .sparse4K)
        #expect(set.validBankMask == 0x5)
        #expect(set.bankContents == [0x21, 0x04])
        #expect(set.vpIndices(vpCount: 200) == [0, 5, 130])
        for vp: UInt32 in [0, 5, 130] { #expect(set.contains(vp)) }
        for vp: UInt32 in [1, 4, 6, 64, 69, 128, 129, 131, 194, 4095, 4096, .max] { #expect(!set.contains(vp)) }
    }

    @Test func allFormatAsLinuxSendsIt() throws {
        let set = try HvVPSet.parse(quadwords: [1, 0], bankCount: 0)
        #expect(set == .all)
        #expect(set.vpIndices(vpCount: 3) == [0, 1, 2])
        #expect(set.contains(4095) && set.contains(.max))
    }

    @Test func allFormatWithMatchingBanksIsAccepted() throws {
        // KVM checks the bank count against the mask before it looks at the format.
        let set = try HvVPSet.parse(quadwords: [1, 0b11, 0, 0], bankCount: 2)
        #expect(set.format == .all)
        #expect(set.vpIndices(vpCount: 2) == [0, 1])
        #expect(throws: HvVPSetError.bankCountMismatch(declared: 0, validBanks: 2)) {
            try HvVPSet.parse(quadwords: [1, 0b11], bankCount: 0)
        }
    }

    @Test func bankCountMustMatchTheMask() {
        #expect(throws: HvVPSetError.bankCountMismatch(declared: 1, validBanks: 2)) {
            try HvVPSet.parse(quadwords: [0, 0b101, 1, 2], bankCount: 1)
        }
        #expect(throws: HvVPSetError.bankCountMismatch(declared: 3, validBanks: 2)) {
            try HvVPSet.parse(quadwords: [0, 0b101, 1, 2, 3], bankCount: 3)
        }
        #expect(throws: HvVPSetError.bankCountMismatch(declared: 65, validBanks: 64)) {
            try HvVPSet.parse(quadwords: [UInt64](repeating: .max, count: 67), bankCount: 65)
        }
        #expect(throws: HvVPSetError.bankCountMismatch(declared: -1, validBanks: 0)) {
            try HvVPSet.parse(quadwords: [0, 0], bankCount: -1)
        }
    }

    @Test func truncatedInputIsRefused() {
        #expect(throws: HvVPSetError.truncated(neededQuadwords: 2, availableQuadwords: 1)) {
            try HvVPSet.parse(quadwords: [0], bankCount: 0)
        }
        #expect(throws: HvVPSetError.truncated(neededQuadwords: 4, availableQuadwords: 3)) {
            try HvVPSet.parse(quadwords: [0, 0b11, 1], bankCount: 2)
        }
        // 15 bytes are not two quadwords.
        #expect(throws: HvVPSetError.truncated(neededQuadwords: 2, availableQuadwords: 1)) {
            try HvVPSet.parse(bytes: [UInt8](repeating: 0, count: 15), bankCount: 0)
        }
        #expect(throws: HvVPSetError.truncated(neededQuadwords: 2, availableQuadwords: 0)) {
            try HvVPSet.parse(bytes: [0, 0], offset: 9, bankCount: 0)
        }
    }

    @Test func unknownFormatIsRefused() {
        for format: UInt64 in [2, 3, 0x8000_0000_0000_0000, .max] {
            #expect(throws: HvVPSetError.unknownFormat(format)) {
                try HvVPSet.parse(quadwords: [format, 0], bankCount: 0)
            }
        }
    }

    @Test func errorsMapToTheStatusesKVMAndTheTLFSUse() {
        #expect(HvVPSetError.truncated(neededQuadwords: 3, availableQuadwords: 2).status == .invalidHypercallInput)
        #expect(HvVPSetError.bankCountMismatch(declared: 1, validBanks: 0).status == .invalidHypercallInput)
        #expect(HvVPSetError.unknownFormat(7).status == .invalidParameter)
    }

    @Test func extraQuadwordsAfterTheDeclaredBanksAreIgnored() throws {
        // Fast calls hand over all XMM halves; only the declared banks count.
        let set = try HvVPSet.parse(quadwords: [0, 0b10, 0x3, 0xFFFF, 0xFFFF], bankCount: 1)
        #expect(set.bankContents == [0x3])
        #expect(set.vpIndices(vpCount: 4096) == [64, 65])
    }

    @Test func parsesFromBytesAtAnOffset() throws {
        var bytes = [UInt8](repeating: 0xEE, count: 8)  // e.g. the vector word before the set
        for quadword: UInt64 in [0, 0x8000_0000_0000_0001, 0x1, 0x8000_0000_0000_0000] {
            bytes += (0..<8).map { UInt8(truncatingIfNeeded: quadword >> (8 * UInt64($0))) }
        }
        let set = try HvVPSet.parse(bytes: bytes, offset: 8, bankCount: 2)
        #expect(set.vpIndices(vpCount: 4096) == [0, 4095])
        #expect(set.vpIndices(vpCount: 4095) == [0], "VP 4095 is beyond a 4095-VP partition")
    }

    @Test func indicesBeyondTheVPCountAreDropped() throws {
        let set = try HvVPSet.parse(quadwords: [0, 0b1, 0xFFFF_FFFF_FFFF_FFFF], bankCount: 1)
        #expect(set.vpIndices(vpCount: 4) == [0, 1, 2, 3])
        #expect(set.vpIndices(vpCount: 0) == [])
        #expect(set.vpIndices(vpCount: -5) == [])
        #expect(set.vpIndices(vpCount: 64).count == 64)
    }

    @Test func presentButEmptyBanksAreValid() throws {
        let set = try HvVPSet.parse(quadwords: [0, 0b111, 0, 0, 0x1], bankCount: 3)
        #expect(set.vpIndices(vpCount: 4096) == [128])
        let empty = try HvVPSet.parse(quadwords: [0, 0], bankCount: 0)
        #expect(empty.vpIndices(vpCount: 4096) == [])
        #expect(!empty.contains(0))
    }

    @Test func allSixtyFourBanks() throws {
        let set = try HvVPSet.parse(
            quadwords: [0, .max] + [UInt64](repeating: 1 << 63, count: 64), bankCount: 64)
        let indices = set.vpIndices(vpCount: 4096)
        #expect(indices.count == 64)
        #expect(indices.first == 63 && indices.last == 4095)
    }

    @Test func sparseBuilderRoundTrips() throws {
        let vps: [UInt32] = [130, 0, 5, 4095, 5, 9999]
        let built = HvVPSet(sparse: vps)
        #expect(built.validBankMask == (UInt64(1) | 1 << 2 | 1 << 63))
        let parsed = try HvVPSet.parse(quadwords: built.quadwords, bankCount: built.bankContents.count)
        #expect(parsed == built)
        #expect(parsed.vpIndices(vpCount: 4096) == [0, 5, 130, 4095])
    }
}
