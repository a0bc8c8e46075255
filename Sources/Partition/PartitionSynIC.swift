import HyperV

/// The SynIC and synthetic timers as the rest of SynthVM sees them: the MSRs (reached through
/// `readMSR`/`writeMSR` when `synic`/`stimer` are enabled), message posting and event signalling
/// for the message router and devices, and the host-timer callback.
///
/// | MSR | read | write |
/// |---|---|---|
/// | SCONTROL | as stored (reset 0) | stored whole (63:1 RsvdP); setting Enable rescans the queues (the router's too) |
/// | SVERSION | 1 | #GP (TLFS) |
/// | SIEFP, SIMP | as stored (reset 0) | stored whole (11:1 RsvdP). Enable with a page that is not entirely RAM: #GP. Enabling, or moving an enabled page, zeroes the page (KVM zeroes on every enabling write; SynthVM not on a rewrite of the same enabled value, which would throw away a delivered message). Enabling SIMP rescans the queues |
/// | EOM | 0 (TLFS, KVM) | any value: rescan all 16 queues of this VP (KVM ignores the value; Linux writes 0) |
/// | SINT0-15 | as stored (reset 0x10000) | vector < 16 while not masked: #GP (KVM; the TLFS #GPs any invalid vector, but nested Hyper-V writes 0x10000, vector 0 masked); otherwise stored whole (RsvdP 15:8 and 63:19 kept; Polling stored, honoured only with `synic-polling`); route change reported |
/// | STIMERn_CONFIG | as stored | RsvdZ bits 15:13 or 63:20 set: #GP. DirectMode without `stimer-direct`: #GP (KVM with enforced CPUID). Otherwise stop, store, arm (`SyntheticTimer`) |
/// | STIMERn_COUNT | as stored | any value: stop, store, 0 disables, AutoEnable enables, arm |
///
/// All of them #GP without their privilege (AccessSynicRegs, AccessSyntheticTimerRegs), like
/// every other synthetic MSR.
extension Partition {
    // MARK: Message and event delivery

    /// Posts `message` to SINTx (0...15) of VP `vp`: the way in for host-to-guest messages (the
    /// message router, test devices). Returns
    /// - HV_STATUS_SUCCESS: the message is in the slot, or queued behind a busy one (the
    ///   occupant then has MessagePending set);
    /// - HV_STATUS_INSUFFICIENT_BUFFERS: `configuration.synicQueueDepth` messages already wait;
    ///   the poster should retry later (Linux's own HvPostMessage loop does the same);
    /// - HV_STATUS_INVALID_SYNIC_STATE: the VP's SCONTROL or SIMP is disabled;
    /// - HV_STATUS_INVALID_VP_INDEX: no such VP;
    /// - HV_STATUS_INVALID_PARAMETER: SINT out of range, MessageType None, payload over 240 bytes.
    /// The poster's `flags` are replaced by the SynIC's own MessagePending.
    public func postMessage(_ message: HvMessage, vp: UInt32, sint: Int) -> HvStatus {
        guard Int(vp) < synic.count else { return .invalidVPIndex }
        guard (0..<HvSynIC.sintCount).contains(sint), message.isDeliverable else { return .invalidParameter }
        let capacity = max(configuration.synicQueueDepth, 0)
        return withSynIC(vp: vp) { s, env, effects in
            s.post(message, sint: sint, capacity: capacity, env, &effects)
        }
    }

    /// Sets event flag `flag` (0...2047) of SINTx (0...15) in VP `vp`'s SIEF page, raising SINTx
    /// only if the flag was clear. Returns HV_STATUS_SUCCESS (also when the flag was already
    /// set), HV_STATUS_INVALID_SYNIC_STATE (SCONTROL or SIEFP disabled, or SINTx masked and not
    /// polling), HV_STATUS_INVALID_VP_INDEX, or HV_STATUS_INVALID_PARAMETER (SINT or flag out of
    /// range).
    public func signalEvent(vp: UInt32, sint: Int, flag: Int) -> HvStatus {
        guard Int(vp) < synic.count else { return .invalidVPIndex }
        guard (0..<HvSynIC.sintCount).contains(sint), (0..<HvEventFlagsPage.flagsPerSint).contains(flag) else {
            return .invalidParameter
        }
        return withSynIC(vp: vp) { s, env, effects in s.signalEvent(sint: sint, flag: flag, env, &effects) }
    }

