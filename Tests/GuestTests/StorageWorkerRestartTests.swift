import Foundation
import IPC
import Monitor
import Testing
import VMBus

/// The real jailed `synthvm-storage` process (StorageWorkerHarness: started as a VM starts it,
/// with no VM) SIGKILLed with requests in flight, and a successor started on the same regions:
/// every request the fake guest sent completes exactly once and the data is on the disk
/// (docs/storage.md, "Restart state"). The in-process tests stop the service at each step; this
/// one kills the process wherever it happens to be.
@Suite("storage worker: SIGKILLed with requests in flight, a successor completes each exactly once")
struct StorageWorkerRestartTests {
    static let ringPages = 16
    static let bufferBase = 2 * ringPages
    static let perRound = 48

    final class Guest {
        let harness: StorageWorkerHarness
        let toHost: VMBusRingProducer<VMBusPagedRingMemory>
        let fromHost: VMBusRingConsumer<VMBusPagedRingMemory>
        var seen: [UInt64: [UInt8]] = [:]
        var duplicates: [UInt64] = []
        let open: ChannelControlRecord

        init(diskFD: Int32, diskBytes: Int) throws {
            let ramBytes = (StorageWorkerRestartTests.bufferBase + 2 * StorageWorkerRestartTests.perRound + 1) * 4096
            harness = try StorageWorkerHarness(ramBytes: ramBytes, diskFD: diskFD, diskBytes: UInt64(diskBytes))
            let host = try #require(harness.ram.pointer(at: 0, count: ramBytes))
            let map = VMBusGuestMemoryMap(regions: [.init(gpa: 0..<UInt64(ramBytes), host: host)])
            let n = StorageWorkerRestartTests.ringPages
            toHost = try VMBusRingProducer(memory: try VMBusPagedRingMemory(map: map, pfns: ArraySlice((0..<n).map { UInt64($0) })))
            fromHost = try VMBusRingConsumer(memory: try VMBusPagedRingMemory(map: map, pfns: ArraySlice((n..<(2 * n)).map { UInt64($0) })))
            open = ChannelControlRecord(operation: .open, relID: 4, connectionID: 0x2004, targetVP: 0,
                                        downstreamPageOffset: UInt32(n), pfns: (0..<(2 * n)).map { UInt64($0) })
            let answer = try harness.open(open)
            #expect(answer?.status == 0, "\(String(describing: answer))")
        }

        static func put32(_ p: inout [UInt8], _ at: Int, _ v: UInt32) { for i in 0..<4 { p[at + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }

        func send(_ payload: [UInt8], id: UInt64, pfn: UInt64? = nil) throws {
            if let pfn {
                var ext = [UInt8](repeating: 0, count: 16)
                Self.put32(&ext, 4, 1)
                Self.put32(&ext, 8, 4096)
                for i in 0..<8 { ext.append(UInt8(truncatingIfNeeded: pfn >> (8 * UInt64(i)))) }
                let r = ext.withUnsafeBytes { e in payload.withUnsafeBytes {
                    toHost.tryWrite(type: .dataUsingGPADirect, flags: 1, transactionID: id, headerExtension: e, payload: $0) } }
                try #require(r == .written)
            } else {
                try #require(toHost.tryWrite(type: .dataInBand, flags: 1, transactionID: id, payload: payload) == .written)
            }
        }

        func publish() throws {
            _ = toHost.commit()
            try harness.storageDoorbell.ring()
        }

        /// Reads completions until `ids` were all seen or 20 s passed.
        func collect(_ ids: Set<UInt64>) {
            for _ in 0..<20_000 {
                while case .packet(let p) = fromHost.next() {
                    var bytes = [UInt8](repeating: 0, count: p.payload.count)
                    bytes.withUnsafeMutableBytes { _ = p.payload.copyBytes(to: $0) }
                    let id = p.descriptor.transactionID
                    if seen[id] != nil { duplicates.append(id) }
                    seen[id] = bytes
                }
                _ = fromHost.commit()
                if ids.isSubset(of: Set(seen.keys)) { return }
                usleep(1000)
            }
        }

        func handshake() throws {
            for (k, (op, version)) in [(UInt32(7), UInt16(0)), (9, 0x0602), (10, 0), (8, 0)].enumerated() {
                var p = [UInt8](repeating: 0, count: 64)
                Self.put32(&p, 0, op)
                Self.put32(&p, 4, 1)
                Self.put32(&p, 12, UInt32(version))
                try send(p, id: 0xFFFF_0000 + UInt64(k))
                try publish()
                collect([0xFFFF_0000 + UInt64(k)])
            }
        }

        func srb(write: Bool, lba: UInt32) -> [UInt8] {
            var p = [UInt8](repeating: 0, count: 64)
            Self.put32(&p, 0, 3)
            Self.put32(&p, 4, 1)
            p[12] = 0x34
            p[20] = 10
            p[21] = 20
            p[22] = write ? 0 : 1
            Self.put32(&p, 24, 4096)
            let cdb: [UInt8] = [write ? 0x2A : 0x28, 0, UInt8(lba >> 24), UInt8(truncatingIfNeeded: lba >> 16),
                                UInt8(truncatingIfNeeded: lba >> 8), UInt8(truncatingIfNeeded: lba), 0, 0, 8, 0]
            for (i, b) in cdb.enumerated() { p[28 + i] = b }
            return p
        }

        func page(_ i: Int) -> UnsafeMutableRawPointer { harness.ram.pointer(at: (StorageWorkerRestartTests.bufferBase + i) * 4096, count: 4096)! }
    }

    static func pattern(_ seed: Int) -> [UInt8] { (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ seed &* 7 &+ 1) } }

