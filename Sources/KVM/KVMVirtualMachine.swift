import CSynthVM
import Glibc

/// A VM fd: memory slots, the in-kernel irqchip and PIT, interrupts, capabilities, vCPUs.
public final class KVMVirtualMachine: @unchecked Sendable {
    public let system: KVMSystem
    public let fd: FileDescriptor

    init(system: KVMSystem, fd: FileDescriptor) {
        self.system = system
        self.fd = fd
    }

    public func setUserMemoryRegion(slot: UInt32, guestPhysicalAddress: UInt64, size: UInt64,
                                    hostAddress: UnsafeMutableRawPointer, readOnly: Bool = false) throws(KVMError) {
        var region = kvm_userspace_memory_region(
            slot: slot, flags: readOnly ? UInt32(KVM_MEM_READONLY) : 0,
            guest_phys_addr: guestPhysicalAddress, memory_size: size,
            userspace_addr: UInt64(UInt(bitPattern: hostAddress)))
        _ = try check("KVM_SET_USER_MEMORY_REGION(slot \(slot))",
                      svm_ioctl_ptr(fd.rawValue, svm_KVM_SET_USER_MEMORY_REGION, &region))
    }

    /// KVM_SET_TSS_ADDR: three pages KVM uses for real-mode emulation on Intel; must not overlap RAM.
    public func setTSSAddress(_ address: UInt64) throws(KVMError) {
        _ = try check("KVM_SET_TSS_ADDR", svm_ioctl_val(fd.rawValue, svm_KVM_SET_TSS_ADDR, UInt(address)))
    }

    public func setIdentityMapAddress(_ address: UInt64) throws(KVMError) {
        var a = address
        _ = try check("KVM_SET_IDENTITY_MAP_ADDR", svm_ioctl_ptr(fd.rawValue, svm_KVM_SET_IDENTITY_MAP_ADDR, &a))
    }

    /// KVM_CREATE_IRQCHIP: in-kernel LAPICs, IOAPIC and PIC.
    public func createIRQChip() throws(KVMError) {
        _ = try check("KVM_CREATE_IRQCHIP", svm_ioctl_val(fd.rawValue, svm_KVM_CREATE_IRQCHIP, 0))
    }

    /// KVM_CREATE_PIT2: the in-kernel i8254.
    public func createPIT2() throws(KVMError) {
        var config = kvm_pit_config()
        _ = try check("KVM_CREATE_PIT2", svm_ioctl_ptr(fd.rawValue, svm_KVM_CREATE_PIT2, &config))
    }

    public func irqLine(_ irq: UInt32, level: Bool) throws(KVMError) {
        var line = kvm_irq_level()
        line.irq = irq
        line.level = level ? 1 : 0
        _ = try check("KVM_IRQ_LINE", svm_ioctl_ptr(fd.rawValue, svm_KVM_IRQ_LINE, &line))
    }

    /// KVM_SIGNAL_MSI: inject an MSI (x86: address 0xFEE<dest>000, data = vector | mode).
    /// Returns true if the interrupt was delivered, false if the guest blocked it.
    @discardableResult
    public func signalMSI(address: UInt64, data: UInt32) throws(KVMError) -> Bool {
        var msi = kvm_msi()
        msi.address_lo = UInt32(truncatingIfNeeded: address)
        msi.address_hi = UInt32(truncatingIfNeeded: address >> 32)
        msi.data = data
        return try check("KVM_SIGNAL_MSI", svm_ioctl_ptr(fd.rawValue, svm_KVM_SIGNAL_MSI, &msi)) > 0
    }

    /// KVM_IRQFD: writing `eventFD` raises `gsi` in the guest without a trip through user space.
    public func irqfd(eventFD: Int32, gsi: UInt32, deassign: Bool = false) throws(KVMError) {
        var req = kvm_irqfd()
        req.fd = UInt32(bitPattern: eventFD)
        req.gsi = gsi
        req.flags = deassign ? UInt32(KVM_IRQFD_FLAG_DEASSIGN) : 0
        _ = try check("KVM_IRQFD", svm_ioctl_ptr(fd.rawValue, svm_KVM_IRQFD, &req))
    }

    /// An MSI route for KVM_SET_GSI_ROUTING.
    public struct MSIRoute: Sendable, Equatable {
        public var gsi: UInt32
        public var address: UInt64
        public var data: UInt32
        public init(gsi: UInt32, address: UInt64, data: UInt32) {
            self.gsi = gsi
            self.address = address
            self.data = data
        }
    }

    /// GSIs 0-23 belong to the in-kernel IOAPIC (and 0-15 to the PICs); MSI routes start here.
    public static let firstMSIGSI: UInt32 = 24

