/// The BIOS e820 memory map vocabulary (ACPI "Address Range Descriptor").
///
/// Both boot protocols hand the guest its memory map in this form: SynthVM direct boot as
/// `{u64 address, u64 size, u32 type, u32 zero}` records, multiboot v1 as its `mmap` entries,
/// which use the same type numbers. Keeping the vocabulary in one place keeps the two in step.
public enum E820Type: UInt32, Sendable, CaseIterable {
    /// Usable RAM.
    case ram = 1
    /// Not usable by the OS (firmware areas, the legacy VGA/BIOS window).
    case reserved = 2
    /// ACPI tables; reclaimable once the OS has read them.
    case acpi = 3
    /// ACPI non-volatile storage; must be preserved across sleep states.
    case nvs = 4
    /// Memory that reported errors.
    case unusable = 5
}

/// One range of the e820 map: `[address, address + size)` of type `type`.
public struct E820Entry: Equatable, Sendable, CustomStringConvertible {
    public var address: UInt64
    public var size: UInt64
    public var type: E820Type

    public init(address: UInt64, size: UInt64, type: E820Type) {
        self.address = address
        self.size = size
        self.type = type
    }

    /// One past the last byte of the range. Saturates rather than traps so that a map built
    /// from untrusted numbers can still be printed.
    public var end: UInt64 {
        let (sum, overflow) = address.addingReportingOverflow(size)
        return overflow ? UInt64.max : sum
    }

    public var description: String {
        "[\(hex(address)), \(hex(end))) \(type)"
    }
}

private func hex(_ value: UInt64) -> String {
    "0x" + String(value, radix: 16)
}
