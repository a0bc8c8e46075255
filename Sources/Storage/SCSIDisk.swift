/// A SCSI direct-access disk (SBC-3) over 512-byte logical blocks: CDB in, decision out. Pure
/// and stateless: it never moves data. A command ends in one of
/// - `.complete`: the status, with no data (TEST UNIT READY, errors, ...);
/// - `.dataIn`: response bytes for the guest's buffer, already cut to the allocation length and
///   the buffer (INQUIRY, MODE SENSE, READ CAPACITY, ...); the command completes GOOD with
///   that many bytes;
/// - `.io`: an operation on the backing store for the shell (read, write, flush, unmap, write
///   same), whose outcome goes back through `complete(_:result:)` for the final status;
/// - `.needParameterList`: UNMAP's parameter list is in the guest's buffer: the shell copies
///   that many bytes and calls `executeUnmap(_:parameters:)`.
///
/// Checks run before any I/O, in this order (what a real disk and QEMU's scsi-disk do): the
/// opcode (INVALID COMMAND OPERATION CODE 20/00), the CDB's fields (INVALID FIELD IN CDB
/// 24/00: protection bits, a transfer over the block limits, unsupported bits), the guest's
/// buffer against the command (smaller than the transfer or the wrong direction: SRB
/// INVALID_REQUEST with INVALID FIELD IN CDB), write protection (DATA PROTECT / WRITE
/// PROTECTED 27/00), then LBA + length against the capacity with overflow-safe arithmetic
/// (LOGICAL BLOCK ADDRESS OUT OF RANGE 21/00). A failed host I/O is MEDIUM ERROR with
/// UNRECOVERED READ ERROR 11/00 for reads and WRITE ERROR 0C/00 for the rest.
///
/// TODO: 4096-byte logical blocks (READ CAPACITY block length, the block arithmetic and the
/// B0 limits take `Configuration.logicalBlockSize` when it becomes configurable).
public struct SCSIDisk: Hashable, Sendable {
    /// The write-cache contract (`--disk ...,cache=`).
    public enum CacheMode: String, Hashable, Sendable, CaseIterable {
        /// WCE=1: a write completes once the host has it; SYNCHRONIZE CACHE and FUA make data
        /// durable (`.flush`, `.write(fua: true)`).
        case writeback
        /// WCE=0, write-through: the guest sends no SYNCHRONIZE CACHE, so every write is made
        /// durable before it completes (every `.write` carries fua: true; the worker opens the
        /// file O_DIRECT).
        case direct
        /// WCE=1, but SYNCHRONIZE CACHE completes at once with no I/O and FUA is dropped:
        /// nothing is ever made durable on the guest's request. For throwaway disks.
        case unsafe

        /// The caching mode page's WCE bit.
        public var writeCacheEnabled: Bool { self != .direct }
    }

    public struct Configuration: Hashable, Sendable {
        public static let logicalBlockSize = 512
        /// Size in 512-byte blocks (>= 1).
        public var capacityBlocks: UInt64
        public var readOnly: Bool
        /// The unit serial number (VPD 0x80, and the T10 identifier of VPD 0x83): printable
        /// ASCII, at most 64 bytes; empty: no page 0x80.
        public var serial: String
        public var cacheMode: CacheMode
        /// INQUIRY T10 vendor (8 bytes), product (16) and revision (4), space padded. "Msft" is
        /// what Hyper-V says, and storvsc keys on it (forced SPC-3 at 0x0501/0x0600, WRITE SAME
        /// at 0x0602).
        public var vendor: String
        public var product: String
        public var revision: String
        /// The block limits' maximum transfer (VPD 0xB0), in bytes: a multiple of 512.
        public var maxTransferBytes: UInt32
        /// Thin provisioning: UNMAP and WRITE SAME with UNMAP punch holes (LBPME=1, LBPRZ=1).
        /// Never on a read-only disk.
        public var unmapSupported: Bool
        /// Most blocks one UNMAP may name (VPD 0xB0), and most descriptors.
        public var maxUnmapBlocks: UInt32 = 0x0080_0000
        public var maxUnmapDescriptors: UInt32 = 64
        /// Most blocks one WRITE SAME may cover (VPD 0xB0).
        public var maxWriteSameBlocks: UInt64 = 0x1_0000

