import IPC
import Testing

@testable import Sandbox

/// Runs a classic-BPF seccomp program (the subset libseccomp emits) on one seccomp_data:
/// returns the filter's SECCOMP_RET_* value. Checking the compiled bytes against
/// `Policy.action` this way tests the compiler's semantics without filtering the test process.
func runSeccompBPF(_ program: [UInt8], nr: Int32, arch: UInt32 = 0xC000_003E, args: [UInt64]) throws -> UInt32 {
    struct Insn { var code: UInt16; var jt: UInt8; var jf: UInt8; var k: UInt32 }
    func le(_ at: Int, _ n: Int) -> UInt32 {
        var v: UInt32 = 0
        for b in 0..<n { v |= UInt32(program[at + b]) << UInt32(8 * b) }
        return v
    }
    let insns: [Insn] = stride(from: 0, to: program.count, by: 8).map { i in
        Insn(code: UInt16(le(i, 2)), jt: program[i + 2], jf: program[i + 3], k: le(i + 4, 4))
    }
    // struct seccomp_data: nr, arch, ip (u64), args[6] (u64), little-endian.
    var data = [UInt8](repeating: 0, count: 64)
    func put32(_ v: UInt32, _ at: Int) { for b in 0..<4 { data[at + b] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(b))) } }
    put32(UInt32(bitPattern: nr), 0)
    put32(arch, 4)
    for (i, a) in args.prefix(6).enumerated() {
        put32(UInt32(truncatingIfNeeded: a), 16 + 8 * i)
        put32(UInt32(truncatingIfNeeded: a >> 32), 20 + 8 * i)
    }
    func load32(_ at: Int) -> UInt32 {
        var v: UInt32 = 0
        for b in 0..<4 { v |= UInt32(data[at + b]) << UInt32(8 * b) }
        return v
    }
    var a: UInt32 = 0, x: UInt32 = 0, mem = [UInt32](repeating: 0, count: 16)
    var pc = 0
    while pc < insns.count {
        let i = insns[pc]
        pc += 1
        switch i.code {
        case 0x20: a = load32(Int(i.k))                                 // ld [k]
        case 0x00: a = i.k                                              // ld #k
        case 0x01: x = i.k                                              // ldx #k
        case 0x60: a = mem[Int(i.k)]                                    // ld M[k]
        case 0x61: x = mem[Int(i.k)]                                    // ldx M[k]
        case 0x02: mem[Int(i.k)] = a                                    // st M[k]
        case 0x03: mem[Int(i.k)] = x                                    // stx M[k]
        case 0x54: a &= i.k                                             // and #k
        case 0x5c: a &= x                                               // and x
        case 0x07: x = a                                                // tax
        case 0x87: a = x                                                // txa
        case 0x05: pc += Int(i.k)                                       // ja
        case 0x15: pc += a == i.k ? Int(i.jt) : Int(i.jf)               // jeq #k
        case 0x25: pc += a > i.k ? Int(i.jt) : Int(i.jf)                // jgt #k
        case 0x35: pc += a >= i.k ? Int(i.jt) : Int(i.jf)               // jge #k
        case 0x45: pc += a & i.k != 0 ? Int(i.jt) : Int(i.jf)           // jset #k
        case 0x1d: pc += a == x ? Int(i.jt) : Int(i.jf)                 // jeq x
        case 0x06: return i.k                                           // ret #k
        case 0x16: return a                                             // ret a
        default: throw PolicyCompileError("BPF opcode 0x\(String(i.code, radix: 16)) not in this interpreter")
        }
    }
    throw PolicyCompileError("fell off the end of the program")
}

private func retValue(_ a: PolicyAction) -> UInt32 {
    switch a {
    case .allow: 0x7fff_0000
    case .killProcess: 0x8000_0000
    case .trap: 0x0003_0000
    case .log: 0x7ffc_0000
    case .errno(let n): 0x0005_0000 | UInt32(n)
    }
}

private func policy(_ text: String) throws -> Policy {
    try PolicyParser.parse(file: "p/main.policy", files: ["p/main.policy": text])
}

@Suite struct PolicyCompilerTests {
    static let parser = PolicyParser(readFile: { readTextFile($0) })

    @Test func compilesTheRouterPolicy() throws {
        let p = try Self.parser.parse(file: repositoryRoot + "/Policies/synic-router.policy")
        #expect(p.defaultAction == .trap)
        let bpf = try PolicyCompiler.compile(p)
        #expect(bpf.count % 8 == 0)
        let n = bpf.count / 8
        // Sane: more than one instruction per rule's check, far from the kernel's limit.
        #expect(n > p.rules.count && n < 1024, "\(n) instructions")
        // And it goes over the wire.
        let record = SeccompProgram(instructions: bpf)
        #expect(try SeccompProgram.decode(record.encoded()) == record)
    }

