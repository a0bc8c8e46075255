/// The Fixed ACPI Description Table, signature "FACP" (ACPI 6.5, 5.2.9), revision 6 (ACPI 6.0
/// layout, 276 bytes): the fixed-hardware registers and the DSDT/FACS pointers.
///
/// SynthVM's fixed hardware is the minimum that makes ACPI poweroff and reboot work, on I/O ports
/// the monitor handles:
/// - PM1a event block at ``pm1aEventPort`` (4 bytes: PM1_STS, PM1_EN) and PM1a control block at
///   ``pm1aControlPort`` (2 bytes: PM1_CNT). The guest powers off by writing
///   `SLP_TYP << 10 | SLP_EN (1 << 13)` to PM1_CNT, with SLP_TYP = 5 from the DSDT's `\_S5`.
///   SMI_CMD is 0, meaning the platform is always in ACPI mode, so reads of PM1_CNT should return
///   SCI_EN (bit 0) set.
/// - RESET_REG: I/O port ``resetPort`` (0xCF9, the PC reset control register), value
///   ``resetValue`` (0x06: system reset + CPU reset), advertised by the RESET_REG_SUP flag.
/// - No PM timer, no GPE blocks, no PM2 block, no SMI command port.
///
/// It is deliberately not HW_REDUCED_ACPI: on a hardware-reduced platform Linux does not use the
/// legacy ISA IRQ routing and the 16550's IRQ 4 stopped working (issue 6).
public enum FADT {
    public static let revision: UInt8 = 6
    public static let minorRevision: UInt8 = 0
    public static let length = 276

    public static let sciInterrupt: UInt16 = 9
    public static let pm1aEventPort: UInt16 = 0x600
    public static let pm1EventLength: UInt8 = 4
    public static let pm1aControlPort: UInt16 = 0x604
    public static let pm1ControlLength: UInt8 = 2
    public static let resetPort: UInt16 = 0xCF9
    public static let resetValue: UInt8 = 0x06

    // Flags (5.2.9, Table 5.10).
    public static let flagWBINVD: UInt32 = 1 << 0  // WBINVD works (required of ACPI 1.0+ platforms)
    public static let flagProcC1: UInt32 = 1 << 2  // C1 (HLT) works on all processors
    public static let flagPowerButton: UInt32 = 1 << 3  // no fixed-feature power button
    public static let flagSleepButton: UInt32 = 1 << 4  // no fixed-feature sleep button
    public static let flagFixRTC: UInt32 = 1 << 5  // RTC wake status is not in the fixed register space
    public static let flagResetRegSup: UInt32 = 1 << 10  // RESET_REG is supported
    public static let flagHardwareReduced: UInt32 = 1 << 20  // never set, see above
    public static let flags: UInt32 =
        flagWBINVD | flagProcC1 | flagPowerButton | flagSleepButton | flagFixRTC | flagResetRegSup

    // IA-PC boot architecture flags (5.2.9.3): what a PC without PCI and without a display has.
    public static let bootLegacyDevices: UInt16 = 1 << 0  // ISA devices (the 16550, the RTC) exist
    /// An i8042 exists (the monitor implements enough for the keyboard-controller reset). Linux
    /// then probes it when the DSDT has no PNP0303 device; clearing this bit would skip that.
    public static let boot8042: UInt16 = 1 << 1
    public static let bootVGANotPresent: UInt16 = 1 << 2  // no display at all: don't probe VGA
    public static let bootMSINotSupported: UInt16 = 1 << 3  // no PCI, hence no MSI
    // Bit 4 (PCIe ASPM controls) is meaningless without PCI; bit 5 (CMOS RTC not present) stays
    // clear: the CMOS RTC exists.
    public static let bootArchitecture: UInt16 = bootLegacyDevices | boot8042 | bootVGANotPresent | bootMSINotSupported

