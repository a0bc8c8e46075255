import Glibc
import Testing

@testable import Sandbox

private func parse(_ text: String) throws(PolicyError) -> Policy {
    try PolicyParser.parse(file: "p/main.policy", files: ["p/main.policy": text])
}

private func failure(_ text: String) -> String? {
    do { _ = try parse(text); return nil } catch { return error.description }
}

/// `$SELF_PID`: a value the policy names and the compiling process supplies (docs/policy-format.md,
/// "Runtime values").
@Suite struct PolicyRuntimeValueTests {
    static let tgkill: Int32 = 234
    static let sigabrt: UInt64 = 6, sigusr1: UInt64 = 10

    @Test func parsesAsARuntimeEquality() throws {
        let p = try parse("""
            @default trap
            tgkill: arg0 == $SELF_PID && arg2 in {SIGABRT, SIGUSR1}
            kill: arg0 == 5 || arg0 == $SELF_PID   # mixes with constants across ||
            """)
        #expect(p.rules[0].conditions == [[ArgumentCondition(arg: 0, op: .equalRuntime(.selfPID)),
                                           ArgumentCondition(arg: 2, op: .inSet([Self.sigabrt, Self.sigusr1]))]])
        #expect(p.rules[0].conditions[0][0].description == "arg0 == $SELF_PID")
        #expect(p.rules[1].conditions == [[ArgumentCondition(arg: 0, op: .equal(5))],
                                          [ArgumentCondition(arg: 0, op: .equalRuntime(.selfPID))]])
        #expect(p.runtimeValues.map(\.value) == [.selfPID])
        #expect(p.runtimeValues.map(\.at) == [SourceLocation(file: "p/main.policy", line: 2)])
        #expect(try parse("@default trap\nread: 1").runtimeValues.isEmpty)
    }

    static let errorCases: [(String, String)] = [
        ("@default kill\ntgkill: arg0 == $SELF", "p/main.policy:2: unknown runtime value '$SELF' (known: $SELF_PID)"),
        ("@default kill\ntgkill: arg0 == $self_pid", "p/main.policy:2: unknown runtime value '$self_pid' (known: $SELF_PID)"),
        ("@default kill\ntgkill: arg0 == $", "p/main.policy:2: '$' must start a runtime value name"),
        ("@default kill\ntgkill: arg0 == $ SELF_PID", "p/main.policy:2: '$' must start a runtime value name"),
        ("@default kill\ntgkill: arg0 != $SELF_PID", "p/main.policy:2: $SELF_PID may only be compared whole, as 'argN == $SELF_PID'"),
        ("@default kill\ntgkill: arg0 in {1, $SELF_PID}", "p/main.policy:2: $SELF_PID may only be compared whole, as 'argN == $SELF_PID'"),
        ("@default kill\ntgkill: arg0 & $SELF_PID", "p/main.policy:2: $SELF_PID may only be compared whole, as 'argN == $SELF_PID'"),
        ("@default kill\ntgkill: arg0 == $SELF_PID|0x10", "p/main.policy:2: $SELF_PID may only be compared whole, as 'argN == $SELF_PID'"),
        ("@default kill\ntgkill: arg0 == 0x10|$SELF_PID", "p/main.policy:2: $SELF_PID may only be compared whole, as 'argN == $SELF_PID'"),
        ("@default kill\ntgkill: arg0 == SELF_PID", "p/main.policy:2: unknown constant 'SELF_PID'"),
        ("@default kill\ntgkill: $SELF_PID == arg0", "p/main.policy:2: expected argN"),
        ("@default kill\n@default$SELF_PID", "p/main.policy:2: unknown directive '@default$SELF_PID'"),
    ]

    @Test(arguments: errorCases) func error(_ text: String, _ expected: String) {
        #expect(failure(text) == expected)
    }

    @Test func evaluationHonoursTheResolvedValue() throws {
        let p = try parse("@default trap\ntgkill: arg0 == $SELF_PID && arg2 in {SIGABRT, SIGUSR1}")
        // Unresolved, it allows nothing (never more than any resolution would).
        #expect(p.action(forSyscall: Self.tgkill, args: [0, 0, Self.sigabrt]) == .trap)
        #expect(p.action(forSyscall: Self.tgkill, args: [4242, 7, Self.sigabrt]) == .trap)
        let r = try p.resolving(PolicyEnvironment(selfPID: 4242))
        #expect(r.rules[0].conditions[0][0] == ArgumentCondition(arg: 0, op: .equal(4242)))
        #expect(r.runtimeValues.isEmpty)
        #expect(r.action(forSyscall: Self.tgkill, args: [4242, 7, Self.sigabrt]) == .allow)
        #expect(r.action(forSyscall: Self.tgkill, args: [4242, 7, Self.sigusr1]) == .allow)
        #expect(r.action(forSyscall: Self.tgkill, args: [1, 7, Self.sigabrt]) == .trap)
        #expect(r.action(forSyscall: Self.tgkill, args: [4243, 7, Self.sigabrt]) == .trap)
        #expect(r.action(forSyscall: Self.tgkill, args: [4242 | 1 << 32, 7, Self.sigabrt]) == .trap)
        #expect(r.action(forSyscall: Self.tgkill, args: [4242, 7, 9]) == .trap)
        // The debug modes leave the rule alone.
        #expect(try p.applying(.errno).resolving(.init(selfPID: 9)).action(forSyscall: Self.tgkill, args: [1, 0, 6])
                == .errno(PolicyDebugMode.errnoValue))
        // The calling process's own pid.
        #expect(PolicyEnvironment.currentProcess().value(of: .selfPID) == UInt64(getpid()))
    }

    @Test func resolvingWithoutTheValueNamesTheRule() throws {
        let p = try parse("@default trap\n\nread: 1\ntgkill: arg2 == SIGABRT || arg0 == $SELF_PID")
        #expect { try p.resolving(.none) } throws: { e in
            (e as? PolicyError)?.kind == .unresolvedRuntimeValue(.selfPID) && "\(e)".hasPrefix("p/main.policy:4: $SELF_PID has no value here")
        }
        // A policy that names no runtime value resolves in any environment, unchanged.
        let plain = try parse("@default trap\nread: arg0 == 3")
        #expect(try plain.resolving(.none) == plain)
    }

    @Test func compilesToThePidOfTheEnvironment() throws {
        let p = try parse("@default trap\ntgkill: arg0 == $SELF_PID && arg2 == SIGABRT")
        #expect { try PolicyCompiler.compile(p) } throws: { e in
            "\(e)".hasPrefix("p/main.policy:2: $SELF_PID has no value here")
        }
        #expect { try PolicyCompiler.compile(p, environment: .none) } throws: { e in
            "\(e)".hasPrefix("p/main.policy:2: $SELF_PID has no value here")
        }
        for pid: Int32 in [4242, 1, 0x3F_FFFF] {
            let bpf = try PolicyCompiler.compile(p, environment: PolicyEnvironment(selfPID: pid))
            let me = UInt64(pid)
            // The pid is a constant of the program: a `jeq #pid` on the low half of arg0.
            let constants = stride(from: 0, to: bpf.count, by: 8).compactMap { i -> UInt32? in
                let code = UInt16(bpf[i]) | UInt16(bpf[i + 1]) << 8
                let k = (0..<4).reduce(UInt32(0)) { $0 | UInt32(bpf[i + 4 + $1]) << UInt32(8 * $1) }
                return code == 0x15 ? k : nil
            }
            #expect(constants.contains(UInt32(pid)), "no jeq #\(pid) in the program")
            #expect(try runSeccompBPF(bpf, nr: Self.tgkill, args: [me, 0, Self.sigabrt]) == 0x7fff_0000)
            #expect(try runSeccompBPF(bpf, nr: Self.tgkill, args: [me ^ 1, 0, Self.sigabrt]) == 0x0003_0000)
            #expect(try runSeccompBPF(bpf, nr: Self.tgkill, args: [me | 1 << 32, 0, Self.sigabrt]) == 0x0003_0000)
            #expect(try runSeccompBPF(bpf, nr: Self.tgkill, args: [me, 0, 9]) == 0x0003_0000)
        }
    }

    @Test func threadFilterTakesTheEnvironment() throws {
        let parser = PolicyParser(readFile: { $0 == "t.policy" ? "@default trap\ntgkill: arg0 == $SELF_PID" : nil })
        let f = try ThreadFilter.compile(name: "t", path: "t.policy", mode: .enforce, parser: parser,
                                         environment: .currentProcess())
        let me = UInt64(getpid())
        #expect(try runSeccompBPF(f.instructions, nr: Self.tgkill, args: [me, 0, 6]) == 0x7fff_0000)
        #expect(try runSeccompBPF(f.instructions, nr: Self.tgkill, args: [me + 1, 0, 6]) == 0x0003_0000)
        #expect(throws: PolicyCompileError.self) {
            try ThreadFilter.compile(name: "t", path: "t.policy", mode: .enforce, parser: parser, environment: .none)
        }
    }
}

