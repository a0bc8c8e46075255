/// The partition reference TSC page (TLFS "Partition Reference TSC Mechanism"; Linux
/// `struct ms_hyperv_tsc_page`, include/clocksource/hyperv_timer.h).
///
/// The point of the page is that the guest reads reference time without leaving the guest: it
/// reads the sequence, the scale and the offset, executes RDTSC, and computes
///
///     ReferenceTime = ((TSC * TscScale) >> 64) + TscOffset      (100 ns units, 128-bit product)
///
/// re-reading the sequence to detect a concurrent update. Sequence 0 means "invalid: use the
/// TIME_REF_COUNT MSR instead". TLFS 4.0b and older named 0xFFFFFFFF as the invalid value, so a
/// hypervisor never publishes that either.
///
/// Layout (4096 bytes, little-endian):
///
///     +0   u32 TscSequence
///     +4   u32 Reserved1
///     +8   u64 TscScale
///     +16  i64 TscOffset
///     +24  reserved to the end of the page
public struct HvReferenceTSCPage: Equatable, Sendable {
    public static let size = 4096
    public static let sequenceOffset = 0
    public static let scaleOffset = 8
    public static let offsetOffset = 16
    /// Bytes that carry meaning; the rest of the page is reserved (written as zero).
    public static let headerSize = 24

    /// Reference time counts in 100 ns units: 10^7 per second.
    public static let referenceTicksPerSecond: UInt64 = 10_000_000
    /// "The page is not valid, read the MSR."
    public static let invalidSequence: UInt32 = 0
    /// What TLFS <= 4.0b called invalid; never published, so older guests are not confused.
    public static let legacyInvalidSequence: UInt32 = 0xFFFF_FFFF

    public var tscSequence: UInt32
    public var tscScale: UInt64
    public var tscOffset: Int64

    public init(tscSequence: UInt32, tscScale: UInt64, tscOffset: Int64) {
        self.tscSequence = tscSequence
        self.tscScale = tscScale
        self.tscOffset = tscOffset
    }

    /// Decodes the first 24 bytes of a page; nil if `bytes` is shorter than that.
    public init?(decoding bytes: [UInt8]) {
        guard bytes.count >= Self.headerSize else { return nil }
        tscSequence = UInt32(truncatingIfNeeded: Self.loadLE(bytes, at: Self.sequenceOffset, count: 4))
        tscScale = Self.loadLE(bytes, at: Self.scaleOffset, count: 8)
        tscOffset = Int64(bitPattern: Self.loadLE(bytes, at: Self.offsetOffset, count: 8))
    }

    /// The whole page as the guest sees it: header, then zeros.
    public func encoded() -> [UInt8] {
        var page = [UInt8](repeating: 0, count: Self.size)
        Self.storeLE(UInt64(tscSequence), into: &page, at: Self.sequenceOffset, count: 4)
        Self.storeLE(tscScale, into: &page, at: Self.scaleOffset, count: 8)
        Self.storeLE(UInt64(bitPattern: tscOffset), into: &page, at: Self.offsetOffset, count: 8)
        return page
    }

    /// True if a guest may use the page (the sequence is neither 0 nor the legacy 0xFFFFFFFF).
    public var isValid: Bool { Self.isValidSequence(tscSequence) }

    /// Reference time at guest TSC `tsc`, exactly as the guest computes it from this page.
    public func referenceTime(tsc: UInt64) -> UInt64 {
        Self.referenceTime(tsc: tsc, scale: tscScale, offset: tscOffset)
    }

    // MARK: The formula

    /// ((tsc * scale) >> 64) + offset: the high half of the 128-bit product plus the offset,
    /// wrapping like the guest's u64 arithmetic.
    @inlinable
    public static func referenceTime(tsc: UInt64, scale: UInt64, offset: Int64) -> UInt64 {
        tsc.multipliedFullWidth(by: scale).high &+ UInt64(bitPattern: offset)
    }

    /// TscScale = floor(2^64 * 10^7 / tscHz), so that (TSC * scale) >> 64 counts 100 ns.
    ///
    /// Computed as the 128-bit value (10^7 << 64) divided by `tscHz` without overflow. The
    /// quotient fits in 64 bits only if tscHz > 10^7 (a TSC faster than 10 MHz, i.e. every real
    /// one); otherwise there is no valid scale and the result is nil: the page cannot describe
    /// that clock and the guest must use the TIME_REF_COUNT MSR.
    public static func scale(tscFrequencyHz hz: UInt64) -> UInt64? {
        guard hz > referenceTicksPerSecond else { return nil }
        return hz.dividingFullWidth((high: referenceTicksPerSecond, low: 0)).quotient
    }

    /// The offset that makes reference time 0 at guest TSC `tsc`:
    /// -((tsc * scale) >> 64), so referenceTime(tsc) == 0.
    public static func offset(zeroAtTSC tsc: UInt64, scale: UInt64) -> Int64 {
        Int64(bitPattern: 0 &- tsc.multipliedFullWidth(by: scale).high)
    }

    // MARK: Sequence numbers

    public static func isValidSequence(_ s: UInt32) -> Bool {
        s != invalidSequence && s != legacyInvalidSequence
    }

    /// The TscSequence in the first 4 bytes of `bytes`; nil if there are fewer.
    public static func sequence(in bytes: [UInt8]) -> UInt32? {
        guard bytes.count >= 4 else { return nil }
        return UInt32(truncatingIfNeeded: loadLE(bytes, at: sequenceOffset, count: 4))
    }

    /// The sequence number after `s`, skipping both invalid values.
    public static func nextSequence(after s: UInt32) -> UInt32 {
        var n = s &+ 1
        while !isValidSequence(n) { n &+= 1 }
        return n
    }

    // MARK: Little-endian helpers

    static func loadLE(_ bytes: [UInt8], at offset: Int, count: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<count { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        return v
    }

    static func storeLE(_ value: UInt64, into bytes: inout [UInt8], at offset: Int, count: Int) {
        for i in 0..<count { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }
}
