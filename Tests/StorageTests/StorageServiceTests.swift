import Glibc
import IPC
import Storage
import StorageWorker
import SynICRouting
import Testing
import VMBus
import VMBusWorker

/// The storage worker's service in-process (no KVM, no process): a fake storvsc over real VMBus
/// rings in a memfd that plays guest RAM. The handshake as Linux 6.1 sends it, then WRITE(10),
/// READ(10) and SYNCHRONIZE CACHE with page-crossing GPA-direct buffers, and a buffer outside RAM.
@Suite("storage worker service: a fake storvsc over real rings")
struct StorageServiceTests {
    final class Log: @unchecked Sendable { var lines: [String] = [] }

    /// 1 MiB of "guest RAM"; the channel's ring GPADL is pages 0...7 (guest-to-host 0...3,
    /// host-to-guest 4...7); data buffers live from page 0x20 on.
    struct Guest {
        let ram: SharedRegion
        let map: VMBusGuestMemoryMap
        let service: StorageService
        let backend: MemoryDiskBackend
        let toHost: VMBusRingProducer<VMBusPagedRingMemory>
        let fromHost: VMBusRingConsumer<VMBusPagedRingMemory>
        let log = Log()

        init(options: StorageService.Options = .init()) throws {
            ram = try SharedRegion(name: "test-guest-ram", size: 1 << 20)
            let host = try #require(ram.pointer(at: 0, count: 1 << 20))
            map = VMBusGuestMemoryMap(regions: [.init(gpa: 0..<(1 << 20), host: host)])
            let synic = try SynICRegion.create(vpCount: 1, ringLayout: try RecordRing.Layout(recordSize: 512, capacity: 8))
            let memory = RegionGuestMemory(region: ram, ranges: [.init(base: 0, size: 1 << 20, offset: 0)])
            let signals = VMBusChannelSignals(synic: synic, memory: memory, pollingAvailable: false) { _ in }
            backend = MemoryDiskBackend(byteCount: 1 << 20)
            let log = self.log
            service = try StorageService(disks: [(SCSIDisk.Configuration(capacityBlocks: 2048, serial: "t0"), backend)],
                                         map: map, ram: [0..<(1 << 20)], signals: signals, options: options) { log.lines.append($0) }
            let open = ChannelControlRecord(operation: .open, relID: 4, connectionID: 0x2004, targetVP: 0,
                                            downstreamPageOffset: 4, pfns: (0..<8).map { UInt64($0) })
            #expect(service.handle(open) == ChannelAnswerRecord(operation: .opened, relID: 4, status: 0))
            toHost = try VMBusRingProducer(memory: try VMBusPagedRingMemory(map: map, pfns: [0, 1, 2, 3]))
            fromHost = try VMBusRingConsumer(memory: try VMBusPagedRingMemory(map: map, pfns: [4, 5, 6, 7]))
        }

        /// A 64-byte vstor_packet.
        static func packet(op: UInt32, _ fill: (inout [UInt8]) -> Void = { _ in }) -> [UInt8] {
            var p = [UInt8](repeating: 0, count: 64)
            put32(&p, 0, op)
            put32(&p, 4, 1)
            fill(&p)
            return p
        }

