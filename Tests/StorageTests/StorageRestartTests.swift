import Glibc
import IPC
import Storage
import StorageWorker
import SynICRouting
import Testing
import VMBus
import VMBusWorker

/// The storage service with its I/O threads and its in-flight table, in-process over real rings
/// in a memfd, a disk on a memfd (FileDiskBackend: preadv/pwritev) and a state region: many
/// requests in flight, completed exactly once in any order; and a service stopped at every step
/// of a request's life (as if SIGKILLed there) with a successor started on the same memory, which
/// completes every request exactly once with the right data.
@Suite("storage service: I/O threads, in-flight table, restart")
struct StorageRestartTests {
    final class Log: @unchecked Sendable { var lines: [String] = [] }

    /// 2 MiB of guest RAM: the ring GPADL is pages 0...31 (guest-to-host 0...15, host-to-guest
    /// 16...31), data buffers from page 0x40 on. A 1 MiB disk on a memfd.
    final class Rig {
        let ram: SharedRegion
        let map: VMBusGuestMemoryMap
        let signals: VMBusChannelSignals
        /// The disk: a memfd, or (`onFile`) an unlinked file in the temporary directory, where
        /// RWF_NOWAIT works on ext4 and xfs (shmem refuses it: the inline attempt falls back).
        let diskFD: Int32
        let memfdDisk: SharedRegion?
        let state: WorkerStateRegion
        let toHost: VMBusRingProducer<VMBusPagedRingMemory>
        let fromHost: VMBusRingConsumer<VMBusPagedRingMemory>
        let log = Log()
        var service: StorageService!
        var backend: FileDiskBackend!
        /// Completions the guest read: transaction id -> payloads.
        var seen: [UInt64: [[UInt8]]] = [:]
        static let ramSize = 2 << 20
        static let open = ChannelControlRecord(operation: .open, relID: 4, connectionID: 0x2004, targetVP: 0,
                                               downstreamPageOffset: 16, pfns: (0..<32).map { UInt64($0) })

        init(onFile: Bool = false) throws {
            ram = try SharedRegion(name: "test-guest-ram", size: Self.ramSize)
            let host = try #require(ram.pointer(at: 0, count: Self.ramSize))
            map = VMBusGuestMemoryMap(regions: [.init(gpa: 0..<UInt64(Self.ramSize), host: host)])
            let synic = try SynICRegion.create(vpCount: 1, ringLayout: try RecordRing.Layout(recordSize: 512, capacity: 8))
            let memory = RegionGuestMemory(region: ram, ranges: [.init(base: 0, size: UInt64(Self.ramSize), offset: 0)])
            signals = VMBusChannelSignals(synic: synic, memory: memory, pollingAvailable: false) { _ in }
            if onFile {
                var template = Array("/tmp/synthvm-storage-test-XXXXXX".utf8CString)
                let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
                try #require(fd >= 0)
                template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
                try #require(ftruncate(fd, 1 << 20) == 0)
                diskFD = fd
                memfdDisk = nil
            } else {
                let d = try SharedRegion(name: "test-disk", size: 1 << 20)
                diskFD = d.fd.rawValue
                memfdDisk = d
            }
            state = try WorkerStateRegion.create(name: "test-storage-state", kind: WorkerKind.storage.rawValue,
                                                 slotSize: StorageService.stateSlotSize,
                                                 extraBytes: StorageService.stateExtraBytes(entries: 64))
            // The VMBus server zeroes the ring control pages when the guest opens the channel.
            toHost = try VMBusRingProducer(memory: try VMBusPagedRingMemory(map: map, pfns: ArraySlice((0..<16).map { UInt64($0) })))
            fromHost = try VMBusRingConsumer(memory: try VMBusPagedRingMemory(map: map, pfns: ArraySlice((16..<32).map { UInt64($0) })))
        }

        /// A new service on the same memory (a successor when `restored`).
        func start(threads: Int, maxInFlight: Int = 128, inline: Bool = false, restored: Bool) throws {
            let log = self.log
            backend = FileDiskBackend(fd: diskFD, byteCount: 1 << 20)
            service = try StorageService(
                disks: [(SCSIDisk.Configuration(capacityBlocks: 2048, serial: "t0"), backend)],
                map: map, ram: [0..<UInt64(Self.ramSize)], signals: signals, state: state,
                options: .init(ioThreads: threads, maxInFlight: maxInFlight, inlineNonBlocking: inline)) { log.lines.append($0) }
            #expect(service.start())
            var open = Self.open
            open.restored = restored
            let answer = service.handle(open)
            #expect(answer == (restored ? nil : ChannelAnswerRecord(operation: .opened, relID: 4, status: 0)))
        }

