import Glibc
import IPC
import Storage
import StorageWorker
import SynICRouting
import Testing
import VMBus
import VMBusWorker

/// The storage service with a primary channel and a sub-channel, in-process over real rings in a
/// memfd: CREATE_SUB_CHANNELS asks the VMBus worker only once its answer is in the guest's ring;
/// a sub-channel's requests meet the primary's vstor state and complete on their own ring; a
/// successor redoes what was taken from a sub-channel exactly once, and asks for the sub-channels
/// again (harmless: the server only grows).
@Suite("storage service: sub-channels")
struct StorageSubChannelTests {
    final class Log: @unchecked Sendable { var lines: [String] = [] }

    /// 2 MiB of guest RAM. Primary (relid 4): ring pages 0...15 (8 + 8); sub-channel 1 (relid 5):
    /// pages 16...31. Data pages from 0x40. A 1 MiB disk on a memfd.
    final class Rig {
        struct Ring {
            let toHost: VMBusRingProducer<VMBusPagedRingMemory>
            let fromHost: VMBusRingConsumer<VMBusPagedRingMemory>
        }
        let ram: SharedRegion
        let map: VMBusGuestMemoryMap
        let signals: VMBusChannelSignals
        let disk: SharedRegion
        let state: WorkerStateRegion
        let primary: Ring
        let sub: Ring
        let log = Log()
        var service: StorageService!
        /// Completions read, by relid: transaction id -> payloads.
        var seen: [UInt32: [UInt64: [[UInt8]]]] = [4: [:], 5: [:]]
        static let ramSize = 2 << 20
        static let primaryOpen = ChannelControlRecord(operation: .open, relID: 4, connectionID: 0x2004, targetVP: 0,
                                                      downstreamPageOffset: 8, pfns: (0..<16).map { UInt64($0) })
        static let subOpen = ChannelControlRecord(operation: .open, relID: 5, connectionID: 0x2005, targetVP: 1,
                                                  downstreamPageOffset: 8, subChannelIndex: 1, pfns: (16..<32).map { UInt64($0) })

        init() throws {
            ram = try SharedRegion(name: "test-guest-ram", size: Self.ramSize)
            let host = try #require(ram.pointer(at: 0, count: Self.ramSize))
            map = VMBusGuestMemoryMap(regions: [.init(gpa: 0..<UInt64(Self.ramSize), host: host)])
            let synic = try SynICRegion.create(vpCount: 2, ringLayout: try RecordRing.Layout(recordSize: 512, capacity: 8))
            let memory = RegionGuestMemory(region: ram, ranges: [.init(base: 0, size: UInt64(Self.ramSize), offset: 0)])
            signals = VMBusChannelSignals(synic: synic, memory: memory, pollingAvailable: false) { _ in }
            disk = try SharedRegion(name: "test-disk", size: 1 << 20)
            state = try WorkerStateRegion.create(name: "test-storage-state", kind: WorkerKind.storage.rawValue,
                                                 slotSize: StorageService.stateSlotSize,
                                                 extraBytes: StorageService.stateExtraBytes(entries: 64))
            let map = self.map
            func ring(_ first: UInt64) throws -> Ring {
                Ring(toHost: try VMBusRingProducer(memory: try VMBusPagedRingMemory(map: map, pfns: ArraySlice((first..<(first + 8)).map { $0 }))),
                     fromHost: try VMBusRingConsumer(memory: try VMBusPagedRingMemory(map: map, pfns: ArraySlice(((first + 8)..<(first + 16)).map { $0 }))))
            }
            primary = try ring(0)
            sub = try ring(16)
        }

