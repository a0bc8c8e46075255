import Glibc
import Testing

@testable import IPC

/// SO_PASSCRED: the kernel's word on who sent a message, whatever the sender writes in it.
@Suite struct PeerCredentialsTests {
    @Test func theSenderIsNamedByTheKernel() throws {
        let (a, b) = try FDPassing.socketPair()
        try PeerCredentials.pass(true, on: a.rawValue)
        try FDPassing.send([1, 2, 3], over: b.rawValue)
        let (payload, sender) = try PeerCredentials.receive(from: a.rawValue, maxPayload: 16)
        #expect(payload == [1, 2, 3])
        #expect(sender == PeerCredentials(pid: getpid(), uid: geteuid(), gid: getegid()))
    }

    @Test func aForkedSenderIsItself() throws {
        let (a, b) = try FDPassing.socketPair()
        try PeerCredentials.pass(true, on: a.rawValue)
        let byte: [UInt8] = [7]
        let pid = fork()
        #expect(pid >= 0)
        if pid == 0 {
            // Async-signal-safe only: one send() of a buffer that exists already.
            let n = byte.withUnsafeBytes { send(b.rawValue, $0.baseAddress, 1, Int32(MSG_NOSIGNAL)) }
            _exit(n == 1 ? 0 : 1)
        }
        guard pid > 0 else { return }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let (payload, sender) = try PeerCredentials.receive(from: a.rawValue, maxPayload: 16)
        #expect(payload == [7])
        #expect(sender.pid == pid && sender.pid != getpid())
    }

    @Test func withoutPassCredThereAreNoCredentials() throws {
        let (a, b) = try FDPassing.socketPair()
        try FDPassing.send([1], over: b.rawValue)
        #expect(throws: IPCError.system(call: "recvmsg(SCM_CREDENTIALS)", errno: ENODATA)) {
            _ = try PeerCredentials.receive(from: a.rawValue, maxPayload: 16)
        }
    }

    @Test func closedAndTruncated() throws {
        let (a, b) = try FDPassing.socketPair()
        try PeerCredentials.pass(true, on: a.rawValue)
        try FDPassing.send([1, 2, 3, 4], over: b.rawValue)
        #expect(throws: IPCError.payloadTruncated) { _ = try PeerCredentials.receive(from: a.rawValue, maxPayload: 2) }
        #expect(shutdown(b.rawValue, Int32(SHUT_RDWR)) == 0)
        #expect(throws: IPCError.peerClosed) { _ = try PeerCredentials.receive(from: a.rawValue, maxPayload: 2) }
    }
}
