import Testing
@testable import Storage

@Suite("SCSI disk: commands")
struct SCSIDiskCommandTests {
    let d = disk(2048)

    @Test func configurationChecks() {
        #expect(SCSIDisk(.init(capacityBlocks: 0)) == nil)
        #expect(SCSIDisk(.init(capacityBlocks: 1, serial: "bad\u{1}")) == nil)
        #expect(SCSIDisk(.init(capacityBlocks: 1, vendor: "TOO-LONG-VENDOR")) == nil)
        #expect(SCSIDisk(.init(capacityBlocks: 1, maxTransferBytes: 100)) == nil)
        #expect(SCSIDisk(.init(capacityBlocks: UInt64.max)) == nil)
        #expect(SCSIDisk(.init(capacityBlocks: 1)) != nil)
        #expect(SCSIController(disks: [SCSIDisk](repeating: d, count: 65)) == nil)
    }

    @Test func opcodeGroups() {
        #expect(SCSIOpcode.inquiry.cdbLength == 6 && SCSIOpcode.read10.cdbLength == 10 && SCSIOpcode.modeSense10.cdbLength == 10)
        #expect(SCSIOpcode.read16.cdbLength == 16 && SCSIOpcode.read12.cdbLength == 12 && SCSIOpcode(rawValue: 0xC0).cdbLength == nil)
    }

    @Test func standardInquiry() throws {
        let data = try #require(d.execute(readRequest([0x12, 0, 0, 0, 36, 0], length: 36)).data)
        #expect(data.count == 36)
        #expect(data[0] == 0 && data[1] == 0 && data[2] == 5 && data[3] == 2 && data[4] == 31 && data[7] == 0x02)
        #expect(String(decoding: data[8..<16], as: UTF8.self) == "Msft    ")
        #expect(String(decoding: data[16..<32], as: UTF8.self) == "Virtual Disk    ")
        #expect(String(decoding: data[32..<36], as: UTF8.self) == "1.0 ")
        // Cut to the allocation length and to the buffer.
        #expect(d.execute(readRequest([0x12, 0, 0, 0, 5, 0], length: 36)).data?.count == 5)
        #expect(d.execute(readRequest([0x12, 0, 0, 0, 255, 0], length: 20)).data?.count == 20)
        #expect(d.execute(readRequest([0x12, 0, 0, 0, 0, 0], length: 36)).data == [])
        // CMDDT, or a page without EVPD.
        #expect(d.execute(readRequest([0x12, 2, 0, 0, 36, 0])).fails(.illegalRequest, .invalidFieldInCDB))
        #expect(d.execute(readRequest([0x12, 0, 0x80, 0, 36, 0])).fails(.illegalRequest, .invalidFieldInCDB))
        // A buffer the wrong way.
        #expect(d.execute(writeRequest([0x12, 0, 0, 0, 36, 0], length: 36)).completion?.srbStatus == .invalidRequest)
    }

    func vpd(_ page: UInt8, _ disk: SCSIDisk? = nil) -> [UInt8]? {
        (disk ?? d).execute(readRequest([0x12, 1, page, 0x01, 0x00, 0], length: 256)).data
    }

