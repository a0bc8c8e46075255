import Atomics
import CSynthVM
import Glibc
import Storage

/// A disk on a file descriptor the monitor opened (a raw image or a block device): the storage
/// worker's `DiskBackend`. Data moves between the fd and the guest's mapped pages with
/// preadv/pwritev over iovecs built from those pages: no buffer of its own in between.
///
/// Durability (docs/storage.md, "Durability"): a write returns once pwritev did (the host's page
/// cache has it; with O_DIRECT the device has it, its volatile cache aside); a FUA write, and a
/// flush, are made durable with fdatasync before they return. `cache=unsafe` never gets here for
/// a flush (`SCSIDisk` answers it without I/O and drops FUA).
///
/// O_DIRECT (`cache=direct`): the kernel needs the buffer address, the length and the file offset
/// aligned to the file system's (or device's) logical block size, 512 bytes on most hosts and
/// 4096 on 4Kn devices. Guest buffers are 512-byte sectors in 4 KiB pages, so a 512-byte host
/// qualifies; an unaligned request fails with EINVAL and the guest sees MEDIUM ERROR.
/// Thread-safe: the worker's I/O threads call it concurrently (the fd's offset is never used:
/// every call is positional).
public final class FileDiskBackend: DiskBackend, @unchecked Sendable {
    public let fd: Int32
    public let byteCount: UInt64
    /// The calls made (for the worker's statistics). Atomic: the I/O threads call concurrently.
    let counters = (reads: ManagedAtomic<Int>(0), writes: ManagedAtomic<Int>(0), flushes: ManagedAtomic<Int>(0),
                    punches: ManagedAtomic<Int>(0), errors: ManagedAtomic<Int>(0), inline: ManagedAtomic<Int>(0))
    /// The largest transfer tried on the ring thread (docs/storage.md, "The I/O model").
    public static let inlineLimit = 64 << 10
    /// Reads and writes done by `performWithoutBlocking` (not counted in `reads`/`writes`).
    public var inlineTransfers: Int { counters.inline.load(ordering: .relaxed) }
    /// The kernel said EOPNOTSUPP to RWF_NOWAIT (ring thread only).
    var noWaitReadsRefused = false, noWaitWritesRefused = false
    /// Whether the kernel refused RWF_NOWAIT reads on this fd (then the pool does them all).
    public var nonBlockingReadsRefused: Bool { noWaitReadsRefused }
    public var reads: Int { counters.reads.load(ordering: .relaxed) }
    public var writes: Int { counters.writes.load(ordering: .relaxed) }
    public var flushes: Int { counters.flushes.load(ordering: .relaxed) }
    public var punches: Int { counters.punches.load(ordering: .relaxed) }
    public var errors: Int { counters.errors.load(ordering: .relaxed) }

    /// IOV_MAX (UIO_MAXIOV) on Linux.
    static let iovMax = 1024

    /// Where host I/O errors are reported (the first `errorReportLimit`; the guest sees MEDIUM ERROR).
    let log: (String) -> Void
    static let errorReportLimit = 16
    let name: String

    public init(fd: Int32, byteCount: UInt64, name: String = "disk", log: @escaping (String) -> Void = { _ in }) {
        self.fd = fd
        self.byteCount = byteCount
        self.name = name
        self.log = log
    }

    func failed(_ what: String, _ e: Int32) -> DiskIOError {
        let errors = counters.errors.wrappingIncrementThenLoad(ordering: .relaxed)
        if errors <= Self.errorReportLimit {
            log("\(name): \(what) failed: \(String(cString: strerror(e))) (MEDIUM ERROR to the guest)"
                + (errors == Self.errorReportLimit ? "; further errors not reported" : ""))
        }
        return DiskIOError(errno: e)
    }

    public func read(at offset: UInt64, into buffers: [UnsafeMutableRawBufferPointer]) throws(DiskIOError) {
        counters.reads.wrappingIncrement(ordering: .relaxed)
        try transfer(at: offset, buffers.map { iovec(iov_base: $0.baseAddress, iov_len: $0.count) }, write: false)
    }