    @Test("three rounds of 48 writes, the worker SIGKILLed after 0, 1 and 3 ms; then every block read back")
    func killedWithRequestsInFlight() throws {
        let dir = try StorageWorkerTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/disk.img"
        let diskBytes = 4 << 20
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        try #require(fd >= 0 && ftruncate(fd, off_t(diskBytes)) == 0)
        defer { close(fd) }
        let g = try Guest(diskFD: fd, diskBytes: diskBytes)
        defer { _ = g.harness.stop() }
        try g.handshake()
        var restored = g.open
        restored.restored = true
        var all: Set<UInt64> = []
        for (round, delay) in [0, 1000, 3000].enumerated() {
            var ids: Set<UInt64> = []
            for k in 0..<Self.perRound {
                let seed = round * Self.perRound + k
                g.page(k).copyMemory(from: Self.pattern(seed), byteCount: 4096)
                let id = UInt64(seed + 1)
                try g.send(g.srb(write: true, lba: UInt32(seed * 8)), id: id, pfn: UInt64(Self.bufferBase + k))
                ids.insert(id)
            }
            try g.publish()
            if delay > 0 { usleep(useconds_t(delay)) }
            try g.harness.restart()
            #expect(try g.harness.handOver(restored))
            g.collect(ids)
            #expect(Set(g.seen.keys).isSuperset(of: ids), "round \(round): \(ids.subtracting(g.seen.keys).sorted()) never completed")
            for id in ids { #expect(g.seen[id]?[14] == 0x01, "round \(round): id \(id): \(g.seen[id] ?? [])") }
            all.formUnion(ids)
        }
        #expect(g.duplicates.isEmpty, "completed twice: \(g.duplicates)")
        // Read every block back through the last successor.
        for chunk in stride(from: 0, to: 3 * Self.perRound, by: Self.perRound) {
            var ids: Set<UInt64> = []
            for k in 0..<Self.perRound {
                let id = UInt64(10_000 + chunk + k)
                try g.send(g.srb(write: false, lba: UInt32((chunk + k) * 8)), id: id, pfn: UInt64(Self.bufferBase + Self.perRound + k))
                ids.insert(id)
            }
            try g.publish()
            g.collect(ids)
            for k in 0..<Self.perRound {
                #expect(g.seen[UInt64(10_000 + chunk + k)]?[14] == 0x01)
                let back = Array(UnsafeRawBufferPointer(start: g.page(Self.perRound + k), count: 4096))
                #expect(back == Self.pattern(chunk + k), "block \(chunk + k)")
            }
        }
        #expect(g.duplicates.isEmpty)
    }
}