    // MARK: Synthetic timers

    /// The host timer armed through `PartitionTimers` for VP `vp` fired (or the monitor just
    /// wants timers checked): expires every timer of that VP whose deadline has passed, delivers
    /// what it can, and re-arms the host timer for the next deadline. A call before any deadline
    /// only re-arms. Unknown VPs are ignored.
    public func serviceSyntheticTimers(vp: UInt32) {
        guard Int(vp) < synic.count else { return }
        withSynIC(vp: vp) { s, env, effects in s.serviceTimers(env, &effects) }
    }

    /// Host nanoseconds from now until partition reference time reaches `referenceTime` (0 if it
    /// already has): what a `PartitionTimers` implementation hands to a relative timerfd.
    public func nanosecondsUntil(referenceTime: UInt64) -> UInt64 {
        let now = self.referenceTime()
        guard referenceTime > now else { return 0 }
        let (ns, overflow) = (referenceTime - now).multipliedReportingOverflow(by: 100)
        return overflow ? .max : ns
    }

    /// A copy of VP `vp`'s SynIC registers, queue depths and timers; nil for an unknown VP.
    public func synicSnapshot(vp: UInt32) -> SynICSnapshot? {
        guard Int(vp) < synic.count else { return nil }
        return synic[Int(vp)].state.withLock { $0.snapshot }
    }

    // MARK: MSRs

    func readSynICMSR(vp: UInt32, index: UInt32) -> MSRResult {
        synic[Int(vp)].state.withLock { s in
            switch index {
            case HvMSR.scontrol: .value(s.scontrol)
            case HvMSR.sversion: .value(HvSynIC.version)
            case HvMSR.siefp: .value(s.siefp)
            case HvMSR.simp: .value(s.simp)
            case HvMSR.eom: .value(0)
            default: .value(s.sints[Int(index - HvMSR.sint0)])
            }
        }
    }

    func writeSynICMSR(vp: UInt32, index: UInt32, value: UInt64) -> MSRResult {
        switch index {
        case HvMSR.sversion:
            return .generalProtection
        case HvMSR.scontrol:
            return withSynIC(vp: vp) { s, env, effects in
                s.scontrol = value
                env.shared.publish(vp: vp, registers: s.registers)
                s.rescanAll(env, &effects)
                // Enabling the SynIC may let the router's queued messages in, as enabling SIMP
                // does: without this they waited for an EOM the guest had no reason to write
                // (Linux enables SCONTROL last).
                if value & HvMSR.SControl.enable != 0 { synicShared.endOfMessage(vp: vp) }
                return .written
            }
        case HvMSR.simp, HvMSR.siefp:
            return writeSynICPage(vp: vp, index: index, value: value)
        case HvMSR.eom:
            withSynIC(vp: vp) { s, env, effects in s.rescanAll(env, &effects) }
            // The message router's queues too (it writes the slots of everything but timers).
            synicShared.endOfMessage(vp: vp)
            return .written
        default:
            let sint = Int(index - HvMSR.sint0)
            if HvMSR.Sint.vector(value) < HvSynIC.firstValidVector && value & HvMSR.Sint.masked == 0 {
                return .generalProtection
            }
            synic[Int(vp)].state.withLock { s in
                s.sints[sint] = value
                synicShared.publish(vp: vp, registers: s.registers)
            }
            synicInterrupts.sintChanged(vp: vp, sint: sint, value: value)
            return .written
        }
    }

    /// SIMP or SIEFP: see the table in this extension's documentation.
    func writeSynICPage(vp: UInt32, index: UInt32, value: UInt64) -> MSRResult {
        let memory = self.memory
        return withSynIC(vp: vp) { s, env, effects in
            let old = index == HvMSR.simp ? s.simp : s.siefp
            let page = value & HvMSR.SynICPage.pageAddressMask
            if value & HvMSR.SynICPage.enable != 0 {
                let size = UInt64(HvMessagePage.size)
                guard memory.contains(gpa: page, length: size) else { return .generalProtection }
                let wasHere = old & HvMSR.SynICPage.enable != 0 && old & HvMSR.SynICPage.pageAddressMask == page
                if !wasHere {
                    guard memory.write(gpa: page, bytes: [UInt8](repeating: 0, count: HvMessagePage.size)) else {
                        return .generalProtection
                    }
                }
            }
            if index == HvMSR.simp {
                s.simp = value
                env.shared.publish(vp: vp, registers: s.registers)
                s.rescanAll(env, &effects)
            } else {
                s.siefp = value
                env.shared.publish(vp: vp, registers: s.registers)
            }
            // Enabling the page may let the router's queued messages in.
            if value & HvMSR.SynICPage.enable != 0 && index == HvMSR.simp { synicShared.endOfMessage(vp: vp) }
            return .written
        }
    }

