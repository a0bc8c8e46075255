import Glibc
import IPC
import Storage

/// The ring thread's bookkeeping for the per-disk metrics (`StorageMetricsRegion`): per in-flight
/// entry, when it was taken from the ring, which disk it is for, what kind of operation it became
/// and how it ended; counted into the region when its completion is written to the guest's ring.
/// Private memory of the ring thread, indexed like the in-flight table; nothing on the hot path
/// but array stores, one clock read per batch (the vDSO, no system call) and a few relaxed stores.
final class StorageIOAccounting {
    struct Pending {
        var disk: Int
        var op: StorageMetricsRegion.Op = .other
        var bytes: UInt64 = 0
        var mediumError = false
    }

    let region: StorageMetricsRegion
    /// CLOCK_MONOTONIC ns when each entry was taken (0: unknown, e.g. a redone entry).
    var takenAt: [UInt64]
    /// What each entry's SRB is (nil: not an SRB, or not decided yet).
    var pending: [Pending?]

    init(region: StorageMetricsRegion, entries: Int) {
        self.region = region
        takenAt = [UInt64](repeating: 0, count: entries)
        pending = [Pending?](repeating: nil, count: entries)
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// A batch of entries taken from the ring.
    func taken(_ entries: [Int]) {
        let t = Self.now()
        for i in entries where i < takenAt.count {
            takenAt[i] = t
            pending[i] = nil
        }
    }

    /// Entry `i` is an SRB for LUN `lun` (counted as `other` unless it reaches the disk).
    func srb(_ i: Int, lun: UInt8) {
        guard i < pending.count else { return }
        pending[i] = Pending(disk: Int(lun))
        if takenAt[i] == 0 { takenAt[i] = Self.now() }
    }

    /// Entry `i`'s operation ended with `result` (performed, failed, or failed on purpose).
    func io(_ i: Int, _ io: SCSIDisk.IO, _ result: SCSIDisk.IOResult) {
        guard i < pending.count, var p = pending[i] else { return }
        switch io {
        case .read: p.op = .read
        case .write, .writeSame: p.op = .write
        case .flush: p.op = .flush
        case .unmap: p.op = .unmap
        }
        p.mediumError = result == .ioError
        p.bytes = result == .success ? UInt64(io.transferred) : 0
        pending[i] = p
    }

    /// Entry `i`'s completion was written to the ring (`now`: one clock read per batch).
    func completed(_ i: Int, now: inout UInt64) {
        guard i < pending.count, let p = pending[i] else { return }
        pending[i] = nil
        if now == 0 { now = Self.now() }
        let start = takenAt[i]
        takenAt[i] = 0
        region.record(disk: p.disk, op: p.op, bytes: p.bytes, mediumError: p.mediumError,
                      nanoseconds: start != 0 && now > start ? now - start : 0)
    }
}
