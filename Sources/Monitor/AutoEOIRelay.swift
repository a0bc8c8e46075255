import CSynthVM
import Glibc
import KVM
import Sandbox
import Synchronization

/// AutoEOI for SINTs (SINTx bit 17) on KVM's in-kernel LAPIC, which has no such mode.
///
/// With AutoEOI the hypervisor EOIs the interrupt when the guest accepts it, and the guest's
/// handler does not write EOI. Delivered through the LAPIC as a fixed interrupt, the vector
/// would stay in service (ISR) forever and block every interrupt of its priority class and
/// below. User space cannot EOI on the guest's behalf race-free (KVM_SET_LAPIC rewrites IRR
/// and would lose interrupts that arrive meanwhile; the x2APIC EOI MSR is only writable in
/// x2APIC mode and EOIs the highest ISR bit, not ours).
///
/// So AutoEOI vectors bypass the LAPIC: the SINT's eventfd is not bound to an irqfd but watched
/// by this relay's thread. A raise (from the monitor or any worker: the same eventfd write) marks
/// the vector pending for the VP and kicks the vCPU out of KVM_RUN; at its next exit the vCPU
/// thread injects the vector as an external interrupt with KVM_SET_VCPU_EVENTS
/// (`AutoEOIInjection`) — which never sets ISR, so there is nothing to EOI, exactly AutoEOI's
/// architectural effect. It injects only when the guest can take an interrupt now: RFLAGS.IF
/// set, no interrupt shadow, no event already being injected, and the vector's priority class
/// above the LAPIC's processor priority (TPR and in-service vectors), as the LAPIC itself would
/// require. Otherwise the vector stays pending and the relay kicks again after
/// `retryNanoseconds`. The thread exists from VM start (vCPU threads may not create threads),
/// idle in poll() until a guest sets AutoEOI.
///
/// Limits (docs/hyperv.md): each AutoEOI interrupt costs a relay wake-up, a kick and an exit
/// (tens of microseconds here instead of an in-kernel delivery); while the guest keeps
/// interrupts disabled the vector waits for the next retry (1 ms), so latency under IF=0 is
/// bounded by the retry period, not by the guest's next STI; one vector is injected per exit,
/// several pending vectors go highest first. Guests that do not set AutoEOI pay one relaxed load
/// per exit and an idle thread.
final class AutoEOIRelay: @unchecked Sendable {
    static let retryNanoseconds: Int64 = 1_000_000

    private struct Watch {
        var vp: Int
        var vector: UInt8
    }

    private let vpCount: Int
    private let kick: @Sendable (Int) -> Void
    /// Per VP, 256 bits of pending vectors.
    private let pending: Mutex<[[UInt64]]>
    /// Bit n: VP n has something pending (the vCPU's exit loop reads this on every exit, so it
    /// is one load; SynthVM runs at most 64 vCPUs).
    private let anyPending = Atomic<UInt64>(0)
    private let watches = Mutex<[Int32: Watch]>([:])
    private let service: ServiceThread
    /// Injections done (tests and --stats).
    let injected = Atomic<Int>(0)

    init(vpCount: Int, kick: @escaping @Sendable (Int) -> Void) throws(MonitorError) {
        self.vpCount = vpCount
        self.kick = kick
        pending = Mutex(Array(repeating: [0, 0, 0, 0], count: vpCount))
        service = try ServiceThread()
    }

    /// Starts the relay's thread (under the vmm filter) before any vCPU runs: vCPU threads may
    /// not create threads. Until a guest sets AutoEOI it sleeps in poll() on one eventfd.
    func start(filter: ThreadFilter) throws(MonitorError) {
        try service.start(name: "synthvm-autoeoi", filter: filter) { [self] in loop() }
    }

    /// SINT eventfd `fd` now has AutoEOI with `vector` on VP `vp`.
    func watch(fd: Int32, vp: Int, vector: UInt8) {
        watches.withLock { $0[fd] = Watch(vp: vp, vector: vector) }
        service.wake()
    }

    func unwatch(fd: Int32) {
        watches.withLock { $0[fd] = nil }
        service.wake()
    }

    func stop() { service.stop() }

    /// True when VP `vp` has AutoEOI vectors to inject (one relaxed load).
    @inline(__always)
    func hasPending(vp: Int) -> Bool { vp < vpCount && anyPending.load(ordering: .relaxed) & (1 << UInt64(vp)) != 0 }