    @Test func compiledProgramAgreesWithThePolicyModel() throws {
        let p = try Self.parser.parse(file: repositoryRoot + "/Policies/synic-router.policy")
        let bpf = try PolicyCompiler.compile(p)
        var rng = SystemRandomNumberGenerator()
        let interesting: [UInt64] = [0, 1, 2, 3, 4, 5, 9, 15, 31, 0x1000, 0x4000, 0x4000_0000, 1034, 1033,
                                     0xffff_ffff, 0x1_0000_4000, 0x8000_0000_0000_0000, UInt64.max]
        let numbers = Set(p.rules.map(\.number)).union([41, 59, 257, 0, 2, 435, 56])
        for nr in numbers {
            for _ in 0..<300 {
                let args = (0..<6).map { _ in Bool.random(using: &rng) ? interesting.randomElement(using: &rng)!
                                                                       : UInt64.random(in: 0...UInt64.max, using: &rng) }
                let got = try runSeccompBPF(bpf, nr: nr, args: args)
                let want = retValue(p.action(forSyscall: nr, args: args))
                #expect(got == want, "syscall \(nr) args \(args): filter 0x\(String(got, radix: 16)), policy 0x\(String(want, radix: 16))")
                if got != want { return }
            }
        }
        // A foreign architecture (i386) is killed, whatever the call.
        #expect(try runSeccompBPF(bpf, nr: 1, arch: 0x4000_0003, args: []) == 0x8000_0000)
    }

    @Test func everyOperatorCompilesFaithfully() throws {
        let p = try policy("""
            @default errno EPERM
            read: arg0 == 3 || arg0 == 0x100000000
            write: arg0 != 2 && arg2 & 0xF0 == 0x30
            clone: arg0 & CLONE_VM|CLONE_THREAD|0x8000000000000000
            madvise: arg2 in {4, 8, 0xffffffffffffffff} && arg1 & 0x3 == 0
            close: 1
            """)
        let bpf = try PolicyCompiler.compile(p)
        let values: [UInt64] = [0, 1, 2, 3, 4, 8, 0x30, 0x31, 0x130, 0xF0, 0x100, 0x10000, 0x100000000,
                                0x100000003, 0x8000_0000_0000_0000, 0xffff_ffff, UInt64.max]
        for nr in [0, 1, 56, 28, 3, 60] as [Int32] {
            for a0 in values { for a1 in values.prefix(6) { for a2 in values {
                let args = [a0, a1, a2, 0, 0, 0]
                #expect(try runSeccompBPF(bpf, nr: nr, args: args) == retValue(p.action(forSyscall: nr, args: args)),
                        "syscall \(nr) args \(args)")
            } } }
        }
    }

    @Test func defaultActionsMapToTheKernelsValues() throws {
        for action in [PolicyAction.killProcess, .trap, .log, .errno(1), .errno(4094)] {
            let bpf = try PolicyCompiler.compile(Policy(defaultAction: action, rules: []))
            #expect(try runSeccompBPF(bpf, nr: 41, args: []) == retValue(action))
        }
    }

    @Test func malformedPoliciesFailCleanly() throws {
        // Policies built without the parser can say what libseccomp (or the kernel) cannot.
        #expect(throws: PolicyCompileError.self) {
            try PolicyCompiler.compile(Policy(defaultAction: .errno(0), rules: []))
        }
        #expect(throws: PolicyCompileError.self) {
            try PolicyCompiler.compile(Policy(defaultAction: .errno(5000), rules: []))
        }
        #expect { try PolicyCompiler.compile(Policy(defaultAction: .errno(4095), rules: [])) } throws: { e in
            "\(e)" == "errno 4095 is outside 1...4094 (libseccomp)"
        }
        // A rule that allows with the default action `allow` is refused by libseccomp.
        let read = SyscallRule(syscall: "read", number: 0, conditions: [], source: SourceLocation(file: "x", line: 7))
        #expect { try PolicyCompiler.compile(Policy(defaultAction: .allow, rules: [read])) } throws: { e in
            "\(e)".hasPrefix("x:7: libseccomp refused the rule for 'read'")
        }
        // A syscall number libseccomp does not know.
        let bogus = SyscallRule(syscall: "bogus", number: -7, conditions: [], source: SourceLocation(file: "x", line: 8))
        #expect(throws: PolicyCompileError.self) {
            try PolicyCompiler.compile(Policy(defaultAction: .trap, rules: [bogus]))
        }
    }
}