        func start(threads: Int, restored: Bool, maxSubChannels: UInt16 = 1, openPrimary: Bool = true) throws {
            let log = self.log
            service = try StorageService(
                disks: [(SCSIDisk.Configuration(capacityBlocks: 2048, serial: "t0"), FileDiskBackend(fd: disk.fd.rawValue, byteCount: 1 << 20))],
                vstor: .init(maxSubChannels: maxSubChannels), map: map, ram: [0..<UInt64(Self.ramSize)], signals: signals, state: state,
                options: .init(ioThreads: threads, inlineNonBlocking: false)) { log.lines.append($0) }
            #expect(service.start())
            if openPrimary { self.openPrimary(restored: restored) }
        }

        func openPrimary(restored: Bool) {
            var open = Self.primaryOpen
            open.restored = restored
            #expect(service.handle(open) == (restored ? nil : ChannelAnswerRecord(operation: .opened, relID: 4, status: 0)))
        }

        func openSub(restored: Bool = false) {
            var open = Self.subOpen
            open.restored = restored
            #expect(service.handle(open) == (restored ? nil : ChannelAnswerRecord(operation: .opened, relID: 5, status: 0)))
        }

        func ring(_ relID: UInt32) -> Ring { relID == 4 ? primary : sub }

        func send(_ relID: UInt32, _ payload: [UInt8], id: UInt64, page: UInt64? = nil, length: UInt32 = 4096) {
            let r = ring(relID)
            if let page {
                var ext = [UInt8](repeating: 0, count: 8)
                ext[4] = 1
                ext += le32(length) + le32(0)
                for pfn in [page] { for i in 0..<8 { ext.append(UInt8(truncatingIfNeeded: pfn >> (8 * UInt64(i)))) } }
                let w = ext.withUnsafeBytes { e in payload.withUnsafeBytes {
                    r.toHost.tryWrite(type: .dataUsingGPADirect, flags: 1, transactionID: id, headerExtension: e, payload: $0) } }
                #expect(w == .written)
            } else {
                #expect(r.toHost.tryWrite(type: .dataInBand, flags: 1, transactionID: id, payload: payload) == .written)
            }
            _ = r.toHost.commit()
        }

        func receive() {
            for relID: UInt32 in [4, 5] {
                let r = ring(relID)
                while case .packet(let p) = r.fromHost.next() {
                    var bytes = [UInt8](repeating: 0, count: p.payload.count)
                    bytes.withUnsafeMutableBytes { _ = p.payload.copyBytes(to: $0) }
                    seen[relID, default: [:]][p.descriptor.transactionID, default: []].append(bytes)
                }
                _ = r.fromHost.commit()
            }
        }

        func run(until ids: [(UInt32, UInt64)]) {
            for _ in 0..<5000 {
                service.serve()
                receive()
                if service.dead || ids.allSatisfy({ seen[$0.0]?[$0.1] != nil }) { return }
                usleep(1000)
            }
        }

        /// One vstor operation on the primary; its NTSTATUS and the reply.
        @discardableResult
        func op(_ p: [UInt8], on relID: UInt32 = 4, id: UInt64 = 0xFFFF_FFFF_FFFF_FFFD) -> [UInt8]? {
            seen[relID]?[id] = nil
            send(relID, p, id: id)
            run(until: [(relID, id)])
            let r = seen[relID]?[id]
            #expect(r?.count == 1)
            seen[relID]?[id] = nil
            return r?.first
        }

        func handshake() {
            for p in [vstorPacket(.beginInitialization), vstorPacket(.queryProtocolVersion, union: le16(0x0602))] {
                #expect(op(p).map { u32($0, 8) } == 0)
            }
            let props = op(vstorPacket(.queryProperties))
            // max_channel_cnt (u16 at 12 + 4) and flags bit 0 (u32 at 12 + 8).
            #expect(props.map { UInt16($0[16]) | UInt16($0[17]) << 8 } == 1 && props.map { u32($0, 20) & 1 } == 1)
            #expect(op(vstorPacket(.endInitialization)).map { u32($0, 8) } == 0)
        }

