import HyperV
import Synchronization

/// The synthetic interrupt controller of one VP (TLFS "Inter-Partition Communication" and
/// "SynIC MSRs"): its registers, one message queue per SINT, and its four synthetic timers.
///
/// Pure: guest memory is reached through `SynICEnvironment.memory`, time through
/// `SynICEnvironment.now`, and interrupts are not raised here but appended to an effects list
/// that the partition performs once the VP's lock is released (after the message or flag they
/// announce is in guest memory).
///
/// ## Messages
/// - Every (VP, SINT) has a FIFO queue. A message is posted only while SCONTROL.Enable and
///   SIMP.Enable are both set: "Virtual processors whose SynIC or SIM page is disabled will not
///   be considered as potential targets ... the hypervisor terminates the operation and returns
///   an error to the caller" (TLFS), so posting to them answers HV_STATUS_INVALID_SYNIC_STATE.
///   (KVM ignores SCONTROL for delivery; QEMU ignores it for messages since it allowed polling
///   guests without SCONTROL. SynthVM follows the TLFS.)
/// - Posting appends to the queue and rescans it. At most `capacity` posted messages wait per
///   (VP, SINT); one more answers HV_STATUS_INSUFFICIENT_BUFFERS (the TLFS gives each port 16
///   buffers and the same status when they are exhausted). Timer messages use their timer's
///   own buffer (TLFS: "four dedicated timer message buffers") and do not count.
/// - A rescan looks at the head of the queue only, so messages reach the slot in the order they
///   were queued. It writes the head into the slot if the slot's MessageType is None, else it
///   sets MessagePending in the occupant and leaves the head queued. Rescans happen on every
///   post, on every EOM write (all 16 queues), and when SCONTROL or SIMP becomes enabled (queued
///   messages survive a disable: "the message remains queued", TLFS). The TLFS also rescans on
///   an APIC EOI, which a user-space SynIC never sees with KVM's in-kernel LAPIC: MessagePending
///   and EOM are the guest's way to ask for the next message, and Linux and Windows both use it.
/// - A message delivered while more wait behind it carries MessagePending itself, so the guest
///   writes EOM after freeing the slot and nothing is left behind.
/// - Race with the guest freeing the slot: MessagePending is set (an atomic OR) *before*
///   MessageType is read a second time; if the slot turned free in between, the message is
///   delivered at once, because that guest read the flags before they were set and will not
///   write EOM. A guest that frees the slot later sees the flag.
/// - Writing a slot: header and payload first, MessageType last, so a guest polling the slot
///   never sees a type with a half-written payload. Only PayloadSize payload bytes are copied.
/// - The interrupt: SINTx's vector, only if the SINT is unmasked and not in polling mode. A
///   masked SINT still receives the message in its slot and only the interrupt is lost, as the
///   TLFS ("If the APIC is software disabled or the SINTx is masked, the interrupt is lost"),
///   KVM and QEMU all do; the guest can poll the slot or drain it with EOM.
///
/// ## Event flags
/// - SCONTROL.Enable and SIEFP.Enable both set, else HV_STATUS_INVALID_SYNIC_STATE and nothing
///   is written (TLFS, and QEMU's -ENXIO).
/// - A masked SINT that is not in polling mode: HV_STATUS_INVALID_SYNIC_STATE ("If the SINTx is
///   masked, HvSignalEvent returns HV_STATUS_INVALID_SYNIC_STATE", TLFS); the flag is not set.
/// - Otherwise the flag is set with an atomic OR (`PartitionMemory.fetchOr`) and SINTx is
///   raised only if the flag was clear before (0->1), and not in polling mode.
///
/// ## Polling mode
/// SINTx bit 18 means something only when the partition advertises it (feature EDX bit 17,
/// `synic-polling`): then the source counts as unmasked but never interrupts. Without the feature
/// the bit is stored and ignored like a reserved bit, as KVM does.
struct SynICVPState: Sendable {
    /// A message waiting for its SINT's slot.
    enum Queued: Equatable, Sendable {
        /// From `Partition.postMessage`.
        case posted(HvMessage)
        /// Timer n expired in message mode; the message is built when it reaches the slot, so
        /// that it carries the delivery time.
        case timer(Int)
    }

