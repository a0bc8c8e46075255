import FuzzSeeds
import Testing
@testable import Storage

/// Seeded random CDBs against disks of every kind, run to the end by the executor on an
/// in-memory backend: no trap, every answer well formed, and no I/O outside the disk.
@Suite("random CDBs")
struct RandomCDBTests {
    @Test func randomCommandsNeverTrapAndStayInTheDisk() {
        var rng = SplitMix(seed: 0x5C51)
        let opcodes: [UInt8] = [0x00, 0x03, 0x08, 0x0A, 0x12, 0x1A, 0x1B, 0x25, 0x28, 0x2A, 0x2F, 0x35, 0x41, 0x42, 0x5A,
                                0x88, 0x8A, 0x8F, 0x91, 0x93, 0x9E, 0xA0, 0xA8, 0xAA]
        let disks = [disk(64), disk(64, readOnly: true), disk(100, cache: .direct, unmap: false), disk(100, cache: .unsafe)]
        var checked = 0
        for i in 0..<4_000 {
            let d = disks[i % disks.count]
            let controller = SCSIController(disks: [d])!
            let backend = MemoryDiskBackend(byteCount: Int(d.capacityBlocks) * 512)
            var cdb = (0..<16).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if rng.next() % 4 != 0 { cdb[0] = opcodes[Int(rng.next() % UInt64(opcodes.count))] }
            // Small numbers often, so some commands get through to I/O.
            if rng.next() % 2 == 0 { for j in 2..<cdb.count - 1 where rng.next() % 3 != 0 { cdb[j] = 0 } }
            let length = UInt32(rng.next() % 3 == 0 ? rng.next() % 70_000 : rng.next() % 4096)
            let direction = SCSIDataDirection(rawValue: UInt8(rng.next() % 3))!
            let count = 1 + Int(rng.next() % 16)
            let guest = GuestBuffer(count: Int(length), offset: Int(rng.next() % 4096))
            guest.fill([UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 512))
            let srb = VStorSRB(transactionID: 1, lun: UInt8(rng.next() % 3 == 0 ? 1 : 0), cdb: SCSICDB(cdb.prefix(count)),
                               direction: direction, dataTransferLength: length)
            let r = SCSIDiskExecutor.run(srb, controller: controller, backend: backend, buffer: guest.buffer)
            #expect(r.transferred <= length)
            #expect((r.srbStatus == .success) == (r.scsiStatus == .good))
            #expect(r.scsiStatus != .checkCondition || r.sense != nil || r.srbStatus == .invalidLUN)
            if d.configuration.readOnly { #expect(!backend.log.contains { $0.hasPrefix("write") || $0.hasPrefix("punch") }) }
            let reply = VStorProtocol.completion(for: srb, result: r)
            #expect(reply.packet.count == 64 && (reply.packet[14] == 1) == (r.srbStatus == .success))
            checked += 1
        }
        #expect(checked == 4_000)
    }
}
