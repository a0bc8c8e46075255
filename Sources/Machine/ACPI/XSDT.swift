/// The Extended System Description Table, signature "XSDT" (ACPI 6.5, 5.2.8): a header followed
/// by the 64-bit physical addresses of the other tables (all but the DSDT and FACS, which the
/// FADT points to).
public enum XSDT {
    public static let revision: UInt8 = 1

    public static func table(entries: [UInt64]) -> ACPITable {
        var body: [UInt8] = []
        for entry in entries { body.appendLittleEndian(entry) }
        return ACPITable(signature: "XSDT", revision: revision, body: body)
    }

    /// The table's length for `count` entries, for laying tables out before the addresses are known.
    public static func length(entryCount count: Int) -> Int { ACPITable.headerSize + 8 * count }
}
