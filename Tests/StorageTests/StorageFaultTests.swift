import Glibc
import IPC
import Storage
import StorageWorker
import Testing

/// The storage worker's operator faults (`io-error N`, `torn`: docs/faults.md) and its per-disk
/// metrics (`StorageMetricsRegion`: docs/api.md): the fault state alone, then the service
/// in-process on the restart rig (real rings, a memfd disk, the in-flight table).
@Suite("storage faults and metrics")
struct StorageFaultTests {
    typealias Rig = StorageRestartTests.Rig
    static let read8 = SCSIDisk.IO.read(lba: 0, blocks: 8)
    static let write8 = SCSIDisk.IO.write(lba: 0, blocks: 8, fua: false)

    @Test func ioErrorFailsExactlyTheNextNOperationsOfAnyKind() {
        var f = StorageFaultState()
        #expect(f.isIdle && f.verdict(for: Self.read8) == .perform)
        #expect(f.arm(WorkerFault(kind: .ioError, argument: 3)) != nil)
        #expect(!f.isIdle && f.ioErrorsLeft == 3)
        let ops: [SCSIDisk.IO] = [Self.read8, Self.write8, .flush, .unmap([SCSILBARange(lba: 0, blocks: 1)]), Self.read8]
        #expect(ops.map { f.verdict(for: $0) } == [.fail, .fail, .fail, .perform, .perform])
        #expect(f.isIdle)
        // A second io-error replaces what is left.
        _ = f.arm(WorkerFault(kind: .ioError, argument: 5))
        _ = f.verdict(for: .flush)
        _ = f.arm(WorkerFault(kind: .ioError, argument: 1))
        #expect(f.verdict(for: Self.write8) == .fail && f.verdict(for: Self.write8) == .perform)
        // The runtime's own kinds are not this state's.
        #expect(f.arm(WorkerFault(kind: .slow, argument: 5)) == nil && f.isIdle)
    }

    @Test func tornTearsTheNextWriteOnlyAndOnce() {
        var f = StorageFaultState()
        #expect(f.arm(WorkerFault(kind: .torn)) != nil)
        // Reads, flushes, unmaps and WRITE SAME pass; the first WRITE is torn, the next is not.
        #expect(f.verdict(for: Self.read8) == .perform)
        #expect(f.verdict(for: .flush) == .perform)
        #expect(f.verdict(for: .writeSame(lba: 0, blocks: 4, unmap: false, noDataOut: false, fua: false)) == .perform)
        #expect(f.verdict(for: .write(lba: 9, blocks: 16, fua: true)) == .tear(bytes: 8 * 512))
        #expect(f.verdict(for: Self.write8) == .perform && f.isIdle)
        // io-error first: a write it fails is not torn; the torn fault waits for the next one.
        _ = f.arm(WorkerFault(kind: .torn))
        _ = f.arm(WorkerFault(kind: .ioError, argument: 1))
        #expect(f.verdict(for: Self.write8) == .fail)
        #expect(f.verdict(for: .write(lba: 0, blocks: 3, fua: false)) == .tear(bytes: 512))
        #expect(StorageFaultState.tornBytes(blocks: 1) == 256 && StorageFaultState.tornBytes(blocks: 2048) == 1024 * 512)
    }

    @Test func latencyBuckets() {
        #expect(StorageMetricsRegion.bucket(nanoseconds: 0) == 0)
        #expect(StorageMetricsRegion.bucket(nanoseconds: 1000) == 0)
        #expect(StorageMetricsRegion.bucket(nanoseconds: 1001) == 1)
        #expect(StorageMetricsRegion.bucket(nanoseconds: 2000) == 1)
        #expect(StorageMetricsRegion.bucket(nanoseconds: 3000) == 2)
        #expect(StorageMetricsRegion.bucket(nanoseconds: 1_000_000) == 10)  // 1 ms <= 1024 µs
        #expect(StorageMetricsRegion.bucket(nanoseconds: .max) == StorageMetricsRegion.bucketCount - 1)
        #expect(StorageMetricsRegion.bucketBound(0) == 1e-6 && StorageMetricsRegion.bucketBound(StorageMetricsRegion.bucketCount - 1) == nil)
    }

