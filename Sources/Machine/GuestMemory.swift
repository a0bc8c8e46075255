import CSynthVM
import Glibc

/// Guest RAM: one memfd, mapped MAP_SHARED once in this process. KVM gets one memory slot per
/// `RAMRegion` of the layout, and workers can later map the same memfd, so every process sees
/// the same bytes. MAP_NORESERVE: untouched guest pages cost nothing on the host.
public final class GuestMemory: GuestPhysicalMemory, @unchecked Sendable {
    public let layout: GuestMemoryLayout
    public let fd: Int32
    public let base: UnsafeMutableRawPointer
    public let size: UInt64

    public init(layout: GuestMemoryLayout, name: String = "synthvm-guest-ram") throws(GuestMemoryError) {
        self.layout = layout
        size = layout.ramRegions.reduce(0) { max($0, $1.backingOffset + $1.size) }
        let f = svm_memfd_create_sealable(name)
        if f < 0 { throw .hostFailure("memfd_create: \(String(cString: strerror(-f)))") }
        if ftruncate(f, off_t(size)) != 0 {
            let e = errno
            close(f)
            throw .hostFailure("ftruncate(guest RAM, \(size)): \(String(cString: strerror(e)))")
        }
        // The size is fixed for the VM's life; a peer must not shrink it under us.
        _ = svm_memfd_seal_size(f)
        guard let p = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, f, 0),
              p != MAP_FAILED else {
            let e = errno
            close(f)
            throw .hostFailure("mmap(guest RAM, \(size)): \(String(cString: strerror(e)))")
        }
        fd = f
        base = p
    }

    deinit {
        munmap(base, Int(size))
        close(fd)
    }

    /// The host address of [gpa, gpa + length), or nil unless it lies inside one RAM region.
    @inline(__always)
    public func hostPointer(gpa: UInt64, length: UInt64) -> UnsafeMutableRawPointer? {
        guard let off = layout.backingOffset(gpa: gpa, length: length) else { return nil }
        return base.advanced(by: Int(off))
    }

    /// The host address at which a RAM region's backing starts (for KVM memory slots).
    public func hostAddress(of region: RAMRegion) -> UnsafeMutableRawPointer {
        base.advanced(by: Int(region.backingOffset))
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at gpa: UInt64) throws(GuestMemoryError) {
        guard let p = hostPointer(gpa: gpa, length: UInt64(bytes.count)) else {
            throw .outOfRange(gpa: gpa, length: UInt64(bytes.count))
        }
        if let src = bytes.baseAddress { p.copyMemory(from: src, byteCount: bytes.count) }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at gpa: UInt64) throws(GuestMemoryError) {
        guard let p = hostPointer(gpa: gpa, length: UInt64(buffer.count)) else {
            throw .outOfRange(gpa: gpa, length: UInt64(buffer.count))
        }
        if let dst = buffer.baseAddress { dst.copyMemory(from: p, byteCount: buffer.count) }
    }

    public func zero(at gpa: UInt64, count: UInt64) throws(GuestMemoryError) {
        guard let p = hostPointer(gpa: gpa, length: count) else { throw .outOfRange(gpa: gpa, length: count) }
        memset(p, 0, Int(count))
    }
}
