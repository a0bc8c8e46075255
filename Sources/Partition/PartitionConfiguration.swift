/// What the monitor decides about a partition before it exists.
public struct PartitionConfiguration: Equatable, Sendable {
    /// What the guest is offered (CPUID bits, and so which MSRs and hypercalls it may use).
    public var enlightenments: Enlightenments
    /// Number of VPs; VP indices are 0..<vpCount (and equal to APIC IDs in SynthVM).
    public var vpCount: Int
    /// What APIC_FREQUENCY reports. KVM's in-kernel LAPIC timer runs at 1 GHz
    /// (APIC_BUS_CYCLE_NS = 1) unless the VMM changes the bus rate.
    public var apicFrequencyHz: UInt64
    /// The port the hypercall stub writes to (`out imm8, al`). Must not collide with an emulated
    /// device, and must not be 0x7E (a KVM fast-PIO quirk).
    public var hypercallPort: UInt8
    /// How many posted messages may wait per (VP, SINT) behind a busy slot before
    /// `Partition.postMessage` answers HV_STATUS_INSUFFICIENT_BUFFERS. 16 is what the TLFS gives
    /// each message port.
    public var synicQueueDepth: Int

    public init(enlightenments: Enlightenments, vpCount: Int, apicFrequencyHz: UInt64 = 1_000_000_000,
                hypercallPort: UInt8 = 0xE5, synicQueueDepth: Int = 16) {
        self.enlightenments = enlightenments
        self.vpCount = vpCount
        self.apicFrequencyHz = apicFrequencyHz
        self.hypercallPort = hypercallPort
        self.synicQueueDepth = synicQueueDepth
    }
}