    /// SCONTROL, SIMP, SIEFP, SINT0-15 as the guest wrote them (published to other processes
    /// through `PartitionSynICShared` on every change).
    var registers = SynICRegisters()
    var queues = [[Queued]](repeating: [], count: HvSynIC.sintCount)
    var timers = (0..<HvSynIC.timerCount).map { SyntheticTimer(index: $0) }
    /// The host timer as last requested from `PartitionTimers` (nil: not armed).
    var hostTimer: UInt64?

    // MARK: State

    var scontrol: UInt64 {
        get { registers.scontrol }
        set { registers.scontrol = newValue }
    }
    var simp: UInt64 {
        get { registers.simp }
        set { registers.simp = newValue }
    }
    var siefp: UInt64 {
        get { registers.siefp }
        set { registers.siefp = newValue }
    }
    var sints: [UInt64] {
        get { registers.sints }
        set { registers.sints = newValue }
    }
    /// Messages can be queued and delivered.
    var messagePageEnabled: Bool { registers.messagePageEnabled }
    /// Set when a slot could not be locked against the other process that writes slots; the
    /// host timer then fires again soon to retry (see `nextTimerDeadline`).
    var retrySlotAt: UInt64?

    func isMasked(_ sint: Int, _ env: SynICEnvironment) -> Bool {
        registers.isMasked(sint, pollingAvailable: env.pollingAvailable)
    }

    /// The interrupt announcing something new in SINTx, if it generates one.
    func interrupt(for sint: Int, _ env: SynICEnvironment) -> SynICEffect? {
        registers.interrupt(for: sint, pollingAvailable: env.pollingAvailable)
            .map { .sint(sint: $0.sint, vector: $0.vector, autoEOI: $0.autoEOI) }
    }

    /// Posted messages (not timer messages) waiting in SINTx's queue.
    func postedCount(_ sint: Int) -> Int {
        queues[sint].reduce(0) { n, q in if case .posted = q { n + 1 } else { n } }
    }

    /// The earliest deadline of the armed timers: when the host timer must fire.
    var nextTimerDeadline: UInt64? {
        (timers.compactMap { $0.isEnabled ? $0.deadline : nil } + [retrySlotAt].compactMap { $0 }).min()
    }

    // MARK: Messages

    /// Queues `message` for SINTx and rescans. See the type's documentation for the statuses.
    mutating func post(_ message: HvMessage, sint: Int, capacity: Int, _ env: SynICEnvironment,
                       _ effects: inout [SynICEffect]) -> HvStatus {
        guard messagePageEnabled else { return .invalidSynicState }
        // A slot the guest freed without writing EOM takes the head first.
        deliverHead(sint: sint, env, &effects)
        guard postedCount(sint) < capacity else { return .insufficientBuffers }
        queues[sint].append(.posted(message))
        deliverHead(sint: sint, env, &effects)
        return .success
    }

    /// EOM, or SCONTROL/SIMP enabled: try every queue.
    mutating func rescanAll(_ env: SynICEnvironment, _ effects: inout [SynICEffect]) {
        for sint in 0..<HvSynIC.sintCount { deliverHead(sint: sint, env, &effects) }
    }

    /// Moves the head of SINTx's queue into its slot if the slot is free; otherwise sets
    /// MessagePending in the occupant.
    mutating func deliverHead(sint: Int, _ env: SynICEnvironment, _ effects: inout [SynICEffect]) {
        guard messagePageEnabled, let head = queues[sint].first else { return }
        // Another process (the message router) writes slots too; one writer at a time.
        guard env.shared.lockMessageSlot(vp: env.vp, sint: sint) else {
            retrySlotAt = env.now() + Self.slotRetryDelay
            return
        }
        defer { env.shared.unlockMessageSlot(vp: env.vp, sint: sint) }
        let now = env.now()
        let message: HvMessage
        switch head {
        case .posted(let posted):
            message = posted
        case .timer(let n):
            message = HvTimerMessagePayload(timerIndex: UInt32(n), expirationTime: timers[n].pendingExpiration ?? 0,
                                            deliveryTime: now).message
        }
        let result = SynICDelivery.deliver(message, sint: sint, registers: registers,
                                           morePending: queues[sint].count > 1, memory: env.memory)
        guard result == .delivered else { return }
        queues[sint].removeFirst()
        if case .timer(let n) = head {
            timers[n].completeExpiration(timers[n].pendingExpiration ?? 0, now: now)
        }
        if let interrupt = interrupt(for: sint, env) { effects.append(interrupt) }
    }

