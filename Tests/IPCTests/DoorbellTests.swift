import Glibc
import Testing

@testable import IPC

@Suite struct DoorbellTests {
    @Test func ringsAccumulateUntilDrained() throws {
        let bell = try Doorbell()
        #expect(isCloseOnExec(bell.fd.rawValue))
        #expect(fcntl(bell.fd.rawValue, F_GETFL) & O_NONBLOCK != 0)
        #expect(try bell.drain() == 0)
        try bell.ring()
        try bell.ring()
        try bell.ring()
        #expect(try bell.drain() == 3)
        #expect(try bell.drain() == 0)
    }

    @Test func waitTimesOutWhenNotRung() throws {
        let bell = try Doorbell()
        #expect(try bell.wait(timeoutMs: 0) == false)
        #expect(try bell.wait(timeoutMs: 20) == false)
        try bell.ring()
        #expect(try bell.wait(timeoutMs: 0) == true)
        #expect(try bell.wait(timeoutMs: -1) == true)  // does not drain
        #expect(try bell.drain() == 1)
        #expect(try bell.wait(timeoutMs: 0) == false)
    }

    @Test func wakesAWaiterInAnotherThread() throws {
        let bell = try Doorbell()
        final class Box: @unchecked Sendable { var woke = false; var error: String? }
        let box = Box()
        let t = TestThread.spawn {
            do { box.woke = try bell.wait(timeoutMs: 10_000) } catch { box.error = "\(error)" }
        }
        usleep(20_000)
        try bell.ring()
        t.join()
        #expect(box.woke && box.error == nil)
    }

    @Test func aDuplicatedFDRingsTheSameBell() throws {
        let bell = try Doorbell()
        let other = Doorbell(adopting: try bell.fd.duplicate())
        try other.ring()
        #expect(try bell.drain() == 1)
    }
}