    @Test func vpdPages() throws {
        let list = try #require(vpd(0x00))
        #expect(list == [0, 0, 0, 6, 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2])
        let serial = try #require(vpd(0x80))
        #expect(serial[1] == 0x80 && serial[3] == 10 && String(decoding: serial[4...], as: UTF8.self) == "SYNTH-0001")
        let id = try #require(vpd(0x83))
        #expect(id[1] == 0x83 && id[4] == 0x02 && id[5] == 0x01 && Int(id[7]) == 24 + 10 && id.count == 8 + 34)
        #expect(String(decoding: id[8...], as: UTF8.self) == "Msft    Virtual Disk    SYNTH-0001")
        let b0 = try #require(vpd(0xB0))
        func be32(_ at: Int) -> UInt32 { b0[at..<at + 4].reduce(0) { $0 << 8 | UInt32($1) } }
        #expect(b0.count == 64 && b0[1] == 0xB0 && b0[3] == 0x3C && b0[4] & 1 == 1)
        #expect(be32(8) == 2048 && be32(20) == 0x80_0000 && be32(24) == 64 && be32(28) == 8 && be32(32) == 0x8000_0000)
        #expect(b0[36..<44].reduce(UInt64(0)) { $0 << 8 | UInt64($1) } == 0x1_0000)
        let b1 = try #require(vpd(0xB1))
        #expect(b1.count == 64 && b1[4] == 0 && b1[5] == 1)
        let b2 = try #require(vpd(0xB2))
        #expect(b2 == [0, 0xB2, 0, 4, 0, 0xE4, 0x02, 0])
        // Unlisted pages, and the 4-byte header read Linux makes first.
        #expect(d.execute(readRequest([0x12, 1, 0x89, 0, 255, 0])).fails(.illegalRequest, .invalidFieldInCDB))
        #expect(d.execute(readRequest([0x12, 1, 0xB0, 0, 4, 0])).data == [0, 0xB0, 0, 0x3C])
        // No serial: no page 0x80. Read-only: no provisioning.
        #expect(vpd(0x00, disk(serial: "")) == [0, 0, 0, 5, 0x00, 0x83, 0xB0, 0xB1, 0xB2])
        #expect(vpd(0x80, disk(serial: "")) == nil)
        let ro = disk(readOnly: true)
        #expect(vpd(0xB2, ro) == [0, 0xB2, 0, 4, 0, 0, 0, 0])
        #expect(vpd(0xB0, ro)?[20..<44].allSatisfy { $0 == 0 } == true)
    }

    @Test func readCapacity() throws {
        let big = disk(0x1_2345_6789)
        let rc10 = try #require(d.execute(readRequest([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], length: 8)).data)
        #expect(rc10 == [0, 0, 0x07, 0xFF, 0, 0, 2, 0])
        #expect(big.execute(readRequest([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], length: 8)).data == [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 2, 0])
        // LBA without PMI is invalid; with PMI it is fine.
        #expect(d.execute(readRequest([0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0], length: 8)).fails(.illegalRequest, .invalidFieldInCDB))
        #expect(d.execute(readRequest([0x25, 0, 0, 0, 0, 1, 0, 0, 1, 0], length: 8)).data?.count == 8)
        let rc16 = try #require(big.execute(readRequest([0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], length: 32)).data)
        #expect(rc16.count == 32)
        #expect(rc16[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) } == 0x1_2345_6788)
        #expect(Array(rc16[8..<12]) == [0, 0, 2, 0] && rc16[12] == 0 && rc16[13] == 0 && rc16[14] == 0xC0)
        #expect(disk(readOnly: true).execute(readRequest([0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], length: 32)).data?[14] == 0)
        #expect(d.execute(readRequest([0x9E, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], length: 32)).fails(.illegalRequest, .invalidFieldInCDB))
    }

    @Test func modeSense() throws {
        // Linux: page 0x3F, allocation 4 (write protect); then 0x08 (cache).
        let wp = try #require(d.execute(readRequest([0x1A, 0, 0x3F, 0, 4, 0], length: 4)).data)
        #expect(wp == [3 + 32, 0, 0x10, 0])
        let all = try #require(d.execute(readRequest([0x1A, 0, 0x3F, 0, 255, 0], length: 255)).data)
        #expect(all.count == 4 + 20 + 12 && all[4] == 0x08 && all[5] == 0x12 && all[6] == 0x04 && all[24] == 0x0A)
        let cache = try #require(d.execute(readRequest([0x1A, 0x08, 0x08, 0, 255, 0], length: 255)).data)
        #expect(cache.count == 24 && cache[0] == 23 && cache[3] == 0 && cache[4] == 0x08 && cache[6] & 0x04 != 0 && cache[6] & 0x01 == 0)
        // WCE follows the cache mode; WP follows read-only.
        #expect(disk(cache: .direct).execute(readRequest([0x1A, 0, 0x08, 0, 255, 0], length: 255)).data?[6] == 0)
        #expect(disk(cache: .unsafe).execute(readRequest([0x1A, 0, 0x08, 0, 255, 0], length: 255)).data?[6] == 0x04)
        #expect(disk(readOnly: true).execute(readRequest([0x1A, 0, 0x3F, 0, 4, 0], length: 4)).data?[2] == 0x90)
        // MODE SENSE (10).
        let ten = try #require(d.execute(readRequest([0x5A, 0, 0x08, 0, 0, 0, 0, 0, 255, 0], length: 255)).data)
        #expect(ten.count == 28 && ten[0] == 0 && ten[1] == 26 && ten[3] == 0x10 && ten[6] == 0 && ten[7] == 0 && ten[8] == 0x08 && ten[10] == 0x04)
        // Changeable values: zero. Saved values: not supported. Unknown pages and subpages.
        #expect(d.execute(readRequest([0x1A, 0, 0x48, 0, 255, 0], length: 255)).data?[6] == 0)
        #expect(d.execute(readRequest([0x1A, 0, 0xC8, 0, 255, 0], length: 255)).fails(.illegalRequest, .savingParametersNotSupported))
        #expect(d.execute(readRequest([0x1A, 0, 0x1C, 0, 255, 0], length: 255)).fails(.illegalRequest, .invalidFieldInCDB))
        #expect(d.execute(readRequest([0x1A, 0, 0x08, 1, 255, 0], length: 255)).fails(.illegalRequest, .invalidFieldInCDB))
        #expect(d.execute(readRequest([0x1A, 0, 0x3F, 0xFF, 255, 0], length: 255)).data?.count == 36)
    }

