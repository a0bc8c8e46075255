/// The Multiple APIC Description Table, signature "APIC" (ACPI 6.5, 5.2.12): where the local
/// APICs and the I/O APIC are and how the ISA IRQs reach the I/O APIC's inputs. Linux needs it
/// to use the LAPIC (and its TSC-deadline timer) and the IOAPIC at all; without it, it falls
/// back to the PIC.
///
/// The interrupt controllers are KVM's in-kernel ones at their PC addresses (docs/boot-protocol.md).
public enum MADT {
    public static let localAPICAddress: UInt32 = 0xFEE0_0000
    public static let ioAPICAddress: UInt32 = 0xFEC0_0000
    /// MADT revision 5 (ACPI 6.3+).
    public static let revision: UInt8 = 5
    /// Flags bit 0, PCAT_COMPAT: a dual 8259 PIC is present too (KVM's in-kernel PIC), so the OS
    /// must mask it when it switches to APIC mode.
    public static let flagPCATCompat: UInt32 = 1

    static let typeLocalAPIC: UInt8 = 0
    static let typeIOAPIC: UInt8 = 1
    static let typeInterruptSourceOverride: UInt8 = 2
    static let typeLocalAPICNMI: UInt8 = 4

    /// MPS INTI flags: polarity in bits 0-1 (1 active high, 3 active low), trigger mode in
    /// bits 2-3 (1 edge, 3 level); 0 means "conforms to the bus" (ISA: edge, active high).
    public static let intiConforming: UInt16 = 0
    public static let intiActiveHighLevel: UInt16 = 0x1 | 0x3 << 2

    /// The largest supported vCPU count: xAPIC IDs are 8 bits, 0xFF is the broadcast ID, and the
    /// IOAPIC takes the ID after the last vCPU's.
    public static let maxVCPUs = 254

    /// The ISA IRQ overrides of a PC (what firmware on a PC with a PIT and an ACPI SCI reports):
    /// the PIT's IRQ 0 is wired to IOAPIC input 2, and the SCI on IRQ 9 is level-triggered,
    /// active high (as QEMU's and most firmware's tables say, and as PM1 hardware drives it).
    public static let isaOverrides: [(irq: UInt8, gsi: UInt32, flags: UInt16)] = [
        (0, 2, intiConforming),
        (9, 9, intiActiveHighLevel),
    ]

    /// The MADT for `vcpuCount` vCPUs whose APIC IDs (and ACPI processor UIDs) are 0..<vcpuCount.
    public static func table(vcpuCount: Int) -> ACPITable {
        precondition((1...maxVCPUs).contains(vcpuCount), "MADT: vCPU count \(vcpuCount) out of 1...\(maxVCPUs)")
        var body: [UInt8] = []
        body.appendLittleEndian(localAPICAddress)
        body.appendLittleEndian(flagPCATCompat)
        for index in 0..<vcpuCount {
            // Processor Local APIC: type, length 8, ACPI processor UID, APIC ID, flags (bit 0 enabled).
            body += [typeLocalAPIC, 8, UInt8(index), UInt8(index)]
            body.appendLittleEndian(UInt32(1))
        }
        // I/O APIC: type, length 12, I/O APIC ID, reserved, address, global system interrupt base.
        body += [typeIOAPIC, 12, UInt8(vcpuCount), 0]
        body.appendLittleEndian(ioAPICAddress)
        body.appendLittleEndian(UInt32(0))
        for override in isaOverrides {
            // Interrupt Source Override: type, length 10, bus 0 (ISA), source IRQ, GSI, flags.
            body += [typeInterruptSourceOverride, 10, 0, override.irq]
            body.appendLittleEndian(override.gsi)
            body.appendLittleEndian(override.flags)
        }
        // Local APIC NMI: type, length 6, processor UID 0xFF (all), flags (conforming), LINT1 —
        // the PC wiring of NMI to every CPU's LINT1.
        body += [typeLocalAPICNMI, 6, 0xFF]
        body.appendLittleEndian(UInt16(0))
        body.append(1)
        return ACPITable(signature: "APIC", revision: revision, body: body)
    }

    /// How many interrupt controller structures `table(vcpuCount:)` has.
    public static func entryCount(vcpuCount: Int) -> Int { vcpuCount + 1 + isaOverrides.count + 1 }
}
