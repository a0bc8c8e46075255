import Testing

@testable import Sandbox

private func parse(_ text: String, extra: [String: String] = [:]) throws(PolicyError) -> Policy {
    var files = extra
    files["p/main.policy"] = text
    return try PolicyParser.parse(file: "p/main.policy", files: files)
}

/// The error `text` gives, as `file:line: message`-able value.
private func failure(_ text: String, extra: [String: String] = [:]) -> PolicyError? {
    do { _ = try parse(text, extra: extra); return nil } catch { return error }
}

@Suite struct PolicyParserTests {
    @Test func minimalPolicy() throws {
        let p = try parse("@default kill\nread: 1\n")
        #expect(p.defaultAction == .killProcess)
        #expect(p.rules == [SyscallRule(syscall: "read", number: 0, conditions: [],
                                        source: SourceLocation(file: "p/main.policy", line: 2))])
    }

    @Test func defaultActions() throws {
        #expect(try parse("@default kill").defaultAction == .killProcess)
        #expect(try parse("@default trap").defaultAction == .trap)
        #expect(try parse("@default log").defaultAction == .log)
        #expect(try parse("@default errno 1").defaultAction == .errno(1))
        #expect(try parse("@default errno ENOENT").defaultAction == .errno(2))
        #expect(try parse("@default   errno\t0x26  # ENOSYS").defaultAction == .errno(38))
    }

    @Test func everyComparison() throws {
        let p = try parse("""
            # comment line
            @default kill
            ioctl: arg1 == KVM_RUN || arg1 == 0x4020AEA5   # trailing comment
            mmap: arg2 & PROT_EXEC == 0 && arg3 & MAP_SHARED
            prctl: arg0 in {PR_SET_NAME, PR_SET_PDEATHSIG, 38}
            kill: arg1 != 9
            clone: arg2 & CLONE_VM|CLONE_THREAD == CLONE_VM|CLONE_THREAD
              futex:1
            """)
        #expect(p.rules.map(\.syscall) == ["ioctl", "mmap", "prctl", "kill", "clone", "futex"])
        #expect(p.rules[0].conditions == [[.init(arg: 1, op: .equal(0xAE80))],
                                          [.init(arg: 1, op: .equal(0x4020_AEA5))]])
        #expect(p.rules[1].conditions == [[.init(arg: 2, op: .maskedEqual(mask: 4, value: 0)),
                                           .init(arg: 3, op: .maskedAny(1))]])
        #expect(p.rules[2].conditions == [[.init(arg: 0, op: .inSet([15, 1, 38]))]])
        #expect(p.rules[3].conditions == [[.init(arg: 1, op: .notEqual(9))]])
        #expect(p.rules[4].conditions == [[.init(arg: 2, op: .maskedEqual(mask: 0x10100, value: 0x10100))]])
        #expect(p.rules[5].conditions.isEmpty)
        #expect(p.rules[1].source.line == 4)
        // && binds tighter than ||.
        let q = try parse("@default kill\nioctl: arg0 == 1 && arg1 == 2 || arg2 == 3")
        #expect(q.rules[0].conditions.map(\.count) == [2, 1])
    }

    @Test func evaluation() throws {
        let p = try parse("""
            @default kill
            ioctl: arg1 == KVM_RUN || arg1 == KVM_GET_REGS && arg0 == 7
            mmap: arg2 & PROT_EXEC == 0
            read: 1
            """)
        #expect(p.action(forSyscall: 16, args: [3, 0xAE80]) == .allow)
        #expect(p.action(forSyscall: 16, args: [7, 0x8090_AE81]) == .allow)
        #expect(p.action(forSyscall: 16, args: [6, 0x8090_AE81]) == .killProcess)
        #expect(p.action(forSyscall: 9, args: [0, 4096, 3]) == .allow)
        #expect(p.action(forSyscall: 9, args: [0, 4096, 7]) == .killProcess)
        #expect(p.action(forSyscall: 0) == .allow)
        #expect(p.action(forSyscall: 59) == .killProcess)
    }

    @Test func debugModes() throws {
        let p = try parse("@default kill\nread: 1")
        #expect(p.applying(.enforce) == p)
        #expect(p.applying(.log).defaultAction == .log)
        #expect(p.applying(.errno).defaultAction == .errno(38))  // ENOSYS
        #expect(p.applying(.log).rules == p.rules)
    }

    @Test func includesAreRelativeToTheIncludingFile() throws {
        let p = try parse("""
            @default trap
            @include sub/a.policy
            write: 1
            """, extra: [
                "p/sub/a.policy": "read: 1\n@include ../common/b.policy\n",
                "p/common/b.policy": "\n# b\nclose: 1\n",
            ])
        #expect(p.defaultAction == .trap)
        #expect(p.rules.map(\.syscall) == ["read", "close", "write"])
        #expect(p.rules.map(\.source.description) == ["p/sub/a.policy:1", "p/common/b.policy:3", "p/main.policy:3"])
    }

    @Test func parseThroughTheReader() throws {
        let parser = PolicyParser(readFile: { $0 == "/etc/x.policy" ? "@default log\n@include ./y.policy" : $0 == "/etc/y.policy" ? "read: 1" : nil })
        let p = try parser.parse(file: "/etc/x.policy")
        #expect(p.rules.map(\.source.description) == ["/etc/y.policy:1"])
        #expect(throws: PolicyError(.includeNotFound("/etc/z.policy"), at: .init(file: "/etc/z.policy", line: 0))) {
            try parser.parse(file: "/etc/z.policy")
        }
    }

    // MARK: Errors, each with its file:line

    static let errorCases: [(String, String)] = [
        ("@default kill\nreadd: 1", "p/main.policy:2: unknown system call 'readd' (not in the x86-64 table)"),
        ("@default kill\nioctl: arg1 == KVM_RUNN", "p/main.policy:2: unknown constant 'KVM_RUNN'"),
        ("@default kill\nioctl: arg1 in {KVM_RUN, NOPE}", "p/main.policy:2: unknown constant 'NOPE'"),
        ("@default kill\n\nread: 1\nread: arg0 == 1", "p/main.policy:4: second rule for 'read' (first at p/main.policy:3)"),
        ("@default kill\nioctl: arg6 == 1", "p/main.policy:2: bad argument 'arg6': expected arg0 ... arg5"),
        ("@default kill\nioctl: argx == 1", "p/main.policy:2: bad argument 'argx': expected arg0 ... arg5"),
        ("@default kill\nioctl: arg10 == 1", "p/main.policy:2: bad argument 'arg10': expected arg0 ... arg5"),
        ("@default kill\nioctl: arg1 = 1", "p/main.policy:2: '=' must be '=='"),
        ("@default kill\nioctl arg1 == 1", "p/main.policy:2: expected 'syscall: condition'"),
        ("@default kill\nioctl:", "p/main.policy:2: missing condition (use '1' to always allow)"),
        ("@default kill\nioctl: arg1 ==", "p/main.policy:2: expected a value"),
        ("@default kill\nioctl: arg1 == 1 &&", "p/main.policy:2: condition ends after an operator"),
        ("@default kill\nioctl: arg1 == 1 arg2 == 2", "p/main.policy:2: expected '&&', '||' or end of line"),
        ("@default kill\nioctl: 1 || arg0 == 1", "p/main.policy:2: '1' must be the whole condition"),
        ("@default kill\nioctl: arg0 == 1 || 1", "p/main.policy:2: '1' must be the whole condition"),
        ("@default kill\nioctl: arg1 < 3", "p/main.policy:2: unexpected character '<'"),
        ("@default kill\nioctl: arg1 in KVM_RUN", "p/main.policy:2: expected '{' after 'in'"),
        ("@default kill\nioctl: arg1 in {1, 2", "p/main.policy:2: missing '}'"),
        ("@default kill\nioctl: arg1 in {1 2}", "p/main.policy:2: expected ',' or '}' in a set"),
        ("@default kill\nioctl: arg1 in {1, 0x1}", "p/main.policy:2: value 0x1 listed twice in a set"),
        ("@default kill\nioctl: arg1 == 0x", "p/main.policy:2: bad number '0x'"),
        ("@default kill\nioctl: arg1 == 99999999999999999999", "p/main.policy:2: bad number '99999999999999999999'"),
        ("@default kill\nioctl: arg1 == 12ab", "p/main.policy:2: bad number '12ab'"),
        ("@default kill\nmmap: arg2 & 0", "p/main.policy:2: '& 0' is never true"),
        ("@default kill\nmmap: arg2 & PROT_READ == PROT_WRITE", "p/main.policy:2: masked value has bits outside the mask (never true)"),
        ("@default kill\nmmap: arg2 arg3", "p/main.policy:2: expected '==', '!=', '&' or 'in' after arg2"),
        ("@default kill\nmmap: arg2 == arg3", "p/main.policy:2: expected a value, got 'arg3'"),
        ("@default kill\nmm-ap: 1", "p/main.policy:2: bad system call name 'mm-ap'"),
        ("read: 1\n", "p/main.policy:1: missing '@default kill|trap|log|errno N'"),
        ("", "p/main.policy:1: missing '@default kill|trap|log|errno N'"),
        ("@default kill\n@default log", "p/main.policy:2: second @default (first at p/main.policy:1)"),
        ("@default allow", "p/main.policy:1: bad default action 'allow': expected kill, trap, log or errno N"),
        ("@default errno", "p/main.policy:1: bad default action 'errno': expected kill, trap, log or errno N"),
        ("@default errno 0", "p/main.policy:1: bad default action 'errno 0': expected kill, trap, log or errno N"),
        ("@default errno 4096", "p/main.policy:1: bad default action 'errno 4096': expected kill, trap, log or errno N"),
        ("@default kill now", "p/main.policy:1: bad default action 'kill now': expected kill, trap, log or errno N"),
        ("@default kill\n@frequency x", "p/main.policy:2: unknown directive '@frequency'"),
        ("@default kill\n@include", "p/main.policy:2: expected '@include <file>'"),
        ("@default kill\n@include a b", "p/main.policy:2: expected '@include <file>'"),
        ("@default kill\n@include missing.policy", "p/main.policy:2: cannot read included file 'p/missing.policy'"),
    ]

    @Test(arguments: errorCases) func error(_ text: String, _ expected: String) {
        #expect(failure(text)?.description == expected)
    }

    @Test func errorsInIncludedFilesNameThatFile() {
        let extra = [
            "p/a.policy": "# a\nread: 1\n@include b.policy\n",
            "p/b.policy": "write: 1\nbogus: 1\n",
            "p/dup.policy": "\nread: arg0 == 0\n",
            "p/r.policy": "close: 1\nread: 1\n",
            "p/def.policy": "@default log\n",
            "p/self.policy": "@include self.policy\n",
            "p/x.policy": "@include y.policy\n",
            "p/y.policy": "close: 1\n@include x.policy\n",
        ]
        #expect(failure("@default kill\n@include a.policy", extra: extra)?.description
                == "p/b.policy:2: unknown system call 'bogus' (not in the x86-64 table)")
        // Duplicates across includes, both directions.
        #expect(failure("@default kill\n@include dup.policy\nread: 1", extra: extra)?.description
                == "p/main.policy:3: second rule for 'read' (first at p/dup.policy:2)")
        #expect(failure("@default kill\nread: 1\n@include dup.policy", extra: extra)?.description
                == "p/dup.policy:2: second rule for 'read' (first at p/main.policy:2)")
        #expect(failure("@default kill\n@include r.policy\n@include dup.policy", extra: extra)?.kind
                == .duplicateRule(syscall: "read", first: .init(file: "p/r.policy", line: 2)))
        #expect(failure("@default kill\n@include def.policy", extra: extra)?.description
                == "p/def.policy:1: @default belongs in the top-level policy, not in an include")
        #expect(failure("@default kill\n@include self.policy", extra: extra)?.description
                == "p/self.policy:1: include cycle: 'p/self.policy' is already being included")
        #expect(failure("@default kill\n@include x.policy", extra: extra)?.description
                == "p/y.policy:2: include cycle: 'p/x.policy' is already being included")
        #expect(failure("@default kill\n@include main.policy", extra: extra)?.kind == .includeCycle("p/main.policy"))
        #expect(failure("@default kill\n@include ./sub/../main.policy", extra: extra)?.kind == .includeCycle("p/main.policy"))
    }

    @Test func pathNormalization() {
        #expect(PolicyParser.normalize("a/./b//c/../d") == "a/b/d")
        #expect(PolicyParser.normalize("/x/../../y") == "/y")
        #expect(PolicyParser.normalize("../a") == "../a")
        #expect(PolicyParser.resolve("c.policy", relativeTo: "Policies/w.policy") == "Policies/c.policy")
        #expect(PolicyParser.resolve("c.policy", relativeTo: "w.policy") == "c.policy")
        #expect(PolicyParser.resolve("/abs/c.policy", relativeTo: "Policies/w.policy") == "/abs/c.policy")
    }
}
