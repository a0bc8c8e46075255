import HyperV

/// RDMSR/WRMSR of the synthetic MSRs (0x40000000...0x400001FF), as the monitor's MSR exits
/// deliver them. Semantics follow the TLFS, cross-checked against KVM arch/x86/kvm/hyperv.c and
/// its selftests (hyperv_features.c, hyperv_clock.c); where they differ, the doc comment of the
/// handler says which one SynthVM follows and why.
extension Partition {
    /// The outcome of one synthetic MSR access.
    public enum MSRResult: Equatable, Sendable {
        /// RDMSR succeeded with this value.
        case value(UInt64)
        /// WRMSR succeeded.
        case written
        /// Inject #GP: the MSR is not advertised, not implemented, read-only, or the value is
        /// not acceptable.
        case generalProtection
    }

    /// RDMSR `index` on VP `vp`.
    public func readMSR(vp: UInt32, index: UInt32) -> MSRResult {
        guard isAccessible(vp: vp, index: index) else { return .generalProtection }
        switch index {
        case HvMSR.guestOsId:
            return .value(state.withLock { $0.guestOsId })
        case HvMSR.hypercall:
            return .value(state.withLock { $0.hypercall })
        case HvMSR.vpIndex:
            return .value(UInt64(vp))
        case HvMSR.reset:
            // KVM returns 0 and its selftest expects a read to succeed.
            return .value(0)
        case HvMSR.vpRuntime:
            return .value(clock.vpRuntimeNanoseconds(vp: vp) / 100)
        case HvMSR.timeRefCount:
            return .value(referenceTime())
        case HvMSR.referenceTsc:
            return .value(state.withLock { $0.referenceTsc })
        case HvMSR.tscFrequency:
            return .value(clock.tscFrequencyHz)
        case HvMSR.apicFrequency:
            return .value(configuration.apicFrequencyHz)
        case HvMSR.vpAssistPage:
            return .value(state.withLock { $0.vpAssistPage[Int(vp)] })
        case HvMSR.crashParameters:
            let i = Int(index - HvMSR.crashP0)
            return .value(state.withLock { $0.crashParameters[i] })
        case HvMSR.crashCtl:
            // A read returns what the partition supports (TLFS "Partition Crash Enlightenment").
            return .value(HvMSR.CrashCtl.crashNotify | HvMSR.CrashCtl.crashMessage)
        case HvMSR.scontrol, HvMSR.sversion, HvMSR.siefp, HvMSR.simp, HvMSR.eom, HvMSR.sints:
            return readSynICMSR(vp: vp, index: index)
        case HvMSR.stimers:
            return readSyntheticTimerMSR(vp: vp, index: index)
        default:
            return .generalProtection
        }
    }

    /// WRMSR `index` = `value` on VP `vp`. Every guest-visible effect (the hypercall page, the
    /// TSC page) is in guest memory before this returns, so the guest can use it right after its
    /// WRMSR retires.
    public func writeMSR(vp: UInt32, index: UInt32, value: UInt64) -> MSRResult {
        guard isAccessible(vp: vp, index: index) else { return .generalProtection }
        switch index {
        case HvMSR.guestOsId:
            writeGuestOsId(value)
            return .written
        case HvMSR.hypercall:
            return writeHypercall(value)
        case HvMSR.reset:
            // Bit 0 asks for a reset; KVM compares the whole value with 1, the TLFS defines only
            // bit 0, so the other (reserved) bits are ignored rather than cancelling the reset.
            if value & HvMSR.Reset.reset != 0 { events.resetRequested(vp: vp) }
            return .written
        case HvMSR.referenceTsc:
            return writeReferenceTsc(value)
        case HvMSR.vpAssistPage:
            return writeVpAssistPage(vp: vp, value: value)
        case HvMSR.crashParameters:
            let i = Int(index - HvMSR.crashP0)
            state.withLock { $0.crashParameters[i] = value }
            return .written
        case HvMSR.crashCtl:
            writeCrashCtl(vp: vp, value: value)
            return .written
        case HvMSR.scontrol, HvMSR.sversion, HvMSR.siefp, HvMSR.simp, HvMSR.eom, HvMSR.sints:
            return writeSynICMSR(vp: vp, index: index, value: value)
        case HvMSR.stimers:
            return writeSyntheticTimerMSR(vp: vp, index: index, value: value)
        default:
            // VP_INDEX, VP_RUNTIME, TIME_REF_COUNT, TSC_FREQUENCY, APIC_FREQUENCY are read-only
            // (TLFS; KVM accepts only host-initiated writes), and everything else is not
            // implemented.
            return .generalProtection
        }
    }

    /// Off partitions, unknown VPs, MSRs outside the synthetic block, unimplemented MSRs and MSRs
    /// whose privilege is not advertised all #GP, in both directions.
    func isAccessible(vp: UInt32, index: UInt32) -> Bool {
        guard Int(vp) < configuration.vpCount, HvMSR.isSynthetic(index) else { return false }
        return SyntheticMSRAccess.of(index).allows(configuration.enlightenments)
    }

    // MARK: GUEST_OS_ID and HYPERCALL

    /// Any value is stored. Writing 0 disables the hypercall interface (TLFS): HYPERCALL.Enable is
    /// cleared, as KVM does, unless HYPERCALL is Locked, which makes that MSR immutable; then the
    /// interface is still off (`hypercallInterfaceEnabled` needs a non-zero GUEST_OS_ID) and comes
    /// back, at the locked page, when the guest identifies itself again.
    func writeGuestOsId(_ value: UInt64) {
        state.withLock { s in
            s.guestOsId = value
            if value == 0 && s.hypercall & HvMSR.Hypercall.locked == 0 {
                s.hypercall &= ~HvMSR.Hypercall.enable
            }
        }
    }

