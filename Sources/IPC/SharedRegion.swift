import Atomics
import CSynthVM
import Glibc

/// A memfd mapped MAP_SHARED: memory that two processes see byte for byte.
///
/// The creator sizes the memfd once and seals it (F_SEAL_GROW | F_SEAL_SHRINK, then
/// F_SEAL_SEAL). A shrink seal matters because a mapping whose file shrinks faults (SIGBUS)
/// on the pages past the new end: without it, any process holding the fd could crash every
/// other one. The grow seal keeps the size the layout was computed for. F_SEAL_SEAL stops a
/// peer from adding a write seal later, which would lock a restarted worker (or anyone
/// mapping it anew) out of a writable mapping.
///
/// The peer side (`init(adopting:)`) trusts nothing about the fd: it checks the seals and
/// the size before mapping, so once it holds a `SharedRegion` its bounds cannot move.
///
/// Every accessor is bounds-checked and throws instead of trapping; offsets and counts often
/// come from the other process. What lives at those bytes is still the peer's to change at
/// any time: copy out, then validate the copy (never validate in place and use it later).
public final class SharedRegion: @unchecked Sendable {
    /// How this process maps the region.
    public enum Access: Sendable, Equatable {
        case readWrite
        /// For a process that must only observe (e.g. a worker reading published SynIC
        /// state). Stores throw `.readOnlyRegion`.
        case readOnly
    }

    /// The memfd (the creator's, or the one adopted). Pass it to peers; keep it to remap.
    public let fd: OwnedFileDescriptor
    /// Bytes mapped: every access must lie within [0, size).
    public let size: Int
    /// Where in the memfd the mapping starts.
    public let fileOffset: Int
    public let access: Access
    /// The mapping. Internal: callers go through the bounds-checked accessors.
    let base: UnsafeMutableRawPointer

    /// The seals every region carries; `init(adopting:)` requires them.
    public static var requiredSeals: Int32 { svm_F_SEAL_GROW | svm_F_SEAL_SHRINK }

    /// Creates a new memfd of `size` bytes, seals it, and maps it read-write.
    /// `name` shows in /proc/<pid>/fd and /proc/<pid>/maps ("memfd:<name>"), nowhere else.
    public init(name: String, size: Int) throws(IPCError) {
        guard size > 0 else { throw .invalidArgument("region size must be positive, got \(size)") }
        let fd = OwnedFileDescriptor(adopting: Int32(try check("memfd_create(\(name))", Int(svm_memfd_create_sealable(name)))))
        if ftruncate(fd.rawValue, off_t(size)) != 0 {
            throw .system(call: "ftruncate(\(name), \(size))", errno: errno)
        }
        _ = try check("fcntl(F_ADD_SEALS)",
                      Int(svm_memfd_add_seals(fd.rawValue, svm_F_SEAL_GROW | svm_F_SEAL_SHRINK | svm_F_SEAL_SEAL)))
        self.fd = fd
        self.size = size
        fileOffset = 0
        access = .readWrite
        base = try Self.map(fd: fd.rawValue, size: size, offset: 0, access: .readWrite)
    }

    /// Maps a memfd that a peer handed us: `size` bytes from `offset` (page-aligned).
    ///
    /// Refused, before anything is mapped, unless the fd carries F_SEAL_GROW and
    /// F_SEAL_SHRINK (`.unsealedRegion`; an fd that cannot carry seals at all fails with
    /// EINVAL from F_GET_SEALS), carries no write seal when mapping read-write, and is at
    /// least `offset + size` bytes long (`.regionTooSmall`). The region keeps `fd` alive;
    /// if the init throws, the caller's reference is the only one left.
    public init(adopting fd: OwnedFileDescriptor, size: Int, offset: Int = 0,
                access: Access = .readWrite) throws(IPCError) {
        guard size > 0 else { throw .invalidArgument("region size must be positive, got \(size)") }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard offset >= 0, offset % page == 0 else {
            throw .invalidArgument("region offset \(offset) is not a multiple of the page size")
        }
        let (end, overflow) = offset.addingReportingOverflow(size)
        guard !overflow else { throw .invalidArgument("region offset \(offset) + size \(size) overflows") }

        let seals = try Int32(check("fcntl(F_GET_SEALS)", Int(svm_memfd_get_seals(fd.rawValue))))
        let writeSeals = svm_F_SEAL_WRITE | svm_F_SEAL_FUTURE_WRITE
        guard seals & Self.requiredSeals == Self.requiredSeals,
              access == .readOnly || seals & writeSeals == 0 else {
            throw .unsealedRegion(seals: seals)
        }
        var st = stat()
        if fstat(fd.rawValue, &st) != 0 { throw .system(call: "fstat", errno: errno) }
        guard Int(st.st_size) >= end else { throw .regionTooSmall(size: Int(st.st_size), required: end) }

        self.fd = fd
        self.size = size
        fileOffset = offset
        self.access = access
        base = try Self.map(fd: fd.rawValue, size: size, offset: offset, access: access)
    }

