import Partition

/// Per-vCPU exit statistics, kept by the vCPU thread without locks and summed at the end.
public struct ExitCounters: Sendable, Equatable {
    public var exits = 0
    public var portIO = 0
    public var mmio = 0
    public var msr = 0
    public var kicks = 0
    public var unknownPortReads = 0
    public var unknownPortWrites = 0
    public var unknownMMIOReads = 0
    public var unknownMMIOWrites = 0
    public var unknownMSRReads = 0
    public var unknownMSRWrites = 0
    public var syntheticMSRReads = 0
    public var syntheticMSRWrites = 0
    public var hypercalls = 0
    /// AutoEOI SINT vectors injected by this vCPU (AutoEOIRelay).
    public var autoEOIInjections = 0
    /// Emulation failures SynthVM completed itself (int3, fwait: `EmulationFixups`).
    public var emulationFixups = 0

    public init() {}

    public static func + (a: ExitCounters, b: ExitCounters) -> ExitCounters {
        var r = a
        r.exits += b.exits
        r.portIO += b.portIO
        r.mmio += b.mmio
        r.msr += b.msr
        r.kicks += b.kicks
        r.unknownPortReads += b.unknownPortReads
        r.unknownPortWrites += b.unknownPortWrites
        r.unknownMMIOReads += b.unknownMMIOReads
        r.unknownMMIOWrites += b.unknownMMIOWrites
        r.unknownMSRReads += b.unknownMSRReads
        r.unknownMSRWrites += b.unknownMSRWrites
        r.syntheticMSRReads += b.syntheticMSRReads
        r.syntheticMSRWrites += b.syntheticMSRWrites
        r.hypercalls += b.hypercalls
        r.autoEOIInjections += b.autoEOIInjections
        r.emulationFixups += b.emulationFixups
        return r
    }

    /// Every counter by the name the control socket's metrics give it (docs/api.md), in a fixed order.
    public var named: [(String, Int)] {
        [("exits", exits), ("pio", portIO), ("mmio", mmio), ("msr", msr), ("kicks", kicks),
         ("unknown_port_reads", unknownPortReads), ("unknown_port_writes", unknownPortWrites),
         ("unknown_mmio_reads", unknownMMIOReads), ("unknown_mmio_writes", unknownMMIOWrites),
         ("unknown_msr_reads", unknownMSRReads), ("unknown_msr_writes", unknownMSRWrites),
         ("synthetic_msr_reads", syntheticMSRReads), ("synthetic_msr_writes", syntheticMSRWrites),
         ("hypercalls", hypercalls), ("autoeoi_injections", autoEOIInjections), ("emulation_fixups", emulationFixups)]
    }

    public var summary: String {
        "exits=\(exits) pio=\(portIO) mmio=\(mmio) msr=\(msr) kicks=\(kicks) "
            + "unknown: port r/w=\(unknownPortReads)/\(unknownPortWrites) "
            + "mmio r/w=\(unknownMMIOReads)/\(unknownMMIOWrites) msr r/w=\(unknownMSRReads)/\(unknownMSRWrites) "
            + "synthetic msr r/w=\(syntheticMSRReads)/\(syntheticMSRWrites) hypercalls=\(hypercalls) autoeoi=\(autoEOIInjections) "
            + "emulation fix-ups=\(emulationFixups)"
    }
}

/// What a finished run reports.
public struct RunOutcome: Sendable {
    public var reason: StopReason
    public var counters: [ExitCounters]
    /// The one-screen report for a guest crash or triple fault, if any.
    public var crashReport: String?
    /// What the guest reported through the Hyper-V crash MSRs.
    public var guestCrashNotifications: [GuestCrashNotification] = []
    /// The last of them as the JSON document `synthvm run --crash-report` writes. The VM does not
    /// write it: its threads cannot open files once it runs; the launcher does (RunCommand).
    public var guestCrashReportJSON: String?
    /// Every worker the VM ran, and how it ended.
    public var workers: [Supervisor.Status] = []

    public var exitStatus: Int32 { reason.exitStatus }
    public var totals: ExitCounters { counters.reduce(ExitCounters(), +) }
}
