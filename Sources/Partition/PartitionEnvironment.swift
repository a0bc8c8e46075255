/// What the partition layer needs from the VM around it. The monitor implements these over KVM
/// and guest RAM; unit tests implement them over arrays and counters.

/// Guest-physical memory. Every access is bounds-checked: a hostile GPA gives nil/false, never a trap.
public protocol PartitionMemory: AnyObject, Sendable {
    /// True when [gpa, gpa + length) is entirely guest RAM.
    func contains(gpa: UInt64, length: UInt64) -> Bool
    /// The bytes at [gpa, gpa + count), or nil unless entirely RAM.
    func read(gpa: UInt64, count: Int) -> [UInt8]?
    /// Writes `bytes` at `gpa`; false (and nothing written) unless entirely RAM.
    @discardableResult
    func write(gpa: UInt64, bytes: [UInt8]) -> Bool
    /// ORs `mask` into the byte at `gpa` and returns the byte as it was before; nil (and nothing
    /// written) unless RAM. The SynIC sets event flags and MessagePending with it.
    ///
    /// The default implementation reads, then writes: enough for a single-threaded test, but a
    /// guest vCPU clearing other bits of the same byte in between would see them set again. The
    /// monitor's guest RAM overrides it with a locked OR on the shared mapping (what the TLFS
    /// means by "atomically setting a bit"), which also makes the 0->1 test exact.
    func fetchOr(gpa: UInt64, mask: UInt8) -> UInt8?
}

extension PartitionMemory {
    public func fetchOr(gpa: UInt64, mask: UInt8) -> UInt8? {
        guard let old = read(gpa: gpa, count: 1)?.first else { return nil }
        if old & mask != mask { guard write(gpa: gpa, bytes: [old | mask]) else { return nil } }
        return old
    }
}

/// The guest's time base. The guest TSC is the same on every VP (KVM keeps them in step).
public protocol PartitionClock: AnyObject, Sendable {
    /// Guest TSC ticks per second.
    var tscFrequencyHz: UInt64 { get }
    /// The guest TSC now.
    func guestTSC() -> UInt64
    /// Host-side CPU time consumed by VP `vp`, in nanoseconds (for VP_RUNTIME).
    func vpRuntimeNanoseconds(vp: UInt32) -> UInt64
}

/// Interrupt delivery to VPs (VP index == APIC ID in SynthVM).
public protocol PartitionInterrupts: AnyObject, Sendable {
    /// A fixed, edge-triggered interrupt with `vector` to VP `vp`.
    func sendFixedInterrupt(vp: UInt32, vector: UInt8)
}

/// How the SynIC interrupts a VP: asserting one of its synthetic interrupt sources.
///
/// The monitor's implementation is meant to keep one KVM GSI route (an MSI to the VP's APIC ID
/// with the SINT's vector) per (VP, SINT), bound to an irqfd, so that workers can raise SINTs
/// without the monitor; `sintChanged` is its cue to update the route.
public protocol PartitionSynICInterrupts: AnyObject, Sendable {
    /// Assert SINTx on VP `vp`: a fixed, edge-triggered interrupt at `vector` (16...255). The
    /// partition calls it only for unmasked, non-polling SINTs, after the message or flag that
    /// it announces is in guest memory. With `autoEOI` the guest's handler will not EOI; making
    /// that work against an in-kernel LAPIC is the implementation's business.
    func raiseSINT(vp: UInt32, sint: Int, vector: UInt8, autoEOI: Bool)
    /// The guest wrote SINTx of VP `vp` (or a reset put it back to 0x10000); `value` is the
    /// register as now stored. Called after the write took effect, on the writing VP's thread.
    func sintChanged(vp: UInt32, sint: Int, value: UInt64)
}

/// SINTs as plain fixed interrupts through `PartitionInterrupts`: what a partition uses when it
/// is given no `PartitionSynICInterrupts`. AutoEOI is not honoured (the guest is told to
/// deprecate it, CPUID hint 9); route changes need no action.
public final class FixedInterruptSINTs: PartitionSynICInterrupts {
    public let interrupts: any PartitionInterrupts

    public init(_ interrupts: any PartitionInterrupts) {
        self.interrupts = interrupts
    }

