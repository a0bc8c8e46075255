import Glibc
import IPC

/// One `--disk PATH[,readonly][,serial=STR][,cache=writeback|direct|unsafe][,protocol=0xNNNN]`: a raw image (a
/// regular file, sparse allowed) or a block device, one LUN of the VM's SCSI controller in
/// command-line order (docs/storage.md, "Disks on the command line").
///
/// `open` is the only place a disk file is opened: by the launcher, before any VM process or
/// jail exists. The descriptor is what travels on (to the VM process across exec, then to the
/// storage worker with its setup); the worker never sees a path. The advisory lock taken here
/// (flock, on the open file description, so every duplicate of the fd holds it) lasts as long as
/// any of those descriptors: an exclusive lock for a writable disk, a shared one for a read-only
/// disk, so two VMs never write one image and nobody writes an image a VM reads.
public struct DiskImage: Equatable, Sendable {
    public enum Cache: String, Sendable, CaseIterable {
        /// Writes complete when the host has them (page cache); FUA writes and SYNCHRONIZE CACHE
        /// are made durable with fdatasync before they complete. The guest sees a write cache (WCE 1).
        case writeback
        /// O_DIRECT (no host page cache) and every write durable (fdatasync) before it completes;
        /// the guest sees no write cache (WCE 0) and sends no flushes.
        case direct
        /// As writeback, but flushes and FUA are ignored: nothing is made durable on request.
        case unsafe
    }

    public var path: String
    public var readOnly = false
    /// VPD page 0x80; empty: the worker makes one ("synthvm-disk<LUN>").
    public var serial = ""
    public var cache = Cache.writeback
    /// `protocol=`: the newest vstor protocol version the SCSI controller may agree (one of
    /// `StorageWorkerSetup.protocolVersions`); nil: the newest. One controller serves every disk,
    /// so it takes the lowest any disk gives (`controllerProtocolVersion`).
    public var protocolVersion: UInt16?
    /// The open descriptor (owned by whoever opened it; -1 before `open`).
    public var fd: Int32 = -1
    public var sizeBytes: UInt64 = 0

    /// Disks one controller serves (`StorageWorkerSetup.maxDisks`, `SCSIController.maxLUNs`).
    public static let maxDisks = StorageWorkerSetup.maxDisks
    /// `O_DIRECT` on x86-64 (Glibc does not export it to Swift).
    static let oDirect: Int32 = 0o40000

    public init(path: String, readOnly: Bool = false, serial: String = "", cache: Cache = .writeback) {
        self.path = path
        self.readOnly = readOnly
        self.serial = serial
        self.cache = cache
    }

    /// Parses one `--disk` value (no file is touched).
    public static func parse(_ spec: String) throws(MonitorError) -> DiskImage {
        var parts = spec.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        let path = parts.removeFirst()
        guard !path.isEmpty else {
            throw .config("--disk \(spec): expected PATH[,readonly][,serial=STR][,cache=writeback|direct|unsafe][,protocol=0xNNNN]")
        }
        var disk = DiskImage(path: path)
        var seen: Set<String> = []
        for p in parts {
            let key = p.split(separator: "=", maxSplits: 1).first.map(String.init) ?? p
            guard seen.insert(key).inserted else { throw .config("--disk \(spec): \(key) given twice") }
            if p == "readonly" {
                disk.readOnly = true
            } else if p.hasPrefix("serial=") {
                disk.serial = String(p.dropFirst(7))
                guard !disk.serial.isEmpty, StorageWorkerSetup.isValidSerial(disk.serial) else {
                    throw .config("--disk \(spec): serial must be 1 to 64 printable ASCII characters")
                }
            } else if p.hasPrefix("cache=") {
                guard let c = Cache(rawValue: String(p.dropFirst(6))) else {
                    throw .config("--disk \(spec): cache must be writeback, direct or unsafe")
                }
                disk.cache = c
            } else if p.hasPrefix("protocol=") {
                let value = p.dropFirst(9)
                guard value.hasPrefix("0x"), let v = UInt16(value.dropFirst(2), radix: 16),
                      StorageWorkerSetup.protocolVersions.contains(v) else {
                    throw .config("--disk \(spec): protocol must be one of "
                                  + StorageWorkerSetup.protocolVersions.map { "0x" + hex4($0) }.joined(separator: ", "))
                }
                disk.protocolVersion = v
            } else {
                throw .config("--disk \(spec): unknown option \"\(p)\" (expected readonly, serial=STR, cache=writeback|direct|unsafe, protocol=0xNNNN)")
            }
        }
        return disk
    }

