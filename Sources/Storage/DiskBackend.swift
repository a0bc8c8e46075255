/// Where a disk's blocks live. The storage worker's backend will be the monitor-opened file
/// descriptor (pread/pwrite/preadv/pwritev straight into mapped guest pages, fdatasync,
/// fallocate(PUNCH_HOLE)); tests use `MemoryDiskBackend`. Offsets and lengths are bytes and
/// were checked against `byteCount` by `SCSIDisk` before a call is made.
///
/// The buffers are iovecs: a list of spans of guest memory (each guest page the request
/// covers, or runs of them), so a backend moves data between the disk and the guest's pages
/// with no buffer of its own in between. The spans' total is the transfer length.
public protocol DiskBackend: AnyObject {
    /// The size in bytes (a multiple of 512).
    var byteCount: UInt64 { get }
    /// Fills `buffers`, in order, from `offset`.
    func read(at offset: UInt64, into buffers: [UnsafeMutableRawBufferPointer]) throws(DiskIOError)
    /// Writes `buffers`, in order, at `offset`; with `fua`, durable before it returns.
    func write(at offset: UInt64, from buffers: [UnsafeRawBufferPointer], fua: Bool) throws(DiskIOError)
    /// Makes every write that returned durable.
    func flush() throws(DiskIOError)
    /// Deallocates `count` bytes at `offset`; they read as zeros after.
    func punchHole(at offset: UInt64, count: UInt64) throws(DiskIOError)
}

/// A failed backend call: the errno (0 when there is none), for the log; the guest sees MEDIUM
/// ERROR.
public struct DiskIOError: Error, Hashable, Sendable {
    public var errno: Int32
    public init(errno: Int32) { self.errno = errno }
}

/// A disk in memory, for tests: the data, the calls made, and failures on request.
public final class MemoryDiskBackend: DiskBackend, @unchecked Sendable {
    public private(set) var bytes: [UInt8]
    public var byteCount: UInt64 { UInt64(bytes.count) }
    /// Make the next calls of a kind fail (EIO).
    public var failReads = false
    public var failWrites = false
    public var failFlushes = false
    /// What was asked, in order: "read off len", "write off len fua", "flush", "punch off len".
    public private(set) var log: [String] = []
    /// Bytes written but not flushed (a FUA write or a flush clears what it covers).
    public private(set) var dirty: Set<UInt64> = []
    public private(set) var punched: [(offset: UInt64, count: UInt64)] = []

    public init(byteCount: Int) { bytes = [UInt8](repeating: 0, count: byteCount) }
    public init(bytes: [UInt8]) { self.bytes = bytes }

    public func read(at offset: UInt64, into buffers: [UnsafeMutableRawBufferPointer]) throws(DiskIOError) {
        let total = buffers.reduce(0) { $0 + $1.count }
        log.append("read \(offset) \(total)")
        if failReads { throw DiskIOError(errno: 5) }
        guard offset <= byteCount, UInt64(total) <= byteCount - offset else { throw DiskIOError(errno: 22) }
        var at = Int(offset)
        for b in buffers where b.count > 0 {
            bytes.withUnsafeBytes { b.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[at..<at + b.count])) }
            at += b.count
        }
    }

    public func write(at offset: UInt64, from buffers: [UnsafeRawBufferPointer], fua: Bool) throws(DiskIOError) {
        let total = buffers.reduce(0) { $0 + $1.count }
        log.append("write \(offset) \(total)\(fua ? " fua" : "")")
        if failWrites { throw DiskIOError(errno: 5) }
        guard offset <= byteCount, UInt64(total) <= byteCount - offset else { throw DiskIOError(errno: 22) }
        var at = Int(offset)
        for b in buffers where b.count > 0 {
            bytes.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[at..<at + b.count]).copyMemory(from: b) }
            at += b.count
        }
        var block = offset / 512
        while block * 512 < offset + UInt64(total) {
            if fua { dirty.remove(block) } else { dirty.insert(block) }
            block += 1
        }
    }

    public func flush() throws(DiskIOError) {
        log.append("flush")
        if failFlushes { throw DiskIOError(errno: 5) }
        dirty.removeAll()
    }

    public func punchHole(at offset: UInt64, count: UInt64) throws(DiskIOError) {
        log.append("punch \(offset) \(count)")
        if failWrites { throw DiskIOError(errno: 5) }
        guard offset <= byteCount, count <= byteCount - offset else { throw DiskIOError(errno: 22) }
        for i in Int(offset)..<Int(offset + count) { bytes[i] = 0 }
        punched.append((offset, count))
    }
}