    @Test func metricsRegionCountsAndANewWriterContinues() throws {
        let m = try StorageMetricsRegion.create(disks: 2)
        m.record(disk: 1, op: .read, bytes: 4096, mediumError: false, nanoseconds: 1500)
        m.record(disk: 1, op: .write, bytes: 0, mediumError: true, nanoseconds: 50_000)
        m.record(disk: 7, op: .read, bytes: 1, mediumError: false, nanoseconds: 1)  // no such disk: ignored
        // A successor maps the same region and goes on from there.
        let again = try StorageMetricsRegion(region: m.region, disks: 2)
        again.record(disk: 1, op: .read, bytes: 512, mediumError: false, nanoseconds: 900)
        let s = try #require(m.snapshot(disk: 1))
        #expect(s.requests == [2, 1, 0, 0, 0] && s.requestsTotal == 3)
        #expect(s.bytesRead == 4608 && s.bytesWritten == 0 && s.errors == 1 && s.latencyNanoseconds == 52_400)
        #expect(s.buckets[0] == 1 && s.buckets[1] == 1 && s.buckets[6] == 1 && s.cumulativeBuckets.last == 3)
        #expect(m.snapshot(disk: 0)?.requestsTotal == 0 && m.snapshot(disk: 2) == nil)
        // The header is checked: a worker with another disk count is refused.
        #expect(throws: IPCError.self) { try StorageMetricsRegion(region: m.region, disks: 1) }
    }

    @Test func aHostileWriterCannotMakeTheReaderTrapOrOverflow() throws {
        let m = try StorageMetricsRegion.create(disks: 1)
        // Everything the worker can write set to all ones: the header included.
        let p = try #require(m.region.pointer(at: 0, count: m.region.size))
        p.initializeMemory(as: UInt8.self, repeating: 0xFF, count: m.region.size)
        let s = try #require(m.snapshot(disk: 0))
        #expect(s.requests.allSatisfy { $0 == StorageMetricsRegion.clamp })
        #expect(s.requestsTotal == 5 * StorageMetricsRegion.clamp)
        #expect(s.cumulativeBuckets.last == UInt64(StorageMetricsRegion.bucketCount) * StorageMetricsRegion.clamp)
        #expect(s.cumulativeBuckets == s.cumulativeBuckets.sorted())
        let raw = StorageMetricsRegion.Snapshot(requests: [.max, .max], bytesRead: .max, bytesWritten: 0, errors: 0,
                                                latencyNanoseconds: 0, buckets: [.max, .max, .max])
        #expect(raw.requestsTotal == .max && raw.cumulativeBuckets == [.max, .max, .max])
        let clean = raw.sanitized
        #expect(clean.requests.count == 5 && clean.buckets.count == StorageMetricsRegion.bucketCount && clean.bytesRead == StorageMetricsRegion.clamp)
    }

    // MARK: the service

    /// Sense key, ASC, ASCQ of a completion (fixed-format sense at byte 28).
    static func sense(_ c: [UInt8]) -> (UInt8, UInt8, UInt8) { (c[30] & 0x0F, c[40], c[41]) }

