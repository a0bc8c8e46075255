import Testing
import VMBus
@testable import Storage

/// Linux 6.1's boot, end to end through the pure layer: the vstor handshake, then the SRBs
/// scsi_scan.c and sd.c send (reference section 4.7, section 6 steps 10-20), each run by the
/// executor against an in-memory disk and checked byte by byte where Linux reads.
@Suite("Linux boot scan")
struct BootScanTests {
    let controller = SCSIController(disks: [disk(0x20_0000, serial: "SYNTH-BOOT")])!
    let backend: MemoryDiskBackend = {
        var image = [UInt8](repeating: 0, count: 0x20_0000 * 512)
        image[510] = 0x55; image[511] = 0xAA
        return MemoryDiskBackend(bytes: image)
    }()

    /// Sends one SRB as storvsc does and returns the COMPLETE_IO and the guest buffer.
    func run(_ p: inout VStorProtocol, lun: UInt8 = 0, target: UInt8 = 0, path: UInt8 = 0, _ cdb: [UInt8],
             dataIn: UInt8 = 1, length: UInt32) -> (VStorPacketBytes, [UInt8]) {
        guard case .execute(let srb) = p.handle(transactionID: 0x42, payload: srbPacket(lun: lun, target: target, path: path, cdb: cdb, dataIn: dataIn, length: length)) else {
            Issue.record("SRB not executed")
            return (VStorPacketBytes(count: 64), [])
        }
        let guest = GuestBuffer(count: Int(length), offset: 0x234)
        let result = SCSIDiskExecutor.run(srb, controller: controller, backend: backend, buffer: guest.buffer)
        let reply = p.completion(for: srb, result: result)
        #expect(reply.packet.count == 64 && reply.transactionID == 0x42 && reply.packet.operation == .completeIO)
        let moved = Int(reply.packet.u32(at: 24))
        return (reply.packet, Array(guest.bytes.prefix(moved)))
    }

    @Test func linuxScan() throws {
        var p = readyProtocol()
        // INQUIRY (36) of 0:0:0: PQ 0 / PDT 0, SPC-3, vendor Msft.
        var (r, data) = run(&p, [0x12, 0, 0, 0, 36, 0], length: 36)
        #expect(r[14] == 0x01 && r[15] == 0 && r.u32(at: 24) == 36)
        #expect(data[0] == 0 && data[2] == 5 && data[4] == 31 && Array(data[8..<12]) == Array("Msft".utf8))
        // The other (channel, target) pairs: 0x7F, then REPORT LUNS to that target: empty.
        for (path, target) in [(0, 1), (1, 0), (7, 1)] as [(UInt8, UInt8)] {
            (r, data) = run(&p, target: target, path: path, [0x12, 0, 0, 0, 36, 0], length: 36)
            #expect(r[14] == 0x01 && data.count == 36 && data[0] == 0x7F && data[8] == 0x4D)
            (r, data) = run(&p, target: target, path: path, [0xA0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], length: 4096)
            #expect(r[14] == 0x01 && data == [0, 0, 0, 0, 0, 0, 0, 0])
        }
        // A missing LUN on target 0: 0x7F and no vendor; VPD refused; anything else INVALID_LUN.
        (r, data) = run(&p, lun: 5, [0x12, 0, 0, 0, 36, 0], length: 36)
        #expect(r[14] == 0x01 && data[0] == 0x7F && data[8..<36].allSatisfy { $0 == 0 })
        (r, _) = run(&p, lun: 5, [0x12, 1, 0, 0, 36, 0], length: 36)
        #expect(r[14] == 0x86 && r[15] == 2 && r[28 + 12] == 0x24)
        (r, _) = run(&p, lun: 5, [0, 0, 0, 0, 0, 0], dataIn: 2, length: 0)
        #expect(r[14] == 0x20 && r.status == .deviceDoesNotExist)
        // VPD 0x00 and each listed page: page 0 (36), header (4), then all of it.
        (r, data) = run(&p, [0x12, 1, 0, 0, 36, 0], length: 36)
        #expect(data == [0, 0, 0, 6, 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2])
        for page in data[4...] where page != 0 {
            let (_, head) = run(&p, [0x12, 1, page, 0, 4, 0], length: 4)
            #expect(head.count == 4 && head[1] == page)
            let len = Int(head[2]) << 8 | Int(head[3])
            let (_, all) = run(&p, [0x12, 1, page, UInt8((len + 4) >> 8), UInt8((len + 4) & 0xFF), 0], length: UInt32(len + 4))
            #expect(all.count == len + 4 && all[1] == page)
        }
        // REPORT LUNS to 0:0: [0].
        (r, data) = run(&p, [0xA0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], length: 4096)
        #expect(data == [0, 0, 0, 8, 0, 0, 0, 0] + [0, 0, 0, 0, 0, 0, 0, 0])
        // sd: TEST UNIT READY, READ CAPACITY (16), MODE SENSE (6) 3F/4 then 08.
        (r, _) = run(&p, [0, 0, 0, 0, 0, 0], dataIn: 2, length: 0)
        #expect(r[14] == 0x01 && r[15] == 0)
        (r, data) = run(&p, [0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], length: 32)
        #expect(Array(data[0..<12]) == [0, 0, 0, 0, 0, 0x1F, 0xFF, 0xFF, 0, 0, 2, 0] && data[14] == 0xC0)
        (r, data) = run(&p, [0x1A, 0, 0x3F, 0, 4, 0], length: 4)
        #expect(data.count == 4 && data[2] & 0x80 == 0)
        (r, data) = run(&p, [0x1A, 0, 0x08, 0, 4, 0], length: 4)
        let full = Int(data[0]) + 1
        (r, data) = run(&p, [0x1A, 0, 0x08, 0, UInt8(full), 0], length: UInt32(full))
        #expect(data.count == 24 && data[4] == 0x08 && data[6] & 0x04 != 0)
        // READ (10) of LBA 0 for the partition table: the image's bytes.
        (r, data) = run(&p, [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0], length: 4096)
        #expect(r[14] == 0x01 && r.u32(at: 24) == 4096 && data[510] == 0x55 && data[511] == 0xAA)
        #expect(backend.log.last == "read 0 4096")
    }
}