/// The guest's data buffer for one SRB as spans of mapped memory (the pages of its GPA-direct
/// range, in order, the first starting at the range's byte offset). `count` bytes in all.
public struct SCSIDataBuffer {
    public var segments: [UnsafeMutableRawBufferPointer]
    public var count: Int { segments.reduce(0) { $0 + $1.count } }

    public init(segments: [UnsafeMutableRawBufferPointer]) { self.segments = segments }

    /// The first `n` bytes as spans (fewer when the buffer is shorter).
    public func prefix(_ n: Int) -> [UnsafeMutableRawBufferPointer] {
        var out: [UnsafeMutableRawBufferPointer] = []
        var left = n
        for s in segments where left > 0 {
            let k = min(s.count, left)
            out.append(UnsafeMutableRawBufferPointer(rebasing: s[0..<k]))
            left -= k
        }
        return out
    }

    /// Copies `bytes` to the start of the buffer (as much as fits); the bytes copied.
    @discardableResult
    public func copyIn(_ bytes: [UInt8]) -> Int {
        var at = 0
        for s in segments where at < bytes.count {
            let k = min(s.count, bytes.count - at)
            bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: s[0..<k]).copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[at..<at + k])) }
            at += k
        }
        return at
    }

    /// The first `n` bytes (fewer when the buffer is shorter), copied out.
    public func copyOut(_ n: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(n)
        for s in prefix(n) { out += s }
        return out
    }
}

/// Runs a `SCSIController`'s decision for one SRB to its end against the disks' backends and the
/// guest's buffer: copies inline data in, fetches UNMAP's parameter list, performs the I/O, and
/// returns the final status for `VStorProtocol.completion(for:result:)`. The storage worker's
/// I/O threads and the tests both use it.
public enum SCSIDiskExecutor {
    /// `backend`: the backend of the SRB's disk (not used for a missing LUN). `buffer`: the SRB's buffer, already checked
    /// (`VStorDataBufferCheck`) to hold `dataTransferLength` bytes.
    public static func run(_ srb: VStorSRB, controller: SCSIController, backend: some DiskBackend,
                           buffer: SCSIDataBuffer) -> SCSICompletion {
        var decision = controller.execute(srb)
        if case .needParameterList(let n) = decision {
            decision = controller.executeUnmap(srb, parameters: buffer.copyOut(n))
        }
        switch decision {
        case .complete(let c):
            return c
        case .dataIn(let bytes):
            return .good(transferred: UInt32(buffer.copyIn(bytes)))
        case .needParameterList:
            return .illegalRequest(.invalidFieldInCDB)
        case .io(let io):
            return controller.complete(srb, io: io, result: perform(io, backend: backend, buffer: buffer))
        }
    }

    /// Performs one operation; `.ioError` when the backend throws.
    public static func perform(_ io: SCSIDisk.IO, backend: some DiskBackend, buffer: SCSIDataBuffer) -> SCSIDisk.IOResult {
        let block = UInt64(SCSIDisk.Configuration.logicalBlockSize)
        do throws(DiskIOError) {
            switch io {
            case .read(let lba, let blocks):
                try backend.read(at: lba * block, into: buffer.prefix(Int(UInt64(blocks) * block)))
            case .write(let lba, let blocks, let fua):
                try backend.write(at: lba * block, from: buffer.prefix(Int(UInt64(blocks) * block)).map { UnsafeRawBufferPointer($0) }, fua: fua)
            case .flush:
                try backend.flush()
            case .unmap(let ranges):
                for r in ranges { try backend.punchHole(at: r.lba * block, count: UInt64(r.blocks) * block) }
            case .writeSame(let lba, let blocks, let unmap, let noDataOut, let fua):
                let pattern = noDataOut ? [UInt8](repeating: 0, count: Int(block)) : buffer.copyOut(Int(block))
                if unmap && pattern.allSatisfy({ $0 == 0 }) {
                    try backend.punchHole(at: lba * block, count: blocks * block)
                } else {
                    // Up to 128 blocks per call.
                    let chunk = [UInt8]((0..<128).flatMap { _ in pattern })
                    var done: UInt64 = 0
                    while done < blocks {
                        let n = min(blocks - done, 128)
                        let failure: DiskIOError? = chunk.withUnsafeBytes { c in
                            do throws(DiskIOError) {
                                try backend.write(at: (lba + done) * block, from: [UnsafeRawBufferPointer(rebasing: c[0..<Int(n * block)])], fua: fua)
                                return nil
                            } catch {
                                return error
                            }
                        }
                        if let failure { throw failure }
                        done += n
                    }
                }
            }
            return .success
        } catch {
            return .ioError
        }
    }
}