    /// The FADT pointing to the DSDT at `dsdtAddress` and the FACS at `facsAddress` (0: none).
    /// The DSDT goes in both DSDT and X_DSDT where it fits in 32 bits (OSPM uses X_DSDT). The FACS
    /// goes in exactly one of FIRMWARE_CTRL and X_FIRMWARE_CTRL: ACPI 6.5 (5.2.9) says
    /// X_FIRMWARE_CTRL must be zero when FIRMWARE_CTRL is not (Linux lists the FACS twice
    /// otherwise).
    public static func table(dsdtAddress: UInt64, facsAddress: UInt64) -> ACPITable {
        var b = [UInt8](repeating: 0, count: length - ACPITable.headerSize)
        // Offsets below are from the start of the table; `put` subtracts the header.
        func put<T: FixedWidthInteger>(_ value: T, _ offset: Int) {
            b.storeLittleEndian(value, at: offset - ACPITable.headerSize)
        }
        func put(_ gas: GenericAddress, _ offset: Int) {
            for (i, byte) in gas.bytes().enumerated() { b[offset - ACPITable.headerSize + i] = byte }
        }
        func legacy(_ address: UInt64) -> UInt32 { address <= UInt64(UInt32.max) ? UInt32(address) : 0 }

        put(legacy(facsAddress), 36)  // FIRMWARE_CTRL (below 4 GiB)
        put(legacy(dsdtAddress), 40)  // DSDT
        put(UInt8(0), 45)  // Preferred_PM_Profile: unspecified
        put(sciInterrupt, 46)  // SCI_INT
        put(UInt32(0), 48)  // SMI_CMD: none, always in ACPI mode
        put(UInt32(pm1aEventPort), 56)  // PM1a_EVT_BLK
        put(UInt32(pm1aControlPort), 64)  // PM1a_CNT_BLK
        put(UInt32(0), 76)  // PM_TMR_BLK: none
        put(pm1EventLength, 88)  // PM1_EVT_LEN
        put(pm1ControlLength, 89)  // PM1_CNT_LEN
        put(UInt16(101), 96)  // P_LVL2_LAT > 100: C2 not supported
        put(UInt16(1001), 98)  // P_LVL3_LAT > 1000: C3 not supported
        put(CMOSRTC.century, 108)  // CENTURY: the RTC's century register, so the OS reads all four digits
        put(bootArchitecture, 109)  // IAPC_BOOT_ARCH
        put(flags, 112)  // Flags
        put(GenericAddress.ioPort(resetPort, length: 1, accessSize: 1), 116)  // RESET_REG
        put(resetValue, 128)  // RESET_VALUE
        put(minorRevision, 131)  // FADT Minor Version
        put(legacy(facsAddress) == 0 ? facsAddress : 0, 132)  // X_FIRMWARE_CTRL (only above 4 GiB)
        put(dsdtAddress, 140)  // X_DSDT
        put(GenericAddress.ioPort(pm1aEventPort, length: pm1EventLength), 148)  // X_PM1a_EVT_BLK
        put(GenericAddress.ioPort(pm1aControlPort, length: pm1ControlLength), 172)  // X_PM1a_CNT_BLK
        // X_PM1b_*, X_PM2_CNT_BLK, X_PM_TMR_BLK, X_GPE*, SLEEP_CONTROL/STATUS, hypervisor
        // vendor identity: zero.
        return ACPITable(signature: "FACP", revision: revision, body: b)
    }
}

/// The Firmware ACPI Control Structure, signature "FACS" (ACPI 6.5, 5.2.10): 64 bytes, 64-byte
/// aligned, no checksum. It holds the global lock and the S3 waking vector; SynthVM offers no
/// sleep states but S5, so it is all zero apart from the signature, length and version. It is
/// present because a non-hardware-reduced FADT is expected to point to one.
public enum FACS {
    public static let length = 64
    public static let alignment = 64
    public static let version: UInt8 = 2

    public static func bytes() -> [UInt8] {
        var out: [UInt8] = []
        out.appendASCII("FACS", width: 4)
        out.appendLittleEndian(UInt32(length))
        out += [UInt8](repeating: 0, count: length - 8)
        out[32] = version
        return out
    }
}
