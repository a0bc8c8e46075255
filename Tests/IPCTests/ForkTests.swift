import Glibc
import Testing

@testable import IPC

/// The ring between two real processes. The child is forked from a multi-threaded test
/// runner, so it does only what is safe there: no allocation, no locks, only the ring (plain
/// loads, stores and atomics on memory that is already mapped and objects that already
/// exist), write() on the eventfd, sched_yield, then _exit.
@Suite struct ForkTests {
    @Test func childProducesParentConsumes() throws {
        let layout = try RecordRing.Layout(recordSize: 32, capacity: 64)
        let region = try SharedRegion(name: "ipc-test-fork", size: layout.byteCount)
        try RecordRing.format(region, at: 0, layout: layout)
        let producer = try RecordRing.Producer(region: region, offset: 0, layout: layout)
        let consumer = try RecordRing.Consumer(region: region, offset: 0, layout: layout)
        let bell = try Doorbell()
        let count: UInt64 = 50_000
        // Everything the child touches exists before the fork.
        let record = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
        defer { record.deallocate() }

        let pid = fork()
        #expect(pid >= 0)
        if pid == 0 {
            var seq: UInt64 = 0
            var status: Int32 = 0
            while seq < count {
                record.storeBytes(of: seq, toByteOffset: 0, as: UInt64.self)
                record.storeBytes(of: ~seq, toByteOffset: 8, as: UInt64.self)
                switch producer.tryPush(UnsafeRawBufferPointer(record)) {
                case .pushed(let wasEmpty):
                    if wasEmpty { do { try bell.ring() } catch { status = 2 } }
                    seq += 1
                case .full: sched_yield()
                default: _exit(3)
                }
            }
            _exit(status)
        }
        guard pid > 0 else { return }

        var expected: UInt64 = 0
        var failure: String?
        var deadline = 0
        while expected < count && failure == nil {
            var seq: UInt64 = 0, check: UInt64 = 0
            switch consumer.tryPop({ record in
                guard record.count >= 16 else { return }
                seq = record.loadUnaligned(as: UInt64.self)
                check = record.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            }) {
            case .record(let n):
                if n != 16 || seq != expected || check != ~expected { failure = "record \(expected): seq \(seq), \(n) bytes" }
                expected += 1
                deadline = 0
            case .empty:
                if try bell.wait(timeoutMs: 100) { try bell.drain() } else { deadline += 1 }
                if deadline > 100 { failure = "no progress for 10 s at \(expected)" }
            case let other:
                failure = "pop: \(other)"
            }
        }
        if failure != nil { kill(pid, SIGKILL) }
        var status: Int32 = 0
        #expect(waitpid(pid, &status, 0) == pid)
        #expect(failure == nil)
        #expect(expected == count)
        #expect(status == 0, "child wait status \(status)")  // exited 0, no signal
    }
}
