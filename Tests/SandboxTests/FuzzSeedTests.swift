import Glibc
import Testing

@testable import Sandbox
import FuzzSeeds

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
        // One per Policies/*.policy but common.policy (which each carries after its NUL), plus
        // runtime-values and include-cycle (Fuzz/make-seeds.py): a new policy needs its seed.
        var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        let policies = parts.joined(separator: "/") + "/Policies"
        var names: [String] = []
        if let d = opendir(policies) {
            while let e = readdir(d) {
                let n = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if n.hasSuffix(".policy") && n != "common.policy" { names.append(n) }
            }
            closedir(d)
        }
        #expect(names.count >= 5 && Set(seeds.keys) == Set(names + ["runtime-values", "include-cycle"]),
                "seeds \(seeds.keys.sorted()), policies \(names.sorted())")
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

