/// Fixed guest-physical addresses of what the loaders write (docs/boot-protocol.md).
/// One table, used by both boot protocols, so the guest runtime and the docs have one truth.
public enum BootLayout {
    public static let gdt: UInt64 = 0x1000
    public static let bootInfo: UInt64 = 0x2000
    public static let memoryMap: UInt64 = 0x2400
    public static let moduleList: UInt64 = 0x2800
    public static let moduleListEnd: UInt64 = 0x3000
    public static let commandLine: UInt64 = 0x3000
    public static let commandLineMax = 4095
    public static let moduleNames: UInt64 = 0x4000
    public static let moduleNamesEnd: UInt64 = 0x5000
    /// Linux protocols: the `boot_params` zero page, or the PVH `hvm_start_info` followed by its
    /// module list and memory map (one page, up to ``linuxBootDataEnd``).
    public static let linuxBootData: UInt64 = 0x5000
    public static let linuxBootDataEnd: UInt64 = 0x6000
    /// [0x8000, 0x10000) is the guest's own, e.g. for its AP trampoline (SIPI vector 0x08).
    public static let guestFreeLow: UInt64 = 0x8000
    public static let pageTables: UInt64 = 0x10000
    public static let stackTop: UInt64 = 0x80000
    public static let maxModules = 64

    /// GDT selectors.
    public static let code64Selector: UInt16 = 0x08
    public static let dataSelector: UInt16 = 0x10
    public static let code32Selector: UInt16 = 0x18

    /// Flat descriptors with the accessed bit already set, so the CPU never writes the GDT.
    public static let gdtEntries: [UInt64] = [
        0,
        0x00AF_9B00_0000_FFFF, // 64-bit code: P, DPL0, exec/read, L, G
        0x00CF_9300_0000_FFFF, // data: P, DPL0, read/write, D/B, G
        0x00CF_9B00_0000_FFFF, // 32-bit code: P, DPL0, exec/read, D/B, G
    ]
    public static var gdtLimit: UInt16 { UInt16(gdtEntries.count * 8 - 1) }
}

/// The register state the boot vCPU starts with, independent of KVM's structs.
public struct BootCPUState: Equatable, Sendable {
    public enum Mode: Equatable, Sendable {
        /// Long mode, paging on with `cr3`.
        case long64
        /// 32-bit protected mode, paging off.
        case protected32
    }

    public var mode: Mode
    public var rip: UInt64
    public var rsp: UInt64 = BootLayout.stackTop
    public var rax: UInt64 = 0
    public var rbx: UInt64 = 0
    public var rdi: UInt64 = 0
    /// The Linux 64-bit boot protocol passes `boot_params` here.
    public var rsi: UInt64 = 0
    public var cr3: UInt64 = 0

    public init(mode: Mode, rip: UInt64) {
        self.mode = mode
        self.rip = rip
    }
}