@Suite("executor and backend")
struct ExecutorTests {
    let controller = SCSIController(disks: [disk(2048), disk(64, readOnly: true)])!

    func srb(_ cdb: [UInt8], lun: UInt8 = 0, _ direction: SCSIDataDirection, _ length: UInt32) -> VStorSRB {
        VStorSRB(transactionID: 1, lun: lun, cdb: SCSICDB(cdb), direction: direction, dataTransferLength: length)
    }

    @Test func writeThenReadAcrossPages() {
        let backend = MemoryDiskBackend(byteCount: 2048 * 512)
        let pattern = (0..<12288).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) }
        let w = GuestBuffer(count: 12288, offset: 0x9F0)
        w.fill(pattern)
        #expect(SCSIDiskExecutor.run(srb([0x2A, 0, 0, 0, 0, 100, 0, 0, 24, 0], .toDevice, 12288), controller: controller, backend: backend, buffer: w.buffer) == .good(transferred: 12288))
        #expect(Array(backend.bytes[51200..<51200 + 12288]) == pattern)
        #expect(backend.dirty.count == 24)
        let rd = GuestBuffer(count: 12288, offset: 0x10)
        #expect(SCSIDiskExecutor.run(srb([0x28, 0, 0, 0, 0, 100, 0, 0, 24, 0], .fromDevice, 12288), controller: controller, backend: backend, buffer: rd.buffer) == .good(transferred: 12288))
        #expect(rd.bytes == pattern)
        // FUA leaves nothing dirty; SYNCHRONIZE CACHE cleans everything.
        #expect(SCSIDiskExecutor.run(srb([0x2A, 0x08, 0, 0, 0, 0, 0, 0, 1, 0], .toDevice, 512), controller: controller, backend: backend, buffer: w.buffer) == .good(transferred: 512))
        #expect(backend.log.last == "write 0 512 fua" && !backend.dirty.contains(0))
        #expect(SCSIDiskExecutor.run(srb([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], .none, 0), controller: controller, backend: backend, buffer: SCSIDataBuffer(segments: [])) == .good())
        #expect(backend.dirty.isEmpty && backend.log.last == "flush")
    }

    @Test func unmapAndWriteSame() {
        let backend = MemoryDiskBackend(bytes: [UInt8](repeating: 0xAB, count: 2048 * 512))
        var list = be16(22) + be16(16) + [0, 0, 0, 0] + be64(4) + be32(2) + [0, 0, 0, 0]
        let g = GuestBuffer(count: list.count)
        g.fill(list)
        #expect(SCSIDiskExecutor.run(srb([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], .toDevice, 24), controller: controller, backend: backend, buffer: g.buffer) == .good(transferred: 24))
        #expect(backend.bytes[2048..<3072].allSatisfy { $0 == 0 } && backend.bytes[2047] == 0xAB && backend.bytes[3072] == 0xAB)
        #expect(backend.punched.count == 1 && backend.punched[0].offset == 2048 && backend.punched[0].count == 1024)
        // WRITE SAME (16) with UNMAP and a zero block: a hole. With a pattern: written.
        let zero = GuestBuffer(count: 512)
        zero.fill([UInt8](repeating: 0, count: 512))
        #expect(SCSIDiskExecutor.run(srb([0x93, 0x08, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 4, 0, 0], .toDevice, 512), controller: controller, backend: backend, buffer: zero.buffer) == .good(transferred: 512))
        #expect(backend.log.last == "punch 5120 2048")
        let pattern = GuestBuffer(count: 512)
        pattern.fill((0..<512).map { UInt8(truncatingIfNeeded: $0) })
        #expect(SCSIDiskExecutor.run(srb([0x93, 0x08, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0x01, 0x00, 0, 0], .toDevice, 512), controller: controller, backend: backend, buffer: pattern.buffer) == .good(transferred: 512))
        for b in 0..<256 { #expect(Array(backend.bytes[(20 + b) * 512..<(21 + b) * 512]) == pattern.bytes) }
        // NDOB: zeros, no buffer.
        #expect(SCSIDiskExecutor.run(srb([0x93, 0x01, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0], .none, 0), controller: controller, backend: backend, buffer: SCSIDataBuffer(segments: [])) == .good())
        #expect(backend.bytes[20 * 512..<21 * 512].allSatisfy { $0 == 0 })
        list[1] = 0
    }

    @Test func hostErrorsAreMediumErrors() {
        let backend = MemoryDiskBackend(byteCount: 2048 * 512)
        let g = GuestBuffer(count: 4096)
        backend.failReads = true
        let r = SCSIDiskExecutor.run(srb([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0], .fromDevice, 4096), controller: controller, backend: backend, buffer: g.buffer)
        #expect(r.sense == SCSISense(key: .mediumError, .unrecoveredReadError) && r.transferred == 0)
        backend.failWrites = true
        let w = SCSIDiskExecutor.run(srb([0x2A, 0, 0, 0, 0, 0, 0, 0, 8, 0], .toDevice, 4096), controller: controller, backend: backend, buffer: g.buffer)
        #expect(w.sense == SCSISense(key: .mediumError, .writeError))
        backend.failFlushes = true
        #expect(SCSIDiskExecutor.run(srb([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], .none, 0), controller: controller, backend: backend, buffer: g.buffer).sense == SCSISense(key: .mediumError, .writeError))
    }

    @Test func theReadOnlyLUNRefusesWrites() {
        let backend = MemoryDiskBackend(byteCount: 64 * 512)
        let g = GuestBuffer(count: 512)
        let r = SCSIDiskExecutor.run(srb([0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], lun: 1, .toDevice, 512), controller: controller, backend: backend, buffer: g.buffer)
        #expect(r.sense == SCSISense(key: .dataProtect, .writeProtected) && backend.log.isEmpty)
        let luns = GuestBuffer(count: 64)
        _ = SCSIDiskExecutor.run(srb([0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0], lun: 7, .fromDevice, 64), controller: controller, backend: backend, buffer: luns.buffer)
        #expect(Array(luns.bytes.prefix(24)) == [0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])
    }
}