    /// TLFS "Establishing the Hypercall Interface":
    /// - Locked (bit 1): once set, every further write #GPs until reset. (KVM does not implement
    ///   the lock; SynthVM does, without advertising HypercallMsrLock, EDX bit 18.)
    /// - RsvdP bits 11:2 never fault and are stored as written, so a guest that preserves them by
    ///   read-modify-write gets back what it wrote (KVM stores the whole value too).
    /// - With GUEST_OS_ID == 0 "the enable bit will remain zero even if a one is written"; the
    ///   rest of the value is stored (KVM drops the whole write instead).
    /// - On enable, the page must be entirely guest RAM, else #GP ("a #GP fault will result"
    ///   outside the GPA space); it is filled with `HypercallStubPage` before the write returns.
    ///   KVM writes only its 4-byte stub and does not check the GPA beyond the write failing.
    func writeHypercall(_ value: UInt64) -> MSRResult {
        let port = configuration.hypercallPort
        return state.withLock { s in
            if s.hypercall & HvMSR.Hypercall.locked != 0 { return .generalProtection }
            var accepted = value
            if s.guestOsId == 0 { accepted &= ~HvMSR.Hypercall.enable }
            if accepted & HvMSR.Hypercall.enable != 0 {
                let gpa = accepted & HvMSR.Hypercall.pageAddressMask
                guard memory.contains(gpa: gpa, length: UInt64(HypercallStubPage.size)),
                      memory.write(gpa: gpa, bytes: HypercallStubPage.contents(port: port))
                else { return .generalProtection }
            }
            s.hypercall = accepted
            return .written
        }
    }

    // MARK: REFERENCE_TSC

    /// TLFS "Partition Reference TSC Mechanism". The value (RsvdP bits included) is stored. On
    /// enable the page is published before the write returns, in the order KVM uses so that a
    /// VP reading the page meanwhile never mixes old and new parameters: sequence 0 first, then
    /// scale, offset and the zeroed reserved area, then the new sequence. The new sequence is
    /// never 0 or 0xFFFFFFFF and differs from the last one published and from what the page held,
    /// so a re-enable always looks like a change.
    ///
    /// A page that is not entirely guest RAM #GPs (KVM accepts the write and marks its page
    /// broken; a #GP tells the guest at once). Disabling touches no memory.
    func writeReferenceTsc(_ value: UInt64) -> MSRResult {
        let clockParameters = referenceClock
        return state.withLock { s in
            if value & HvMSR.ReferenceTsc.enable != 0 {
                let gpa = value & HvMSR.ReferenceTsc.pageAddressMask
                let size = HvReferenceTSCPage.size
                guard memory.contains(gpa: gpa, length: UInt64(size)) else { return .generalProtection }
                let previous = memory.read(gpa: gpa, count: 4).flatMap { HvReferenceTSCPage.sequence(in: $0) }
                var sequence = HvReferenceTSCPage.nextSequence(after: s.tscSequence)
                if sequence == previous { sequence = HvReferenceTSCPage.nextSequence(after: sequence) }
                let page = clockParameters.page(sequence: sequence)
                let bytes = page.encoded()
                let invalid = [UInt8](repeating: 0, count: 4)
                guard memory.write(gpa: gpa, bytes: invalid),
                      memory.write(gpa: gpa + 4, bytes: Array(bytes[4...])),
                      memory.write(gpa: gpa, bytes: Array(bytes[0..<4]))
                else { return .generalProtection }
                if page.isValid { s.tscSequence = sequence }
            }
            s.referenceTsc = value
            return .written
        }
    }

    // MARK: VP_ASSIST_PAGE

    /// Stored per VP (see `SyntheticMSRAccess.of` for why it is accepted without its privilege).
    /// Enabling a page that is not guest RAM #GPs, as in KVM; SynthVM writes nothing into the
    /// page (KVM clears its first u32 for PV EOI, which SynthVM does not offer).
    func writeVpAssistPage(vp: UInt32, value: UInt64) -> MSRResult {
        if value & HvMSR.VpAssistPage.enable != 0 {
            let gpa = value & HvMSR.VpAssistPage.pageAddressMask
            guard memory.contains(gpa: gpa, length: 4096) else { return .generalProtection }
        }
        state.withLock { $0.vpAssistPage[Int(vp)] = value }
        return .written
    }

    // MARK: CRASH_CTL

    /// CrashNotify (bit 63) reports P0-P4; with CrashMessage (bit 62) also the message at GPA P3,
    /// P4 bytes long, cut to 4096 bytes. A message that is not readable guest RAM is reported as
    /// unreadable rather than faulting the guest, which is in the middle of panicking. Writes
    /// without CrashNotify, and the other bits, have no effect (nothing is stored: a read returns
    /// the capabilities). The event is raised after the lock is released.
    func writeCrashCtl(vp: UInt32, value: UInt64) {
        guard value & HvMSR.CrashCtl.crashNotify != 0 else { return }
        let parameters = state.withLock { $0.crashParameters }
        var message: [UInt8]?
        var unreadable = false
        if value & HvMSR.CrashCtl.crashMessage != 0 {
            let gpa = parameters[3]
            let length = min(parameters[4], UInt64(HvMSR.CrashCtl.maxMessageLength))
            let (_, overflows) = gpa.addingReportingOverflow(length)
            if !overflows, let bytes = memory.read(gpa: gpa, count: Int(length)) {
                message = bytes
            } else {
                unreadable = true
            }
        }
        events.guestCrashed(GuestCrashNotification(parameters: parameters, message: message,
                                                   messageUnreadable: unreadable, vp: vp))
    }
}
