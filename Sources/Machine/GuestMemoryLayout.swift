/// Where guest RAM lives in guest-physical address space, and what the guest is told about it.
///
/// This implements the "Guest-physical layout" and "Memory map" sections of
/// docs/boot-protocol.md. Guest RAM is one host allocation (a memfd) of `ramSize` bytes; the
/// guest sees it as at most two KVM memory slots, because the 1 GiB below 4 GiB is an MMIO hole
/// (LAPIC, IOAPIC, and room for devices) as on a PC. RAM that would fall into the hole continues
/// at 4 GiB instead, so the backing allocation stays contiguous while guest addresses skip the hole.
public struct GuestMemoryLayout: Sendable, Equatable {
    /// End of conventional memory below 1 MiB; the EBDA, VGA window and BIOS area follow.
    public static let lowRAMEnd: UInt64 = 0x9FC00
    /// Start of the 32-bit MMIO hole; RAM below 4 GiB never reaches past this.
    public static let mmioHoleStart: UInt64 = 0xC000_0000
    /// Where RAM beyond `mmioHoleStart` bytes continues.
    public static let highRAMStart: UInt64 = 0x1_0000_0000
    /// Lowest address a kernel, module or segment may be loaded at (1 MiB).
    public static let kernelBase: UInt64 = 0x10_0000
    /// KVM memory slots and e820 entries are page-granular.
    public static let pageSize: UInt64 = 0x1000
    /// Enough for the boot structures below 1 MiB and a small kernel above it; the e820 map
    /// always has a non-empty RAM entry at 1 MiB.
    public static let minimumRAMSize: UInt64 = 2 << 20
    /// A sanity limit, not a hardware one: it keeps a typo in `--memory` from reserving a
    /// terabyte of host address space.
    public static let maximumRAMSize: UInt64 = 64 << 30

    /// Total guest RAM in bytes, which is also the size of the backing allocation.
    public let ramSize: UInt64

    public init(ramSize: UInt64) throws(GuestMemoryLayoutError) {
        if ramSize < Self.minimumRAMSize { throw .tooSmall(ramSize) }
        if ramSize > Self.maximumRAMSize { throw .tooLarge(ramSize) }
        if ramSize % Self.pageSize != 0 { throw .notPageMultiple(ramSize) }
        self.ramSize = ramSize
    }

    /// The guest-physical windows onto the backing allocation, in ascending address order.
    /// Each becomes one KVM user memory region.
    public var ramRegions: [RAMRegion] {
        if ramSize <= Self.mmioHoleStart {
            return [RAMRegion(guestAddress: 0, size: ramSize, backingOffset: 0)]
        }
        return [
            RAMRegion(guestAddress: 0, size: Self.mmioHoleStart, backingOffset: 0),
            RAMRegion(
                guestAddress: Self.highRAMStart, size: ramSize - Self.mmioHoleStart,
                backingOffset: Self.mmioHoleStart),
        ]
    }

    /// The memory map given to the guest, exactly as docs/boot-protocol.md specifies:
    /// low RAM, the reserved legacy window, RAM from 1 MiB to the hole (or the end of RAM), and
    /// RAM above 4 GiB when there is more than 3 GiB.
    public var e820: [E820Entry] {
        let lowTop = min(ramSize, Self.mmioHoleStart)
        var map = [
            E820Entry(address: 0, size: Self.lowRAMEnd, type: .ram),
            E820Entry(address: Self.lowRAMEnd, size: Self.kernelBase - Self.lowRAMEnd, type: .reserved),
            E820Entry(address: Self.kernelBase, size: lowTop - Self.kernelBase, type: .ram),
        ]
        if ramSize > Self.mmioHoleStart {
            map.append(E820Entry(address: Self.highRAMStart, size: ramSize - Self.mmioHoleStart, type: .ram))
        }
        return map
    }

    /// One past the highest guest-physical RAM address. The direct-boot page tables map at
    /// least up to here.
    public var topOfRAM: UInt64 {
        let last = ramRegions[ramRegions.count - 1]
        return last.guestAddress + last.size
    }

    /// The offset into the backing allocation of guest-physical `gpa`, if all of
    /// `[gpa, gpa + length)` is RAM within a single region (so one contiguous host copy serves it).
    ///
    /// A zero-length range is accepted anywhere from a region's start up to and including its
    /// end. Never traps, whatever the arguments: these values often come straight from a guest
    /// or from a file being loaded.
    public func backingOffset(gpa: UInt64, length: UInt64) -> UInt64? {
        for region in ramRegions {
            if let offsetInRegion = region.offset(of: gpa, length: length) {
                return region.backingOffset + offsetInRegion
            }
        }
        return nil
    }

    /// Whether a loader may place `[gpa, gpa + length)` there: entirely inside one e820 RAM
    /// entry and not below ``kernelBase``, so it cannot overwrite the boot structures, the
    /// trampoline or the stack that live below 1 MiB.
    public func isUsableForLoading(gpa: UInt64, length: UInt64) -> Bool {
        guard gpa >= Self.kernelBase else { return false }
        return e820.contains { entry in
            entry.type == .ram && gpa >= entry.address
                && gpa - entry.address <= entry.size
                && length <= entry.size - (gpa - entry.address)
        }
    }
}

/// One contiguous window of guest RAM: guest-physical `[guestAddress, guestAddress + size)`
/// is backed by `[backingOffset, backingOffset + size)` of the RAM allocation.
public struct RAMRegion: Equatable, Sendable {
    public var guestAddress: UInt64
    public var size: UInt64
    public var backingOffset: UInt64

    public init(guestAddress: UInt64, size: UInt64, backingOffset: UInt64) {
        self.guestAddress = guestAddress
        self.size = size
        self.backingOffset = backingOffset
    }

    /// Offset of `gpa` from the region start if `[gpa, gpa + length)` lies inside the region.
    /// Written as subtractions only, so huge inputs cannot overflow.
    func offset(of gpa: UInt64, length: UInt64) -> UInt64? {
        guard gpa >= guestAddress else { return nil }
        let offset = gpa - guestAddress
        guard offset <= size, length <= size - offset else { return nil }
        return offset
    }
}

/// Why a RAM size cannot be laid out.
public enum GuestMemoryLayoutError: Error, Equatable, Sendable, CustomStringConvertible {
    case tooSmall(UInt64)
    case tooLarge(UInt64)
    case notPageMultiple(UInt64)

    public var description: String {
        switch self {
        case .tooSmall(let size):
            return "guest RAM of \(size) bytes is below the minimum of 2 MiB"
        case .tooLarge(let size):
            return "guest RAM of \(size) bytes is above the maximum of 64 GiB"
        case .notPageMultiple(let size):
            return "guest RAM of \(size) bytes is not a multiple of 4 KiB"
        }
    }
}
