import Glibc
import Testing

@testable import Sandbox

/// The operator's debug modes (`synthvm run --seccomp`, `MachineConfig.seccomp`) on every real
/// policy, in a real process: a call the policy does not allow kills in enforce mode, really
/// runs in log mode, and fails with ENOSYS without running in errno mode; allowed calls are
/// unaffected.
@Suite struct PolicyDebugModeTests {
    /// uname(8): refused by every policy; when it does run, the bad buffer makes it EFAULT.
    static let refused = "uname"

    static var topLevelPolicies: [String] {
        PolicyRuleTests.policyFiles.filter { name in
            readTextFile(PolicyRuleTests.policyDirectory + "/" + name).map { !PolicyRuleTests.isIncludeOnly($0) } ?? false
        }
    }

    @Test("enforce kills, log lets the call run, errno fails it with ENOSYS", arguments: topLevelPolicies)
    func modes(policyName: String) throws {
        try #require(ProbeRunner.available, "synthvm-policy-probe is not built next to the tests (\(ProbeRunner.executable))")
        let file = PolicyRuleTests.policyDirectory + "/" + policyName
        let policy = try PolicyRuleTests.parser.parse(file: file)
        let uname = try #require(SyscallTable.number(of: Self.refused))
        let getpid = try #require(SyscallTable.number(of: "getpid"))
        try #require(policy.action(forSyscall: uname) != .allow, "\(policyName) allows \(Self.refused); pick another call")
        try #require(policy.action(forSyscall: getpid) == .allow)
        func probe(_ mode: PolicyDebugMode, _ call: String, _ expected: ProbeOutcome, _ why: String) -> ProbeCase {
            ProbeCase(policyFile: file, syscall: call, args: [ProbeCases.badAddress], expected: expected, why: why,
                      extraArguments: ["--mode", mode.rawValue, "--exit-errno"])
        }
        let cases = [
            probe(.enforce, Self.refused, .signaled(SIGSYS), "enforce: the policy's own default"),
            probe(.log, Self.refused, .exited(EFAULT), "log: the call runs (and fails on its bad buffer)"),
            probe(.errno, Self.refused, .exited(ENOSYS), "errno: the call is refused with ENOSYS, not run"),
            probe(.log, "getpid", .exited(0), "log: allowed calls still succeed"),
            probe(.errno, "getpid", .exited(0), "errno: allowed calls still succeed"),
        ]
        for (c, outcome) in zip(cases, ProbeRunner.run(cases)) {
            #expect(outcome == c.expected, "\(policyName): \(c) — got \(outcome)")
        }
    }

    @Test func modesRewriteOnlyTheDefault() throws {
        let p = try PolicyRuleTests.parser.parse(file: PolicyRuleTests.policyDirectory + "/vcpu.policy")
        #expect(p.defaultAction == .trap)
        #expect(p.applying(.enforce) == p)
        #expect(p.applying(.log).defaultAction == .log)
        #expect(p.applying(.errno).defaultAction == .errno(38))
        #expect(p.applying(.log).rules == p.rules && p.applying(.errno).rules == p.rules)
    }
}
