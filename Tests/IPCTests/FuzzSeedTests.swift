import Glibc
import IPC
import Testing
import FuzzSeeds

/// The `wire` fuzz target's seeds stay valid records: one of every type, each encoding back to
/// its bytes. A wire format change that leaves them stale fails here (re-run Fuzz/make-seeds.py).
@Suite("Fuzz seeds: wire records")
struct WireFuzzSeedTests {
    @Test func everySeedIsAValidRecordAndEveryTypeHasOne() throws {
        let seeds = fuzzSeeds("wire")
        #expect(seeds.count == WireRecordType.allCases.count)
        var types: Set<UInt16> = []
        for (name, bytes) in seeds {
            let message = try WireMessage.decode(bytes)
            #expect(message.encoded() == bytes, "\(name)")
            types.insert(UInt16(bytes[0]) | UInt16(bytes[1]) << 8)
        }
        #expect(types == Set(WireRecordType.allCases.map(\.rawValue)))
    }
}

