import FuzzSeeds
import Testing

@testable import ControlAPI

/// The api-json fuzz target's seeds stay what they are meant to be: "requests" and "one-status"
/// are requests the handler answers with "return" (but for the last line, a bare JSON array that
/// exercises the parser), "bad" gets an error for every line.
@Suite("Fuzz seeds: control socket requests")
struct APIFuzzSeedTests {
    func replies(_ seed: [UInt8]) -> [JSONValue] {
        var framer = LineFramer()
        return framer.feed(seed.dropFirst()).compactMap {
            try? JSONParser.parse(APIHandler.reply(to: $0, peer: nil, backend: FakeBackend(faults: true)))
        }
    }

    @Test func seeds() throws {
        let seeds = fuzzSeeds("api-json")
        #expect(Set(seeds.keys) == ["requests", "one-status", "bad"])
        let requests = replies(try #require(seeds["requests"]))
        #expect(requests.count == 8)
        #expect(requests.prefix(5).allSatisfy { $0["return"] != nil }, "\(requests)")
        #expect(requests[5]["error"]?["class"] == .string("NotSupported"))
        #expect(requests[7]["error"]?["class"] == .string("InvalidRequest"))
        #expect(replies(try #require(seeds["one-status"])).map { $0["return"] != nil } == [true])
        let bad = replies(try #require(seeds["bad"]))
        #expect(bad.count == 4 && bad.allSatisfy { $0["error"] != nil }, "\(bad)")
    }
}