    @Test func simpleCommands() {
        #expect(d.execute(noDataRequest([0, 0, 0, 0, 0, 0])).isGood)
        #expect(d.execute(noDataRequest([0x1B, 0, 0, 0, 1, 0])).isGood)
        #expect(d.execute(readRequest([0x03, 0, 0, 0, 18, 0], length: 18)).data == SCSISense(key: .noSense, .none).bytes)
        #expect(d.execute(readRequest([0x03, 1, 0, 0, 18, 0], length: 18)).fails(.illegalRequest, .invalidFieldInCDB))
        let luns = d.execute(readRequest([0xA0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], length: 4096)).data
        #expect(luns == [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        #expect(d.execute(readRequest([0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], length: 4096)).fails(.illegalRequest, .invalidFieldInCDB))
        #expect(d.execute(readRequest([0xA0, 0, 3, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], length: 4096)).fails(.illegalRequest, .invalidFieldInCDB))
    }

    @Test func unknownAndShortCommands() {
        for op: UInt8 in [0x04, 0x15, 0x55, 0x4D, 0x9F, 0xA3, 0xC0, 0xFF, 0x7F] {
            var cdb = [UInt8](repeating: 0, count: 16)
            cdb[0] = op
            #expect(d.execute(readRequest(cdb)).fails(.illegalRequest, .invalidCommandOperationCode), Comment(rawValue: "op \(op)"))
        }
        // A CDB shorter than its opcode's group.
        #expect(d.execute(readRequest([0x28, 0, 0, 0, 0, 0])).fails(.illegalRequest, .invalidFieldInCDB))
    }

    @Test func readsAndWritesDecide() {
        // READ (6): 21-bit LBA, 0 blocks means 256.
        #expect(d.execute(readRequest([0x08, 0x00, 0x01, 0x02, 0, 0], length: 256 * 512)).io == .read(lba: 0x102, blocks: 256))
        #expect(d.execute(writeRequest([0x0A, 0xE0, 0x00, 0x05, 2, 0], length: 1024)).io == .write(lba: 5, blocks: 2, fua: false))
        // READ (10)/(12)/(16), FUA on writes.
        #expect(d.execute(readRequest([0x28, 0, 0, 0, 0x07, 0xF8, 0, 0, 8, 0], length: 4096)).io == .read(lba: 2040, blocks: 8))
        #expect(d.execute(writeRequest([0x2A, 0x08, 0, 0, 0, 1, 0, 0, 1, 0], length: 512)).io == .write(lba: 1, blocks: 1, fua: true))
        #expect(d.execute(readRequest([0xA8, 0, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0], length: 1536)).io == .read(lba: 2, blocks: 3))
        #expect(d.execute(writeRequest([0xAA, 0x08, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0], length: 1536)).io == .write(lba: 2, blocks: 3, fua: true))
        #expect(d.execute(readRequest([0x88, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0], length: 512)).io == .read(lba: 9, blocks: 1))
        #expect(d.execute(writeRequest([0x8A, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0], length: 512)).io == .write(lba: 9, blocks: 1, fua: false))
        // Cache modes: direct makes every write durable, unsafe drops FUA.
        #expect(disk(cache: .direct).execute(writeRequest([0x2A, 0, 0, 0, 0, 1, 0, 0, 1, 0], length: 512)).io == .write(lba: 1, blocks: 1, fua: true))
        #expect(disk(cache: .unsafe).execute(writeRequest([0x2A, 0x08, 0, 0, 0, 1, 0, 0, 1, 0], length: 512)).io == .write(lba: 1, blocks: 1, fua: false))
        // 0 blocks: nothing to do, GOOD.
        #expect(d.execute(readRequest([0x28, 0, 0, 0, 0, 5, 0, 0, 0, 0], length: 0)).isGood)
        // A buffer larger than the transfer is fine (the completion reports the bytes moved).
        #expect(d.execute(readRequest([0x28, 0, 0, 0, 0, 5, 0, 0, 1, 0], length: 4096)).io == .read(lba: 5, blocks: 1))
    }

