/// Lays out SynthVM's complete set of ACPI tables in one blob to be copied to guest-physical
/// address `base`:
///
/// | offset | table |
/// |---|---|
/// | 0 | RSDP (36 bytes) — so `base` must be 16-byte aligned |
/// | next 8-aligned | XSDT → FADT, MADT |
/// | next 8-aligned | FADT → FACS, DSDT |
/// | next 64-aligned address | FACS |
/// | next 8-aligned | MADT |
/// | next 8-aligned | DSDT |
///
/// With `base` = ``defaultBase`` (0xE0000) the RSDP lies in the BIOS read-only area
/// 0xE0000–0xFFFFF that Linux scans for "RSD PTR " on 16-byte boundaries when the boot protocol
/// passes no RSDP address, and the whole blob stays in the e820-reserved range below 1 MiB.
public enum ACPITables {
    public static let defaultBase: UInt64 = 0xE0000

    /// Where each table landed: guest-physical addresses.
    public struct Addresses: Sendable, Equatable {
        public var rsdp: UInt64
        public var xsdt: UInt64
        public var fadt: UInt64
        public var facs: UInt64
        public var madt: UInt64
        public var dsdt: UInt64
    }

    /// Builds the tables for `vcpuCount` vCPUs at `base`. `blob` goes to `base` and contains
    /// everything, the RSDP included (at offset 0, so `rsdpAddress == base`); `rsdp` is a copy of
    /// those first 36 bytes, for boot protocols that take the RSDP address or the structure.
    public static func build(vcpuCount: Int, at base: UInt64 = defaultBase, extraDevices: [[UInt8]] = [])
        -> (rsdp: [UInt8], blob: [UInt8], rsdpAddress: UInt64)
    {
        let layout = build(vcpuCount: vcpuCount, base: base, extraDevices: extraDevices)
        return (layout.rsdp, layout.blob, layout.addresses.rsdp)
    }

    /// As ``build(vcpuCount:at:extraDevices:)``, also reporting every table's address.
    public static func build(vcpuCount: Int, base: UInt64, extraDevices: [[UInt8]] = [])
        -> (rsdp: [UInt8], blob: [UInt8], addresses: Addresses)
    {
        precondition(base % 16 == 0, "ACPI: the RSDP must be 16-byte aligned, base is \(base)")
        func align(_ address: UInt64, _ alignment: UInt64) -> UInt64 {
            (address + alignment - 1) / alignment * alignment
        }

        let madt = MADT.table(vcpuCount: vcpuCount).bytes()
        let dsdt = DSDT.table(extraDevices: extraDevices).bytes()
        let xsdtEntryCount = 2  // FADT, MADT

        let rsdpAddress = base
        let xsdtAddress = align(rsdpAddress + UInt64(RSDP.size), 8)
        let fadtAddress = align(xsdtAddress + UInt64(XSDT.length(entryCount: xsdtEntryCount)), 8)
        let facsAddress = align(fadtAddress + UInt64(FADT.length), UInt64(FACS.alignment))
        let madtAddress = align(facsAddress + UInt64(FACS.length), 8)
        let dsdtAddress = align(madtAddress + UInt64(madt.count), 8)

        let xsdt = XSDT.table(entries: [fadtAddress, madtAddress]).bytes()
        let fadt = FADT.table(dsdtAddress: dsdtAddress, facsAddress: facsAddress).bytes()
        let rsdp = RSDP.bytes(xsdtAddress: xsdtAddress)

        var blob = [UInt8](repeating: 0, count: Int(dsdtAddress - base) + dsdt.count)
        for (address, table) in [
            (rsdpAddress, rsdp), (xsdtAddress, xsdt), (fadtAddress, fadt), (facsAddress, FACS.bytes()),
            (madtAddress, madt), (dsdtAddress, dsdt),
        ] {
            let offset = Int(address - base)
            blob.replaceSubrange(offset..<offset + table.count, with: table)
        }
        let addresses = Addresses(
            rsdp: rsdpAddress, xsdt: xsdtAddress, fadt: fadtAddress, facs: facsAddress, madt: madtAddress,
            dsdt: dsdtAddress)
        return (rsdp, blob, addresses)
    }
}
