import CSynthVM
import Glibc

/// A vCPU fd and its shared kvm_run page. Use it from one thread only: KVM serialises vCPU
/// ioctls on a mutex that KVM_RUN holds, so another thread would simply block.
public final class KVMVCPU: @unchecked Sendable {
    public let id: UInt32
    public let fd: FileDescriptor
    public let run: UnsafeMutablePointer<kvm_run>
    private let mmapSize: Int

    init(id: UInt32, fd: FileDescriptor, mmapSize: Int) throws(KVMError) {
        self.id = id
        self.fd = fd
        self.mmapSize = mmapSize
        guard let p = mmap(nil, mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.rawValue, 0),
              p != MAP_FAILED else {
            throw KVMError("mmap(kvm_run, vCPU \(id))", errno: Glibc.errno)
        }
        run = p.assumingMemoryBound(to: kvm_run.self)
    }

    deinit {
        munmap(run, mmapSize)
    }

    /// KVM_RUN. Returns normally with the exit in `run`; EINTR (a kick) and EAGAIN (an AP
    /// still waiting for SIPI) are returned as values, not thrown.
    public enum RunResult: Sendable { case exited, interrupted, again }

    @inline(__always)
    public func runOnce() throws(KVMError) -> RunResult {
        let r = svm_ioctl_val(fd.rawValue, svm_KVM_RUN, 0)
        if r >= 0 { return .exited }
        if r == -Int(EINTR) { return .interrupted }
        if r == -Int(EAGAIN) { return .again }
        throw KVMError("KVM_RUN(vCPU \(id))", errno: Int32(-r))
    }

    public func getRegs() throws(KVMError) -> kvm_regs {
        var regs = kvm_regs()
        _ = try check("KVM_GET_REGS", svm_ioctl_ptr(fd.rawValue, svm_KVM_GET_REGS, &regs))
        return regs
    }

    public func setRegs(_ regs: kvm_regs) throws(KVMError) {
        var r = regs
        _ = try check("KVM_SET_REGS", svm_ioctl_ptr(fd.rawValue, svm_KVM_SET_REGS, &r))
    }

    public func getSregs() throws(KVMError) -> kvm_sregs {
        var s = kvm_sregs()
        _ = try check("KVM_GET_SREGS", svm_ioctl_ptr(fd.rawValue, svm_KVM_GET_SREGS, &s))
        return s
    }

    public func setSregs(_ sregs: kvm_sregs) throws(KVMError) {
        var s = sregs
        _ = try check("KVM_SET_SREGS", svm_ioctl_ptr(fd.rawValue, svm_KVM_SET_SREGS, &s))
    }

    public func getFPU() throws(KVMError) -> kvm_fpu {
        var f = kvm_fpu()
        _ = try check("KVM_GET_FPU", svm_ioctl_ptr(fd.rawValue, svm_KVM_GET_FPU, &f))
        return f
    }

    public func setFPU(_ fpu: kvm_fpu) throws(KVMError) {
        var f = fpu
        _ = try check("KVM_SET_FPU", svm_ioctl_ptr(fd.rawValue, svm_KVM_SET_FPU, &f))
    }

    public func getLAPIC() throws(KVMError) -> kvm_lapic_state {
        var l = kvm_lapic_state()
        _ = try check("KVM_GET_LAPIC", svm_ioctl_ptr(fd.rawValue, svm_KVM_GET_LAPIC, &l))
        return l
    }

    public func setLAPIC(_ lapic: kvm_lapic_state) throws(KVMError) {
        var l = lapic
        _ = try check("KVM_SET_LAPIC", svm_ioctl_ptr(fd.rawValue, svm_KVM_SET_LAPIC, &l))
    }

    public func getMPState() throws(KVMError) -> UInt32 {
        var s = kvm_mp_state()
        _ = try check("KVM_GET_MP_STATE", svm_ioctl_ptr(fd.rawValue, svm_KVM_GET_MP_STATE, &s))
        return s.mp_state
    }

