import HyperV
import Partition
import Testing

/// `default` plus the SynIC and both timer features.
let synicEnlightenments = Enlightenments(features: Enlightenments.defaultFeatures.union([.synic, .stimer, .stimerDirect]))
/// The same with SINT polling mode advertised.
let pollingEnlightenments = Enlightenments(features: synicEnlightenments.features.union([.synicPolling]))

/// A partition whose guest TSC runs at 10 MHz, so that reference time is exactly the TSC ticks
/// since creation and a test can put reference time where it wants; plus guest-side helpers
/// (what a Linux-style SynIC driver does with its MSRs and pages).
struct SynICFixture {
    static let creationTSC: UInt64 = 1_000_000_000_000
    let env: FakePartitionEnvironment
    let p: Partition

    init(_ enlightenments: Enlightenments = synicEnlightenments, vpCount: Int = 2, queueDepth: Int = 16) {
        env = FakePartitionEnvironment(tscFrequencyHz: 10_000_000, tsc: Self.creationTSC)
        p = env.makePartition(enlightenments, vpCount: vpCount, synicQueueDepth: queueDepth)
    }

    // MARK: Time

    /// Reference time now (reads TIME_REF_COUNT's source without an MSR).
    var now: UInt64 { p.referenceTime() }

    /// Moves reference time forward to `t` (never back).
    func setTime(_ t: UInt64) {
        precondition(t >= now, "reference time only moves forward")
        env.clock.tsc = Self.creationTSC + t
    }

    func advance(_ d: UInt64) { setTime(now + d) }

    /// The host timer for `vp` fires at its deadline (or now, if that has passed); false when
    /// none is armed.
    @discardableResult
    func fireHostTimer(vp: UInt32 = 0, lateBy late: UInt64 = 0) -> Bool {
        guard let t = env.timers.armed(vp) else { return false }
        setTime(max(now, t + late))
        p.serviceSyntheticTimers(vp: vp)
        return true
    }

    // MARK: MSRs

    @discardableResult
    func wrmsr(_ index: UInt32, _ value: UInt64, vp: UInt32 = 0) -> Partition.MSRResult {
        p.writeMSR(vp: vp, index: index, value: value)
    }

    func rdmsr(_ index: UInt32, vp: UInt32 = 0) -> UInt64? {
        if case .value(let v) = p.readMSR(vp: vp, index: index) { return v }
        return nil
    }

    // MARK: Guest pages

    /// Where this fixture's guest puts VP `vp`'s SIM and SIEF pages.
    static func simp(_ vp: UInt32) -> UInt64 { 0x10000 + UInt64(vp) * 0x2000 }
    static func siefp(_ vp: UInt32) -> UInt64 { 0x11000 + UInt64(vp) * 0x2000 }

    /// What Linux's hv_synic_enable_regs does: SIMP, SIEFP, the SINTs, then SCONTROL.
    func enableSynIC(vp: UInt32 = 0, sints: [Int: UInt64] = [2: 0xF3]) {
        #expect(wrmsr(HvMSR.simp, Self.simp(vp) | 1, vp: vp) == .written)
        #expect(wrmsr(HvMSR.siefp, Self.siefp(vp) | 1, vp: vp) == .written)
        for (sint, value) in sints { #expect(wrmsr(HvMSR.sint(sint), value, vp: vp) == .written) }
        #expect(wrmsr(HvMSR.scontrol, 1, vp: vp) == .written)
    }

    func slotGPA(vp: UInt32, sint: Int) -> UInt64 { Self.simp(vp) + UInt64(sint * 256) }

    /// The raw 256-byte slot.
    func slot(vp: UInt32 = 0, sint: Int) -> [UInt8] { env.memory.bytes(at: slotGPA(vp: vp, sint: sint), count: 256) }

    /// The message in the slot, nil when the slot is empty.
    func message(vp: UInt32 = 0, sint: Int) -> HvMessage? {
        let m = HvMessage(decoding: slot(vp: vp, sint: sint))
        return m?.type == HvMessageType.none ? nil : m
    }

    func slotPending(vp: UInt32 = 0, sint: Int) -> Bool {
        slot(vp: vp, sint: sint)[5] & HvMessageFlags.pending != 0
    }

    /// Linux's vmbus_signal_eom: take the message, set the type to None, *then* read
    /// MessagePending and write EOM if it is set (in that order: a flag the SynIC sets after the
    /// guest read the message is still seen).
    @discardableResult
    func consume(vp: UInt32 = 0, sint: Int) -> HvMessage? {
        guard let m = message(vp: vp, sint: sint) else { return nil }
        env.memory.store32(0, at: slotGPA(vp: vp, sint: sint))
        if slotPending(vp: vp, sint: sint) { #expect(wrmsr(HvMSR.eom, 0, vp: vp) == .written) }
        return m
    }

    /// Event flag `flag` of SINTx in VP `vp`'s SIEF page.
    func flag(vp: UInt32 = 0, sint: Int, _ flag: Int) -> Bool {
        let byte = env.memory.bytes(at: Self.siefp(vp) + UInt64(sint * 256 + flag / 8), count: 1)[0]
        return byte & (1 << UInt8(flag % 8)) != 0
    }

    /// Posts `vmbus(tag)` and expects it accepted.
    func post(_ tag: UInt8, vp: UInt32 = 0, sint: Int) {
        #expect(p.postMessage(Self.vmbus(tag), vp: vp, sint: sint) == .success)
    }

    /// A VMBus-style message with a recognisable payload.
    static func vmbus(_ tag: UInt8, size: Int = 8) -> HvMessage {
        HvMessage(type: .vmbus, payload: (0..<size).map { tag &+ UInt8(truncatingIfNeeded: $0) })
    }

    var raised: [FakeSynICInterrupts.Raised] { env.sints.raised }
}
