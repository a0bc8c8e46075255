import CSynthVM
import Glibc
import KVM
import Partition
import Synchronization

/// SINT delivery without the monitor on the path: one KVM GSI route per (VP, SINT) — an MSI to
/// the VP's APIC ID with the SINT's vector, fixed and edge-triggered — bound to an eventfd with
/// KVM_IRQFD. Raising a SINT is one eventfd write, from the monitor or from a worker that was
/// handed the eventfd. Routes follow the guest's SINT writes (`sintChanged`); a masked SINT or
/// one with an invalid vector has no route.
///
/// GSI numbering: 24 + vp * 16 + sint (GSIs 0-23 belong to the IOAPIC and PICs).
final class SINTRoutes: PartitionSynICInterrupts, @unchecked Sendable {
    struct Route: Equatable {
        var vector: UInt8
        var eventFD: Int32
    }

    private let vm: KVMVirtualMachine
    private let vpCount: Int
    private let fallback: MSIInterrupts
    /// Keyed by GSI. Protected: SINT writes come from every vCPU thread.
    private let routes = Mutex<[UInt32: Route]>([:])

    init(vm: KVMVirtualMachine, vpCount: Int) {
        self.vm = vm
        self.vpCount = vpCount
        fallback = MSIInterrupts(vm: vm, vpCount: vpCount)
    }

    deinit {
        routes.withLock { r in
            for route in r.values { close(route.eventFD) }
        }
    }

    static func gsi(vp: UInt32, sint: Int) -> UInt32 { KVMVirtualMachine.firstMSIGSI + vp * 16 + UInt32(sint) }

    /// The eventfd that raises SINTx of VP `vp`, if it is routed (for handing to workers).
    func eventFD(vp: UInt32, sint: Int) -> Int32? {
        routes.withLock { $0[Self.gsi(vp: vp, sint: sint)]?.eventFD }
    }

    func raiseSINT(vp: UInt32, sint: Int, vector: UInt8, autoEOI: Bool) {
        if let fd = routes.withLock({ r -> Int32? in
            let route = r[Self.gsi(vp: vp, sint: sint)]
            return route?.vector == vector ? route?.eventFD : nil
        }) {
            var one: UInt64 = 1
            if Glibc.write(fd, &one, 8) == 8 { return }
        }
        // No route (e.g. the route update failed): deliver directly.
        fallback.sendFixedInterrupt(vp: vp, vector: vector)
    }

    func sintChanged(vp: UInt32, sint: Int, value: UInt64) {
        guard Int(vp) < vpCount, (0..<16).contains(sint) else { return }
        let masked = value & (1 << 16) != 0
        let vector = UInt8(truncatingIfNeeded: value)
        let gsi = Self.gsi(vp: vp, sint: sint)
        routes.withLock { r in
            let wanted: UInt8? = masked || vector < 16 ? nil : vector
            if r[gsi]?.vector == wanted { return }
            if let old = r[gsi] {
                try? vm.irqfd(eventFD: old.eventFD, gsi: gsi, deassign: true)
                close(old.eventFD)
                r[gsi] = nil
            }
            if let v = wanted {
                let fd = svm_eventfd_nonblocking()
                if fd >= 0 { r[gsi] = Route(vector: v, eventFD: fd) }
            }
            let table = r.map { KVMVirtualMachine.MSIRoute(
                gsi: $0.key, address: 0xFEE0_0000 | (UInt64(($0.key - KVMVirtualMachine.firstMSIGSI) / 16) << 12),
                data: UInt32($0.value.vector)) }
            do {
                try vm.setGSIRouting(table)
                if let route = r[gsi] { try vm.irqfd(eventFD: route.eventFD, gsi: gsi) }
            } catch {
                // Keep delivering through KVM_SIGNAL_MSI rather than losing interrupts.
                if let route = r[gsi] { close(route.eventFD) }
                r[gsi] = nil
            }
        }
    }
}