    public func setMPState(_ state: UInt32) throws(KVMError) {
        var s = kvm_mp_state(mp_state: state)
        _ = try check("KVM_SET_MP_STATE", svm_ioctl_ptr(fd.rawValue, svm_KVM_SET_MP_STATE, &s))
    }

    /// KVM_GET_MSRS for the given indices; returns (index, value) for those KVM returned.
    public func getMSRs(_ indices: [UInt32]) throws(KVMError) -> [(UInt32, UInt64)] {
        guard let buf = svm_msrs_alloc(UInt32(indices.count)) else { throw KVMError("calloc", errno: ENOMEM) }
        defer { svm_free(buf) }
        let entries = UnsafeMutableRawPointer(buf).advanced(by: MemoryLayout<kvm_msrs>.size)
            .assumingMemoryBound(to: kvm_msr_entry.self)
        for (i, idx) in indices.enumerated() { entries[i].index = idx }
        let n = try check("KVM_GET_MSRS", svm_ioctl_ptr(fd.rawValue, svm_KVM_GET_MSRS, buf))
        return (0..<n).map { (entries[$0].index, entries[$0].data) }
    }

    /// KVM_SET_MSRS; throws if KVM accepted fewer than all of them.
    public func setMSRs(_ msrs: [(UInt32, UInt64)]) throws(KVMError) {
        guard let buf = svm_msrs_alloc(UInt32(msrs.count)) else { throw KVMError("calloc", errno: ENOMEM) }
        defer { svm_free(buf) }
        let entries = UnsafeMutableRawPointer(buf).advanced(by: MemoryLayout<kvm_msrs>.size)
            .assumingMemoryBound(to: kvm_msr_entry.self)
        for (i, m) in msrs.enumerated() {
            entries[i].index = m.0
            entries[i].data = m.1
        }
        let n = try check("KVM_SET_MSRS", svm_ioctl_ptr(fd.rawValue, svm_KVM_SET_MSRS, buf))
        if n != msrs.count {
            throw KVMError("KVM_SET_MSRS (MSR \(String(msrs[n].0, radix: 16)) rejected)", errno: EINVAL)
        }
    }

    public func setCPUID(_ entries: [kvm_cpuid_entry2]) throws(KVMError) {
        guard let buf = svm_cpuid2_alloc(UInt32(entries.count)) else { throw KVMError("calloc", errno: ENOMEM) }
        defer { svm_free(buf) }
        CPUIDBuffer.fill(buf, with: entries)
        _ = try check("KVM_SET_CPUID2", svm_ioctl_ptr(fd.rawValue, svm_KVM_SET_CPUID2, buf))
    }

    public func getVCPUEvents() throws(KVMError) -> kvm_vcpu_events {
        var e = kvm_vcpu_events()
        _ = try check("KVM_GET_VCPU_EVENTS", svm_ioctl_ptr(fd.rawValue, svm_KVM_GET_VCPU_EVENTS, &e))
        return e
    }

    public func setVCPUEvents(_ events: kvm_vcpu_events) throws(KVMError) {
        var e = events
        _ = try check("KVM_SET_VCPU_EVENTS", svm_ioctl_ptr(fd.rawValue, svm_KVM_SET_VCPU_EVENTS, &e))
    }

    /// Queues exception `vector` (without error code) for delivery at the next entry.
    public func injectException(_ vector: UInt8) throws(KVMError) {
        var e = try getVCPUEvents()
        e.exception.injected = 1
        e.exception.nr = vector
        e.exception.has_error_code = 0
        e.exception.error_code = 0
        e.flags = 0
        try setVCPUEvents(e)
    }

    /// KVM_GET_TSC_KHZ: the guest TSC rate.
    public func tscKHz() throws(KVMError) -> UInt64 {
        UInt64(try check("KVM_GET_TSC_KHZ", svm_ioctl_val(fd.rawValue, svm_KVM_GET_TSC_KHZ, 0)))
    }
}
