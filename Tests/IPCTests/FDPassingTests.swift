import CSynthVM
import Glibc
import Testing

@testable import IPC

@Suite struct FDPassingTests {
    /// The handshake in miniature: a payload plus a region's memfd and a doorbell's eventfd;
    /// on the far side both fds work and are close-on-exec.
    @Test func payloadAndTwoFDsArriveAndWork() throws {
        let (a, b) = try FDPassing.socketPair()
        let region = try SharedRegion(name: "ipc-test-passed", size: 4096)
        try region.store(UInt64(0xFEED), at: 64)
        let bell = try Doorbell()
        try FDPassing.send([1, 2, 3, 4, 5], fds: [region.fd.rawValue, bell.fd.rawValue], over: a.rawValue)

        let m = try FDPassing.receive(from: b.rawValue, maxPayload: 64, maxFDs: 4)
        #expect(m.payload == [1, 2, 3, 4, 5])
        #expect(m.fds.count == 2)
        for fd in m.fds {
            #expect(fd.rawValue != region.fd.rawValue && fd.rawValue != bell.fd.rawValue)
            #expect(isCloseOnExec(fd.rawValue))
        }
        let mapped = try SharedRegion(adopting: m.fds[0], size: 4096)
        #expect(try mapped.load(UInt64.self, at: 64) == 0xFEED)
        try mapped.store(UInt64(0xBEEF), at: 72)
        #expect(try region.load(UInt64.self, at: 72) == 0xBEEF)
        try Doorbell(adopting: m.fds[1]).ring()
        #expect(try bell.drain() == 1)
    }

    @Test func payloadOnly() throws {
        let (a, b) = try FDPassing.socketPair()
        try FDPassing.send([9], over: a.rawValue)
        let m = try FDPassing.receive(from: b.rawValue, maxPayload: 16, maxFDs: 0)
        #expect(m.payload == [9] && m.fds.isEmpty)
    }

    @Test func messagesKeepTheirBoundaries() throws {
        let (a, b) = try FDPassing.socketPair()
        try FDPassing.send([1, 1], over: a.rawValue)
        try FDPassing.send([2, 2, 2], over: a.rawValue)
        #expect(try FDPassing.receive(from: b.rawValue, maxPayload: 16, maxFDs: 0).payload == [1, 1])
        #expect(try FDPassing.receive(from: b.rawValue, maxPayload: 16, maxFDs: 0).payload == [2, 2, 2])
    }

    /// Three fds where the receiver has room for one: MSG_CTRUNC, an error, and whatever did
    /// arrive is closed (the pipe sees EOF once every copy of its write end is gone).
    @Test func truncatedControlDataClosesWhatArrived() throws {
        let (a, b) = try FDPassing.socketPair()
        let (readEnd, writeEnd) = makePipe()
        let w = writeEnd.rawValue
        try FDPassing.send([1], fds: [w, w, w], over: a.rawValue)
        _ = consume writeEnd
        #expect(!allWritersClosed(readEnd))  // in flight
        #expect(throws: IPCError.controlTruncated) { try FDPassing.receive(from: b.rawValue, maxPayload: 16, maxFDs: 1) }
        #expect(allWritersClosed(readEnd))
    }

    @Test func fdsToAReceiverThatTakesNoneAreDropped() throws {
        let (a, b) = try FDPassing.socketPair()
        let (readEnd, writeEnd) = makePipe()
        try FDPassing.send([1], fds: [writeEnd.rawValue], over: a.rawValue)
        _ = consume writeEnd
        #expect(throws: IPCError.controlTruncated) { try FDPassing.receive(from: b.rawValue, maxPayload: 16, maxFDs: 0) }
        #expect(allWritersClosed(readEnd))
    }

    /// Two fds where the receiver takes one: they fit the control buffer (CMSG_SPACE rounds
    /// up), so no MSG_CTRUNC, but the extra is refused and both are closed.
    @Test func extraFDsAreClosed() throws {
        let (a, b) = try FDPassing.socketPair()
        let (readEnd, writeEnd) = makePipe()
        try FDPassing.send([1], fds: [writeEnd.rawValue, writeEnd.rawValue], over: a.rawValue)
        _ = consume writeEnd
        #expect(throws: IPCError.tooManyFDs(received: 2, limit: 1)) {
            try FDPassing.receive(from: b.rawValue, maxPayload: 16, maxFDs: 1)
        }
        #expect(allWritersClosed(readEnd))
    }

    @Test func truncatedPayloadClosesItsFDs() throws {
        let (a, b) = try FDPassing.socketPair()
        let (readEnd, writeEnd) = makePipe()
        try FDPassing.send([UInt8](repeating: 5, count: 100), fds: [writeEnd.rawValue], over: a.rawValue)
        _ = consume writeEnd
        #expect(throws: IPCError.payloadTruncated) { try FDPassing.receive(from: b.rawValue, maxPayload: 10, maxFDs: 1) }
        #expect(allWritersClosed(readEnd))
    }

    @Test func peerClosed() throws {
        let (a, b) = try FDPassing.socketPair()
        _ = consume a
        #expect(throws: IPCError.peerClosed) { try FDPassing.receive(from: b.rawValue, maxPayload: 16, maxFDs: 1) }
    }

    @Test func senderArgumentsAreChecked() throws {
        let (a, _) = try FDPassing.socketPair()
        #expect(throws: IPCError.self) { try FDPassing.send([], over: a.rawValue) }
        #expect(throws: IPCError.self) {
            try FDPassing.send([1], fds: [Int32](repeating: a.rawValue, count: 254), over: a.rawValue)
        }
        #expect(throws: IPCError.system(call: "sendmsg(SCM_RIGHTS)", errno: EBADF)) {
            try FDPassing.send([1], fds: [-1], over: a.rawValue)
        }
        #expect(throws: IPCError.self) { try FDPassing.receive(from: a.rawValue, maxPayload: 0, maxFDs: 1) }
        #expect(throws: IPCError.self) { try FDPassing.receive(from: a.rawValue, maxPayload: 1, maxFDs: 254) }
    }
}
