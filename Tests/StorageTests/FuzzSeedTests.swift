import FuzzSeeds
import Testing
@testable import Storage

/// The `storage` fuzz target's seeds stay valid (layout at the top of
/// Fuzz/Sources/fuzz-storage/main.swift; re-run Fuzz/make-seeds.py after changing it).
@Suite("Fuzz seeds: storage")
struct StorageFuzzSeedTests {
    @Test func everySeedIsThere() {
        #expect(fuzzSeeds("storage").count == 6)
    }

    /// Header (3), the Linux handshake (4 steps, 13 bytes with the version), op 3, op 4 with
    /// u8 length 32: a ready 0x0602 state.
    @Test func theSavedStateSeedDecodes() throws {
        let seed = try #require(fuzzSeeds("storage")["saved-state"])
        try #require(seed.count >= 3 + 10 + 3 + 32 && seed[13] == 3 && seed[14] == 4 && seed[15] == 32)
        let saved = try VStorProtocol.Saved(decoding: Array(seed[16..<48]))
        #expect(saved.state == .ready(.win10, subChannels: 0))
        #expect(saved == readyProtocol().saved)
    }
}