    /// KVM_SET_GSI_ROUTING replaces the whole table, including the IOAPIC/PIC routes that
    /// KVM_CREATE_IRQCHIP installed, so those are always rebuilt here (as KVM's
    /// kvm_setup_default_irq_routing does) before the given MSI routes. Pass every MSI route
    /// each time.
    public func setGSIRouting(_ routes: [MSIRoute]) throws(KVMError) {
        var entries: [kvm_irq_routing_entry] = []
        for pin in UInt32(0)..<24 {
            var e = kvm_irq_routing_entry()
            e.gsi = pin
            e.type = UInt32(KVM_IRQ_ROUTING_IRQCHIP)
            e.u.irqchip.irqchip = UInt32(KVM_IRQCHIP_IOAPIC)
            e.u.irqchip.pin = pin
            entries.append(e)
            if pin < 16 {
                e.u.irqchip.irqchip = UInt32(pin < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE)
                e.u.irqchip.pin = pin % 8
                entries.append(e)
            }
        }
        for r in routes {
            precondition(r.gsi >= Self.firstMSIGSI, "GSI \(r.gsi) belongs to the irqchip")
            var e = kvm_irq_routing_entry()
            e.gsi = r.gsi
            e.type = UInt32(KVM_IRQ_ROUTING_MSI)
            e.u.msi.address_lo = UInt32(truncatingIfNeeded: r.address)
            e.u.msi.address_hi = UInt32(truncatingIfNeeded: r.address >> 32)
            e.u.msi.data = r.data
            entries.append(e)
        }
        guard let table = svm_irq_routing_alloc(UInt32(entries.count)) else { throw KVMError("calloc", errno: ENOMEM) }
        defer { svm_free(table) }
        let raw = UnsafeMutableRawPointer(table).advanced(by: MemoryLayout<kvm_irq_routing>.size)
        let dst = raw.assumingMemoryBound(to: kvm_irq_routing_entry.self)
        for (i, e) in entries.enumerated() { dst[i] = e }
        _ = try check("KVM_SET_GSI_ROUTING", svm_ioctl_ptr(fd.rawValue, svm_KVM_SET_GSI_ROUTING, table))
    }

    /// KVM_ENABLE_CAP on the VM.
    public func enableCap(_ cap: UInt32, args: [UInt64] = []) throws(KVMError) {
        var req = kvm_enable_cap()
        req.cap = cap
        withUnsafeMutableBytes(of: &req.args) { buf in
            let a = buf.bindMemory(to: UInt64.self)
            for (i, v) in args.prefix(4).enumerated() { a[i] = v }
        }
        _ = try check("KVM_ENABLE_CAP(\(cap))", svm_ioctl_ptr(fd.rawValue, svm_KVM_ENABLE_CAP, &req))
    }

    /// A deny range for KVM_X86_SET_MSR_FILTER: accesses in it exit to user space.
    public struct MSRFilterRange: Sendable {
        public var base: UInt32
        public var count: UInt32
        public var read: Bool
        public var write: Bool
        public init(base: UInt32, count: UInt32, read: Bool = true, write: Bool = true) {
            self.base = base
            self.count = count
            self.read = read
            self.write = write
        }
    }

    /// KVM_X86_SET_MSR_FILTER with default-allow and the given ranges denied (so they exit).
    public func setMSRFilter(deny ranges: [MSRFilterRange]) throws(KVMError) {
        precondition(ranges.count <= Int(KVM_MSR_FILTER_MAX_RANGES))
        var filter = kvm_msr_filter()
        filter.flags = UInt32(KVM_MSR_FILTER_DEFAULT_ALLOW)
        // Bitmaps: a clear bit denies. All zero = deny the whole range.
        var bitmaps: [UnsafeMutablePointer<UInt8>] = []
        defer { bitmaps.forEach { $0.deallocate() } }
        withUnsafeMutableBytes(of: &filter.ranges) { buf in
            let r = buf.bindMemory(to: kvm_msr_filter_range.self)
            for (i, range) in ranges.enumerated() {
                let bytes = (Int(range.count) + 7) / 8
                let bitmap = UnsafeMutablePointer<UInt8>.allocate(capacity: bytes)
                bitmap.initialize(repeating: 0, count: bytes)
                bitmaps.append(bitmap)
                var flags: UInt32 = 0
                if range.read { flags |= UInt32(KVM_MSR_FILTER_READ) }
                if range.write { flags |= UInt32(KVM_MSR_FILTER_WRITE) }
                r[i] = kvm_msr_filter_range(flags: flags, nmsrs: range.count, base: range.base, bitmap: bitmap)
            }
        }
        _ = try check("KVM_X86_SET_MSR_FILTER", svm_ioctl_ptr(fd.rawValue, svm_KVM_X86_SET_MSR_FILTER, &filter))
    }

    public func createVCPU(id: UInt32) throws(KVMError) -> KVMVCPU {
        let raw = try check("KVM_CREATE_VCPU(\(id))", svm_ioctl_val(fd.rawValue, svm_KVM_CREATE_VCPU, UInt(id)))
        let vfd = FileDescriptor(adopting: Int32(raw))
        return try KVMVCPU(id: id, fd: vfd, mmapSize: try system.vcpuMmapSize())
    }
}
