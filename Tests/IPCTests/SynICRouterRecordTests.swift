@testable import IPC
import Testing

/// The records between the monitor and the SynIC router: round trips, and every way a hostile
/// peer can break them is a `WireError`, never a trap.
@Suite("SynIC router wire records")
struct SynICRouterRecordTests {
    let setup = SynICRouterSetup(vpCount: 2, flags: [.testDevice], ringRecordSize: 512, ringCapacity: 64,
                                 memory: [.init(base: 0, size: 0xC000_0000, offset: 0),
                                          .init(base: 0x1_0000_0000, size: 0x4000_0000, offset: 0xC000_0000)])

    @Test func roundTrips() throws {
        #expect(try SynICRouterSetup.decode(setup.encoded()) == setup)
        #expect(try WireMessage.decode(setup.encoded()) == .synicRouterSetup(setup))
        let fds = SINTEventFDs(first: 16, count: 16)
        #expect(try WireMessage.decode(fds.encoded()) == .sintEventFDs(fds))
        let posted = PostedMessageRecord(vp: 1, connectionID: 7, entry: 7, generation: 2, messageType: 0x1234,
                                         payload: Array(0..<240))
        #expect(try WireMessage.decode(posted.encoded()) == .postedMessage(posted))
        #expect(posted.encoded().count == PostedMessageRecord.maxEncodedSize)
        let w = TestDeviceWriteRecord(vp: 0, value: 0x0104_0002, sequence: 99)
        #expect(try WireMessage.decode(w.encoded()) == .testDeviceWrite(w))
    }

    /// Overwrites the little-endian u32 at body offset `at`.
    func patch(_ bytes: [UInt8], at: Int, _ v: UInt32) -> [UInt8] {
        var b = bytes
        for i in 0..<4 { b[WireHeader.size + at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
        return b
    }

    @Test func badSetups() {
        let b = setup.encoded()
        for (at, v) in [(0, 0), (0, 1025), (4, 4), (16, 0), (16, 9), (20, 1)] as [(Int, UInt32)] {
            #expect(throws: WireError.self) { try SynICRouterSetup.decode(patch(b, at: at, v)) }
        }
        // A range of size 0, and ranges that wrap.
        #expect(throws: WireError.self) { try SynICRouterSetup.decode(patch(patch(b, at: 32, 0), at: 36, 0)) }
        #expect(throws: WireError.self) { try SynICRouterSetup.decode(patch(patch(b, at: 24, 0xFFFF_FFFF), at: 28, 0xFFFF_FFFF)) }
        // Fewer ranges than declared, and bytes after the last one.
        #expect(throws: WireError.self) { try SynICRouterSetup.decode(patch(b, at: 16, 3)) }
        #expect(throws: WireError.self) { try SynICRouterSetup.decode(patch(b, at: 16, 1)) }
    }

    @Test func badPostedMessages() {
        let b = PostedMessageRecord(vp: 0, connectionID: 1, entry: 1, generation: 0, messageType: 5, payload: [1, 2]).encoded()
        #expect(throws: WireError.self) { try PostedMessageRecord.decode(patch(b, at: 16, 0)) }      // type None
        #expect(throws: WireError.self) { try PostedMessageRecord.decode(patch(b, at: 20, 241)) }    // payload > 240
        #expect(throws: WireError.self) { try PostedMessageRecord.decode(patch(b, at: 20, 3)) }      // more than sent
        #expect(throws: WireError.self) { try PostedMessageRecord.decode(patch(b, at: 20, 1)) }      // trailing byte
        #expect(throws: WireError.self) { try PostedMessageRecord.decode(Array(b.dropLast())) }
        // Another record type where a posted message is expected.
        #expect(throws: WireError.self) { try PostedMessageRecord.decode(TestDeviceWriteRecord(vp: 0, value: 0, sequence: 0).encoded()) }
    }

    @Test func badFDBatches() {
        let b = SINTEventFDs(first: 0, count: 16).encoded()
        #expect(throws: WireError.self) { try SINTEventFDs.decode(patch(b, at: 4, 0)) }
        #expect(throws: WireError.self) { try SINTEventFDs.decode(patch(b, at: 4, 241)) }
        #expect(throws: WireError.self) { try SINTEventFDs.decode(patch(patch(b, at: 0, 0xFFFF_FFF0), at: 4, 32)) }
    }

    @Test func randomBytesNeverTrap() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            var b = [UInt8](repeating: 0, count: Int.random(in: 0..<300, using: &rng))
            for i in b.indices { b[i] = .random(in: 0...255, using: &rng) }
            if b.count >= 2, Bool.random(using: &rng) { b[0] = UInt8.random(in: 4...7, using: &rng); b[1] = 0 }
            _ = try? WireMessage.decode(b)
        }
    }
}
