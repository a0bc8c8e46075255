import HyperV

/// The partition's reference time base: one scale and one offset, fixed at partition creation,
/// that both the reference TSC page publishes and the TIME_REF_COUNT MSR uses.
///
/// Why one: the guest reads time from the page (RDTSC and arithmetic, no exit) and falls back to
/// the MSR whenever the page's sequence is 0. If the two used different parameters, time would
/// jump at every fallback. KVM derives its MSR value from the same tsc_ref too.
///
/// Reference time is 0 at `tscAtCreation` (the TLFS: the counter starts at 0 when the partition is
/// created) and runs at 10^7 per second of guest TSC. The guest TSC is the same on every VP (KVM
/// keeps them in step), so the clock is the same on every VP.
public struct ReferenceClock: Equatable, Sendable {
    public let tscFrequencyHz: UInt64
    /// The guest TSC at which reference time is 0.
    public let tscAtCreation: UInt64
    /// floor(2^64 * 10^7 / tscFrequencyHz); nil when the TSC is too slow (<= 10 MHz) for the page
    /// format. Then the page is published invalid and the MSR uses `slowReferenceTime`.
    public let tscScale: UInt64?
    /// -((tscAtCreation * tscScale) >> 64), so that the formula gives 0 at tscAtCreation.
    public let tscOffset: Int64

    public init(tscFrequencyHz: UInt64, tscAtCreation: UInt64) {
        self.tscFrequencyHz = tscFrequencyHz
        self.tscAtCreation = tscAtCreation
        tscScale = HvReferenceTSCPage.scale(tscFrequencyHz: tscFrequencyHz)
        tscOffset = tscScale.map { HvReferenceTSCPage.offset(zeroAtTSC: tscAtCreation, scale: $0) } ?? 0
    }

    /// Reference time (100 ns units) at guest TSC `tsc`.
    ///
    /// With a scale this is exactly the page formula, so the MSR equals what the guest computes
    /// from the page at the same TSC. A TSC before `tscAtCreation` (only possible if the guest
    /// rewrote its TSC) counts as `tscAtCreation`, giving 0 rather than a wrapped huge value.
    public func referenceTime(atTSC tsc: UInt64) -> UInt64 {
        let t = max(tsc, tscAtCreation)
        if let scale = tscScale {
            return HvReferenceTSCPage.referenceTime(tsc: t, scale: scale, offset: tscOffset)
        }
        return slowReferenceTime(elapsedTicks: t - tscAtCreation)
    }

    /// elapsed * 10^7 / Hz in 128-bit arithmetic, saturating at UInt64.max; 0 for a 0 Hz clock
    /// (a monitor never reports one, but the partition must not trap on it).
    func slowReferenceTime(elapsedTicks: UInt64) -> UInt64 {
        guard tscFrequencyHz > 0 else { return 0 }
        let product = elapsedTicks.multipliedFullWidth(by: HvReferenceTSCPage.referenceTicksPerSecond)
        guard product.high < tscFrequencyHz else { return .max }
        return tscFrequencyHz.dividingFullWidth(product).quotient
    }

    /// The page contents for `sequence`. Without a usable scale the page is published with the
    /// invalid sequence 0, which sends the guest to the MSR.
    public func page(sequence: UInt32) -> HvReferenceTSCPage {
        guard let scale = tscScale else {
            return HvReferenceTSCPage(tscSequence: HvReferenceTSCPage.invalidSequence, tscScale: 0, tscOffset: 0)
        }
        return HvReferenceTSCPage(tscSequence: sequence, tscScale: scale, tscOffset: tscOffset)
    }
}