        public init(capacityBlocks: UInt64, readOnly: Bool = false, serial: String = "", cacheMode: CacheMode = .writeback,
                    vendor: String = "Msft", product: String = "Virtual Disk", revision: String = "1.0",
                    maxTransferBytes: UInt32 = 0x10_0000, unmapSupported: Bool = true) {
            self.capacityBlocks = capacityBlocks
            self.readOnly = readOnly
            self.serial = serial
            self.cacheMode = cacheMode
            self.vendor = vendor
            self.product = product
            self.revision = revision
            self.maxTransferBytes = maxTransferBytes
            self.unmapSupported = unmapSupported
        }

        /// Why the configuration cannot make a disk; nil when it can.
        public var problem: String? {
            func printable(_ s: String) -> Bool { s.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F } }
            if capacityBlocks == 0 { return "capacity 0" }
            if capacityBlocks > UInt64.max / UInt64(Self.logicalBlockSize) { return "capacity too large" }
            if !printable(serial) || serial.utf8.count > 64 { return "serial must be printable ASCII, at most 64 bytes" }
            if !printable(vendor) || vendor.utf8.count > 8 { return "vendor must be printable ASCII, at most 8 bytes" }
            if !printable(product) || product.utf8.count > 16 { return "product must be printable ASCII, at most 16 bytes" }
            if !printable(revision) || revision.utf8.count > 4 { return "revision must be printable ASCII, at most 4 bytes" }
            if maxTransferBytes < 512 || maxTransferBytes % 512 != 0 { return "max transfer must be a multiple of 512" }
            if maxUnmapDescriptors == 0 || maxUnmapBlocks == 0 || maxWriteSameBlocks == 0 { return "zero limit" }
            return nil
        }
    }

    /// An operation for the shell on the backing store. Offsets are `lba * 512`, lengths
    /// `blocks * 512`; both were checked against the capacity.
    public enum IO: Hashable, Sendable {
        /// Read into the guest's buffer (its first blocks * 512 bytes).
        case read(lba: UInt64, blocks: UInt32)
        /// Write from the guest's buffer; `fua`: durable before completing.
        case write(lba: UInt64, blocks: UInt32, fua: Bool)
        /// Make every completed write durable (fdatasync).
        case flush
        /// Punch holes (the ranges are non-empty and in range; reads return zeros after).
        case unmap([SCSILBARange])
        /// Write one block (the buffer's first 512 bytes, or zeros with `noDataOut`) to every
        /// block of the range; with `unmap` and an all-zero block, punching a hole does it.
        case writeSame(lba: UInt64, blocks: UInt64, unmap: Bool, noDataOut: Bool, fua: Bool)

        /// Bytes taken from or given to the guest's buffer when it succeeds. UNMAP's are its
        /// parameter list's, which only the request knows (`complete(_:io:result:)`): 0 here.
        public var transferred: UInt32 {
            switch self {
            case .read(_, let n), .write(_, let n, _): n * UInt32(Configuration.logicalBlockSize)
            case .writeSame(_, _, _, let ndob, _): ndob ? 0 : UInt32(Configuration.logicalBlockSize)
            case .flush, .unmap: 0
            }
        }
    }

    public enum IOResult: Hashable, Sendable {
        case success
        /// The host call failed (EIO, ENOSPC, ...): MEDIUM ERROR for the guest.
        case ioError
    }

    public enum Decision: Hashable, Sendable {
        case complete(SCSICompletion)
        case dataIn([UInt8])
        case io(IO)
        case needParameterList(byteCount: Int)
    }

    public let configuration: Configuration
    public var capacityBlocks: UInt64 { configuration.capacityBlocks }
    static let blockSize = UInt64(Configuration.logicalBlockSize)
    var maxTransferBlocks: UInt32 { configuration.maxTransferBytes / UInt32(Configuration.logicalBlockSize) }
    /// Thin provisioning is in effect (never on a read-only disk).
    public var thinProvisioned: Bool { configuration.unmapSupported && !configuration.readOnly }

    /// Nil when `configuration.problem` says why not.
    public init?(_ configuration: Configuration) {
        guard configuration.problem == nil else { return nil }
        self.configuration = configuration
    }

    // MARK: - Commands

    public func execute(_ r: SCSIRequest) -> Decision {
        let cdb = r.cdb
        guard let needed = cdb.opcode.cdbLength, cdb.count >= needed else {
            return cdb.opcode.cdbLength == nil ? fail(.invalidCommandOperationCode) : fail(.invalidFieldInCDB)
        }
        switch cdb.opcode {
        case .testUnitReady, .startStopUnit:
            return .complete(.good())
        case .requestSense:
            guard cdb[1] & 0x01 == 0 else { return fail(.invalidFieldInCDB) }
            return dataIn(SCSISense(key: .noSense, .none).bytes, allocation: Int(cdb[4]), r)
        case .inquiry:
            return inquiry(r)
        case .reportLUNs:
            return SCSIController.reportLUNs(r, luns: [0])
        case .readCapacity10:
            guard cdb[8] & 0x01 != 0 || cdb.be32(2) == 0 else { return fail(.invalidFieldInCDB) }
            let last = min(capacityBlocks - 1, 0xFFFF_FFFF)
            return dataIn(be32(UInt32(last)) + be32(UInt32(Self.blockSize)), allocation: 8, r)
        case .serviceActionIn16:
            guard cdb[1] & 0x1F == 0x10 else { return fail(.invalidFieldInCDB) }
            return dataIn(readCapacity16Data(), allocation: Int(cdb.be32(10)), r)
        case .modeSense6, .modeSense10:
            return modeSense(r)
        case .read6, .write6:
            let lba = UInt64(cdb.be24(1) & 0x1F_FFFF)
            let blocks = cdb[4] == 0 ? 256 : UInt32(cdb[4])
            return readWrite(r, write: cdb.opcode == .write6, lba: lba, blocks: blocks, flags: 0)
        case .read10, .write10:
            return readWrite(r, write: cdb.opcode == .write10, lba: UInt64(cdb.be32(2)), blocks: UInt32(cdb.be16(7)), flags: cdb[1])
        case .read12, .write12:
            return readWrite(r, write: cdb.opcode == .write12, lba: UInt64(cdb.be32(2)), blocks: cdb.be32(6), flags: cdb[1])
        case .read16, .write16:
            return readWrite(r, write: cdb.opcode == .write16, lba: cdb.be64(2), blocks: cdb.be32(10), flags: cdb[1])
        case .verify10, .verify16:
            // BYTCHK (bits 2:1) compares data: not supported. VRPROTECT (7:5): no protection.
            guard cdb[1] & 0xE6 == 0 else { return fail(.invalidFieldInCDB) }
            let (lba, blocks) = cdb.opcode == .verify10 ? (UInt64(cdb.be32(2)), UInt64(cdb.be16(7))) : (cdb.be64(2), UInt64(cdb.be32(10)))
            guard inRange(lba, blocks) else { return fail(.lbaOutOfRange) }
            // The blocks are in the file: nothing to verify against.
            return .complete(.good())
        case .synchronizeCache10, .synchronizeCache16:
            let (lba, blocks) = cdb.opcode == .synchronizeCache10 ? (UInt64(cdb.be32(2)), UInt64(cdb.be16(7))) : (cdb.be64(2), UInt64(cdb.be32(10)))
            // 0 blocks: from lba to the end.
            guard lba < capacityBlocks, inRange(lba, blocks) else { return fail(.lbaOutOfRange) }
            if configuration.readOnly || configuration.cacheMode == .unsafe { return .complete(.good()) }
            return .io(.flush)
        case .unmap:
            return unmap(r)
        case .writeSame10, .writeSame16:
            return writeSame(r)
        default:
            return fail(.invalidCommandOperationCode)
        }
    }

    /// UNMAP with its parameter list (the first `needParameterList` bytes of the guest's buffer).
    ///
    /// ```
    /// 0 BE16 UNMAP data length   2 BE16 block descriptor data length   4 reserved (4)
    /// 8 descriptors, 16 bytes each: BE64 LBA, BE32 blocks, 4 reserved
    /// ```
    public func executeUnmap(_ r: SCSIRequest, parameters p: [UInt8]) -> Decision {
        guard p.count >= 8 else { return fail(.parameterListLengthError) }
        let described = Int(UInt16(p[2]) << 8 | UInt16(p[3]))
        let count = min(described, p.count - 8) / 16
        guard count <= Int(configuration.maxUnmapDescriptors) else { return fail(.invalidFieldInParameterList) }
        var ranges: [SCSILBARange] = []
        var total: UInt64 = 0
        for i in 0..<count {
            let at = 8 + 16 * i
            let lba = (0..<8).reduce(UInt64(0)) { $0 << 8 | UInt64(p[at + $1]) }
            let blocks = (8..<12).reduce(UInt32(0)) { $0 << 8 | UInt32(p[at + $1]) }
            guard inRange(lba, UInt64(blocks)) else { return fail(.lbaOutOfRange) }
            total += UInt64(blocks)
            guard total <= UInt64(configuration.maxUnmapBlocks) else { return fail(.invalidFieldInParameterList) }
            if blocks > 0 { ranges.append(SCSILBARange(lba: lba, blocks: blocks)) }
        }
        // Success reports the parameter list taken, as a real disk does (with ranges, the
        // completion after the I/O: `complete(_:io:result:)`).
        return ranges.isEmpty ? .complete(.good(transferred: UInt32(p.count))) : .io(.unmap(ranges))
    }

    /// UNMAP's parameter list length: the CDB's (bytes 7-8), bounded by the guest's buffer
    /// (`unmap` refused a longer one before asking for it).
    static func unmapParameterListLength(_ r: SCSIRequest) -> UInt32 {
        min(UInt32(r.cdb.be16(7)), r.dataTransferLength)
    }

    /// The final status of request `r`'s operation, which the shell ran: `complete(_:result:)`,
    /// and a successful UNMAP reports the bytes of its parameter list it took from the guest
    /// (what the `needParameterList` count asked for).
    public func complete(_ r: SCSIRequest, io: IO, result: IOResult) -> SCSICompletion {
        var c = complete(io, result: result)
        if case .unmap = io, result == .success { c.transferred = Self.unmapParameterListLength(r) }
        return c
    }

    /// The final status of an operation the shell ran (UNMAP: with 0 bytes moved; the shells
    /// use `complete(_:io:result:)`, which knows the parameter list).
    public func complete(_ io: IO, result: IOResult) -> SCSICompletion {
        switch result {
        case .success:
            return .good(transferred: io.transferred)
        case .ioError:
            if case .read = io { return .checkCondition(SCSISense(key: .mediumError, .unrecoveredReadError)) }
            return .checkCondition(SCSISense(key: .mediumError, .writeError))
        }
    }

    // MARK: - Helpers

    func fail(_ asc: SCSIAdditionalSense) -> Decision { .complete(.illegalRequest(asc)) }

    /// A CDB that does not fit the buffer the guest gave.
    func badBuffer() -> Decision {
        .complete(.checkCondition(.illegalRequest(.invalidFieldInCDB), srbStatus: .invalidRequest))
    }

    var writeProtected: Decision { .complete(.checkCondition(SCSISense(key: .dataProtect, .writeProtected))) }

    /// lba + blocks <= capacity, without overflow.
    func inRange(_ lba: UInt64, _ blocks: UInt64) -> Bool {
        lba <= capacityBlocks && blocks <= capacityBlocks - lba
    }

    /// Response data cut to the allocation length and the guest's buffer.
    func dataIn(_ bytes: [UInt8], allocation: Int, _ r: SCSIRequest) -> Decision {
        let n = min(bytes.count, allocation, Int(r.dataTransferLength))
        if n > 0 && r.direction != .fromDevice { return badBuffer() }
        return .dataIn(n == bytes.count ? bytes : Array(bytes.prefix(n)))
    }

    private func readWrite(_ r: SCSIRequest, write: Bool, lba: UInt64, blocks: UInt32, flags: UInt8) -> Decision {
        // RDPROTECT/WRPROTECT: no protection information.
        guard flags & 0xE0 == 0 else { return fail(.invalidFieldInCDB) }
        guard blocks <= maxTransferBlocks else { return fail(.invalidFieldInCDB) }
        let bytes = UInt64(blocks) * Self.blockSize
        if bytes > 0 {
            guard bytes <= UInt64(r.dataTransferLength), r.direction == (write ? .toDevice : .fromDevice) else { return badBuffer() }
        }
        if write && configuration.readOnly { return writeProtected }
        guard lba < capacityBlocks, inRange(lba, UInt64(blocks)) else { return fail(.lbaOutOfRange) }
        if blocks == 0 { return .complete(.good()) }
        if !write { return .io(.read(lba: lba, blocks: blocks)) }
        let fua = switch configuration.cacheMode {
        case .writeback: flags & 0x08 != 0
        case .direct: true
        case .unsafe: false
        }
        return .io(.write(lba: lba, blocks: blocks, fua: fua))
    }

    private func unmap(_ r: SCSIRequest) -> Decision {
        let cdb = r.cdb
        guard configuration.unmapSupported else { return fail(.invalidCommandOperationCode) }
        guard cdb[1] & 0x01 == 0 else { return fail(.invalidFieldInCDB) }   // ANCHOR
        let length = Int(cdb.be16(7))
        if length > 0 {
            guard length <= Int(r.dataTransferLength), r.direction == .toDevice else { return badBuffer() }
        }
        if configuration.readOnly { return writeProtected }
        if length == 0 { return .complete(.good()) }
        guard length >= 8 else { return fail(.parameterListLengthError) }
        return .needParameterList(byteCount: length)
    }

    private func writeSame(_ r: SCSIRequest) -> Decision {
        let cdb = r.cdb
        let sixteen = cdb.opcode == .writeSame16
        // WRPROTECT (7:5), ANCHOR (4); NDOB (bit 0) only in the 16-byte form.
        guard cdb[1] & (sixteen ? 0xF0 : 0xF1) == 0 else { return fail(.invalidFieldInCDB) }
        let unmap = cdb[1] & 0x08 != 0, noDataOut = cdb[1] & 0x01 != 0
        let (lba, blocks) = sixteen ? (cdb.be64(2), UInt64(cdb.be32(10))) : (UInt64(cdb.be32(2)), UInt64(cdb.be16(7)))
        // WSNZ=1 (VPD 0xB0): 0 blocks is not "to the end".
        guard blocks > 0, blocks <= configuration.maxWriteSameBlocks else { return fail(.invalidFieldInCDB) }
        if !noDataOut {
            guard r.dataTransferLength >= UInt32(Self.blockSize), r.direction == .toDevice else { return badBuffer() }
        }
        if configuration.readOnly { return writeProtected }
        guard lba < capacityBlocks, inRange(lba, blocks) else { return fail(.lbaOutOfRange) }
        return .io(.writeSame(lba: lba, blocks: blocks, unmap: unmap && thinProvisioned, noDataOut: noDataOut,
                              fua: configuration.cacheMode == .direct))
    }
}

/// One UNMAP block descriptor, checked.
public struct SCSILBARange: Hashable, Sendable {
    public var lba: UInt64
    public var blocks: UInt32
    public init(lba: UInt64, blocks: UInt32) { self.lba = lba; self.blocks = blocks }
}

func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
func be32(_ v: UInt32) -> [UInt8] { be16(UInt16(v >> 16)) + be16(UInt16(v & 0xFFFF)) }
func be64(_ v: UInt64) -> [UInt8] { be32(UInt32(v >> 32)) + be32(UInt32(v & 0xFFFF_FFFF)) }
