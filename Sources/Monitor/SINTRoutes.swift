import CSynthVM
import Glibc
import KVM
import Partition
import Synchronization

/// SINT delivery without the monitor on the path: one eventfd per (VP, SINT), created with the
/// VM and handed to the workers that raise SINTs. While the guest has SINTx unmasked with a
/// valid vector and without AutoEOI, its eventfd is bound with KVM_IRQFD to a GSI whose route
/// is an MSI to the VP's APIC ID with the SINT's vector (fixed, edge), so raising it is one
/// eventfd write and KVM delivers it. Routes follow the guest's SINT writes (`sintChanged`).
///
/// - Masked SINTs (or vector < 16): no binding; a write to the eventfd is discarded when the SINT
///   is next bound ("masked SINTs deliver nothing"; KVM would otherwise inject a stale count at
///   KVM_IRQFD time).
/// - AutoEOI SINTs: the in-kernel LAPIC has no AutoEOI, so the eventfd is watched by
///   `AutoEOIRelay` instead, which has the target vCPU inject the vector itself without the
///   LAPIC (see AutoEOIRelay.swift). Guests that never set AutoEOI (Linux follows the
///   "deprecate AutoEOI" hint) never start the relay and pay nothing.
///
/// GSI numbering: 24 + vp * 16 + sint (GSIs 0-23 belong to the IOAPIC and PICs).
final class SINTRoutes: PartitionSynICInterrupts, @unchecked Sendable {
    struct Binding: Equatable {
        var vector: UInt8
        var autoEOI: Bool
    }

    private let vm: KVMVirtualMachine
    let vpCount: Int
    private let fallback: MSIInterrupts
    /// eventFDs[vp * 16 + sint], alive as long as the VM: workers hold duplicates.
    let eventFDs: [Int32]
    /// The current binding per eventfd. Protected: SINT writes come from every vCPU thread.
    private let bindings: Mutex<[Binding?]>
    let autoEOI: AutoEOIRelay

    init(vm: KVMVirtualMachine, vpCount: Int, control: VMControl) throws(MonitorError) {
        self.vm = vm
        self.vpCount = vpCount
        fallback = MSIInterrupts(vm: vm, vpCount: vpCount)
        var fds: [Int32] = []
        for _ in 0..<(vpCount * 16) {
            let fd = svm_eventfd_nonblocking()
            if fd < 0 {
                fds.forEach { close($0) }
                throw .config("eventfd for a SINT: \(String(cString: strerror(-fd)))")
            }
            fds.append(fd)
        }
        eventFDs = fds
        bindings = Mutex([Binding?](repeating: nil, count: fds.count))
        do { autoEOI = try AutoEOIRelay(vpCount: vpCount, kick: { control.kick(vcpu: $0) }) } catch {
            fds.forEach { close($0) }
            throw error
        }
    }

    deinit {
        autoEOI.stop()
        eventFDs.forEach { close($0) }
    }

    static func gsi(index: Int) -> UInt32 { KVMVirtualMachine.firstMSIGSI + UInt32(index) }

    func raiseSINT(vp: UInt32, sint: Int, vector: UInt8, autoEOI: Bool) {
        let i = Int(vp) * 16 + sint
        guard Int(vp) < vpCount, (0..<16).contains(sint) else { return }
        if bindings.withLock({ $0[i] }) != nil {
            var one: UInt64 = 1
            if Glibc.write(eventFDs[i], &one, 8) == 8 { return }
        }
        // No binding although the partition saw the SINT unmasked (a route update failed):
        // deliver directly rather than lose it.
        fallback.sendFixedInterrupt(vp: vp, vector: vector)
    }

    func sintChanged(vp: UInt32, sint: Int, value: UInt64) {
        guard Int(vp) < vpCount, (0..<16).contains(sint) else { return }
        let i = Int(vp) * 16 + sint
        let vector = UInt8(truncatingIfNeeded: value)
        let wanted: Binding? = value & (1 << 16) != 0 || vector < 16
            ? nil : Binding(vector: vector, autoEOI: value & (1 << 17) != 0)
        bindings.withLock { b in
            let old = b[i]
            if old == wanted { return }
            if let o = old {
                if o.autoEOI {
                    autoEOI.unwatch(fd: eventFDs[i])
                } else {
                    try? vm.irqfd(eventFD: eventFDs[i], gsi: Self.gsi(index: i), deassign: true)
                }
            }
            b[i] = wanted
            // Raises while unbound are discarded, not delivered late.
            var v: UInt64 = 0
            _ = Glibc.read(eventFDs[i], &v, 8)
            guard let w = wanted else { return }
            if w.autoEOI {
                autoEOI.watch(fd: eventFDs[i], vp: Int(vp), vector: w.vector)
                return
            }
            let table = b.enumerated().compactMap { j, binding -> KVMVirtualMachine.MSIRoute? in
                guard let binding, !binding.autoEOI else { return nil }
                return KVMVirtualMachine.MSIRoute(gsi: Self.gsi(index: j), address: 0xFEE0_0000 | (UInt64(j / 16) << 12),
                                                  data: UInt32(binding.vector))
            }
            do {
                try vm.setGSIRouting(table)
                try vm.irqfd(eventFD: eventFDs[i], gsi: Self.gsi(index: i))
            } catch {
                // raiseSINT falls back to KVM_SIGNAL_MSI; workers' raises for this SINT are lost,
                // which the log says.
                b[i] = nil
                let line = "synthvm: cannot route SINT\(sint) of VP \(vp) to vector \(vector): \(error)\n"
                _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
            }
        }
    }
}