    /// How long (100 ns units) until a slot whose lock was contended is tried again: 1 ms.
    static let slotRetryDelay: UInt64 = 10_000

    // MARK: Event flags

    /// Sets flag `flag` of SINTx in the SIEF page. See the type's documentation.
    mutating func signalEvent(sint: Int, flag: Int, _ env: SynICEnvironment,
                              _ effects: inout [SynICEffect]) -> HvStatus {
        let (status, interrupt) = SynICDelivery.setEventFlag(sint: sint, flag: flag, registers: registers,
                                                            pollingAvailable: env.pollingAvailable, memory: env.memory)
        if let i = interrupt { effects.append(.sint(sint: i.sint, vector: i.vector, autoEOI: i.autoEOI)) }
        return status
    }

    // MARK: Synthetic timers

    /// Stops timer n and withdraws its queued expiry message.
    mutating func stopTimer(_ n: Int) {
        timers[n].stop()
        for sint in 0..<HvSynIC.sintCount { queues[sint].removeAll { $0 == .timer(n) } }
    }

    mutating func writeTimerConfig(_ n: Int, _ value: UInt64, _ env: SynICEnvironment,
                                   _ effects: inout [SynICEffect]) {
        stopTimer(n)
        timers[n].writeConfig(value, now: env.now())
        serviceTimers(env, &effects)
    }

    mutating func writeTimerCount(_ n: Int, _ value: UInt64, _ env: SynICEnvironment,
                                  _ effects: inout [SynICEffect]) {
        stopTimer(n)
        timers[n].writeCount(value, now: env.now())
        serviceTimers(env, &effects)
    }

    /// Expires every timer whose deadline has passed: a direct-mode timer interrupts at once, a
    /// message-mode timer queues its TimerExpired message (which the SINT's busy-slot, pending and
    /// EOM rules then carry, and which re-arms the timer when it reaches the slot).
    mutating func serviceTimers(_ env: SynICEnvironment, _ effects: inout [SynICEffect]) {
        let now = env.now()
        if let retry = retrySlotAt, retry <= now {
            retrySlotAt = nil
            rescanAll(env, &effects)
        }
        for n in timers.indices where timers[n].isDue(now: now) {
            guard let (expiration, signal) = timers[n].expire() else { continue }
            switch signal {
            case .interrupt(let vector):
                effects.append(.interrupt(vector: vector))
                timers[n].completeExpiration(expiration, now: now)
            case .message(let sint):
                timers[n].pendingExpiration = expiration
                queues[sint].append(.timer(n))
                deliverHead(sint: sint, env, &effects)
            }
        }
    }
}

/// What `SynICVPState` needs from the partition.
struct SynICEnvironment {
    /// The VP whose SynIC this is.
    let vp: UInt32
    let memory: any PartitionMemory
    /// The other processes' view: register publication, EOM notification, slot locks.
    let shared: any PartitionSynICShared
    /// Feature EDX bit 17 is advertised: SINTx bit 18 means polling mode.
    let pollingAvailable: Bool
    /// Partition reference time now.
    let now: () -> UInt64
}

/// An interrupt the SynIC wants raised on its VP, performed after the VP's lock is released.
enum SynICEffect: Equatable, Sendable {
    /// SINTx: through `PartitionSynICInterrupts.raiseSINT`.
    case sint(sint: Int, vector: UInt8, autoEOI: Bool)
    /// A direct-mode timer: a fixed interrupt through `PartitionInterrupts`.
    case interrupt(vector: UInt8)
}

/// One VP's SynIC behind its own lock: posts and timer expiries for different VPs never contend.
final class SynICVP: Sendable {
    let state = Mutex(SynICVPState())
}

/// A copy of one VP's SynIC, for the monitor (the shared SynIC-state region) and for tests.
public struct SynICSnapshot: Equatable, Sendable {
    public var scontrol: UInt64
    public var simp: UInt64
    public var siefp: UInt64
    /// SINT0...SINT15.
    public var sints: [UInt64]
    /// Messages waiting (not yet in their slot) per SINT, timer messages included.
    public var queuedMessages: [Int]
    /// STIMER0...STIMER3.
    public var timers: [SyntheticTimer]
}

extension SynICVPState {
    var snapshot: SynICSnapshot {
        SynICSnapshot(scontrol: scontrol, simp: simp, siefp: siefp, sints: sints,
                      queuedMessages: queues.map(\.count), timers: timers)
    }
}