    @Test("io-error 3: the next three requests complete with MEDIUM ERROR (write error 0C/00, read error 11/00), nothing reaches the disk, then success")
    func ioErrorThroughTheService() throws {
        let g = try Rig()
        try g.start(threads: 2, restored: false)
        let metrics = try StorageMetricsRegion.create(disks: 1)
        g.service.attachMetrics(metrics)
        g.handshake()
        #expect(g.service.inject(WorkerFault(kind: .ioError, argument: 3)))
        #expect(!g.service.inject(WorkerFault(kind: .hang, argument: 1)))
        g.writeDisk(lba: 300, Rig.pattern(4096, seed: 5))
        // One at a time: write, write, read, write, read.
        let plan: [(UInt64, UInt8, UInt32)] = [(31, 0x2A, 32), (32, 0x2A, 40), (33, 0x28, 300), (34, 0x2A, 48), (35, 0x28, 300)]
        for (id, op, lba) in plan {
            g.fill(page: 0x40, count: 4096, seed: UInt8(id))
            g.send(srbPacket(cdb: StorageRestartTests.rw10(op, lba: lba, blocks: 8), dataIn: op == 0x28 ? 1 : 0, length: 4096),
                   id: id, buffer: (0, 4096, [op == 0x28 ? 0x50 : 0x40]))
            g.commit()
            g.run(until: [id])
            #expect(g.seen[id]?.count == 1, "id \(id)")
        }
        func completion(_ id: UInt64) -> [UInt8] { g.seen[id]?.first ?? [] }
        for id in [UInt64(31), 32] {
            let c = completion(id)
            #expect(c[15] == 0x02 && c[14] & 0x3F == 0x04 && Self.sense(c) == (3, 0x0C, 0x00) && StorageRestartTests.u32(c, 24) == 0,
                    "write \(id): \(c)")
        }
        #expect(Self.sense(completion(33)) == (3, 0x11, 0x00) && completion(33)[15] == 0x02, "\(completion(33))")
        #expect(completion(34)[14] == 0x01 && completion(35)[14] == 0x01)
        // The failed writes never reached the disk; the one after did; the read after got the data.
        #expect(g.diskBytes(lba: 32, count: 4096) == [UInt8](repeating: 0, count: 4096))
        #expect(g.diskBytes(lba: 40, count: 4096) == [UInt8](repeating: 0, count: 4096))
        #expect(g.diskBytes(lba: 48, count: 4096) == Rig.pattern(4096, seed: 34))
        #expect(g.ramBytes(page: 0x50, count: 4096) == Rig.pattern(4096, seed: 5))
        #expect(g.service.armedFaults.isIdle)
        let s = try #require(metrics.snapshot(disk: 0))
        #expect(s.requests == [2, 3, 0, 0, 0] && s.errors == 3 && s.bytesWritten == 4096 && s.bytesRead == 4096, "\(s)")
        #expect(s.cumulativeBuckets.last == s.requestsTotal && s.latencyNanoseconds > 0)
        g.service.stopThreads()
    }

    @Test("torn: the write leaves its first half on the disk and no completion; the successor redoes it: the full data, one completion",
          arguments: [0, 2])
    func tornWriteHealedByTheSuccessor(threads: Int) throws {
        let g = try Rig()
        let old = Rig.pattern(16 * 512, seed: 200)
        g.writeDisk(lba: 64, old)
        try g.start(threads: threads, restored: false)
        let metrics = try StorageMetricsRegion.create(disks: 1)
        g.service.attachMetrics(metrics)
        var died = 0
        g.service.afterTornWrite = { died += 1 }
        g.handshake()
        #expect(g.service.inject(WorkerFault(kind: .torn)))
        // A read first (not torn), then the write of 16 blocks from pages 0x40-0x41 (new data).
        g.send(srbPacket(cdb: StorageRestartTests.rw10(0x28, lba: 64, blocks: 8), dataIn: 1, length: 4096), id: 40,
               buffer: (0, 4096, [0x50]))
        g.commit()
        g.run(until: [40])
        g.fill(page: 0x40, count: 8192, seed: 77)
        let new = Rig.pattern(8192, seed: 77)
        g.send(srbPacket(cdb: StorageRestartTests.rw10(0x2A, lba: 64, blocks: 16), dataIn: 0, length: 8192), id: 41,
               buffer: (0, 8192, [0x40, 0x41]))
        g.commit()
        g.run(until: [41])
        #expect(g.service.dead && died == 1)
        g.receive()
        #expect(g.seen[40]?.count == 1 && g.seen[41] == nil, "\(g.seen.keys.sorted())")
        // What a host crash in the middle of the write leaves: the first 8 blocks new, the rest old.
        #expect(g.diskBytes(lba: 64, count: 4096) == Array(new[0..<4096]))
        #expect(g.diskBytes(lba: 72, count: 4096) == Array(old[4096...]))
        g.service.stopThreads()
        // The successor on the same table and metrics (the supervisor's regions).
        try g.start(threads: threads, restored: true)
        g.service.attachMetrics(try StorageMetricsRegion(region: metrics.region, disks: 1))
        #expect(g.service.armedFaults.isIdle)
        g.run(until: [41])
        g.receive()
        #expect(g.seen[41]?.count == 1 && g.seen[41]?.first?[14] == 0x01 && g.seen[41].map { StorageRestartTests.u32($0[0], 24) } == 8192)
        #expect(g.diskBytes(lba: 64, count: 8192) == new)
        #expect(g.log.lines.contains { $0.contains("torn write: LUN 0 lba 64 blocks 16") && $0.contains("4096 of 8192 bytes written") },
                "\(g.log.lines)")
        // Nothing completed twice, and a later request is served.
        g.send(srbPacket(cdb: [0x00, 0, 0, 0, 0, 0], dataIn: 2, length: 0), id: 42)
        g.commit()
        g.run(until: [42])
        #expect(g.seen.values.allSatisfy { $0.count == 1 })
        let s = try #require(metrics.snapshot(disk: 0))
        // The read and the redone write (the torn attempt never completed) and TEST UNIT READY.
        #expect(s.requests == [1, 1, 0, 0, 1] && s.bytesWritten == 8192 && s.errors == 0, "\(s)")
        #expect(s.cumulativeBuckets.last == s.requestsTotal)
        g.service.stopThreads()
    }
}