    @Test func readWriteErrors() {
        // LBA + length past the end, at the edge, and with arithmetic that would overflow.
        #expect(d.execute(readRequest([0x28, 0, 0, 0, 0x07, 0xF9, 0, 0, 8, 0], length: 4096)).fails(.illegalRequest, .lbaOutOfRange))
        #expect(d.execute(readRequest([0x28, 0, 0, 0, 0x08, 0x00, 0, 0, 0, 0], length: 0)).fails(.illegalRequest, .lbaOutOfRange))
        #expect(d.execute(readRequest([0x88, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 2, 0, 0], length: 1024)).fails(.illegalRequest, .lbaOutOfRange))
        #expect(d.execute(readRequest([0x08, 0x1F, 0xFF, 0xFF, 1, 0], length: 512)).fails(.illegalRequest, .lbaOutOfRange))
        // More blocks than the block limits allow.
        #expect(d.execute(readRequest([0xA8, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x01, 0, 0], length: 0xFFFF_FFFF)).fails(.illegalRequest, .invalidFieldInCDB))
        // Protection information asked for.
        #expect(d.execute(readRequest([0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0], length: 512)).fails(.illegalRequest, .invalidFieldInCDB))
        // The guest's buffer: too small, or the wrong way.
        let small = d.execute(readRequest([0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0], length: 512))
        #expect(small.fails(.illegalRequest, .invalidFieldInCDB) && small.completion?.srbStatus == .invalidRequest)
        #expect(d.execute(writeRequest([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], length: 512)).completion?.srbStatus == .invalidRequest)
        #expect(d.execute(readRequest([0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], length: 512)).completion?.srbStatus == .invalidRequest)
        // Read-only: every write kind is DATA PROTECT, reads are fine.
        let ro = disk(readOnly: true)
        #expect(ro.execute(writeRequest([0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], length: 512)).fails(.dataProtect, .writeProtected))
        #expect(ro.execute(writeRequest([0x0A, 0, 0, 0, 1, 0], length: 512)).fails(.dataProtect, .writeProtected))
        #expect(ro.execute(writeRequest([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], length: 24)).fails(.dataProtect, .writeProtected))
        #expect(ro.execute(writeRequest([0x93, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], length: 512)).fails(.dataProtect, .writeProtected))
        #expect(ro.execute(readRequest([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], length: 512)).io == .read(lba: 0, blocks: 1))
    }

