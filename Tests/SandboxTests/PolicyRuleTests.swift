import Glibc
import Testing

@testable import Sandbox

/// Firecracker-style per-rule tests: every rule of every policy in Policies/ is exercised by a
/// real process (synthvm-policy-probe) under the real compiled filter. See `ProbeCases`.
@Suite struct PolicyRuleTests {
    static let policyDirectory = repositoryRoot + "/Policies"
    static let parser = PolicyParser(readFile: { readTextFile($0) })

    /// Every top-level policy (it has a @default), and include-only files (common.policy)
    /// through a wrapper that gives them `@default kill`.
    static let policyFiles: [String] = {
        guard let dir = opendir(policyDirectory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasSuffix(".policy") { names.append(name) }
        }
        return names.sorted()
    }()

    static func isIncludeOnly(_ text: String) -> Bool {
        !text.split(separator: "\n").contains { $0.drop { $0 == " " || $0 == "\t" }.hasPrefix("@default") }
    }

    /// A policy file the probe can load: the file itself, or a wrapper for an include-only one
    /// (`isWrapper`: this test made it and removes it; the repository's own files are never
    /// removed, wherever the checkout lives, /tmp included).
    static func probeable(_ name: String) throws -> (file: String, isWrapper: Bool) {
        let path = policyDirectory + "/" + name
        let text = try #require(readTextFile(path), "cannot read \(path)")
        guard isIncludeOnly(text) else { return (path, false) }
        let wrapper = "/tmp/synthvm-probe-\(getpid())-\(name)"
        try #require(writeTextFile(wrapper, "@include \(path)\n@default kill\n"))
        return (wrapper, true)
    }

    @Test func everyPolicyIsCovered() {
        // The names this suite was written against must all be found (a typo in the directory
        // scan would otherwise test nothing).
        for expected in ["common.policy", "monitor.policy", "synic-router.policy", "vcpu.policy", "vmm.policy",
                         "vmbus.policy", "spawner.policy"] {
            #expect(Self.policyFiles.contains(expected), "\(expected) not found in \(Self.policyDirectory)")
        }
    }

    @Test("every rule allows what it says and nothing next to it", arguments: policyFiles)
    func everyRule(policyName: String) throws {
        try #require(ProbeRunner.available, "synthvm-policy-probe is not built next to the tests (\(ProbeRunner.executable))")
        let (file, isWrapper) = try Self.probeable(policyName)
        defer { if isWrapper { unlink(file) } }
        let policy = try Self.parser.parse(file: file)
        let (cases, problems) = ProbeCases.cases(for: policy, file: file)
        for p in problems { Issue.record("\(p)") }
        // At least: one allowed call per rule, the absent calls and the non-call.
        #expect(cases.count >= policy.rules.count + 2)
        let outcomes = ProbeRunner.run(cases)
        for (c, outcome) in zip(cases, outcomes) {
            #expect(outcome == c.expected, "\(policyName): \(c) — got \(outcome)")
        }
    }
}