    /// The vCPU thread of `vp`: the highest pending vector `canInject` accepts, taken off the
    /// pending set; nil if none.
    func take(vp: Int, canInject: (UInt8) -> Bool) -> UInt8? {
        pending.withLock { p -> UInt8? in
            for word in stride(from: 3, through: 0, by: -1) where p[vp][word] != 0 {
                let bit = 63 - p[vp][word].leadingZeroBitCount
                let vector = UInt8(word * 64 + bit)
                guard canInject(vector) else { return nil }
                p[vp][word] &= ~(1 << UInt64(bit))
                if !p[vp].contains(where: { $0 != 0 }) {
                    anyPending.bitwiseAnd(~(1 << UInt64(vp)), ordering: .relaxed)
                }
                return vector
            }
            return nil
        }
    }

    private func mark(vp: Int, vector: UInt8) {
        pending.withLock { p in
            p[vp][Int(vector) / 64] |= 1 << UInt64(vector % 64)
            anyPending.bitwiseOr(1 << UInt64(vp), ordering: .relaxed)
        }
    }

    private func loop() {
        while !service.isStopping {
            let current = watches.withLock { $0 }
            var fds = [pollfd(fd: service.wakeFD, events: Int16(POLLIN), revents: 0)]
            var order: [Watch] = []
            for (fd, w) in current {
                fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
                order.append(w)
            }
            let waiting = (0..<vpCount).filter { hasPending(vp: $0) }
            _ = svm_poll_ns(&fds, nfds_t(fds.count), waiting.isEmpty ? -1 : Self.retryNanoseconds)
            var v: UInt64 = 0
            if fds[0].revents != 0 { service.drain() }
            var kicks = Set(waiting)
            for (i, w) in order.enumerated() where fds[i + 1].revents & Int16(POLLIN) != 0 {
                if Glibc.read(fds[i + 1].fd, &v, 8) == 8 {
                    mark(vp: w.vp, vector: w.vector)
                    kicks.insert(w.vp)
                }
            }
            for vp in kicks where hasPending(vp: vp) { kick(vp) }
        }
    }
}

/// The vCPU thread's half of AutoEOI: inject a pending vector as an external interrupt with
/// KVM_SET_VCPU_EVENTS when the guest can take it now (see `AutoEOIRelay`).
enum AutoEOIInjection {
    /// Tries once; returns the injected vector, if any.
    static func inject(vcpu: KVMVCPU, vp: Int, relay: AutoEOIRelay) -> UInt8? {
        guard var events = try? vcpu.getVCPUEvents(),
              events.exception.injected == 0, events.interrupt.injected == 0, events.nmi.injected == 0,
              events.interrupt.shadow == 0,
              let regs = try? vcpu.getRegs(), regs.rflags & 0x200 != 0,
              let lapic = try? vcpu.getLAPIC()
        else { return nil }
        let priority = processorPriorityClass(lapic)
        guard let vector = relay.take(vp: vp, canInject: { $0 >> 4 > priority }) else { return nil }
        events.interrupt.injected = 1
        events.interrupt.nr = vector
        events.interrupt.soft = 0
        events.flags = 0
        do {
            try vcpu.setVCPUEvents(events)
            if try vcpu.getMPState() == KVMMPState.halted { try vcpu.setMPState(KVMMPState.runnable) }
        } catch {
            return nil
        }
        relay.injected.add(1, ordering: .relaxed)
        return vector
    }

    /// The LAPIC's processor-priority class: max(TPR class, class of the highest in-service
    /// vector) (Intel SDM 10.8.3.1; AMD APM 16.6.2).
    static func processorPriorityClass(_ lapic: kvm_lapic_state) -> UInt8 {
        withUnsafeBytes(of: lapic.regs) { r in
            let tpr = r.loadUnaligned(fromByteOffset: 0x80, as: UInt32.self) & 0xFF
            var isr: UInt32 = 0
            for word in stride(from: 7, through: 0, by: -1) {
                let bits = r.loadUnaligned(fromByteOffset: 0x100 + word * 0x10, as: UInt32.self)
                if bits != 0 {
                    isr = UInt32(word * 32 + 31 - bits.leadingZeroBitCount)
                    break
                }
            }
            return UInt8(max(tpr >> 4, isr >> 4))
        }
    }
}
