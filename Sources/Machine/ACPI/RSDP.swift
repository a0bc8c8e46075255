/// The Root System Description Pointer (ACPI 6.5, 5.2.5.3), revision 2: the 36-byte structure
/// the guest finds first — by scanning the BIOS area 0xE0000–0xFFFFF on 16-byte boundaries for
/// "RSD PTR ", or from the address the boot protocol passes — and that leads to the XSDT.
///
/// It has no SDT header. `Checksum` covers the first 20 bytes (the ACPI 1.0 structure),
/// `Extended Checksum` all 36. No RSDT: revision 2 guests use the XSDT's 64-bit pointers.
public enum RSDP {
    public static let size = 36
    public static let revision: UInt8 = 2

    public static func bytes(xsdtAddress: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        out.appendASCII("RSD PTR ", width: 8)
        out.append(0)  // checksum
        out.appendASCII(ACPITable.oemID, width: 6)
        out.append(revision)
        out.appendLittleEndian(UInt32(0))  // RsdtAddress: none
        out.appendLittleEndian(UInt32(size))
        out.appendLittleEndian(xsdtAddress)
        out.append(0)  // extended checksum
        out += [0, 0, 0]
        out[8] = ACPITable.checksum(out[0..<20])
        out[32] = ACPITable.checksum(out)
        return out
    }
}
