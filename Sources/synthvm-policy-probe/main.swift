// synthvm-policy-probe: makes one system call under a compiled seccomp policy and says, by how
// it ends, whether the policy let the call through. A test helper (SandboxTests' per-rule tests,
// modelled on Firecracker's) and an operator's tool for checking a policy by hand:
//
//   synthvm-policy-probe [--mode enforce|log|errno] [--exit-errno] <policy file> <syscall> [arg0 ... arg5]
//
// <syscall> is a name from SyscallTable or a number; each argument is a number (decimal, 0x
// hex, or negative decimal as two's complement), a PolicyConstants name, a runtime value
// (`$SELF_PID`: the probe's own pid, which whoever spawns it cannot know in advance), or such
// values joined by '|'. Missing arguments are 0.
//
// It parses and compiles the policy (with the debug mode applied) like the monitor does, with
// the runtime values of this process (`$SELF_PID` is its own pid, as for the monitor's
// filters), then installs it on itself and makes the call (Sources/CPolicyProbe). How it ends:
//   exit 0        the call returned (whatever it returned): the filter allowed it, or, in errno
//                 mode, refused it with ENOSYS. With --exit-errno the status is the call's errno
//                 (0 on success) instead.
//   SIGSYS        the filter refused the call (trap or kill).
//   SIGSEGV       rt_sigreturn was allowed: the probe hands it a frame that returns to address 0.
//   exit 2        usage error, or the policy does not parse, compile or install (one line on stderr).
// The policy must allow exit_group(0), or the probe could not report a call that returned.
import CPolicyProbe
import Glibc
import Sandbox

func fail(_ message: String) -> Never {
    let line = "synthvm-policy-probe: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(2)
}

func readText(_ path: String) -> String? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n == 0 { break }
        bytes += buf[0..<n]
    }
    return ferror(f) == 0 ? String(decoding: bytes, as: UTF8.self) : nil
}

let environment = PolicyEnvironment.currentProcess()

/// A number, a negative number (two's complement), a constant, a runtime value, or those joined by '|'.
func value(_ text: String) -> UInt64? {
    var result: UInt64 = 0
    for part in text.split(separator: "|", omittingEmptySubsequences: false) {
        let p = String(part)
        if p.hasPrefix("$") {
            guard let name = PolicyRuntimeValue(rawValue: String(p.dropFirst())),
                  let v = environment.value(of: name) else { return nil }
            result |= v
        } else if let c = PolicyConstants.value(of: p) {
            result |= c
        } else if p.hasPrefix("-"), let n = UInt64(p.dropFirst()), n <= UInt64(Int64.max) {
            result |= UInt64(bitPattern: -Int64(n))
        } else if p.hasPrefix("0x") || p.hasPrefix("0X"), let n = UInt64(p.dropFirst(2), radix: 16) {
            result |= n
        } else if let n = UInt64(p) {
            result |= n
        } else {
            return nil
        }
    }
    return result
}

var mode = PolicyDebugMode.enforce
var exitWithErrno = false
var positional: [String] = []
var argv = CommandLine.arguments.dropFirst()
while let a = argv.popFirst() {
    switch a {
    case "--mode":
        guard let m = argv.popFirst().flatMap(PolicyDebugMode.init(rawValue:)) else {
            fail("--mode: expected enforce, log or errno")
        }
        mode = m
    case "--exit-errno":
        exitWithErrno = true
    case "-h", "--help":
        fail("usage: synthvm-policy-probe [--mode enforce|log|errno] [--exit-errno] <policy> <syscall> [arg0 ... arg5]")
    default:
        positional.append(a)
    }
}
guard (2...8).contains(positional.count) else {
    fail("usage: synthvm-policy-probe [--mode enforce|log|errno] [--exit-errno] <policy> <syscall> [arg0 ... arg5]")
}
let policyPath = positional[0]
guard let nr = SyscallTable.number(of: positional[1]) ?? Int32(positional[1]) else {
    fail("unknown system call '\(positional[1])'")
}
var args = [UInt64](repeating: 0, count: 6)
for (i, text) in positional.dropFirst(2).enumerated() {
    guard let v = value(text) else { fail("argument \(i): bad value '\(text)'") }
    args[i] = v
}

let policy: Policy
do {
    policy = try PolicyParser(readFile: { readText($0) }).parse(file: policyPath).applying(mode)
} catch {
    fail("\(error)")
}
guard let exitGroup = SyscallTable.number(of: "exit_group"), policy.action(forSyscall: exitGroup, args: [0]) == .allow else {
    fail("\(policyPath) does not allow exit_group(0): the probe could not report a call that returned")
}
let program: [UInt8]
do { program = try PolicyCompiler.compile(policy, environment: environment) } catch { fail("\(policyPath): \(error)") }

let r = program.withUnsafeBytes { p in
    args.withUnsafeBufferPointer { a in
        svm_probe_call_under_filter(p.baseAddress, UInt32(p.count / PolicyCompiler.instructionSize), Int(nr),
                                    a.baseAddress, exitWithErrno ? 1 : 0)
    }
}
fail("cannot install the filter: \(String(cString: strerror(-r)))")
