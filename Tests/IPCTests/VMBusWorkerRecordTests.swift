@testable import IPC
import Testing

@Suite("VMBus worker wire records")
struct VMBusWorkerRecordTests {
    let setup = VMBusWorkerSetup(vpCount: 2, memory: [.init(base: 0, size: 0xC000_0000, offset: 0),
                                                      .init(base: 0x1_0000_0000, size: 0x4000_0000, offset: 0xC000_0000)])

    func patch(_ bytes: [UInt8], at: Int, _ v: UInt32) -> [UInt8] {
        var b = bytes
        for i in 0..<4 { b[WireHeader.size + at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
        return b
    }

    @Test("the setup round-trips, alone and as a WireMessage; 8 + 56 bytes for two ranges")
    func roundTrips() throws {
        #expect(try VMBusWorkerSetup.decode(setup.encoded()) == setup)
        #expect(try WireMessage.decode(setup.encoded()) == .vmbusWorkerSetup(setup))
        #expect(setup.encoded().count == WireHeader.size + 8 + 2 * 24)
    }

    @Test("bad VP and range counts, empty or wrapping ranges, truncation and trailing bytes are errors")
    func badSetups() {
        let b = setup.encoded()
        for (at, v) in [(0, 0), (0, 1025), (4, 0), (4, 9), (4, 3)] as [(Int, UInt32)] {
            #expect(throws: WireError.self) { try VMBusWorkerSetup.decode(patch(b, at: at, v)) }
        }
        #expect(throws: WireError.self) { try VMBusWorkerSetup.decode(patch(patch(b, at: 16, 0), at: 20, 0)) }
        #expect(throws: WireError.self) { try VMBusWorkerSetup.decode(patch(patch(b, at: 8, 0xFFFF_FFFF), at: 12, 0xFFFF_FFFF)) }
        for n in 0..<b.count { #expect(throws: WireError.self) { try VMBusWorkerSetup.decode(Array(b.prefix(n))) } }
        #expect(throws: WireError.self) { try VMBusWorkerSetup.decode(b + [0]) }
    }
}