    @Test func verifyAndSynchronizeCache() {
        #expect(d.execute(noDataRequest([0x2F, 0, 0, 0, 0, 0, 0, 0, 8, 0])).isGood)
        #expect(d.execute(noDataRequest([0x8F, 0, 0, 0, 0, 0, 0, 0, 0x07, 0xF8, 0, 0, 0, 8, 0, 0])).isGood)
        #expect(d.execute(noDataRequest([0x2F, 0, 0, 0, 0x08, 0, 0, 0, 1, 0])).fails(.illegalRequest, .lbaOutOfRange))
        #expect(d.execute(noDataRequest([0x2F, 0x02, 0, 0, 0, 0, 0, 0, 1, 0])).fails(.illegalRequest, .invalidFieldInCDB))
        #expect(d.execute(noDataRequest([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0])).io == .flush)
        #expect(d.execute(noDataRequest([0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])).io == .flush)
        #expect(d.execute(noDataRequest([0x35, 0, 0, 0, 0x08, 0, 0, 0, 0, 0])).fails(.illegalRequest, .lbaOutOfRange))
        #expect(d.execute(noDataRequest([0x35, 0, 0, 0, 0x07, 0xFF, 0, 0, 2, 0])).fails(.illegalRequest, .lbaOutOfRange))
        // Unsafe: no I/O at all. Read-only: nothing to flush.
        #expect(disk(cache: .unsafe).execute(noDataRequest([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0])).isGood)
        #expect(disk(readOnly: true).execute(noDataRequest([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0])).isGood)
    }

    func unmapList(_ descriptors: [(UInt64, UInt32)], declared: Int? = nil) -> [UInt8] {
        var p = be16(UInt16(6 + 16 * descriptors.count)) + be16(UInt16(declared ?? 16 * descriptors.count)) + [0, 0, 0, 0]
        for (lba, n) in descriptors { p += be64(lba) + be32(n) + [0, 0, 0, 0] }
        return p
    }

    @Test func unmap() {
        let r = writeRequest([0x42, 0, 0, 0, 0, 0, 0, 0, 40, 0], length: 40)
        #expect(d.execute(r) == .needParameterList(byteCount: 40))
        #expect(d.executeUnmap(r, parameters: unmapList([(8, 16), (100, 0), (2040, 8)])).io == .unmap([.init(lba: 8, blocks: 16), .init(lba: 2040, blocks: 8)]))
        #expect(d.executeUnmap(r, parameters: unmapList([(2040, 9)])).fails(.illegalRequest, .lbaOutOfRange))
        #expect(d.executeUnmap(r, parameters: unmapList([(UInt64.max, 2)])).fails(.illegalRequest, .lbaOutOfRange))
        // No blocks to unmap: GOOD at once, with the list's bytes taken.
        #expect(d.executeUnmap(r, parameters: unmapList([])).completion == .good(transferred: 8))
        #expect(d.executeUnmap(r, parameters: [0, 6, 0, 0]).fails(.illegalRequest, .parameterListLengthError))
        #expect(d.executeUnmap(r, parameters: unmapList(Array(repeating: (0, 1), count: 65))).fails(.illegalRequest, .invalidFieldInParameterList))
        let big = disk(0x1000_0000)
        #expect(big.executeUnmap(r, parameters: unmapList([(0, 0x80_0000), (0x90_0000, 1)])).fails(.illegalRequest, .invalidFieldInParameterList))
        // A declared length past the list is cut to the whole descriptors there.
        #expect(d.executeUnmap(r, parameters: unmapList([(8, 1)], declared: 64)).io == .unmap([.init(lba: 8, blocks: 1)]))
        // CDB checks: ANCHOR, length 0, 1...7, larger than the buffer; no thin provisioning.
        #expect(d.execute(writeRequest([0x42, 1, 0, 0, 0, 0, 0, 0, 24, 0], length: 24)).fails(.illegalRequest, .invalidFieldInCDB))
        #expect(d.execute(noDataRequest([0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0])).isGood)
        #expect(d.execute(writeRequest([0x42, 0, 0, 0, 0, 0, 0, 0, 7, 0], length: 7)).fails(.illegalRequest, .parameterListLengthError))
        #expect(d.execute(writeRequest([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], length: 16)).completion?.srbStatus == .invalidRequest)
        #expect(disk(unmap: false).execute(r).fails(.illegalRequest, .invalidCommandOperationCode))
    }