        func send(_ payload: [UInt8], id: UInt64, buffer: (offset: UInt32, length: UInt32, pfns: [UInt64])? = nil) {
            if let b = buffer {
                var ext = [UInt8](repeating: 0, count: 8)
                ext[4] = 1
                ext += le32(b.length) + le32(b.offset)
                for pfn in b.pfns { for i in 0..<8 { ext.append(UInt8(truncatingIfNeeded: pfn >> (8 * UInt64(i)))) } }
                let r = ext.withUnsafeBytes { e in payload.withUnsafeBytes {
                    toHost.tryWrite(type: .dataUsingGPADirect, flags: 1, transactionID: id, headerExtension: e, payload: $0) } }
                #expect(r == .written)
            } else {
                #expect(toHost.tryWrite(type: .dataInBand, flags: 1, transactionID: id, payload: payload) == .written)
            }
        }

        func commit() { _ = toHost.commit() }

        /// Reads every completion the host published.
        func receive() {
            while case .packet(let p) = fromHost.next() {
                #expect(p.descriptor.type == .completion)
                var bytes = [UInt8](repeating: 0, count: p.payload.count)
                bytes.withUnsafeMutableBytes { _ = p.payload.copyBytes(to: $0) }
                seen[p.descriptor.transactionID, default: []].append(bytes)
            }
            _ = fromHost.commit()
        }

        /// Serves until `ids` have all been seen, the service died, or 5 s passed.
        func run(until ids: Set<UInt64>) {
            for _ in 0..<5000 {
                service.serve()
                receive()
                if service.dead || ids.isSubset(of: Set(seen.keys)) { return }
                usleep(1000)
            }
        }

        func handshake(id: UInt64 = 0xFFFF_FFFF_FFFF_FFFD) {
            for p in [vstorPacket(.beginInitialization), vstorPacket(.queryProtocolVersion, union: le16(0x0602)),
                      vstorPacket(.queryProperties), vstorPacket(.endInitialization)] {
                send(p, id: id)
                commit()
                seen[id] = nil
                run(until: [id])
                #expect(seen[id]?.count == 1 && seen[id]?.first.map { u32($0, 8) } == 0)
            }
            seen[id] = nil
        }

        func fill(page: Int, count: Int, seed: UInt8) {
            let p = ram.pointer(at: page * 4096, count: count)!
            for i in 0..<count { p.storeBytes(of: UInt8(truncatingIfNeeded: i &* 31 &+ Int(seed)), toByteOffset: i, as: UInt8.self) }
        }

        func ramBytes(page: Int, offset: Int = 0, count: Int) -> [UInt8] {
            Array(UnsafeRawBufferPointer(start: ram.pointer(at: page * 4096 + offset, count: count)!, count: count))
        }

