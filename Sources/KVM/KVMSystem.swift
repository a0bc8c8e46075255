import CSynthVM
import Glibc

/// The /dev/kvm system fd: capability queries, the host's supported CPUID, VM creation.
public final class KVMSystem: @unchecked Sendable {
    public let fd: FileDescriptor
    public static let devicePath = "/dev/kvm"

    public init(path: String = KVMSystem.devicePath) throws(KVMError) {
        let raw = open(path, O_RDWR | O_CLOEXEC)
        if raw < 0 { throw KVMError("open(\(path))", errno: Glibc.errno) }
        fd = FileDescriptor(adopting: raw)
        let version = try check("KVM_GET_API_VERSION", svm_ioctl_val(raw, svm_KVM_GET_API_VERSION, 0))
        if version != Int(KVM_API_VERSION) {
            throw KVMError("KVM_GET_API_VERSION (got \(version), want \(KVM_API_VERSION))", errno: ENOTSUP)
        }
    }

    /// KVM_CHECK_EXTENSION: 0 when the capability is absent, otherwise its value.
    public func checkExtension(_ cap: Int32) -> Int {
        max(0, svm_ioctl_val(fd.rawValue, svm_KVM_CHECK_EXTENSION, UInt(cap)))
    }

    public func vcpuMmapSize() throws(KVMError) -> Int {
        try check("KVM_GET_VCPU_MMAP_SIZE", svm_ioctl_val(fd.rawValue, svm_KVM_GET_VCPU_MMAP_SIZE, 0))
    }

    /// KVM_GET_SUPPORTED_CPUID: what this host's KVM can offer a guest.
    public func supportedCPUID() throws(KVMError) -> [kvm_cpuid_entry2] {
        var capacity: UInt32 = 128
        while true {
            guard let buf = svm_cpuid2_alloc(capacity) else { throw KVMError("calloc", errno: ENOMEM) }
            defer { svm_free(buf) }
            let r = svm_ioctl_ptr(fd.rawValue, svm_KVM_GET_SUPPORTED_CPUID, buf)
            if r == -Int(E2BIG) && capacity < 4096 {
                capacity *= 2
                continue
            }
            _ = try check("KVM_GET_SUPPORTED_CPUID", r)
            return CPUIDBuffer.entries(of: buf)
        }
    }

    public func createVM() throws(KVMError) -> KVMVirtualMachine {
        let raw = try check("KVM_CREATE_VM", svm_ioctl_val(fd.rawValue, svm_KVM_CREATE_VM, 0))
        return KVMVirtualMachine(system: self, fd: FileDescriptor(adopting: Int32(raw)))
    }
}

/// Copies entries out of and into the flexible-array struct kvm_cpuid2.
enum CPUIDBuffer {
    static func entries(of buf: UnsafeMutablePointer<kvm_cpuid2>) -> [kvm_cpuid_entry2] {
        let n = Int(buf.pointee.nent)
        let raw = UnsafeMutableRawPointer(buf).advanced(by: MemoryLayout<kvm_cpuid2>.size)
        let first = raw.assumingMemoryBound(to: kvm_cpuid_entry2.self)
        return Array(UnsafeBufferPointer(start: first, count: n))
    }

    static func fill(_ buf: UnsafeMutablePointer<kvm_cpuid2>, with entries: [kvm_cpuid_entry2]) {
        let raw = UnsafeMutableRawPointer(buf).advanced(by: MemoryLayout<kvm_cpuid2>.size)
        let first = raw.assumingMemoryBound(to: kvm_cpuid_entry2.self)
        for (i, e) in entries.enumerated() { first[i] = e }
    }
}
