import Glibc
import Testing

@testable import IPC

@Suite("WorkerStateRegion: a worker's restart state in supervisor-owned memory")
struct WorkerStateRegionTests {
    /// The worker's view: the same memfd mapped again, as after the handshake.
    static func attach(_ s: WorkerStateRegion, kind: UInt16) throws -> WorkerStateRegion {
        try WorkerStateRegion(region: try SharedRegion(adopting: try s.region.fd.duplicate(), size: s.region.size), kind: kind)
    }

    @Test("a new region has nothing saved; saves alternate slots, publish a generation, and survive a new mapping")
    func saveAndLoad() throws {
        let s = try WorkerStateRegion.create(name: "test-state", kind: 2, slotSize: 256)
        #expect(s.region.size == 4096 + 512 && s.capacity == 248)
        let worker = try Self.attach(s, kind: 2)
        #expect(try worker.load() == nil && worker.currentGeneration == 0)
        #expect(try worker.save([1, 2, 3]) == 1)
        #expect(try worker.save(Array(repeating: 7, count: 248)) == 2)
        let successor = try Self.attach(s, kind: 2)
        let last = try #require(try successor.load())
        #expect(last.generation == 2 && last.bytes == Array(repeating: 7, count: 248))
        #expect(try successor.save([]) == 3)
        #expect(try s.load().map { [$0.generation] + $0.bytes.map(UInt64.init) } == [3])
    }

    @Test("a state larger than its slot is refused and the last copy stays")
    func oversizedIsRefused() throws {
        let s = try WorkerStateRegion.create(name: "test-state", kind: 2, slotSize: 64)
        _ = try s.save([9])
        #expect(throws: IPCError.self) { try s.save(Array(repeating: 0, count: 57)) }
        #expect(try s.load().map(\.bytes) == [9])
    }

    @Test("a write that was not published (the worker died mid-write) leaves the previous copy")
    func unpublishedWriteIsInvisible() throws {
        let s = try WorkerStateRegion.create(name: "test-state", kind: 2, slotSize: 64)
        _ = try s.save([1, 1])
        // What save() does before its release store, for generation 2 (slot 0).
        try s.region.store(UInt32(3), at: 4096)
        try s.region.write([5, 5, 5], at: 4096 + 8)
        #expect(try s.load().map(\.bytes) == [1, 1])
    }

    @Test("a scribbled slot header or generation is an error, never a trap; a wrong kind or size is refused at attach")
    func hostileBytes() throws {
        let s = try WorkerStateRegion.create(name: "test-state", kind: 2, slotSize: 64)
        _ = try s.save([1])
        try s.region.store(UInt32.max, at: 4096 + 64)  // slot 1's length
        #expect(throws: IPCError.self) { _ = try s.load() }
        try s.region.store(UInt32(1), at: 4096 + 64)
        try s.region.store(UInt32(1), at: 4096 + 64 + 4)  // its reserved word
        #expect(throws: IPCError.self) { _ = try s.load() }
        try s.region.store(UInt32(0), at: 4096 + 64 + 4)
        try s.region.store(UInt64.max, at: 64)  // any generation picks a slot in range (odd: slot 1)
        #expect(try s.load().map(\.bytes) == [1])
        #expect(throws: IPCError.self) { _ = try Self.attach(s, kind: 3) }
        let other = try SharedRegion(name: "test-state", size: 8192)
        #expect(throws: IPCError.self) { _ = try WorkerStateRegion(region: other, kind: 2) }
        try s.region.store(UInt32(0xFFFF_FFF8), at: 16)  // slot size not matching the mapping
        #expect(throws: IPCError.self) { _ = try Self.attach(s, kind: 2) }
    }
}