        func diskBytes(lba: Int, count: Int) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: count)
            _ = out.withUnsafeMutableBytes { pread(diskFD, $0.baseAddress, count, off_t(lba * 512)) }
            return out
        }

        func writeDisk(lba: Int, _ bytes: [UInt8]) {
            _ = bytes.withUnsafeBytes { pwrite(diskFD, $0.baseAddress, bytes.count, off_t(lba * 512)) }
        }

        deinit { if memfdDisk == nil { close(diskFD) } }

        static func pattern(_ count: Int, seed: UInt8) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) } }
    }

    static func u32(_ p: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(p[at + $1]) << (8 * $1) } }
    static func rw10(_ op: UInt8, lba: UInt32, blocks: UInt16, fua: Bool = false) -> [UInt8] {
        [op, fua ? 0x08 : 0, UInt8(lba >> 24), UInt8(truncatingIfNeeded: lba >> 16), UInt8(truncatingIfNeeded: lba >> 8),
         UInt8(truncatingIfNeeded: lba), 0, UInt8(blocks >> 8), UInt8(truncatingIfNeeded: blocks), 0]
    }

    @Test("64 requests at once with 16 in flight at most: each completes once, in any order, with its data",
          arguments: [(4, false), (4, true), (0, false)])
    func manyInFlight(threads: Int, inline: Bool) throws {
        let g = try Rig(onFile: inline)
        try g.start(threads: threads, maxInFlight: 16, inline: inline, restored: false)
        g.handshake()
        // 32 writes of 2 pages each (one page-crossing at offset 512), then 32 reads of the same.
        var ids: Set<UInt64> = []
        for k in 0..<32 {
            g.fill(page: 0x40 + 3 * k, count: 3 * 4096, seed: UInt8(k))
            g.send(srbPacket(cdb: Self.rw10(0x2A, lba: UInt32(16 * k), blocks: 16, fua: k % 5 == 0), dataIn: 0, length: 8192),
                   id: UInt64(k + 1), buffer: (512, 8192, (0..<3).map { UInt64(0x40 + 3 * k + $0) }))
            ids.insert(UInt64(k + 1))
        }
        g.commit()
        g.run(until: ids)
        for k in 0..<32 {
            g.send(srbPacket(cdb: Self.rw10(0x28, lba: UInt32(16 * k), blocks: 16), dataIn: 1, length: 8192),
                   id: UInt64(100 + k), buffer: (0, 8192, (0..<2).map { UInt64(0x100 + 2 * k + $0) }))
            ids.insert(UInt64(100 + k))
        }
        g.commit()
        g.run(until: ids)
        #expect(Set(g.seen.keys) == ids)
        for (id, c) in g.seen {
            #expect(c.count == 1, "id \(id) completed \(c.count) times")
            #expect(c.first?[14] == 0x01 && c.first.map { Self.u32($0, 24) } == 8192, "id \(id)")
        }
        for k in 0..<32 {
            let expected = Array(Rig.pattern(3 * 4096, seed: UInt8(k))[512..<(512 + 8192)])
            #expect(g.diskBytes(lba: 16 * k, count: 8192) == expected, "write \(k)")
            #expect(g.ramBytes(page: 0x100 + 2 * k, count: 8192) == expected, "read \(k)")
        }
        #expect(g.service.peakInFlight <= 16 && g.service.peakInFlight > 1, "\(g.service.peakInFlight)")
        // On a file system that takes RWF_NOWAIT (ext4, xfs), the cached reads completed inline.
        if inline { #expect(g.backend.inlineTransfers > 0 || g.backend.nonBlockingReadsRefused) }
        #expect(g.service.inFlight == 0)
        g.service.stopThreads()
    }

    /// The requests of one round: two writes (one FUA), a read of data already on the disk, a
    /// SYNCHRONIZE CACHE, an INQUIRY (completed on the ring thread).
    static func submitRound(_ g: Rig) -> Set<UInt64> {
        g.fill(page: 0x40, count: 4096, seed: 7)
        g.fill(page: 0x41, count: 4096, seed: 9)
        g.send(srbPacket(cdb: rw10(0x2A, lba: 16, blocks: 8), dataIn: 0, length: 4096), id: 11, buffer: (0, 4096, [0x40]))
        g.send(srbPacket(cdb: rw10(0x2A, lba: 100, blocks: 8, fua: true), dataIn: 0, length: 4096), id: 12, buffer: (0, 4096, [0x41]))
        g.send(srbPacket(cdb: rw10(0x28, lba: 200, blocks: 8), dataIn: 1, length: 4096), id: 13, buffer: (0, 4096, [0x50]))
        g.send(srbPacket(cdb: [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], dataIn: 2, length: 0), id: 14)
        g.send(srbPacket(cdb: [0x12, 0, 0, 0, 36, 0], dataIn: 1, length: 36), id: 15, buffer: (0, 36, [0x51]))
        g.commit()
        return [11, 12, 13, 14, 15]
    }

    static func checkRound(_ g: Rig, _ what: String) {
        for id in [UInt64](11...15) {
            let c = g.seen[id] ?? []
            #expect(c.count == 1, "\(what): id \(id) completed \(c.count) times")
            #expect(c.first?[14] == 0x01, "\(what): id \(id): \(c.first ?? [])")
        }
        #expect(g.diskBytes(lba: 16, count: 4096) == Rig.pattern(4096, seed: 7), "\(what): write 11")
        #expect(g.diskBytes(lba: 100, count: 4096) == Rig.pattern(4096, seed: 9), "\(what): write 12")
        #expect(g.ramBytes(page: 0x50, count: 4096) == Rig.pattern(4096, seed: 3), "\(what): read 13")
        #expect(g.ramBytes(page: 0x51, count: 12)[8...] == Array("Msft".utf8)[...], "\(what): INQUIRY 15")
    }

    @Test("stopped at every step of a request's life, a successor on the same memory completes each request exactly once",
          arguments: [(0, false), (2, false), (2, true)])
    func restartAtEveryStep(threads: Int, inline: Bool) throws {
        var cases = 0
        for point in StorageService.StopPoint.allCases {
            for occurrence in 0..<6 {
                let g = try Rig(onFile: inline)
                // Data already on the disk for the read.
                g.writeDisk(lba: 200, Rig.pattern(4096, seed: 3))
                try g.start(threads: threads, inline: inline, restored: false)
                g.handshake()
                g.service.stopAt = (point, occurrence)
                let ids = Self.submitRound(g)
                g.run(until: ids)
                guard g.service.dead else {
                    // The point comes fewer times than this: all done by the first service.
                    Self.checkRound(g, "\(point) #\(occurrence), no stop")
                    g.service.stopThreads()
                    break
                }
                cases += 1
                g.service.stopThreads()
                g.receive()
                try g.start(threads: threads, inline: inline, restored: true)
                g.run(until: ids)
                Self.checkRound(g, "\(threads) threads\(inline ? ", inline" : ""), stopped at \(point) #\(occurrence)")
                #expect(g.service.inFlight == 0)
                // The successor goes on serving: the vstor state was resumed.
                g.send(srbPacket(cdb: Self.rw10(0x28, lba: 16, blocks: 8), dataIn: 1, length: 4096), id: 21, buffer: (0, 4096, [0x60]))
                g.commit()
                g.run(until: [21])
                #expect(g.seen[21]?.count == 1 && g.seen[21]?.first?[14] == 0x01, "\(point) #\(occurrence): after the restart")
                #expect(g.ramBytes(page: 0x60, count: 4096) == Rig.pattern(4096, seed: 7))
                g.service.stopThreads()
            }
        }
        #expect(cases >= (threads > 0 && !inline ? 12 : 8), "\(cases) stop cases")
    }

    @Test("a restarted VMBus worker re-announces the open channel: the service keeps it, requests in flight complete once")
    func reannouncedChannelKeepsGoing() throws {
        let g = try Rig()
        try g.start(threads: 2, restored: false)
        g.handshake()
        var ids: Set<UInt64> = []
        for k in 0..<16 {
            g.fill(page: 0x40 + k, count: 4096, seed: UInt8(k))
            g.send(srbPacket(cdb: Self.rw10(0x2A, lba: UInt32(8 * k), blocks: 8), dataIn: 0, length: 4096),
                   id: UInt64(k + 1), buffer: (0, 4096, [UInt64(0x40 + k)]))
            ids.insert(UInt64(k + 1))
        }
        g.commit()
        g.service.serve()
        var again = Rig.open
        again.restored = true
        #expect(g.service.handle(again) == nil)
        g.run(until: ids)
        for id in ids { #expect(g.seen[id]?.count == 1 && g.seen[id]?.first?[14] == 0x01, "id \(id)") }
        for k in 0..<16 { #expect(g.diskBytes(lba: 8 * k, count: 4096) == Rig.pattern(4096, seed: UInt8(k))) }
        g.service.stopThreads()
    }

    @Test("stopped at every step of the handshake's last packet, the successor answers it once and serves SRBs")
    func restartDuringHandshake() throws {
        for point in StorageService.StopPoint.allCases where ![.dispatched, .ioFinished].contains(point) {
            let g = try Rig()
            try g.start(threads: 2, restored: false)
            let id: UInt64 = 0xFFFF_FFFF_FFFF_FFFD
            for p in [vstorPacket(.beginInitialization), vstorPacket(.queryProtocolVersion, union: le16(0x0602)),
                      vstorPacket(.queryProperties)] {
                g.send(p, id: id)
                g.commit()
                g.run(until: [id])
            }
            g.seen = [:]
            g.service.stopAt = (point, 0)
            g.send(vstorPacket(.endInitialization), id: 5)
            g.commit()
            g.run(until: [5])
            #expect(g.service.dead, "\(point)")
            g.service.stopThreads()
            g.receive()
            try g.start(threads: 2, restored: true)
            g.run(until: [5])
            #expect(g.seen[5]?.count == 1 && g.seen[5]?.first.map { Self.u32($0, 8) } == 0, "\(point): \(g.seen[5] ?? [])")
            g.send(srbPacket(cdb: [0x00, 0, 0, 0, 0, 0], dataIn: 2, length: 0), id: 6)
            g.commit()
            g.run(until: [6])
            #expect(g.seen[6]?.count == 1 && g.seen[6]?.first?[14] == 0x01, "\(point): TEST UNIT READY after the restart")
            g.service.stopThreads()
        }
    }
}
