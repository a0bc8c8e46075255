import Glibc
import Testing

@testable import Sandbox

/// The `policy` fuzz target's seeds, split the way the harness splits them (top-level text, NUL,
/// the included common.policy), parse; the cycle seed is refused as a cycle.
@Suite("Fuzz seeds: policy files")
struct PolicyFuzzSeedTests {
    func parse(_ bytes: [UInt8]) throws(PolicyError) -> Policy {
        let cut = bytes.firstIndex(of: 0) ?? bytes.count
        let included = cut < bytes.count ? String(decoding: bytes[(cut + 1)...], as: UTF8.self) : ""
        return try PolicyParser.parse(file: "/p/worker.policy",
                                      files: ["/p/worker.policy": String(decoding: bytes[..<cut], as: UTF8.self),
                                              "/p/common.policy": included])
    }

    @Test func everySeedParsesButTheCycle() throws {
        let seeds = fuzzSeeds("policy")
        #expect(seeds.count == 6)
        for (name, bytes) in seeds where name != "include-cycle" {
            #expect(try !parse(bytes).rules.isEmpty, "\(name)")
        }
        let cycle = try #require(seeds["include-cycle"])
        #expect {
            try parse(cycle)
        } throws: { error in
            guard let e = error as? PolicyError, case .includeCycle = e.kind else { return false }
            return true
        }
    }
}

/// The checked-in seed corpus of fuzz target `target` (Fuzz/Corpus/<target>, written by
/// Fuzz/make-seeds.py): file name -> bytes. Empty when the folder is missing (the tests then fail
/// on the count, never pass vacuously).
private func fuzzSeeds(_ target: String) -> [String: [UInt8]] {
    var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    let dir = parts.joined(separator: "/") + "/Fuzz/Corpus/" + target
    var seeds: [String: [UInt8]] = [:]
    guard let d = opendir(dir) else { return seeds }
    defer { closedir(d) }
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard !name.hasPrefix("."), let f = fopen(dir + "/" + name, "r") else { continue }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while case let n = fread(&buffer, 1, buffer.count, f), n > 0 { bytes += buffer[0..<n] }
        fclose(f)
        seeds[name] = bytes
    }
    return seeds
}
