/// One synthetic SCSI controller: its disks at path 0, target 0, LUN 0, 1, ... (command-line
/// order), and the answers for every address without a disk, chosen so that Linux creates no
/// phantom disk and deletes nothing it should keep (storvsc_drv.c `storvsc_handle_error`,
/// scsi_scan.c `scsi_probe_lun`; OpenVMM storvsp `execute_scsi`):
///
/// | command to a missing LUN | answer |
/// |---|---|
/// | REPORT LUNS (any LUN) | GOOD, the controller's LUN list for that path and target (empty elsewhere) |
/// | standard INQUIRY | GOOD, 36 bytes, byte 0 = 0x7F (PQ 3, PDT 0x1F: no LUN here); vendor, product and revision only at LUN 0 |
/// | VPD INQUIRY | CHECK CONDITION, SRB_STATUS_INVALID_REQUEST, ILLEGAL REQUEST / INVALID FIELD IN CDB |
/// | anything else | SRB_STATUS_INVALID_LUN, CHECK CONDITION, no sense (Linux: DID_NO_CONNECT) |
///
/// A zero-length or failed INQUIRY would not do: storvsc forces INQUIRY and MODE SENSE to
/// succeed, and the midlayer takes zeroed INQUIRY data as a disk (PQ 0, PDT 0).
public struct SCSIController: Hashable, Sendable {
    /// LUNs per controller (Hyper-V's SCSI controller: 64).
    public static let maxLUNs = 64

    public let disks: [SCSIDisk]

    /// Nil with more than `maxLUNs` disks.
    public init?(disks: [SCSIDisk]) {
        guard disks.count <= Self.maxLUNs else { return nil }
        self.disks = disks
    }

    public func disk(pathID: UInt8, targetID: UInt8, lun: UInt8) -> SCSIDisk? {
        guard pathID == 0, targetID == 0, Int(lun) < disks.count else { return nil }
        return disks[Int(lun)]
    }

    public func disk(for srb: VStorSRB) -> SCSIDisk? { disk(pathID: srb.pathID, targetID: srb.targetID, lun: srb.lun) }

    /// Routes an SRB to its disk, or answers for the missing LUN.
    public func execute(_ srb: VStorSRB) -> SCSIDisk.Decision {
        let r = srb.scsiRequest
        if r.cdb.opcode == .reportLUNs {
            let luns = srb.pathID == 0 && srb.targetID == 0 ? (0..<disks.count).map { UInt8($0) } : []
            return Self.reportLUNs(r, luns: luns)
        }
        if let disk = disk(for: srb) { return disk.execute(r) }
        return Self.missingLUN(r, lun: srb.lun)
    }

    /// UNMAP's second step, for the SRB's disk.
    public func executeUnmap(_ srb: VStorSRB, parameters: [UInt8]) -> SCSIDisk.Decision {
        guard let disk = disk(for: srb) else { return Self.missingLUN(srb.scsiRequest, lun: srb.lun) }
        return disk.executeUnmap(srb.scsiRequest, parameters: parameters)
    }

    /// The final status of an operation the shell ran for the SRB's disk.
    public func complete(_ srb: VStorSRB, io: SCSIDisk.IO, result: SCSIDisk.IOResult) -> SCSICompletion {
        guard let disk = disk(for: srb) else { return SCSICompletion(srbStatus: .invalidLUN, scsiStatus: .checkCondition) }
        return disk.complete(srb.scsiRequest, io: io, result: result)
    }

    static func missingLUN(_ r: SCSIRequest, lun: UInt8) -> SCSIDisk.Decision {
        let cdb = r.cdb
        guard cdb.opcode == .inquiry, cdb.count >= 6 else {
            return .complete(SCSICompletion(srbStatus: .invalidLUN, scsiStatus: .checkCondition))
        }
        guard cdb[1] & 0x03 == 0, cdb[2] == 0 else {
            return .complete(.checkCondition(.illegalRequest(.invalidFieldInCDB), srbStatus: .invalidRequest))
        }
        var data = SCSIDisk.standardInquiry(vendor: "Msft", product: "Virtual Disk", revision: "1.0", peripheral: 0x7F)
        if lun != 0 { for i in 8..<36 { data[i] = 0 } }
        let n = min(data.count, Int(cdb.be16(3)), Int(r.dataTransferLength))
        if n > 0 && r.direction != .fromDevice {
            return .complete(.checkCondition(.illegalRequest(.invalidFieldInCDB), srbStatus: .invalidRequest))
        }
        return .dataIn(Array(data.prefix(n)))
    }

    /// REPORT LUNS (SPC-4 6.33): {BE32 list length, 4 reserved}, then 8 bytes per LUN with the
    /// LUN in byte 1 (peripheral device addressing). SELECT REPORT 0, 1 or 2; an allocation
    /// length under 16 is INVALID FIELD IN CDB.
    static func reportLUNs(_ r: SCSIRequest, luns: [UInt8]) -> SCSIDisk.Decision {
        let cdb = r.cdb
        let allocation = Int(cdb.be32(6))
        guard cdb.count >= 12, cdb[2] <= 2, allocation >= 16 else {
            return .complete(.illegalRequest(.invalidFieldInCDB))
        }
        var data = be32(UInt32(8 * luns.count)) + [0, 0, 0, 0]
        for lun in luns { data += [0, lun, 0, 0, 0, 0, 0, 0] }
        let n = min(data.count, allocation, Int(r.dataTransferLength))
        if n > 0 && r.direction != .fromDevice {
            return .complete(.checkCondition(.illegalRequest(.invalidFieldInCDB), srbStatus: .invalidRequest))
        }
        return .dataIn(Array(data.prefix(n)))
    }
}