/// The per-rule probe cases for a `== $SELF_PID` condition: the probe gets the name, not a number.
@Suite struct ProbeCasesRuntimeValueTests {
    @Test func selfPIDReachesTheProbeByName() throws {
        let p = try PolicyParser.parse(file: "p/main.policy", files: [
            "p/main.policy": "@default kill\nexit_group: 1\ntgkill: arg0 == $SELF_PID && arg2 == SIGABRT",
        ])
        let (cases, problems) = ProbeCases.cases(for: p, file: "p/main.policy")
        #expect(problems.isEmpty, "\(problems)")
        let tgkill = cases.filter { $0.syscall == "tgkill" }
        let allowed = tgkill.filter { $0.expected == .exited(0) }.map(\.probeArguments)
        // tid 0: EINVAL, nothing is signalled even though the call runs.
        #expect(allowed == [["$SELF_PID", "0x0", "0x6", "0x0", "0x0", "0x0"]])
        let refused = Set(tgkill.filter { $0.expected == .signaled(SIGSYS) }.map { $0.probeArguments[0] })
        // pid 1 (another process), the stand-in's neighbour, and the right pid with upper bits set.
        #expect(refused.isSuperset(of: ["0x1", "$SELF_PID|0x100000000",
                                        ProbeCases.hex(ProbeCases.selfPIDStandIn ^ 1)]), "\(refused)")
    }

    @Test func aPolicyNamingTheStandInIsReported() throws {
        let p = try PolicyParser.parse(file: "p/main.policy", files: [
            "p/main.policy": "@default kill\nexit_group: 1\nread: arg0 == \(ProbeCases.selfPIDStandIn)",
        ])
        #expect(!ProbeCases.cases(for: p, file: "p/main.policy").problems.isEmpty)
    }
}
