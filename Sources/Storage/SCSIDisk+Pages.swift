/// The data-in pages: INQUIRY (standard and VPD), READ CAPACITY (16), MODE SENSE.
extension SCSIDisk {
    /// Padded ASCII field.
    static func ascii(_ s: String, _ width: Int) -> [UInt8] {
        Array((Array(s.utf8) + [UInt8](repeating: 0x20, count: width)).prefix(width))
    }

    /// Standard INQUIRY data, 36 bytes (SPC-4 6.6.2):
    ///
    /// | byte | value |
    /// |---|---|
    /// | 0 | 0x00: PQ 0 (connected), PDT 0 (direct access); 0x7F for a missing LUN |
    /// | 1 | 0: not removable |
    /// | 2 | 0x05: SPC-3 (Linux scsi_level 6: READ CAPACITY (16) first, VPD pages read) |
    /// | 3 | 0x02: response data format 2 |
    /// | 4 | 31: additional length (36 - 5) |
    /// | 7 | 0x02: CmdQue |
    /// | 8 | vendor (8), 16 product (16), 32 revision (4), space padded |
    public static func standardInquiry(vendor: String, product: String, revision: String, peripheral: UInt8 = 0) -> [UInt8] {
        [peripheral, 0, 0x05, 0x02, 31, 0, 0, 0x02] + ascii(vendor, 8) + ascii(product, 16) + ascii(revision, 4)
    }

    /// The VPD pages this disk has, ascending (page 0x00 lists them).
    public var vpdPages: [UInt8] {
        configuration.serial.isEmpty ? [0x00, 0x83, 0xB0, 0xB1, 0xB2] : [0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2]
    }

    func inquiry(_ r: SCSIRequest) -> Decision {
        let cdb = r.cdb
        let evpd = cdb[1] & 0x01 != 0, page = cdb[2], allocation = Int(cdb.be16(3))
        // CMDDT (bit 1, obsolete) and a page code without EVPD are invalid.
        guard cdb[1] & 0xFE == 0, evpd || page == 0 else { return fail(.invalidFieldInCDB) }
        let c = configuration
        guard evpd else {
            return dataIn(Self.standardInquiry(vendor: c.vendor, product: c.product, revision: c.revision), allocation: allocation, r)
        }
        guard let data = vpd(page) else { return fail(.invalidFieldInCDB) }
        return dataIn(data, allocation: allocation, r)
    }

    /// VPD page `page` with its 4-byte header {PDT 0, page, BE16 length}; nil when not listed.
    public func vpd(_ page: UInt8) -> [UInt8]? {
        guard vpdPages.contains(page) else { return nil }
        let body: [UInt8]
        let c = configuration
        switch page {
        case 0x00:
            body = vpdPages
        case 0x80:
            // Unit serial number.
            body = Array(c.serial.utf8)
        case 0x83:
            // Device identification: one T10 vendor ID designator (code set 2 ASCII, association
            // 0 logical unit, type 1): vendor (8) + product (16) + serial.
            let id = Self.ascii(c.vendor, 8) + Self.ascii(c.product, 16) + Array(c.serial.utf8)
            body = [0x02, 0x01, 0x00, UInt8(id.count)] + id
        case 0xB0:
            // Block limits (SBC-3 6.5.3), page length 0x3C.
            var b = [UInt8](repeating: 0, count: 0x3C)
            b[0] = 0x01                                                       // byte 4: WSNZ
            b[2...3] = ArraySlice(be16(8))                                    // byte 6: optimal granularity (4 KiB)
            b[4...7] = ArraySlice(be32(maxTransferBlocks))                    // byte 8: max transfer length
            if thinProvisioned {
                b[16...19] = ArraySlice(be32(c.maxUnmapBlocks))               // byte 20: max unmap LBA count
                b[20...23] = ArraySlice(be32(c.maxUnmapDescriptors))          // byte 24: max unmap descriptors
                b[24...27] = ArraySlice(be32(8))                              // byte 28: optimal unmap granularity
                b[28...31] = ArraySlice(be32(0x8000_0000))                    // byte 32: UGAVALID, alignment 0
            }
            if !c.readOnly { b[32...39] = ArraySlice(be64(c.maxWriteSameBlocks)) } // byte 36: max WRITE SAME
            body = b
        case 0xB1:
            // Block device characteristics: byte 4 BE16 medium rotation rate 1 (non-rotating).
            var b = [UInt8](repeating: 0, count: 0x3C)
            b[1] = 0x01
            body = b
        default:
            // 0xB2 logical block provisioning: byte 5 LBPU | LBPWS | LBPWS10 | LBPRZ (bit 2),
            // byte 6 provisioning type 2 (thin); all zero when not thin-provisioned.
            body = thinProvisioned ? [0x00, 0xE4, 0x02, 0x00] : [0, 0, 0, 0]
        }
        return [0x00, page] + be16(UInt16(body.count)) + body
    }