@Suite("GPA-direct buffer check")
struct BufferCheckTests {
    let ram: [Range<UInt64>] = [0..<0x8000_0000, 0x1_0000_0000..<0x1_4000_0000]

    @Test func values() {
        typealias C = VStorDataBufferCheck
        let one = C.PageRange(byteCount: 8192, byteOffset: 0x200, pfns: [0x100, 0x101, 0x102])
        #expect(C.check(ranges: [one], dataTransferLength: 8192, ram: ram) == nil)
        #expect(C.check(ranges: nil, dataTransferLength: 0, ram: ram) == nil)
        #expect(C.check(ranges: nil, dataTransferLength: 1, ram: ram) == .noBuffer)
        #expect(C.check(ranges: [one, one], dataTransferLength: 512, ram: ram) == .tooManyRanges(count: 2))
        #expect(C.check(ranges: [one], dataTransferLength: 8193, ram: ram) == .tooShort(have: 8192, need: 8193))
        // Outside RAM: the hole, past the end, a PFN whose address overflows.
        for pfn: UInt64 in [0x8_0000, 0xF_FFFF, 0x14_0000, UInt64.max, UInt64.max >> 12] {
            let r = C.PageRange(byteCount: 4096, byteOffset: 0, pfns: [pfn])
            #expect(C.check(ranges: [r], dataTransferLength: 4096, ram: ram) == .pageOutsideRAM(pfn: pfn))
        }
        #expect(C.pageInRAM(0x13_FFFF, ram: ram) && C.pageInRAM(0x10_0000, ram: ram) && C.pageInRAM(0, ram: ram))
        let srb = VStorSRB(transactionID: 9, lun: 0, cdb: SCSICDB([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), direction: .fromDevice, dataTransferLength: 512)
        let reply = C.completion(for: srb, problem: .noBuffer)
        #expect(reply.packet[14] == 0x86 && reply.packet[15] == 2 && reply.packet.u32(at: 24) == 0 && reply.transactionID == 9)
    }

    /// The same check on a real GPA-direct packet in ring memory, as storvsc writes it.
    @Test func fromTheRing() throws {
        func packet(_ ext: [UInt64]) throws -> (VMBusRingConsumer<VMBusFlatRingMemory>, VMBusRingPacket<VMBusFlatRingMemory>) {
            let m = try VMBusFlatRingMemory(dataCount: 8192)
            let p = try VMBusRingProducer(memory: m), c = try VMBusRingConsumer(memory: m)
            let payload = srbPacket(cdb: [0x28, 0, 0, 0, 0, 0, 0, 0, 16, 0], dataIn: 1, length: 8192)
            _ = ext.withUnsafeBytes { e in payload.withUnsafeBytes { p.tryWrite(type: .dataUsingGPADirect, transactionID: 1, headerExtension: e, payload: $0) } }
            _ = p.commit()
            guard case .packet(let pk) = c.next() else { throw VStorDataBufferCheck.Problem.noBuffer }
            return (c, pk)
        }
        // reserved | rangecount 1, {len 8192, offset 0x100}, 3 PFNs.
        var (c, pk) = try packet([1 << 32, 8192 | 0x100 << 32, 0x100, 0x101, 0x102])
        let ok = VStorDataBufferCheck.check(packet: pk, dataTransferLength: 8192, ram: ram)
        #expect((try? ok.get())??.pageCount == 3)
        #expect(pk.payload.load(UInt32.self, at: 0) == VStorOperation.executeSRB.rawValue)
        _ = c
        (c, pk) = try packet([1 << 32, 8192 | 0x100 << 32, 0x100, 0x9_0000, 0x102])
        #expect(VStorDataBufferCheck.check(packet: pk, dataTransferLength: 8192, ram: ram).failureValue == .pageOutsideRAM(pfn: 0x9_0000))
        (c, pk) = try packet([2 << 32, 4096, 0x100, 4096, 0x101])
        #expect(VStorDataBufferCheck.check(packet: pk, dataTransferLength: 4096, ram: ram).failureValue == .tooManyRanges(count: 2))
        (c, pk) = try packet([1 << 32, 4096 | 5000 << 32, 0x100, 0x101])
        #expect(VStorDataBufferCheck.check(packet: pk, dataTransferLength: 4096, ram: ram).failureValue == .badRangeList)
        (c, pk) = try packet([1 << 32, 4096, 0x100])
        #expect(VStorDataBufferCheck.check(packet: pk, dataTransferLength: 8192, ram: ram).failureValue == .tooShort(have: 4096, need: 8192))
        #expect(VStorDataBufferCheck.check(packet: Optional<VMBusRingPacket<VMBusFlatRingMemory>>.none, dataTransferLength: 1, ram: ram).failureValue == .noBuffer)
    }
}

extension Result {
    var failureValue: Failure? { if case .failure(let f) = self { f } else { nil } }
}
