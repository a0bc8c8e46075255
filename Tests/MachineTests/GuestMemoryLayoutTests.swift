import Testing

@testable import Machine

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

@Suite struct GuestMemoryLayoutTests {
    @Test func constantsMatchBootProtocol() {
        #expect(GuestMemoryLayout.lowRAMEnd == 0x9FC00)
        #expect(GuestMemoryLayout.mmioHoleStart == 0xC000_0000)
        #expect(GuestMemoryLayout.highRAMStart == 0x1_0000_0000)
        #expect(GuestMemoryLayout.kernelBase == 0x10_0000)
        #expect(E820Type.ram.rawValue == 1 && E820Type.reserved.rawValue == 2 && E820Type.acpi.rawValue == 3)
        #expect(E820Type.nvs.rawValue == 4 && E820Type.unusable.rawValue == 5)
    }

    @Test func sizeLimits() throws {
        #expect(throws: GuestMemoryLayoutError.tooSmall(0)) { try GuestMemoryLayout(ramSize: 0) }
        #expect(throws: GuestMemoryLayoutError.tooSmall(2 * MiB - 4096)) {
            try GuestMemoryLayout(ramSize: 2 * MiB - 4096)
        }
        #expect(throws: GuestMemoryLayoutError.tooLarge(64 * GiB + 4096)) {
            try GuestMemoryLayout(ramSize: 64 * GiB + 4096)
        }
        #expect(throws: GuestMemoryLayoutError.tooLarge(UInt64.max)) { try GuestMemoryLayout(ramSize: UInt64.max) }
        #expect(throws: GuestMemoryLayoutError.notPageMultiple(256 * MiB + 1)) {
            try GuestMemoryLayout(ramSize: 256 * MiB + 1)
        }
        _ = try GuestMemoryLayout(ramSize: 2 * MiB)
        _ = try GuestMemoryLayout(ramSize: 64 * GiB)
        for error in [GuestMemoryLayoutError.tooSmall(1), .tooLarge(2), .notPageMultiple(3)] {
            #expect(!error.description.contains("\n"))
        }
    }

    @Test func twoMiB() throws {
        let layout = try GuestMemoryLayout(ramSize: 2 * MiB)
        #expect(layout.ramRegions == [RAMRegion(guestAddress: 0, size: 2 * MiB, backingOffset: 0)])
        #expect(
            layout.e820 == [
                E820Entry(address: 0, size: 0x9FC00, type: .ram),
                E820Entry(address: 0x9FC00, size: 0x100000 - 0x9FC00, type: .reserved),
                E820Entry(address: 0x100000, size: 1 * MiB, type: .ram),
            ])
        #expect(layout.topOfRAM == 2 * MiB)
    }

    @Test func twoHundredFiftySixMiB() throws {
        let layout = try GuestMemoryLayout(ramSize: 256 * MiB)
        #expect(layout.ramRegions == [RAMRegion(guestAddress: 0, size: 256 * MiB, backingOffset: 0)])
        #expect(
            layout.e820 == [
                E820Entry(address: 0, size: 0x9FC00, type: .ram),
                E820Entry(address: 0x9FC00, size: 0x60400, type: .reserved),
                E820Entry(address: 0x100000, size: 255 * MiB, type: .ram),
            ])
        #expect(layout.topOfRAM == 256 * MiB)
    }

    @Test func exactlyThreeGiBHasNoHighRegion() throws {
        let layout = try GuestMemoryLayout(ramSize: 3 * GiB)
        #expect(layout.ramRegions == [RAMRegion(guestAddress: 0, size: 3 * GiB, backingOffset: 0)])
        #expect(layout.e820.count == 3)
        #expect(layout.e820[2] == E820Entry(address: 0x100000, size: 3 * GiB - MiB, type: .ram))
        #expect(layout.topOfRAM == 0xC000_0000)
    }

    @Test func threeGiBPlusOnePage() throws {
        let layout = try GuestMemoryLayout(ramSize: 3 * GiB + 4096)
        #expect(
            layout.ramRegions == [
                RAMRegion(guestAddress: 0, size: 3 * GiB, backingOffset: 0),
                RAMRegion(guestAddress: 4 * GiB, size: 4096, backingOffset: 3 * GiB),
            ])
        #expect(
            layout.e820 == [
                E820Entry(address: 0, size: 0x9FC00, type: .ram),
                E820Entry(address: 0x9FC00, size: 0x60400, type: .reserved),
                E820Entry(address: 0x100000, size: 3 * GiB - MiB, type: .ram),
                E820Entry(address: 4 * GiB, size: 4096, type: .ram),
            ])
        #expect(layout.topOfRAM == 4 * GiB + 4096)
    }

    @Test func eightGiB() throws {
        let layout = try GuestMemoryLayout(ramSize: 8 * GiB)
        #expect(
            layout.ramRegions == [
                RAMRegion(guestAddress: 0, size: 3 * GiB, backingOffset: 0),
                RAMRegion(guestAddress: 4 * GiB, size: 5 * GiB, backingOffset: 3 * GiB),
            ])
        #expect(layout.e820.last == E820Entry(address: 4 * GiB, size: 5 * GiB, type: .ram))
        #expect(layout.e820.count == 4)
        #expect(layout.topOfRAM == 9 * GiB)
        // Total RAM in the map equals ramSize minus the reserved legacy window.
        let ram = layout.e820.filter { $0.type == .ram }.reduce(0) { $0 + $1.size }
        #expect(ram == 8 * GiB - (0x100000 - 0x9FC00))
    }

    @Test func e820IsSortedAndDisjoint() throws {
        for size in [2 * MiB, 256 * MiB, 3 * GiB, 3 * GiB + 4096, 8 * GiB, 64 * GiB] {
            let map = try GuestMemoryLayout(ramSize: size).e820
            for (a, b) in zip(map, map.dropFirst()) {
                #expect(a.end <= b.address)
            }
            #expect(map.allSatisfy { $0.size > 0 })
        }
    }

    @Test func backingOffsets() throws {
        let small = try GuestMemoryLayout(ramSize: 256 * MiB)
        #expect(small.backingOffset(gpa: 0, length: 256 * MiB) == 0)
        #expect(small.backingOffset(gpa: 0x1000, length: 0x1000) == 0x1000)
        #expect(small.backingOffset(gpa: 256 * MiB - 1, length: 1) == 256 * MiB - 1)
        #expect(small.backingOffset(gpa: 256 * MiB - 1, length: 2) == nil)
        #expect(small.backingOffset(gpa: 256 * MiB, length: 1) == nil)
        // Zero length: anywhere up to and including the end.
        #expect(small.backingOffset(gpa: 256 * MiB, length: 0) == 256 * MiB)
        #expect(small.backingOffset(gpa: 256 * MiB + 1, length: 0) == nil)

        let big = try GuestMemoryLayout(ramSize: 8 * GiB)
        #expect(big.backingOffset(gpa: 3 * GiB - 8, length: 8) == 3 * GiB - 8)
        #expect(big.backingOffset(gpa: 3 * GiB - 8, length: 16) == nil)  // runs into the hole
        #expect(big.backingOffset(gpa: 3 * GiB, length: 1) == nil)
        #expect(big.backingOffset(gpa: 0xFEE0_0000, length: 4) == nil)  // LAPIC
        #expect(big.backingOffset(gpa: 4 * GiB - 1, length: 1) == nil)
        #expect(big.backingOffset(gpa: 4 * GiB, length: 4096) == 3 * GiB)
        #expect(big.backingOffset(gpa: 4 * GiB + 0x1234, length: 1) == 3 * GiB + 0x1234)
        #expect(big.backingOffset(gpa: 9 * GiB - 1, length: 1) == 8 * GiB - 1)
        #expect(big.backingOffset(gpa: 9 * GiB, length: 1) == nil)
        // A range spanning both regions is not contiguous in the backing, so it is refused.
        #expect(big.backingOffset(gpa: 0, length: 9 * GiB) == nil)
    }

    @Test func backingOffsetNeverTrapsOnHugeValues() throws {
        let layout = try GuestMemoryLayout(ramSize: 8 * GiB)
        let values: [UInt64] = [0, 1, 0xFFF, 3 * GiB, 4 * GiB, 9 * GiB, UInt64.max / 2, UInt64.max - 1, UInt64.max]
        for gpa in values {
            for length in values {
                let result = layout.backingOffset(gpa: gpa, length: length)
                if let offset = result {
                    #expect(offset.addingReportingOverflow(length).partialValue <= 8 * GiB)
                }
                _ = layout.isUsableForLoading(gpa: gpa, length: length)
            }
        }
        #expect(layout.backingOffset(gpa: UInt64.max, length: UInt64.max) == nil)
        #expect(layout.backingOffset(gpa: 1, length: UInt64.max) == nil)
        #expect(layout.backingOffset(gpa: 4 * GiB, length: UInt64.max) == nil)
    }

    @Test func usableForLoading() throws {
        let layout = try GuestMemoryLayout(ramSize: 8 * GiB)
        #expect(layout.isUsableForLoading(gpa: 0x100000, length: 0x10000))
        #expect(!layout.isUsableForLoading(gpa: 0xFF000, length: 0x2000))  // starts in the reserved window
        #expect(!layout.isUsableForLoading(gpa: 0x8000, length: 0x1000))  // RAM, but below 1 MiB
        #expect(layout.isUsableForLoading(gpa: 3 * GiB - 4096, length: 4096))
        #expect(!layout.isUsableForLoading(gpa: 3 * GiB - 4096, length: 4097))
        #expect(!layout.isUsableForLoading(gpa: 0xFEC0_0000, length: 1))  // IOAPIC
        #expect(layout.isUsableForLoading(gpa: 4 * GiB, length: 5 * GiB))
        #expect(!layout.isUsableForLoading(gpa: 4 * GiB, length: 5 * GiB + 1))
        #expect(layout.isUsableForLoading(gpa: 0x100000, length: 0))
        #expect(!layout.isUsableForLoading(gpa: UInt64.max, length: 1))

        let small = try GuestMemoryLayout(ramSize: 2 * MiB)
        #expect(small.isUsableForLoading(gpa: 0x100000, length: MiB))
        #expect(!small.isUsableForLoading(gpa: 0x100000, length: MiB + 1))
    }
}
