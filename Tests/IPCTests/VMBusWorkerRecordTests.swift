@testable import IPC
import Testing

@Suite("VMBus worker wire records")
struct VMBusWorkerRecordTests {
    let setup = VMBusWorkerSetup(vpCount: 2, flags: .sintPolling, ringRecordSize: 512, ringCapacity: 64,
                                 tscFrequencyHz: 2_000_000_000, tscAtReferenceZero: 12345, guestTSCOffset: 0xFFFF_FFFF_0000_0000,
                                 memory: [.init(base: 0, size: 0xC000_0000, offset: 0),
                                          .init(base: 0x1_0000_0000, size: 0x4000_0000, offset: 0xC000_0000)])

    func patch(_ bytes: [UInt8], at: Int, _ v: UInt32) -> [UInt8] {
        var b = bytes
        for i in 0..<4 { b[WireHeader.size + at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
        return b
    }

    @Test("the setup round-trips, alone and as a WireMessage; 8 + 48 + 48 bytes for two ranges")
    func roundTrips() throws {
        #expect(try VMBusWorkerSetup.decode(setup.encoded()) == setup)
        #expect(try WireMessage.decode(setup.encoded()) == .vmbusWorkerSetup(setup))
        #expect(setup.encoded().count == WireHeader.size + 48 + 2 * 24)
        let b = setup.encoded()
        #expect(b[WireHeader.size + 16..<WireHeader.size + 24].elementsEqual([0x00, 0x94, 0x35, 0x77, 0, 0, 0, 0]))
    }

    @Test("bad VP and range counts, unknown flags, a reserved word, empty or wrapping ranges, truncation and trailing bytes are errors")
    func badSetups() {
        let b = setup.encoded()
        for (at, v) in [(0, 0), (0, 1025), (4, 2), (40, 0), (40, 9), (40, 3), (44, 1)] as [(Int, UInt32)] {
            #expect(throws: WireError.self) { try VMBusWorkerSetup.decode(patch(b, at: at, v)) }
        }
        #expect(throws: WireError.self) { try VMBusWorkerSetup.decode(patch(patch(b, at: 56, 0), at: 60, 0)) }
        #expect(throws: WireError.self) { try VMBusWorkerSetup.decode(patch(patch(b, at: 48, 0xFFFF_FFFF), at: 52, 0xFFFF_FFFF)) }
        for n in 0..<b.count { #expect(throws: WireError.self) { try VMBusWorkerSetup.decode(Array(b.prefix(n))) } }
        #expect(throws: WireError.self) { try VMBusWorkerSetup.decode(b + [0]) }
    }

    @Test("router connections round-trip; ids, kinds, owners, buffers and counts are checked")
    func routerConnections() throws {
        let c = RouterConnections(entries: [.init(connectionID: 1, kind: .message, owner: 2, buffers: 16),
                                            .init(connectionID: 4, kind: .message, owner: 2, buffers: 16),
                                            .init(connectionID: 0x2001, kind: .event, owner: 2, buffers: 0),
                                            .init(connectionID: 0x2004, kind: .event, owner: 3, buffers: 0)])
        #expect(try WireMessage.decode(c.encoded()) == .routerConnections(c))
        #expect(c.encoded().count == WireHeader.size + 8 + 4 * 16 && c.forwardsToVMBus)
        #expect(!RouterConnections(entries: [c.entries[2]]).forwardsToVMBus)
        let b = c.encoded()
        let bad: [(Int, UInt32)] = [
            (0, 0), (0, 257), (0, 5), (4, 1),
            (8, 0), (8, 1 << 24), (8, 4),           // zero, too large, a duplicate id
            (12, 3), (16, 1), (16, 3), (20, 0), (20, 65),  // kind; owner (router, storage message); buffers
            (56, 1), (60, 4),                        // an event connection with buffers; owner 4
        ]
        for (at, v) in bad { #expect(throws: WireError.self, "offset \(at) = \(v)") { try RouterConnections.decode(patch(b, at: at, v)) } }
        for n in 0..<b.count { #expect(throws: WireError.self) { try RouterConnections.decode(Array(b.prefix(n))) } }
    }

    @Test("host messages round-trip; SINT, type and size are checked")
    func hostMessages() throws {
        let m = HostMessageRecord(vp: 1, sint: 2, messageType: 1, payload: Array(0..<240))
        #expect(try WireMessage.decode(m.encoded()) == .hostMessage(m))
        #expect(m.encoded().count == HostMessageRecord.maxEncodedSize)
        let b = m.encoded()
        for (at, v) in [(4, 16), (8, 0), (12, 241), (12, 239)] as [(Int, UInt32)] {
            #expect(throws: WireError.self) { try HostMessageRecord.decode(patch(b, at: at, v)) }
        }
    }

    @Test("the shutdown request round-trips; other kinds and a reserved word are errors")
    func shutdownRequest() throws {
        let r = GuestShutdownRequest()
        #expect(try WireMessage.decode(r.encoded()) == .guestShutdownRequest(r))
        #expect(throws: WireError.self) { try GuestShutdownRequest.decode(patch(r.encoded(), at: 0, 1)) }
        #expect(throws: WireError.self) { try GuestShutdownRequest.decode(patch(r.encoded(), at: 4, 1)) }
    }

    @Test("channel hand-over records round-trip; operations, relids, flags, PFN counts, offsets and PFNs are checked")
    func channelRecords() throws {
        let open = ChannelControlRecord(operation: .open, relID: 4, connectionID: 0x2004, targetVP: 1, downstreamPageOffset: 32,
                                        restored: true, pfns: (0..<64).map { 0x100 + UInt64($0) })
        #expect(try WireMessage.decode(open.encoded()) == .channelControl(open))
        #expect(open.encoded().count == WireHeader.size + 32 + 64 * 8)
        let close = ChannelControlRecord(operation: .close, relID: 4)
        #expect(try ChannelControlRecord.decode(close.encoded()) == close)
        let b = open.encoded()
        for (at, v) in [(0, 0), (0, 4), (4, 0), (4, 2048), (16, 1), (16, 63), (20, 2), (24, 3), (24, 241), (28, 65)] as [(Int, UInt32)] {
            #expect(throws: WireError.self, "offset \(at) = \(v)") { try ChannelControlRecord.decode(patch(b, at: at, v)) }
        }
        #expect(throws: WireError.self) { try ChannelControlRecord.decode(patch(b, at: 36, 0x0010_0000)) }  // PFN >= 2^52
        #expect(throws: WireError.self) { try ChannelControlRecord.decode(patch(close.encoded(), at: 24, 4)) }
        // Version 2: a sub-channel index on opens (1...64), never on a close or modify.
        #expect(try ChannelControlRecord.decode(patch(b, at: 28, 64)).subChannelIndex == 64)
        #expect(throws: WireError.self) { try ChannelControlRecord.decode(patch(close.encoded(), at: 28, 1)) }
        var v1 = b
        v1[2] = 1
        #expect(throws: WireError.self) { try ChannelControlRecord.decode(v1) }
        for n in 0..<b.count { #expect(throws: WireError.self) { try ChannelControlRecord.decode(Array(b.prefix(n))) } }
        let answer = ChannelAnswerRecord(operation: .opened, relID: 4, status: 0xC000_0001)
        #expect(try WireMessage.decode(answer.encoded()) == .channelAnswer(answer))
        let a = answer.encoded()
        for (at, v) in [(0, 0), (0, 3), (4, 0), (12, 1)] as [(Int, UInt32)] {
            #expect(throws: WireError.self) { try ChannelAnswerRecord.decode(patch(a, at: at, v)) }
        }
        #expect(throws: WireError.self) { try ChannelAnswerRecord.decode(patch(a, at: 0, 2)) }  // a close carries no status
    }

    @Test("a sub-channel request round-trips; relid, total (at most 64) and reserved words are checked")
    func subChannelRequest() throws {
        let r = SubChannelRequestRecord(relID: 4, total: 1)
        #expect(try WireMessage.decode(r.encoded()) == .subChannelRequest(r))
        #expect(r.encoded().count == WireHeader.size + 16)
        #expect(try SubChannelRequestRecord.decode(patch(r.encoded(), at: 4, 64)).total == 64)
        for (at, v) in [(0, 0), (0, 2048), (4, 65), (4, 1_000_000_000), (8, 1), (12, 1)] as [(Int, UInt32)] {
            #expect(throws: WireError.self, "offset \(at) = \(v)") { try SubChannelRequestRecord.decode(patch(r.encoded(), at: at, v)) }
        }
        let b = r.encoded()
        for n in 0..<b.count { #expect(throws: WireError.self) { try SubChannelRequestRecord.decode(Array(b.prefix(n))) } }
        // It is not an answer, and an answer is not a request.
        #expect(throws: WireError.self) { try ChannelAnswerRecord.decode(b) }
        #expect(throws: WireError.self) { try SubChannelRequestRecord.decode(ChannelAnswerRecord(operation: .opened, relID: 4).encoded()) }
    }
}
