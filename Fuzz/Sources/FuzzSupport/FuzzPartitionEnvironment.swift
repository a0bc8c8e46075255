import Partition

// The rest of the partition's environment for the harnesses: a clock the input moves, and sinks
// that only count (the harnesses check what the partition returns, not what it raised).

/// A guest TSC that moves only when the input says so.
public final class FuzzClock: PartitionClock, @unchecked Sendable {
    public let tscFrequencyHz: UInt64 = 2_500_000_000
    public var tsc: UInt64 = 1_000_000_000_000

    public init() {}
    public func guestTSC() -> UInt64 { tsc }
    public func vpRuntimeNanoseconds(vp: UInt32) -> UInt64 { UInt64(vp) * 1000 }
}

/// Counts interrupts, SINTs, route changes, timer arms, resets and crashes.
public final class FuzzSinks: PartitionInterrupts, PartitionSynICInterrupts, PartitionTimers, PartitionEvents,
    @unchecked Sendable
{
    public var count = 0

    public init() {}
    public func sendFixedInterrupt(vp: UInt32, vector: UInt8) { count += 1 }
    public func raiseSINT(vp: UInt32, sint: Int, vector: UInt8, autoEOI: Bool) { count += 1 }
    public func sintChanged(vp: UInt32, sint: Int, value: UInt64) { count += 1 }
    public func armTimer(vp: UInt32, atReferenceTime referenceTime: UInt64?) { count += 1 }
    public func resetRequested(vp: UInt32) { count += 1 }
    public func guestCrashed(_ notification: GuestCrashNotification) {
        precondition(notification.message.map { $0.count <= 4096 } ?? true, "crash message over 4096 bytes")
        count += 1
    }
}

extension Enlightenments {
    /// An enlightenment set from one input byte: every feature whose bit is set, with the
    /// features it needs added (the monitor refuses a set with a missing dependency), or off.
    public static func fuzzed(_ byte: UInt8, _ more: UInt8) -> Enlightenments {
        if byte == 0xFF { return .off }
        let all = Feature.allCases
        var set = Set<Feature>()
        for (i, f) in all.enumerated() where (i < 8 ? byte >> UInt8(i) : more >> UInt8(i - 8)) & 1 != 0 { set.insert(f) }
        var grown = true
        while grown {
            grown = false
            for f in set where !f.requires.isSubset(of: set) {
                set.formUnion(f.requires)
                grown = true
            }
        }
        return Enlightenments(features: set)
    }
}
