import HyperV
import Synchronization

/// One HV#1 partition: the state machines behind the Hyper-V guest interface (synthetic MSRs,
/// hypercall page, reference time, crash reporting; the hypercall dispatcher extends it).
///
/// Pure: guest memory, interrupts, clocks and VM events are reached through the small protocols
/// in PartitionEnvironment.swift, so everything runs in unit tests without KVM.
///
/// Thread safety: MSR exits arrive from every vCPU thread at once. All partition-wide and per-VP
/// registers live in one `PartitionState` behind a `Mutex`, each VP's SynIC and synthetic timers
/// in a `SynICVP` behind its own `Mutex` (never held together with the partition lock or with
/// another VP's), and the reference-time high-water mark is an atomic; everything else is
/// immutable after `init`. That is what `@unchecked Sendable` asserts. Events (reset, crash) and
/// interrupts are raised after the lock is released, so a sink may call back into the partition.
public final class Partition: @unchecked Sendable {
    public let configuration: PartitionConfiguration
    public let memory: any PartitionMemory
    public let clock: any PartitionClock
    public let interrupts: any PartitionInterrupts
    public let events: any PartitionEvents
    /// Where SINT interrupts go (`FixedInterruptSINTs` over `interrupts` unless given).
    public let synicInterrupts: any PartitionSynICInterrupts
    /// Host timers for the synthetic timers (`NoPartitionTimers` unless given).
    public let timers: any PartitionTimers
    /// Where the SynIC registers are published for other processes, EOMs announced, and message
    /// slots locked against them (`PrivateSynIC` unless given: no other process).
    public let synicShared: any PartitionSynICShared
    /// The scale/offset both TIME_REF_COUNT and the reference TSC page use.
    public let referenceClock: ReferenceClock
    /// The hypervisor CPUID leaves for this partition's enlightenments (empty when off).
    public let cpuidLeaves: [HvCPUIDLeaf]

    let state: Mutex<PartitionState>
    /// The largest reference time handed out so far: TIME_REF_COUNT never goes backwards, even
    /// across VPs whose reads race.
    let referenceTimeHighWater = Atomic<UInt64>(0)
    /// Per-VP SynIC and synthetic timers, indexed by VP index.
    let synic: [SynICVP]

    public init(configuration: PartitionConfiguration, memory: any PartitionMemory, clock: any PartitionClock,
                interrupts: any PartitionInterrupts, events: any PartitionEvents,
                synicInterrupts: (any PartitionSynICInterrupts)? = nil, timers: (any PartitionTimers)? = nil,
                synicShared: (any PartitionSynICShared)? = nil) {
        self.configuration = configuration
        self.memory = memory
        self.clock = clock
        self.interrupts = interrupts
        self.events = events
        self.synicInterrupts = synicInterrupts ?? FixedInterruptSINTs(interrupts)
        self.timers = timers ?? NoPartitionTimers()
        self.synicShared = synicShared ?? PrivateSynIC()
        synic = (0..<max(configuration.vpCount, 0)).map { _ in SynICVP() }
        referenceClock = ReferenceClock(tscFrequencyHz: clock.tscFrequencyHz, tscAtCreation: clock.guestTSC())
        cpuidLeaves = HvCPUIDLeaves.leaves(for: configuration.enlightenments,
                                         maxVPs: UInt32(clamping: max(configuration.vpCount, 0)))
        state = Mutex(PartitionState(vpCount: configuration.vpCount))
    }

    /// True when the guest may call the hypercall page: HYPERCALL.Enable is set and GUEST_OS_ID
    /// is non-zero. The hypercall dispatcher refuses calls otherwise.
    public var hypercallInterfaceEnabled: Bool {
        state.withLock { $0.hypercallInterfaceEnabled }
    }

    /// Partition reference time now, in 100 ns units since the partition was created: what
    /// TIME_REF_COUNT returns. Never smaller than a value returned before.
    public func referenceTime() -> UInt64 {
        let now = referenceClock.referenceTime(atTSC: clock.guestTSC())
        var last = referenceTimeHighWater.load(ordering: .relaxed)
        while now > last {
            let (exchanged, original) = referenceTimeHighWater.compareExchange(
                expected: last, desired: now, ordering: .relaxed)
            if exchanged { return now }
            last = original
        }
        return last
    }

    /// Puts every synthetic register back to its reset value (the RESET MSR's effect, or a VM
    /// reboot): GUEST_OS_ID, HYPERCALL (including Locked), REFERENCE_TSC, CRASH_P0-P4 and the VP
    /// assist pages read 0 again; every VP's SynIC is disabled with its SINTs masked, its message
    /// queues emptied and its timers stopped (host timers cancelled, SINT route changes reported).
    /// Reference time keeps running (it counts from partition creation, and a reboot is not a new
    /// partition), and the TSC page sequence keeps counting. Guest memory is not touched: the
    /// hypercall, TSC, SIM and SIEF pages stay in RAM until the guest reuses it.
    public func reset() {
        state.withLock { s in
            s = PartitionState(vpCount: configuration.vpCount, tscSequence: s.tscSequence)
        }
        resetSynIC()
    }
}