    func readSyntheticTimerMSR(vp: UInt32, index: UInt32) -> MSRResult {
        let (n, isCount) = Self.timerRegister(index)
        return synic[Int(vp)].state.withLock { s in .value(isCount ? s.timers[n].count : s.timers[n].config) }
    }

    func writeSyntheticTimerMSR(vp: UInt32, index: UInt32, value: UInt64) -> MSRResult {
        let (n, isCount) = Self.timerRegister(index)
        if !isCount {
            if value & HvMSR.STimerConfig.reservedZ != 0 { return .generalProtection }
            let direct = configuration.enlightenments.featuresEDX & HvFeatureEDX.directSyntheticTimers != 0
            if value & HvMSR.STimerConfig.directMode != 0 && !direct { return .generalProtection }
        }
        return withSynIC(vp: vp) { s, env, effects in
            if isCount {
                s.writeTimerCount(n, value, env, &effects)
            } else {
                s.writeTimerConfig(n, value, env, &effects)
            }
            return .written
        }
    }

    /// STIMERn_CONFIG is at 0x400000B0 + 2n, STIMERn_COUNT right after it.
    static func timerRegister(_ index: UInt32) -> (timer: Int, isCount: Bool) {
        let offset = Int(index - HvMSR.stimer0Config)
        return (offset / 2, offset % 2 == 1)
    }

    // MARK: Plumbing

    /// Feature EDX bit 17 is advertised: SINTx bit 18 means polling mode.
    public var sintPollingAvailable: Bool {
        configuration.enlightenments.featuresEDX & HvFeatureEDX.sintPollingMode != 0
    }

    func synicEnvironment(vp: UInt32) -> SynICEnvironment {
        SynICEnvironment(vp: vp, memory: memory, shared: synicShared, pollingAvailable: sintPollingAvailable,
                         now: { [unowned self] in self.referenceTime() })
    }

    /// Runs `body` on VP `vp`'s SynIC under its lock; re-arms the host timer (still under the
    /// lock, so arms for one VP are never reordered) if the earliest deadline changed; then,
    /// with the lock released, raises the interrupts `body` asked for, in order.
    @discardableResult
    func withSynIC<R: Sendable>(vp: UInt32,
                                _ body: (inout SynICVPState, SynICEnvironment, inout [SynICEffect]) -> R) -> R {
        let env = synicEnvironment(vp: vp)
        let timers = self.timers
        var effects: [SynICEffect] = []
        let result = synic[Int(vp)].state.withLock { s in
            let r = body(&s, env, &effects)
            let next = s.nextTimerDeadline
            if next != s.hostTimer {
                s.hostTimer = next
                timers.armTimer(vp: vp, atReferenceTime: next)
            }
            return r
        }
        for effect in effects {
            switch effect {
            case .sint(let sint, let vector, let autoEOI):
                synicInterrupts.raiseSINT(vp: vp, sint: sint, vector: vector, autoEOI: autoEOI)
            case .interrupt(let vector):
                interrupts.sendFixedInterrupt(vp: vp, vector: vector)
            }
        }
        return result
    }

    /// `reset()`'s part: every VP's SynIC back to its reset state.
    func resetSynIC() {
        let timers = self.timers
        for vp in synic.indices {
            let oldSints = synic[vp].state.withLock { s in
                let old = s.sints
                if s.hostTimer != nil { timers.armTimer(vp: UInt32(vp), atReferenceTime: nil) }
                s = SynICVPState()
                synicShared.publish(vp: UInt32(vp), registers: s.registers)
                return old
            }
            for (sint, value) in oldSints.enumerated() where value != HvMSR.Sint.resetValue {
                synicInterrupts.sintChanged(vp: UInt32(vp), sint: sint, value: HvMSR.Sint.resetValue)
            }
        }
    }
}