        func fill(page: Int, seed: UInt8) {
            let p = ram.pointer(at: page * 4096, count: 4096)!
            for i in 0..<4096 { p.storeBytes(of: UInt8(truncatingIfNeeded: i &* 31 &+ Int(seed)), toByteOffset: i, as: UInt8.self) }
        }

        func ramBytes(page: Int) -> [UInt8] { Array(UnsafeRawBufferPointer(start: ram.pointer(at: page * 4096, count: 4096)!, count: 4096)) }

        func diskBytes(lba: Int, count: Int) -> [UInt8] {
            Array(UnsafeRawBufferPointer(start: disk.pointer(at: lba * 512, count: count)!, count: count))
        }

        static func pattern(seed: UInt8) -> [UInt8] { (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) } }
    }

    static func u32(_ p: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(p[at + $1]) << (8 * $1) } }
    static func rw10(_ op: UInt8, lba: UInt32, blocks: UInt16) -> [UInt8] {
        [op, 0, UInt8(lba >> 24), UInt8(truncatingIfNeeded: lba >> 16), UInt8(truncatingIfNeeded: lba >> 8),
         UInt8(truncatingIfNeeded: lba), 0, UInt8(blocks >> 8), UInt8(truncatingIfNeeded: blocks), 0]
    }
    static let invalidParameter: UInt32 = 0xC000_000D
    static let invalidDeviceState: UInt32 = 0xC000_0184

    @Test("CREATE_SUB_CHANNELS: the request goes out after the answer, never above the limit; sub-channel I/O completes on its own ring")
    func createAndServe() throws {
        let g = try Rig()
        try g.start(threads: 2, restored: false)
        // A sub-channel opened before the primary is ready answers INVALID_DEVICE_STATE.
        g.openSub()
        #expect(g.op(srbPacket(cdb: [0, 0, 0, 0, 0, 0], dataIn: 2, length: 0), on: 5, id: 9).map { Self.u32($0, 8) } == Self.invalidDeviceState)
        g.handshake()
        #expect(g.service.takeSubChannelRequests().isEmpty)
        // Above the limit, and 10^9 cut to 16 bits: refused, nothing asked of the VMBus worker.
        for n: UInt16 in [2, UInt16(truncatingIfNeeded: 1_000_000_000)] {
            #expect(g.op(vstorPacket(.createSubChannels, union: le16(n))).map { Self.u32($0, 8) } == Self.invalidParameter)
            #expect(g.service.takeSubChannelRequests().isEmpty)
        }
        // One: answered 0, and only then the request (the answer was written in the same serve).
        g.send(4, vstorPacket(.createSubChannels, union: le16(1)), id: 77)
        #expect(g.service.takeSubChannelRequests().isEmpty)
        g.service.serve()
        let requests = g.service.takeSubChannelRequests()
        g.receive()
        #expect(g.seen[4]?[77]?.first.map { Self.u32($0, 8) } == 0)
        #expect(requests == [SubChannelRequestRecord(relID: 4, total: 1)])
        // On the sub-channel: INVALID_DEVICE_STATE, no request.
        #expect(g.op(vstorPacket(.createSubChannels, union: le16(1)), on: 5, id: 10).map { Self.u32($0, 8) } == Self.invalidDeviceState)
        #expect(g.op(vstorPacket(.beginInitialization), on: 5, id: 11).map { Self.u32($0, 8) } == Self.invalidDeviceState)
        #expect(g.service.takeSubChannelRequests().isEmpty)
        // A write on the sub-channel completes there (not on the primary); the primary reads it.
        g.fill(page: 0x40, seed: 5)
        g.send(5, srbPacket(cdb: Self.rw10(0x2A, lba: 64, blocks: 8), dataIn: 0, length: 4096), id: 21, page: 0x40)
        g.run(until: [(5, 21)])
        #expect(g.seen[5]?[21]?.count == 1 && g.seen[5]?[21]?.first?[14] == 0x01)
        #expect(g.seen[4]?[21] == nil)
        g.send(4, srbPacket(cdb: Self.rw10(0x28, lba: 64, blocks: 8), dataIn: 1, length: 4096), id: 22, page: 0x41)
        g.run(until: [(4, 22)])
        #expect(g.seen[4]?[22]?.first?[14] == 0x01 && g.ramBytes(page: 0x41) == Rig.pattern(seed: 5))
        #expect(g.service.srbsByRelID == [4: 1, 5: 1])
        #expect(g.log.lines.contains("relid 5: sub-channel 1: 1 request(s) served"))
        // The primary closes: the sub-channel's packets now meet no ready state.
        #expect(g.service.handle(ChannelControlRecord(operation: .close, relID: 4)) == ChannelAnswerRecord(operation: .closed, relID: 4))
        #expect(g.op(srbPacket(cdb: [0, 0, 0, 0, 0, 0], dataIn: 2, length: 0), on: 5, id: 12).map { Self.u32($0, 8) } == Self.invalidDeviceState)
        g.service.stopThreads()
    }

    @Test("without a limit QUERY_PROPERTIES offers none and CREATE_SUB_CHANNELS is refused")
    func noSubChannels() throws {
        let g = try Rig()
        try g.start(threads: 0, restored: false, maxSubChannels: 0)
        for p in [vstorPacket(.beginInitialization), vstorPacket(.queryProtocolVersion, union: le16(0x0602))] { g.op(p) }
        let props = g.op(vstorPacket(.queryProperties))
        #expect(props.map { UInt16($0[16]) | UInt16($0[17]) << 8 } == 0 && props.map { Self.u32($0, 20) } == 0)
        g.op(vstorPacket(.endInitialization))
        #expect(g.op(vstorPacket(.createSubChannels, union: le16(1))).map { Self.u32($0, 8) } == Self.invalidDeviceState)
        #expect(g.service.takeSubChannelRequests().isEmpty)
    }

    @Test("stopped at every step of a sub-channel request's life, the successor completes it once on the sub-channel and asks for the sub-channels again",
          arguments: [0, 2])
    func restartWithSubChannelRequests(threads: Int) throws {
        var cases = 0
        for point in StorageService.StopPoint.allCases {
            let g = try Rig()
            try g.start(threads: threads, restored: false)
            g.handshake()
            #expect(g.op(vstorPacket(.createSubChannels, union: le16(1))).map { Self.u32($0, 8) } == 0)
            _ = g.service.takeSubChannelRequests()
            g.openSub()
            g.fill(page: 0x42, seed: 9)
            g.service.stopAt = (point, 0)
            g.send(5, srbPacket(cdb: Self.rw10(0x2A, lba: 128, blocks: 8), dataIn: 0, length: 4096), id: 31, page: 0x42)
            g.run(until: [(5, 31)])
            guard g.service.dead else {
                #expect(g.seen[5]?[31]?.count == 1, "\(point): no stop")
                g.service.stopThreads()
                continue
            }
            cases += 1
            g.service.stopThreads()
            g.receive()
            // The successor: the VMBus worker hands both channels over as restored opens.
            try g.start(threads: threads, restored: true)
            g.openSub(restored: true)
            #expect(g.service.takeSubChannelRequests() == [SubChannelRequestRecord(relID: 4, total: 1)], "\(point)")
            g.run(until: [(5, 31)])
            #expect(g.seen[5]?[31]?.count == 1 && g.seen[5]?[31]?.first?[14] == 0x01, "\(point): \(g.seen[5]?[31] ?? [])")
            #expect(g.seen[4]?[31] == nil)
            #expect(g.diskBytes(lba: 128, count: 4096) == Rig.pattern(seed: 9), "\(point)")
            #expect(g.service.inFlight == 0)
            g.service.stopThreads()
        }
        #expect(cases >= 5, "\(cases) stop cases")
    }

    @Test("an open handed over again without a close (a restarted VMBus worker's opening channel): answered again, the channel and its requests in flight kept")
    func openHandedOverAgain() throws {
        let g = try Rig()
        try g.start(threads: 2, restored: false)
        g.handshake()
        g.openSub()
        var ids: [(UInt32, UInt64)] = []
        for k in 0..<8 {
            let relID: UInt32 = k % 2 == 0 ? 4 : 5
            g.fill(page: 0x40 + k, seed: UInt8(k))
            g.send(relID, srbPacket(cdb: Self.rw10(0x2A, lba: UInt32(8 * k), blocks: 8), dataIn: 0, length: 4096),
                   id: UInt64(100 + k), page: UInt64(0x40 + k))
            ids.append((relID, UInt64(100 + k)))
        }
        g.service.serve()
        // Both handed over again while their requests run.
        #expect(g.service.handle(Rig.primaryOpen) == ChannelAnswerRecord(operation: .opened, relID: 4, status: 0))
        #expect(g.service.handle(Rig.subOpen) == ChannelAnswerRecord(operation: .opened, relID: 5, status: 0))
        #expect(g.log.lines.contains("relid 5: handed over again while open on the same ring; kept, answered again"))
        g.run(until: ids)
        for (relID, id) in ids { #expect(g.seen[relID]?[id]?.count == 1 && g.seen[relID]?[id]?.first?[14] == 0x01, "relid \(relID) id \(id)") }
        for k in 0..<8 { #expect(g.diskBytes(lba: 8 * k, count: 4096) == Rig.pattern(seed: UInt8(k))) }
        // The vstor state was kept: the primary still serves SRBs.
        g.send(4, srbPacket(cdb: [0, 0, 0, 0, 0, 0], dataIn: 2, length: 0), id: 200)
        g.run(until: [(4, 200)])
        #expect(g.seen[4]?[200]?.first?[14] == 0x01)
        // On another ring it is a new channel (the old one is closed first).
        var moved = Rig.subOpen
        moved.pfns = (32..<48).map { UInt64($0) }
        #expect(g.service.handle(moved) == ChannelAnswerRecord(operation: .opened, relID: 5, status: 0))
        g.service.stopThreads()
    }

    @Test("a successor handed the sub-channel before the primary (the old VMBus worker's hand-over, before its own restart): the sub-channel waits, then serves once the primary is re-announced")
    func subChannelBeforeItsPrimary() throws {
        let g = try Rig()
        try g.start(threads: 2, restored: false)
        g.handshake()
        #expect(g.op(vstorPacket(.createSubChannels, union: le16(1))).map { Self.u32($0, 8) } == 0)
        g.service.stopThreads()
        // The successor: the sub-channel's open arrives first, as a fresh open.
        try g.start(threads: 2, restored: false, openPrimary: false)
        g.openSub()
        g.fill(page: 0x44, seed: 4)
        g.send(5, srbPacket(cdb: Self.rw10(0x2A, lba: 256, blocks: 8), dataIn: 0, length: 4096), id: 41, page: 0x44)
        for _ in 0..<20 { g.service.serve(); g.receive(); usleep(1000) }
        #expect(g.seen[5]?[41] == nil, "served before the primary came: \(g.seen[5]?[41] ?? [])")
        #expect(g.log.lines.contains("relid 5: sub-channel 1 waits for its primary's hand-over"))
        // The restarted VMBus worker re-announces both: the primary resumes its vstor state.
        g.openPrimary(restored: true)
        g.openSub(restored: true)
        g.run(until: [(5, 41)])
        #expect(g.seen[5]?[41]?.count == 1 && g.seen[5]?[41]?.first?[14] == 0x01, "\(g.seen[5]?[41] ?? [])")
        #expect(g.diskBytes(lba: 256, count: 4096) == Rig.pattern(seed: 4))
        g.service.stopThreads()
    }
}