    public func write(at offset: UInt64, from buffers: [UnsafeRawBufferPointer], fua: Bool) throws(DiskIOError) {
        counters.writes.wrappingIncrement(ordering: .relaxed)
        try transfer(at: offset, buffers.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) },
                     write: true)
        if fua { try flush() }
    }

    public func flush() throws(DiskIOError) {
        counters.flushes.wrappingIncrement(ordering: .relaxed)
        while fdatasync(fd) != 0 {
            if errno != EINTR { throw failed("fdatasync", errno) }
        }
    }

    public func punchHole(at offset: UInt64, count: UInt64) throws(DiskIOError) {
        counters.punches.wrappingIncrement(ordering: .relaxed)
        guard count > 0 else { return }
        // FALLOC_FL_PUNCH_HOLE (2) | FALLOC_FL_KEEP_SIZE (1): the size stays, the range reads zeros.
        while case let r = svm_punch_hole(fd, offset, count), r != 0 {
            if r != -EINTR { throw failed("punching a hole at \(offset)", -r) }
        }
    }

    /// preadv/pwritev until every byte moved (a short transfer continues where it stopped; end of
    /// file before the end is EIO: sizes were checked, so the file shrank under us).
    func transfer(at offset: UInt64, _ iov: [iovec], write: Bool) throws(DiskIOError) {
        var iov = iov.filter { $0.iov_len > 0 }
        var at = offset
        var first = 0
        while first < iov.count {
            let n = iov.withUnsafeMutableBufferPointer { b in
                let count = Int32(min(b.count - first, Self.iovMax))
                return write ? pwritev(fd, b.baseAddress! + first, count, off_t(at)) : preadv(fd, b.baseAddress! + first, count, off_t(at))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw failed("\(write ? "pwritev" : "preadv") at \(at)", errno)
            }
            if n == 0 { throw failed("\(write ? "pwritev" : "preadv") at \(at) (end of file)", EIO) }
            at += UInt64(n)
            var left = n
            while left > 0, first < iov.count {
                if left >= iov[first].iov_len {
                    left -= iov[first].iov_len
                    first += 1
                } else {
                    iov[first].iov_base = iov[first].iov_base! + left
                    iov[first].iov_len -= left
                    left = 0
                }
            }
        }
    }
}

/// A backend that can try an operation without blocking, on the ring thread: a page-cache hit
/// completes there with no hand-off to an I/O thread (what io_uring does before punting to its
/// workers). nil: it would block (or it cannot tell): hand it to the pool.
public protocol NonBlockingDiskBackend: DiskBackend {
    func performWithoutBlocking(_ io: SCSIDisk.IO, buffer: SCSIDataBuffer) -> SCSIDisk.IOResult?
}

extension FileDiskBackend: NonBlockingDiskBackend {
    /// One preadv2/pwritev2 with RWF_NOWAIT for a read or a write without FUA (a FUA write, a
    /// flush, an unmap block by nature). Anything short of every byte moved is nil and the pool
    /// does the whole operation again (reads and writes are idempotent). A kernel or file
    /// system that refuses RWF_NOWAIT (EOPNOTSUPP) is not asked again.
    public func performWithoutBlocking(_ io: SCSIDisk.IO, buffer: SCSIDataBuffer) -> SCSIDisk.IOResult? {
        let block = UInt64(SCSIDisk.Configuration.logicalBlockSize)
        let write: Bool, lba: UInt64, blocks: UInt32
        switch io {
        case .read(let l, let b): write = false; lba = l; blocks = b
        case .write(let l, let b, false): write = true; lba = l; blocks = b
        default: return nil
        }
        if write ? noWaitWritesRefused : noWaitReadsRefused { return nil }
        let total = Int(UInt64(blocks) * block)
        // A large copy on the ring thread would serialise what the pool copies in parallel.
        guard total <= Self.inlineLimit else { return nil }
        var iov = buffer.prefix(total).map { iovec(iov_base: $0.baseAddress, iov_len: $0.count) }
        guard iov.count <= Self.iovMax else { return nil }
        let n = iov.withUnsafeMutableBufferPointer { b in
            svm_rw_nowait(fd, b.baseAddress, Int32(b.count), lba * block, write ? 1 : 0)
        }
        if n == -Int(EOPNOTSUPP) {
            if write { noWaitWritesRefused = true } else { noWaitReadsRefused = true }
        }
        guard n == total else { return nil }
        counters.inline.wrappingIncrement(ordering: .relaxed)
        return .success
    }
}
