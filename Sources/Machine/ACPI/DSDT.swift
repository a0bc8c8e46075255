/// The Differentiated System Description Table, signature "DSDT" (ACPI 6.5, 5.2.11.1): the AML
/// definition block describing what the fixed tables cannot.
///
/// SynthVM's contains:
/// - `\_S5`: the S5 (soft-off) sleep type for PM1a_CNT.SLP_TYP and PM1b (5, 5, reserved, reserved);
///   FADT's PM1a control block is where the guest writes it.
/// - `\_SB.COM1`: the 16550 UART at 0x3F8-0x3FF on ISA IRQ 4 (PNP0501), so Linux's ACPI PNP
///   layer binds the serial driver to the port with the right IRQ.
/// - whatever devices the caller adds to `\_SB`: the VMBus device (``vmbus(resources:)``) when
///   the guest has the SynIC and VMBus is served.
public enum DSDT {
    /// Revision 2: integers are 64 bits wide.
    public static let revision: UInt8 = 2
    /// The SLP_TYP value of S5, written to PM1a_CNT bits 10-12 when the guest powers off.
    public static let s5SleepType: UInt8 = 5

    /// `Name(\_S5, Package(){5, 5, 0, 0})`.
    public static var s5: [UInt8] {
        AML.name("\\_S5", AML.package([AML.byte(s5SleepType), AML.byte(s5SleepType), AML.integer(0), AML.integer(0)]))
    }

    /// `Device(COM1)` with `_HID EISAID("PNP0501")`, `_UID 1`, `_CRS { IO(0x3F8, 8), IRQ 4 }`.
    public static var com1: [UInt8] {
        AML.device(
            "COM1",
            AML.name("_HID", AML.integer(UInt64(AML.eisaID("PNP0501")))),
            AML.name("_UID", AML.integer(1)),
            AML.name("_CRS", AML.resourceTemplate(AML.io(base: 0x3F8, length: 8), AML.irq([4]))))
    }

    /// The ACPI name of the VMBus device, `\_SB.VMBS` (Hyper-V's own DSDTs use the same).
    public static let vmbusName = "VMBS"

    /// The VMBus device: `Device(VMBS)` with `_HID "VMBus"` (one of the two IDs Linux's hv_vmbus
    /// ACPI driver matches, the other being "VMBUS"), `_UID 0`, `_STA 0x0F` (present, enabled,
    /// shown, functioning: what Linux's `acpi_bus_get_status` wants), and `_CRS` with
    /// `resources` (encoded descriptors; empty: only the end tag). hv_vmbus requires a `_CRS` and
    /// walks it for its interrupt and MMIO ranges; on x86 it signals through the Hyper-V callback
    /// vector, so an empty template is valid.
    ///
    /// Only for guests with the SynIC and a VMBus server behind connections 1 and 4: a guest that
    /// sees the device binds hv_vmbus and waits for VERSION_RESPONSE with no timeout.
    public static func vmbus(resources: [UInt8] = []) -> [UInt8] {
        AML.device(
            vmbusName,
            AML.name("_HID", AML.string("VMBus")),
            AML.name("_UID", AML.integer(0)),
            AML.name("_STA", AML.integer(0x0F)),
            AML.name("_CRS", AML.resourceTemplate(resources)))
    }

    /// The DSDT with `\_S5`, and `\_SB` holding COM1 followed by `extraDevices` (each an
    /// encoded `AML.device`).
    public static func table(extraDevices: [[UInt8]] = []) -> ACPITable {
        let systemBus = AML.scope("\\_SB", com1, extraDevices.flatMap { $0 })
        return ACPITable(signature: "DSDT", revision: revision, body: s5 + systemBus)
    }
}