        static func put32(_ p: inout [UInt8], _ at: Int, _ v: UInt32) { for i in 0..<4 { p[at + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }
        static func put16(_ p: inout [UInt8], _ at: Int, _ v: UInt16) { for i in 0..<2 { p[at + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }

        /// Sends one packet, lets the service serve, returns the completions (transaction id, payload).
        func exchange(_ payload: [UInt8], id: UInt64, buffer: (offset: UInt32, length: UInt32, pfns: [UInt64])? = nil)
            -> [(UInt64, [UInt8])] {
            if let b = buffer {
                var ext = [UInt8](repeating: 0, count: 8)
                Self.put32(&ext, 4, 1)
                var range = [UInt8](repeating: 0, count: 8)
                Self.put32(&range, 0, b.length)
                Self.put32(&range, 4, b.offset)
                ext += range
                for pfn in b.pfns { for i in 0..<8 { ext.append(UInt8(truncatingIfNeeded: pfn >> (8 * UInt64(i)))) } }
                let r = ext.withUnsafeBytes { e in payload.withUnsafeBytes {
                    toHost.tryWrite(type: .dataUsingGPADirect, flags: 1, transactionID: id, headerExtension: e, payload: $0) } }
                #expect(r == .written)
            } else {
                #expect(toHost.tryWrite(type: .dataInBand, flags: 1, transactionID: id, payload: payload) == .written)
            }
            _ = toHost.commit()
            return serveAndTake()
        }

        /// Lets the service serve, returns the completions (transaction id, payload).
        func serveAndTake() -> [(UInt64, [UInt8])] {
            service.serve()
            var out: [(UInt64, [UInt8])] = []
            while case .packet(let p) = fromHost.next() {
                #expect(p.descriptor.type == .completion)
                var bytes = [UInt8](repeating: 0, count: p.payload.count)
                bytes.withUnsafeMutableBytes { _ = p.payload.copyBytes(to: $0) }
                out.append((p.descriptor.transactionID, bytes))
            }
            _ = fromHost.commit()
            return out
        }

        func srb(cdb: [UInt8], dataIn: UInt8, length: UInt32) -> [UInt8] {
            Self.packet(op: 3) { p in
                Self.put16(&p, 12, 0x34)
                p[20] = UInt8(cdb.count)
                p[21] = 20
                p[22] = dataIn
                Self.put32(&p, 24, length)
                for (i, b) in cdb.enumerated() { p[28 + i] = b }
            }
        }
    }

    static func u32(_ p: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(p[at + $1]) << (8 * $1) } }

    @Test("Linux's handshake, then page-crossing WRITE(10) and READ(10), SYNCHRONIZE CACHE, and a buffer outside RAM")
    func handshakeAndIO() throws {
        let g = try Guest()
        let initID: UInt64 = 0xFFFF_FFFF_FFFF_FFFD
        for (op, fill) in [(UInt32(7), { (_: inout [UInt8]) in }), (9, { p in Guest.put16(&p, 12, 0x0602) }),
                           (10, { _ in }), (8, { _ in })] as [(UInt32, (inout [UInt8]) -> Void)] {
            let replies = g.exchange(Guest.packet(op: op, fill), id: initID)
            try #require(replies.count == 1)
            #expect(replies[0].0 == initID && replies[0].1.count == 64, "op \(op)")
            #expect(Self.u32(replies[0].1, 0) == 1 && Self.u32(replies[0].1, 8) == 0, "op \(op): \(replies[0].1)")
        }
        #expect(g.log.lines.contains("relid 4: vstor: protocol 0x0602, 1 LUN(s)"), "\(g.log.lines)")

        // 2 blocks from offset 3584 of page 0x20: the buffer crosses into page 0x21.
        let host = try #require(g.ram.pointer(at: 0x20 * 4096 + 3584, count: 1024))
        for i in 0..<1024 { host.storeBytes(of: UInt8(truncatingIfNeeded: i * 7 + 1), toByteOffset: i, as: UInt8.self) }
        let write = g.exchange(g.srb(cdb: [0x2A, 0, 0, 0, 0, 5, 0, 0, 2, 0], dataIn: 0, length: 1024), id: 1,
                               buffer: (3584, 1024, [0x20, 0x21]))
        try #require(write.count == 1)
        #expect(write[0].0 == 1 && write[0].1.count == 64 && write[0].1[14] == 0x01 && Self.u32(write[0].1, 24) == 1024)
        #expect(Array(g.backend.bytes[5 * 512..<7 * 512]) == (0..<1024).map { UInt8(truncatingIfNeeded: $0 * 7 + 1) })

        // Read it back into pages 0x30/0x31 at offset 512.
        let read = g.exchange(g.srb(cdb: [0x28, 0, 0, 0, 0, 5, 0, 0, 2, 0], dataIn: 1, length: 1024), id: 2,
                              buffer: (3584 - 3072, 1024, [0x30]))
        try #require(read.count == 1)
        #expect(read[0].1[14] == 0x01)
        let back = try #require(g.ram.pointer(at: 0x30 * 4096 + 512, count: 1024))
        #expect((0..<1024).allSatisfy { back.load(fromByteOffset: $0, as: UInt8.self) == UInt8(truncatingIfNeeded: $0 * 7 + 1) })

        let sync = g.exchange(g.srb(cdb: [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], dataIn: 2, length: 0), id: 3)
        #expect(sync.count == 1 && sync.first?.1[14] == 0x01)
        #expect(g.backend.log.last == "flush" && g.backend.dirty.isEmpty)

        // A PFN past guest RAM: refused before any I/O, INVALID_REQUEST | AUTOSENSE_VALID, ILLEGAL REQUEST.
        let before = g.backend.log.count
        let bad = g.exchange(g.srb(cdb: [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], dataIn: 1, length: 512), id: 4,
                             buffer: (0, 512, [0x1_0000]))
        #expect(bad.count == 1 && bad.first?.1[14] == 0x86 && bad.first?.1[15] == 2)
        #expect(g.backend.log.count == before)
        #expect(g.service.requestsCompleted == 4)

        // Close: answered, and the channel is gone.
        #expect(g.service.handle(ChannelControlRecord(operation: .close, relID: 4)) == ChannelAnswerRecord(operation: .closed, relID: 4))
        #expect(g.service.openRelIDs.isEmpty)
    }

    @Test("UNMAP completes with the bytes of its parameter list taken, on the ring thread and through the I/O pool",
          arguments: [0, 2])
    func unmapReportsItsParameterList(ioThreads: Int) throws {
        let g = try Guest(options: .init(ioThreads: ioThreads, inlineNonBlocking: false))
        #expect(g.service.start())
        defer { g.service.stopThreads() }
        let initID: UInt64 = 0xFFFF_FFFF_FFFF_FFFD
        for (op, fill) in [(UInt32(7), { (_: inout [UInt8]) in }), (9, { p in Guest.put16(&p, 12, 0x0602) }),
                           (10, { _ in }), (8, { _ in })] as [(UInt32, (inout [UInt8]) -> Void)] {
            try #require(g.exchange(Guest.packet(op: op, fill), id: initID).count == 1)
        }
        /// Sends the SRB and serves until it completes (the pool answers on its own threads).
        func complete(_ p: [UInt8], id: UInt64, buffer: (offset: UInt32, length: UInt32, pfns: [UInt64])) throws -> [UInt8] {
            var replies = g.exchange(p, id: id, buffer: buffer)
            for _ in 0..<2000 where replies.isEmpty {
                usleep(1000)
                replies = g.serveAndTake()
            }
            try #require(replies.count == 1 && replies[0].0 == id)
            return replies[0].1
        }
        // One descriptor (LBA 8, 2 blocks) in a 24-byte list, at offset 100 of page 0x20; the SRB's
        // buffer is 512 bytes: the list taken is the CDB's 24, not the buffer's 512.
        let host = try #require(g.ram.pointer(at: 0x20 * 4096 + 100, count: 24))
        let list: [UInt8] = [0, 22, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 2, 0, 0, 0, 0]
        for (i, b) in list.enumerated() { host.storeBytes(of: b, toByteOffset: i, as: UInt8.self) }
        let done = try complete(g.srb(cdb: [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], dataIn: 0, length: 512), id: 1,
                                buffer: (100, 512, [0x20]))
        #expect(done[14] == 0x01 && done[15] == 0 && Self.u32(done, 24) == 24, "\(done)")
        #expect(g.backend.punched.count == 1 && g.backend.punched.first?.offset == 8 * 512 && g.backend.punched.first?.count == 1024)
        // A list with no blocks to unmap: no I/O, and still the 8 bytes taken.
        for (i, b) in [UInt8]([0, 6, 0, 0, 0, 0, 0, 0]).enumerated() { host.storeBytes(of: b, toByteOffset: i, as: UInt8.self) }
        let empty = try complete(g.srb(cdb: [0x42, 0, 0, 0, 0, 0, 0, 0, 8, 0], dataIn: 0, length: 8), id: 2,
                                 buffer: (100, 8, [0x20]))
        #expect(empty[14] == 0x01 && Self.u32(empty, 24) == 8, "\(empty)")
        #expect(g.backend.punched.count == 1)
    }
}
