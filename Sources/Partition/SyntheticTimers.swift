import HyperV

/// One synthetic timer (STIMERn of one VP, TLFS "Synthetic Timers"): its two registers and where
/// it stands. Pure arithmetic: every transition is given the current partition reference time
/// (100 ns units); what an expiry delivers, and when the host timer must fire, is decided by the
/// VP's SynIC (`SynICVPState`), which owns four of these.
///
/// Semantics (TLFS, cross-checked with KVM arch/x86/kvm/hyperv.c stimer_*):
/// - COUNT is the absolute expiration time of a one-shot timer and the period of a periodic one.
///   Writing 0 disables the timer whatever AutoEnable says; writing non-zero with AutoEnable set
///   enables it.
/// - Writing CONFIG or COUNT stops the timer first (KVM `stimer_cleanup`): an expiry message
///   still waiting for its slot is withdrawn, and an enabled timer starts over. "Writing the
///   configuration register of a timer that is already enabled may result in undefined
///   behavior" (TLFS); starting over is KVM's choice and ours.
/// - An enabled message-mode timer with SINTx = 0 is disabled at once (TLFS). KVM applies this
///   only when the timer was already enabled before the write; SynthVM applies it to every write
///   that leaves such a timer enabled, including an AutoEnable through COUNT, so a timer never
///   sends to SINT0.
/// - Never early: a timer expires only when reference time >= its deadline. A one-shot deadline
///   already in the past expires at once.
/// - A periodic timer's first period starts when it is enabled (deadline = now + period). After
///   an expiry at deadline d, the next deadline is d + period: no drift however late the
///   expiry was signalled. Periods missed entirely (the host timer or the message slot was late
///   by more than a period) are skipped, not replayed: the next deadline is the first d + k *
///   period after now, so a slow guest gets one expiry, not a burst. This is KVM's rule, and
///   SynthVM applies it to lazy and non-lazy timers alike (KVM ignores Lazy too); the TLFS lets a
///   hypervisor skip expirations either way once "a significant number" have been missed.
/// - Arithmetic saturates instead of wrapping: a deadline past 2^64 - 1 (58 000 years of
///   reference time) is treated as never.
public struct SyntheticTimer: Equatable, Sendable {
    /// What an expiry signals.
    public enum Signal: Equatable, Sendable {
        /// Direct mode: a fixed interrupt at ApicVector to the timer's VP.
        case interrupt(vector: UInt8)
        /// Message mode: an HvMessageTypeTimerExpired message in SINTx's slot.
        case message(sint: Int)
    }

    /// 0...3.
    public let index: Int
    /// STIMERn_CONFIG as stored (Enable may have been cleared by the rules above).
    public internal(set) var config: UInt64 = 0
    /// STIMERn_COUNT as written.
    public internal(set) var count: UInt64 = 0
    /// The reference time of the next expiration while the timer is armed. Nil when it is
    /// disabled, has a zero count, or has expired and its message still waits for a slot.
    public internal(set) var deadline: UInt64?
    /// Set while the timer's expiry message waits in its SINT queue: the expiration time the
    /// message will carry. The timer stays disarmed meanwhile (periodic expirations that fall in
    /// that time are coalesced into this one message).
    public internal(set) var pendingExpiration: UInt64?

    public init(index: Int) {
        self.index = index
    }

    public var isEnabled: Bool { config & HvMSR.STimerConfig.enable != 0 }
    public var isPeriodic: Bool { config & HvMSR.STimerConfig.periodic != 0 }
    public var isLazy: Bool { config & HvMSR.STimerConfig.lazy != 0 }
    public var autoEnable: Bool { config & HvMSR.STimerConfig.autoEnable != 0 }
    public var isDirect: Bool { config & HvMSR.STimerConfig.directMode != 0 }
    public var sintx: Int { HvMSR.STimerConfig.sintx(config) }
    public var apicVector: UInt8 { HvMSR.STimerConfig.apicVector(config) }