    /// READ CAPACITY (16) data, 32 bytes: BE64 last LBA, BE32 block length 512, byte 12
    /// PROT_EN 0, byte 13 physical exponent 0, byte 14 LBPME (0x80) | LBPRZ (0x40) when thin.
    func readCapacity16Data() -> [UInt8] {
        var b = be64(capacityBlocks - 1) + be32(UInt32(Self.blockSize)) + [UInt8](repeating: 0, count: 20)
        if thinProvisioned { b[14] = 0xC0 }
        return b
    }

    /// The mode header's device-specific parameter: WP (0x80) for read-only disks, DPOFUA (0x10).
    var deviceSpecificParameter: UInt8 { (configuration.readOnly ? 0x80 : 0) | 0x10 }

    /// Caching mode page (0x08, 20 bytes): byte 2 WCE (0x04) per the cache mode, RCD 0.
    /// Control mode page (0x0A, 12 bytes): byte 3 queue algorithm modifier 1 (unrestricted).
    /// Changeable values (PC 1) are all zero: MODE SELECT is not supported.
    func modePage(_ page: UInt8, changeable: Bool) -> [UInt8] {
        if page == 0x08 {
            var b = [UInt8](repeating: 0, count: 20)
            b[0] = 0x08; b[1] = 0x12
            if !changeable && configuration.cacheMode.writeCacheEnabled { b[2] = 0x04 }
            return b
        }
        var b = [UInt8](repeating: 0, count: 12)
        b[0] = 0x0A; b[1] = 0x0A
        if !changeable { b[3] = 0x10 }
        return b
    }

    /// MODE SENSE (6) and (10): header {(6) mode data length, medium type, device-specific
    /// parameter, block descriptor length 0 | (10) BE16 length, medium type, device-specific, 0,
    /// 0, BE16 block descriptor length 0}, no block descriptors, then the pages. Page 0x3F
    /// (subpage 0 or 0xFF) returns 0x08 and 0x0A. Saved values (PC 3): SAVING PARAMETERS NOT
    /// SUPPORTED 39/00. Other pages or subpages: INVALID FIELD IN CDB.
    func modeSense(_ r: SCSIRequest) -> Decision {
        let cdb = r.cdb
        let ten = cdb.opcode == .modeSense10
        let pc = cdb[2] >> 6, page = cdb[2] & 0x3F, subpage = cdb[3]
        let allocation = ten ? Int(cdb.be16(7)) : Int(cdb[4])
        guard pc != 3 else { return fail(.savingParametersNotSupported) }
        let pages: [UInt8]
        switch (page, subpage) {
        case (0x08, 0), (0x0A, 0): pages = [page]
        case (0x3F, 0), (0x3F, 0xFF): pages = [0x08, 0x0A]
        default: return fail(.invalidFieldInCDB)
        }
        let body = pages.flatMap { modePage($0, changeable: pc == 1) }
        let header: [UInt8] = ten
            ? be16(UInt16(6 + body.count)) + [0, deviceSpecificParameter, 0, 0, 0, 0]
            : [UInt8(3 + body.count), 0, deviceSpecificParameter, 0]
        return dataIn(header + body, allocation: allocation, r)
    }
}
