import IPC
import Storage

/// The storage worker's operator faults and metrics (docs/faults.md, docs/api.md), kept out of
/// StorageService.swift: the service calls `injectedFault` for an SRB's disk operation while a
/// fault is armed, and its `accounting` (when the supervisor gave it a metrics region) at the
/// take, the SRB, the operation's result and the completion.
extension StorageService {
    /// The per-disk counters live in `region` from now on (the worker calls it once, before its
    /// filter, with the supervisor's region: a restarted worker continues its predecessor's).
    public func attachMetrics(_ region: StorageMetricsRegion) {
        accounting = StorageIOAccounting(region: region, entries: table.capacity)
    }

    /// An operator's fault for this worker kind (`io-error`, `torn`): armed, said on the log, true;
    /// false for a kind the worker runtime handles itself.
    public func inject(_ fault: WorkerFault) -> Bool {
        guard let line = faults.arm(fault) else { return false }
        log(line)
        return true
    }

    /// What is still armed (tests).
    public var armedFaults: StorageFaultState { faults }

    /// The armed fault's verdict for one disk operation: nil, perform it; `.some(.ioError)`,
    /// complete it as a failed host call (the same `SCSIDisk.complete` as a real EIO: MEDIUM
    /// ERROR with 11/00 or 0C/00); `.some(nil)`, a torn write: its first part went to the disk,
    /// the service is dead and `afterTornWrite` ran (the worker exits there), nothing completes.
    func injectedFault(_ io: SCSIDisk.IO, _ srb: VStorSRB, _ buffer: SCSIDataBuffer, entry: Int,
                       backend: any DiskBackend) -> SCSIDisk.IOResult?? {
        switch faults.verdict(for: io) {
        case .perform:
            return nil
        case .fail:
            accounting?.io(entry, io, .ioError)
            log("fault injection: LUN \(srb.lun): \(Self.describe(io)) failed on purpose (MEDIUM ERROR to the guest)")
            return .some(.ioError)
        case .tear(let bytes):
            guard case .write(let lba, let blocks, _) = io else { return nil }
            let block = UInt64(SCSIDisk.Configuration.logicalBlockSize)
            let part = buffer.prefix(bytes).map { UnsafeRawBufferPointer($0) }
            let outcome: String
            do throws(DiskIOError) {
                try backend.write(at: lba * block, from: part, fua: false)
                outcome = "\(bytes) of \(UInt64(blocks) * block) bytes written"
            } catch {
                outcome = "writing its first \(bytes) bytes failed (errno \(error.errno))"
            }
            log("fault injection: torn write: LUN \(srb.lun) lba \(lba) blocks \(blocks) (transaction 0x\(String(srb.transactionID, radix: 16))): "
                + "\(outcome); dying before its completion (the successor redoes it)")
            dead = true
            afterTornWrite()
            return .some(nil)
        }
    }

    static func describe(_ io: SCSIDisk.IO) -> String {
        switch io {
        case .read(let lba, let n): return "read of lba \(lba) blocks \(n)"
        case .write(let lba, let n, _): return "write of lba \(lba) blocks \(n)"
        case .flush: return "flush"
        case .unmap(let r): return "unmap of \(r.count) range(s)"
        case .writeSame(let lba, let n, _, _, _): return "write same of lba \(lba) blocks \(n)"
        }
    }
}