    /// What this timer's expiry signals with its current configuration.
    public var signal: Signal { isDirect ? .interrupt(vector: apicVector) : .message(sint: sintx) }

    /// True when the timer is armed and reference time `now` has reached its deadline.
    public func isDue(now: UInt64) -> Bool {
        guard isEnabled, let deadline else { return false }
        return now >= deadline
    }

    // MARK: Register writes (validated by the MSR layer)

    /// STIMERn_CONFIG = `value`: stop, store, disable a message-mode timer aimed at SINT0, and
    /// arm if enabled with a non-zero count.
    mutating func writeConfig(_ value: UInt64, now: UInt64) {
        stop()
        config = Self.enforcingSintRule(value)
        arm(now: now)
    }

    /// STIMERn_COUNT = `value`: stop, store; 0 disables, non-zero enables under AutoEnable; arm
    /// if enabled.
    mutating func writeCount(_ value: UInt64, now: UInt64) {
        stop()
        count = value
        if value == 0 {
            config &= ~HvMSR.STimerConfig.enable
        } else if autoEnable {
            config = Self.enforcingSintRule(config | HvMSR.STimerConfig.enable)
        }
        arm(now: now)
    }

    /// "It is not permitted to set the SINTx field to zero for an enabled timer (that is not in
    /// direct mode). If attempted, the timer will be marked disabled" (TLFS).
    static func enforcingSintRule(_ config: UInt64) -> UInt64 {
        let c = HvMSR.STimerConfig.self
        if config & c.enable != 0, config & c.directMode == 0, c.sintx(config) == 0 { return config & ~c.enable }
        return config
    }

    // MARK: Transitions

    /// Disarms and forgets a pending expiry (the SynIC withdraws the queued message).
    mutating func stop() {
        deadline = nil
        pendingExpiration = nil
    }

    /// Starts the timer if it is enabled with a non-zero count: a one-shot's deadline is COUNT
    /// itself (possibly already past), a periodic timer's first deadline is one period from now.
    mutating func arm(now: UInt64) {
        guard isEnabled, count != 0 else {
            deadline = nil
            return
        }
        deadline = isPeriodic ? Self.saturatingAdd(now, count) : count
    }

    /// The timer is due: disarms it and returns the deadline that expired and what to signal.
    /// The caller reports back with `completeExpiration` once the signal went out (at once for
    /// an interrupt, when the message reaches its slot for a message).
    mutating func expire() -> (expiration: UInt64, signal: Signal)? {
        guard isEnabled, let expiration = deadline else { return nil }
        deadline = nil
        return (expiration, signal)
    }

    /// The expiry of `expiration` has been signalled at reference time `now`: a one-shot timer
    /// marks itself disabled (TLFS), a periodic one arms its next period.
    mutating func completeExpiration(_ expiration: UInt64, now: UInt64) {
        pendingExpiration = nil
        if isPeriodic && count != 0 {
            deadline = Self.nextPeriodicDeadline(after: expiration, period: count, now: now)
        } else {
            config &= ~HvMSR.STimerConfig.enable
            deadline = nil
        }
    }

    /// The deadline after `previous` for a timer of period `period` (> 0), as seen at `now`:
    /// `previous + period` when that is still ahead, otherwise the first `previous + k * period`
    /// after `now` (the missed periods are skipped, KVM `stimer_start`). Always > now, and on the
    /// grid `previous + k * period`, so periodic timers never drift. Saturates at UInt64.max.
    public static func nextPeriodicDeadline(after previous: UInt64, period: UInt64, now: UInt64) -> UInt64 {
        precondition(period > 0, "a periodic timer needs a non-zero period")
        let next = saturatingAdd(previous, period)
        if next > now || next == .max { return next }
        let missed = (now - previous) / period
        let (span, overflow) = (missed + 1).multipliedReportingOverflow(by: period)
        return overflow ? .max : saturatingAdd(previous, span)
    }

    static func saturatingAdd(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : sum
    }
}