    private static func map(fd: Int32, size: Int, offset: Int, access: Access) throws(IPCError)
        -> UnsafeMutableRawPointer
    {
        let prot = access == .readWrite ? PROT_READ | PROT_WRITE : PROT_READ
        guard let p = mmap(nil, size, prot, MAP_SHARED, fd, off_t(offset)), p != MAP_FAILED else {
            throw .system(call: "mmap(\(size) bytes)", errno: errno)
        }
        return p
    }

    deinit {
        munmap(base, size)
    }

    // MARK: Bounds

    /// Whether [offset, offset + count) lies inside the region; overflow-safe.
    @inline(__always)
    public func contains(offset: Int, count: Int) -> Bool {
        offset >= 0 && count >= 0 && offset <= size && count <= size - offset
    }

    /// The mapped bytes [offset, offset + count), for code that works in place on shared memory
    /// (a VMBus ring over guest RAM); nil when they are not all inside the region. The pointer is
    /// valid as long as this region is.
    public func pointer(at offset: Int, count: Int) -> UnsafeMutableRawPointer? {
        contains(offset: offset, count: count) ? base + offset : nil
    }

    @inline(__always)
    func checkRange(_ offset: Int, _ count: Int) throws(IPCError) {
        guard contains(offset: offset, count: count) else {
            throw .outOfBounds(offset: offset, count: count, size: size)
        }
    }

    @inline(__always)
    func checkWritable() throws(IPCError) {
        guard access == .readWrite else { throw .readOnlyRegion }
    }

    // MARK: Typed access (host byte order; wire formats use WireRecord instead)

    /// The value at `offset` (any alignment).
    public func load<T: BitwiseCopyable>(_ type: T.Type = T.self, at offset: Int) throws(IPCError) -> T {
        try checkRange(offset, MemoryLayout<T>.size)
        return base.loadUnaligned(fromByteOffset: offset, as: T.self)
    }

    /// Stores `value` at `offset` (any alignment).
    public func store<T: BitwiseCopyable>(_ value: T, at offset: Int) throws(IPCError) {
        try checkWritable()
        try checkRange(offset, MemoryLayout<T>.size)
        base.storeBytes(of: value, toByteOffset: offset, as: T.self)
    }

    /// Copies `buffer.count` bytes from `offset` into `buffer`.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(IPCError) {
        try checkRange(offset, buffer.count)
        if let dst = buffer.baseAddress { dst.copyMemory(from: base + offset, byteCount: buffer.count) }
    }

    /// Copies `count` bytes from `offset` out of the region.
    public func bytes(at offset: Int, count: Int) throws(IPCError) -> [UInt8] {
        try checkRange(offset, count)
        return [UInt8](UnsafeRawBufferPointer(start: base + offset, count: count))
    }

    /// Copies `bytes` into the region at `offset`.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(IPCError) {
        try checkWritable()
        try checkRange(offset, bytes.count)
        if let src = bytes.baseAddress { (base + offset).copyMemory(from: src, byteCount: bytes.count) }
    }

    public func write(_ bytes: [UInt8], at offset: Int) throws(IPCError) {
        // (withUnsafeBytes rethrows untyped; carry the typed error out in a Result.)
        try bytes.withUnsafeBytes { b in Result { () throws(IPCError) in try write(b, at: offset) } }.get()
    }

    /// An atomic view of the naturally aligned `T` at `offset`, for state two processes
    /// update concurrently (ring indices, flags). Only for read-write mappings. The view does
    /// not keep the region mapped: keep the region alive as long as you use it.
    public func atomic<T: AtomicValue>(_ type: T.Type, at offset: Int) throws(IPCError) -> UnsafeAtomic<T>
    where T.AtomicRepresentation.Value == T {
        try checkWritable()
        try checkRange(offset, MemoryLayout<T.AtomicRepresentation>.size)
        let alignment = MemoryLayout<T.AtomicRepresentation>.alignment
        guard offset % alignment == 0 else {
            throw .invalidArgument("atomic at offset \(offset) is not \(alignment)-byte aligned")
        }
        return UnsafeAtomic(at: (base + offset).assumingMemoryBound(to: T.AtomicRepresentation.self))
    }
}