    @Test func writeSame() {
        #expect(d.execute(writeRequest([0x93, 0x08, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 32, 0, 0], length: 512)).io
                == .writeSame(lba: 16, blocks: 32, unmap: true, noDataOut: false, fua: false))
        #expect(d.execute(writeRequest([0x41, 0, 0, 0, 0, 16, 0, 0, 4, 0], length: 512)).io
                == .writeSame(lba: 16, blocks: 4, unmap: false, noDataOut: false, fua: false))
        #expect(d.execute(noDataRequest([0x93, 0x01, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 1, 0, 0])).io
                == .writeSame(lba: 16, blocks: 1, unmap: false, noDataOut: true, fua: false))
        // Not thin: UNMAP is advisory, the blocks are written.
        #expect(disk(unmap: false).execute(writeRequest([0x93, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], length: 512)).io
                == .writeSame(lba: 0, blocks: 1, unmap: false, noDataOut: false, fua: false))
        #expect(d.execute(writeRequest([0x93, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], length: 512)).fails(.illegalRequest, .invalidFieldInCDB))
        #expect(d.execute(writeRequest([0x93, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0], length: 512)).fails(.illegalRequest, .invalidFieldInCDB))
        #expect(d.execute(writeRequest([0x93, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], length: 512)).fails(.illegalRequest, .invalidFieldInCDB))
        #expect(d.execute(writeRequest([0x41, 0x01, 0, 0, 0, 0, 0, 0, 1, 0], length: 512)).fails(.illegalRequest, .invalidFieldInCDB))
        #expect(d.execute(writeRequest([0x93, 0, 0, 0, 0, 0, 0, 0, 0x07, 0xFF, 0, 0, 0, 2, 0, 0], length: 512)).fails(.illegalRequest, .lbaOutOfRange))
        #expect(d.execute(writeRequest([0x93, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], length: 100)).completion?.srbStatus == .invalidRequest)
    }

    @Test func completions() {
        #expect(d.complete(.read(lba: 0, blocks: 8), result: .success) == .good(transferred: 4096))
        #expect(d.complete(.write(lba: 0, blocks: 2, fua: true), result: .success) == .good(transferred: 1024))
        #expect(d.complete(.flush, result: .success) == .good())
        #expect(d.complete(.read(lba: 0, blocks: 8), result: .ioError) == .checkCondition(SCSISense(key: .mediumError, .unrecoveredReadError)))
        for io: SCSIDisk.IO in [.write(lba: 0, blocks: 1, fua: false), .flush, .unmap([.init(lba: 0, blocks: 1)]),
                                .writeSame(lba: 0, blocks: 1, unmap: true, noDataOut: false, fua: false)] {
            let c = d.complete(io, result: .ioError)
            #expect(c.srbStatus == .error && c.scsiStatus == .checkCondition && c.sense == SCSISense(key: .mediumError, .writeError))
        }
        // UNMAP reports the parameter list it took: the CDB's length (bytes 7-8), never more than
        // the buffer; nothing with an error. Other operations as without the request.
        let unmap = SCSIDisk.IO.unmap([.init(lba: 8, blocks: 16)])
        #expect(d.complete(writeRequest([0x42, 0, 0, 0, 0, 0, 0, 0, 40, 0], length: 40), io: unmap, result: .success) == .good(transferred: 40))
        #expect(d.complete(writeRequest([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], length: 4096), io: unmap, result: .success) == .good(transferred: 24))
        #expect(d.complete(writeRequest([0x42, 0, 0, 0, 0, 0, 0, 0, 40, 0], length: 16), io: unmap, result: .success) == .good(transferred: 16))
        #expect(d.complete(writeRequest([0x42, 0, 0, 0, 0, 0, 0, 0, 40, 0], length: 40), io: unmap, result: .ioError)
                == .checkCondition(SCSISense(key: .mediumError, .writeError)))
        #expect(d.complete(readRequest([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0], length: 4096), io: .read(lba: 0, blocks: 8), result: .success)
                == .good(transferred: 4096))
        #expect(d.complete(noDataRequest([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]), io: .flush, result: .success) == .good())
    }

    @Test func cdbStorage() {
        var c = SCSICDB([UInt8](0..<20))
        #expect(c.count == 16 && c.bytes == [UInt8](0..<16) && c[16] == 0 && c[-1] == 0)
        c[15] = 0xAB
        #expect(c[15] == 0xAB && c.be16(14) == 0x0EAB && c.be64(0) == 0x0001_0203_0405_0607)
    }
}