    /// Opens and locks every disk, in order, checking what `--disk` promises: the file exists, is
    /// a regular file or a block device, has a size that is a non-zero multiple of 512, can be
    /// opened for writing unless read-only, is not given twice (same device and inode), is not
    /// locked by another process, and there are at most `maxDisks`. On a failure every disk
    /// opened so far is closed again.
    public static func openAll(_ disks: [DiskImage]) throws(MonitorError) -> [DiskImage] {
        guard disks.count <= maxDisks else {
            throw .config("--disk: \(disks.count) disks, but the SCSI controller has \(maxDisks) LUNs")
        }
        var opened: [DiskImage] = []
        var identities: [(dev_t, ino_t, String)] = []
        do throws(MonitorError) {
            for d in disks {
                // Before the lock: our own lock on the first would hide the duplicate.
                var early = stat()
                if stat(d.path, &early) == 0, let other = identities.first(where: { $0.0 == early.st_dev && $0.1 == early.st_ino }) {
                    throw .config("--disk \(d.path): the same file as --disk \(other.2)")
                }
                let (o, st) = try open(d)
                opened.append(o)
                if let other = identities.first(where: { $0.0 == st.st_dev && $0.1 == st.st_ino }) {
                    throw .config("--disk \(d.path): the same file as --disk \(other.2)")
                }
                identities.append((st.st_dev, st.st_ino, d.path))
            }
        } catch {
            for o in opened { close(o.fd) }
            throw error
        }
        return opened
    }

    static func open(_ d: DiskImage) throws(MonitorError) -> (DiskImage, stat) {
        func why() -> String { String(cString: strerror(errno)) }
        var st = stat()
        guard stat(d.path, &st) == 0 else { throw .config("--disk \(d.path): \(why())") }
        let type = st.st_mode & S_IFMT
        if type == S_IFDIR { throw .config("--disk \(d.path): is a directory") }
        guard type == S_IFREG || type == S_IFBLK else { throw .config("--disk \(d.path): not a regular file or a block device") }
        var flags = (d.readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC
        if d.cache == .direct { flags |= oDirect }
        let fd = Glibc.open(d.path, flags)
        guard fd >= 0 else {
            if !d.readOnly, errno == EACCES || errno == EROFS || errno == EPERM {
                throw .config("--disk \(d.path): cannot open it for writing (\(why())); add ,readonly to use it read-only")
            }
            if d.cache == .direct, errno == EINVAL {
                throw .config("--disk \(d.path): cache=direct: the file system does not support O_DIRECT")
            }
            throw .config("--disk \(d.path): \(why())")
        }
        var out = d
        out.fd = fd
        do throws(MonitorError) {
            guard fstat(fd, &st) == 0 else { throw .config("--disk \(d.path): \(why())") }
            let size = lseek(fd, 0, SEEK_END)
            guard size >= 0 else { throw .config("--disk \(d.path): \(why())") }
            guard size > 0 else { throw .config("--disk \(d.path): is empty") }
            guard size % 512 == 0 else { throw .config("--disk \(d.path): size \(size) is not a multiple of 512 bytes") }
            out.sizeBytes = UInt64(size)
            // Like QEMU's image locking: one writer, or any number of readers, per image.
            if flock(fd, (d.readOnly ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0 {
                let what = d.readOnly ? "Failed to get shared \"read\" lock" : "Failed to get \"write\" lock"
                let because = errno == EWOULDBLOCK ? "another process (another VM?) holds a lock on it"
                                                  : why()
                throw .config("--disk \(d.path): \(what): \(because)")
            }
        } catch {
            close(fd)
            throw error
        }
        return (out, st)
    }

    /// The newest vstor version the controller serving `disks` accepts: the lowest `protocol=`
    /// given, else the newest this host has.
    public static func controllerProtocolVersion(_ disks: [DiskImage]) -> UInt16 {
        disks.compactMap(\.protocolVersion).min() ?? StorageWorkerSetup.protocolVersions[0]
    }

    static func hex4(_ v: UInt16) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }

    /// For the setup record.
    var setupDisk: StorageWorkerSetup.Disk {
        let c: StorageWorkerSetup.Disk.Cache = switch cache {
        case .writeback: .writeback
        case .direct: .direct
        case .unsafe: .unsafe
        }
        return StorageWorkerSetup.Disk(sizeBytes: sizeBytes, readOnly: readOnly, cache: c, serial: serial)
    }
}