    public func raiseSINT(vp: UInt32, sint: Int, vector: UInt8, autoEOI: Bool) {
        interrupts.sendFixedInterrupt(vp: vp, vector: vector)
    }

    public func sintChanged(vp: UInt32, sint: Int, value: UInt64) {}
}

/// Host timers for the synthetic timers: one per VP, set to the earliest deadline of its four
/// STIMERs.
public protocol PartitionTimers: AnyObject, Sendable {
    /// Call `Partition.serviceSyntheticTimers(vp:)` once partition reference time has reached
    /// `referenceTime` (any time after is fine: the partition never fires a timer early, and an
    /// early call only re-arms); nil cancels. Each call replaces the previous one for that VP.
    ///
    /// Called with the VP's SynIC lock held, so that arms for one VP are never reordered: the
    /// implementation must not call back into the partition synchronously (a timerfd_settime
    /// is what it is for). `Partition.nanosecondsUntil(referenceTime:)` converts to host time.
    func armTimer(vp: UInt32, atReferenceTime referenceTime: UInt64?)
}

/// No host timers: synthetic timers expire only when someone calls
/// `Partition.serviceSyntheticTimers(vp:)` (or a COUNT/CONFIG write finds them already due).
/// What a partition uses when it is given no `PartitionTimers`.
public final class NoPartitionTimers: PartitionTimers {
    public init() {}
    public func armTimer(vp: UInt32, atReferenceTime referenceTime: UInt64?) {}
}

/// The SynIC as other processes see it. The monitor's partition handles the SynIC MSRs and the
/// synthetic timers; the SynIC message-router worker writes every message slot except timer
/// messages and sets event flags for its connections. The router reads the registers the
/// partition publishes here, learns about EOM here, and the two take turns at a message slot
/// through the lock here.
public protocol PartitionSynICShared: AnyObject, Sendable {
    /// VP `vp`'s SCONTROL/SIMP/SIEFP/SINTx changed (an MSR write or a reset): publish them.
    /// Called with the VP's SynIC lock held, so publications for one VP are never reordered.
    func publish(vp: UInt32, registers: SynICRegisters)
    /// The guest wrote EOM on VP `vp` (or enabled its message page), after the partition
    /// rescanned its own queues: the router should rescan its queues for that VP.
    func endOfMessage(vp: UInt32)
    /// Exclusive use of SINTx's message slot of VP `vp` against the other process that writes
    /// slots. False when it could not be had quickly (the holder is another process, which may
    /// be dead): the partition then retries a little later instead of waiting.
    func lockMessageSlot(vp: UInt32, sint: Int) -> Bool
    func unlockMessageSlot(vp: UInt32, sint: Int)
}

/// No other process: nothing to publish, every slot is ours. What a partition uses when it is
/// given no `PartitionSynICShared`.
public final class PrivateSynIC: PartitionSynICShared {
    public init() {}
    public func publish(vp: UInt32, registers: SynICRegisters) {}
    public func endOfMessage(vp: UInt32) {}
    public func lockMessageSlot(vp: UInt32, sint: Int) -> Bool { true }
    public func unlockMessageSlot(vp: UInt32, sint: Int) {}
}

/// What the guest reported when it wrote CRASH_CTL with CrashNotify.
public struct GuestCrashNotification: Equatable, Sendable {
    /// CRASH_P0...P4 as written.
    public var parameters: [UInt64]
    /// The message the guest pointed at (P3 = GPA, P4 = length) when CrashMessage was set;
    /// nil if not set or unreadable. At most 4096 bytes.
    public var message: [UInt8]?
    /// True when CrashMessage was set but the GPA/length did not name readable guest RAM.
    public var messageUnreadable: Bool
    public var vp: UInt32

    public init(parameters: [UInt64], message: [UInt8]?, messageUnreadable: Bool, vp: UInt32) {
        self.parameters = parameters
        self.message = message
        self.messageUnreadable = messageUnreadable
        self.vp = vp
    }
}

/// VM-level events the partition raises.
public protocol PartitionEvents: AnyObject, Sendable {
    /// The guest wrote the RESET MSR: reset the VM.
    func resetRequested(vp: UInt32)
    /// The guest wrote CRASH_CTL with CrashNotify.
    func guestCrashed(_ notification: GuestCrashNotification)
}
