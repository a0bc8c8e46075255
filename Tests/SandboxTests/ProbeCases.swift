import Glibc

@testable import Sandbox

/// How a run of synthvm-policy-probe ended.
enum ProbeOutcome: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    /// Still running at the deadline (killed by the runner).
    case hung
    /// posix_spawn failed.
    case notStarted(Int32)

    var description: String {
        switch self {
        case .exited(let s): "exit \(s)"
        case .signaled(let s): "signal \(s)" + (s == SIGSYS ? " (SIGSYS)" : s == SIGSEGV ? " (SIGSEGV)" : "")
        case .hung: "hung"
        case .notStarted(let e): "not started (\(String(cString: strerror(e))))"
        }
    }
}

/// One probe run: a call under a policy file and how it must end.
struct ProbeCase: Sendable, CustomStringConvertible {
    var policyFile: String
    var syscall: String
    var args: [UInt64]
    var expected: ProbeOutcome
    /// Which rule and condition this exercises, for failure messages.
    var why: String
    var extraArguments: [String] = []

    /// The arguments as the probe takes them: `$SELF_PID` where the case means the probe's pid.
    var probeArguments: [String] { args.map(ProbeCases.probeArgument) }

    var description: String {
        "\(syscall)(\(probeArguments.joined(separator: ", "))) must end in \(expected): \(why)"
    }
}

/// Derives probe cases from a parsed policy, generically (new rules are covered without touching
/// the tests), the way Firecracker tests its filters rule by rule:
/// - for every rule, and every alternative the compiler turns it into (each `||` branch, each
///   value of an `in` set, each bit of an `&` test), arguments that satisfy it: the call must
///   return (exit 0);
/// - for every condition of every rule, the satisfying arguments with that one argument changed
///   so the condition fails, and no other alternative of the rule holds: SIGSYS. Equalities and
///   sets are also perturbed in the upper 32 bits only (the filter compares full registers);
/// - calls the policy does not mention: SIGSYS.
/// A perturbed call is refused before it runs, so only allowed calls need harmless arguments:
/// `templates` gives them (bad fds, NULL or bad pointers, zero lengths), and the rule's own
/// conditions are applied on top.
///
/// Runtime values: the probe's pid (`$SELF_PID`) is unknown until it is spawned, so cases are
/// derived from the policy resolved with `selfPIDStandIn` and the stand-in is handed to the probe
/// by name (`probeArgument`): the probe resolves `$SELF_PID` in its arguments and in the policy
/// to its own pid alike. A `== $SELF_PID` condition is broken with pid 1 too (another process).
enum ProbeCases {
    /// -1 as an `int` fd: EBADF, never one of the probe's descriptors.
    static let badFD: UInt64 = 0xFFFF_FFFF
    /// Inside the never-mapped first page: EFAULT wherever the kernel reads or writes it.
    static let badAddress: UInt64 = 8

    /// Arguments under which an allowed call is harmless to the probe (it only has to return).
    /// Unlisted calls get all zeros (NULL pointers, zero lengths, fd 0 with nothing to transfer).
    static let templates: [String: [UInt64]] = [
        "read": [badFD, 0, 0], "write": [badFD, 0, 0], "close": [badFD],
        "pread64": [badFD, 0, 0, 0], "pwrite64": [badFD, 0, 0, 0],
        // The storage worker's disk calls: not a descriptor, EBADF, nothing read, written or punched.
        "preadv": [badFD, 0, 0, 0, 0], "pwritev": [badFD, 0, 0, 0, 0], "fdatasync": [badFD],
        "fallocate": [badFD, 3, 0, 4096],
        "ioctl": [badFD, 0, 0], "fcntl": [badFD, 0, 0], "fstat": [badFD, 0],
        "newfstatat": [badFD, 0, 0, 0], "sendmsg": [badFD, 0, 0], "recvmsg": [badFD, 0, 0],
        // Not a socket: EBADF before the kernel looks at anything else.
        "accept4": [badFD, 0, 0, 0], "getsockopt": [badFD, 0, 0, 0, 0], "sendto": [badFD, 0, 0, 0, 0, 0],
        // A NULL timeout would wait forever; a bad one fails with EFAULT first.
        "ppoll": [0, 0, badAddress, 0, 8],
        // Timeout 0: returns at once.
        "poll": [0, 0, 0],
        "waitid": [0, badFD, 0, 0, 0],
        // Not a pidfd: EBADF, nothing is signalled.
        "pidfd_send_signal": [badFD, 0, 0, 0],
        // The sizes the kernel insists on, so the call gets as far as its pointers (NULL: no change).
        "rt_sigprocmask": [0, 0, 0, 8], "rt_sigaction": [0, 0, 0, 8],
        // tgid 0 is EINVAL: no signal is ever sent.
        "tgkill": [0, 0, 0],
        // NULL futex word: EFAULT before any wait.
        "futex": [0, 0, 0, 0, 0, 0],
        // Zero lengths: EINVAL, or nothing to do. Nothing of the probe is unmapped or changed.
        "mmap": [0, 0, 0, 0, badFD, 0], "munmap": [0, 0], "mremap": [0, 0, 0, 0, 0],
        "mprotect": [0, 0, 0], "madvise": [0, 0, 0],
    ]

    /// Calls that end the probe some other way when the filter lets them through.
    /// exit/exit_group with status 0 end it with status 0, like a call that returned.
    static let allowedOutcome: [String: ProbeOutcome] = [
        // The probe makes it on a frame whose RIP is 0 (Sources/CPolicyProbe).
        "rt_sigreturn": .signaled(SIGSEGV),
    ]

    /// Calls that are refused by every policy here, tried as "not in the policy" when absent.
    static let absentCandidates = ["socket", "openat", "execve", "clone3", "ptrace", "uname"]
    /// Not a system call at all: the default action applies.
    static let unknownNumber = 1000

    static func template(_ syscall: String) -> [UInt64] {
        var t = templates[syscall] ?? []
        while t.count < 6 { t.append(0) }
        return t
    }

    static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

    /// Stands for the probe's pid while cases are derived: above PID_MAX_LIMIT (2^22), so no
    /// process has it, and a value no policy here names (`cases` checks).
    static let selfPIDStandIn: UInt64 = 0x5E1F_0D1D
    static let standInEnvironment = PolicyEnvironment(values: [.selfPID: selfPIDStandIn])

    /// One argument for the probe's command line: hex, or `$SELF_PID` (with any upper-half bits
    /// OR-ed on, `$SELF_PID|0x100000000`) where the low half is the stand-in.
    static func probeArgument(_ v: UInt64) -> String {
        guard v & 0xFFFF_FFFF == selfPIDStandIn else { return hex(v) }
        let upper = v & ~0xFFFF_FFFF
        return upper == 0 ? "$SELF_PID" : "$SELF_PID|" + hex(upper)
    }

    /// Every number a condition of `policy` compares with (masks and values).
    static func literals(_ policy: Policy) -> Set<UInt64> {
        var out: Set<UInt64> = []
        for rule in policy.rules {
            for group in rule.conditions {
                for c in group {
                    switch c.op {
                    case .equal(let v), .notEqual(let v), .maskedAny(let v): out.insert(v)
                    case .maskedEqual(let m, let v): out.formUnion([m, v])
                    case .inSet(let vs): out.formUnion(vs)
                    case .equalRuntime: break
                    }
                }
            }
        }
        return out
    }

    /// Single-comparison alternatives of one condition (what the compiler emits for it).
    static func simple(_ c: ArgumentCondition) -> [ArgumentCondition] {
        switch c.op {
        case .inSet(let vs): return vs.map { ArgumentCondition(arg: c.arg, op: .equal($0)) }
        case .maskedAny(let m):
            return (0..<64).filter { m & (1 << $0) != 0 }.map {
                ArgumentCondition(arg: c.arg, op: .maskedEqual(mask: 1 << $0, value: 1 << $0))
            }
        default: return [c]
        }
    }

    /// Arguments satisfying every condition of `all` (an AND), starting from the call's template.
    static func witness(_ all: [ArgumentCondition], template: [UInt64]) -> [UInt64]? {
        var args = template
        for c in all {
            switch c.op {
            case .equalRuntime: return nil  // `cases` resolves the policy first
            case .equal(let v): args[c.arg] = v
            case .maskedEqual(let m, let v): args[c.arg] = (args[c.arg] & ~m) | v
            case .notEqual(let v): if args[c.arg] == v { args[c.arg] = v ^ 1 }
            case .maskedAny(let m): if args[c.arg] & m == 0 { args[c.arg] |= m & (~m &+ 1) }
            case .inSet(let vs): if !vs.contains(args[c.arg]) { args[c.arg] = vs[0] }
            }
        }
        return all.allSatisfy { $0.matches(args[$0.arg]) } ? args : nil
    }

    /// Values of the argument that make `c` false (starting from a value that makes it true).
    static func violations(of c: ArgumentCondition, current: UInt64) -> [UInt64] {
        let high: UInt64 = 1 << 32
        switch c.op {
        case .equal(let v) where v == selfPIDStandIn: return [1, v ^ 1, v ^ high]
        case .equal(let v): return [v ^ 1, v ^ high]
        case .notEqual(let v): return [v]
        case .inSet(let vs):
            var outside = (vs.max() ?? 0) &+ 1
            while vs.contains(outside) { outside &+= 1 }
            return [outside, current ^ high]
        case .maskedEqual(let m, _): return [current ^ (m & (~m &+ 1))]
        case .maskedAny(let m): return [current & ~m]
        // Never reached: `cases` resolves the policy first.
        case .equalRuntime: return []
        }
    }

    /// Every case for `policy` (parsed from `file`).
    static func cases(for unresolved: Policy, file: String) -> (cases: [ProbeCase], problems: [String]) {
        var cases: [ProbeCase] = []
        var problems: [String] = []
        if literals(unresolved).contains(where: { $0 & 0xFFFF_FFFF == selfPIDStandIn }) {
            problems.append("\(file): names \(hex(selfPIDStandIn)), the stand-in for $SELF_PID; pick another stand-in")
        }
        let policy: Policy
        do { policy = try unresolved.resolving(standInEnvironment) } catch {
            return ([], ["\(error)"])
        }
        for rule in policy.rules {
            let t = template(rule.syscall)
            let allowed = allowedOutcome[rule.syscall] ?? .exited(0)
            let groups = rule.conditions.isEmpty ? [[]] : rule.conditions
            for (g, group) in groups.enumerated() {
                // Every compiled alternative of this AND group.
                var expansions: [[ArgumentCondition]] = [[]]
                for c in group { expansions = expansions.flatMap { e in simple(c).map { e + [$0] } } }
                var firstWitness: [UInt64]?
                for (k, e) in expansions.enumerated() {
                    guard let args = witness(e, template: t), rule.allows(args),
                          policy.action(forSyscall: rule.number, args: args) == .allow else {
                        problems.append("\(rule.source): no arguments satisfy \(e) for \(rule.syscall)")
                        continue
                    }
                    if firstWitness == nil { firstWitness = witness(group, template: t) ?? args }
                    cases.append(ProbeCase(policyFile: file, syscall: rule.syscall, args: args, expected: allowed,
                                           why: "\(rule.source) allows it (alternative \(g).\(k): "
                                            + (e.isEmpty ? "unconditional" : e.map(\.description).joined(separator: " && ")) + ")"))
                }
                // Each condition of the group, broken alone.
                guard let base = firstWitness else { continue }
                for c in group {
                    var any = false
                    for v in violations(of: c, current: base[c.arg]) {
                        var args = base
                        args[c.arg] = v
                        guard !c.matches(v), !rule.allows(args) else { continue }
                        any = true
                        cases.append(ProbeCase(policyFile: file, syscall: rule.syscall, args: args,
                                               expected: .signaled(SIGSYS),
                                               why: "\(rule.source): arg\(c.arg) = \(hex(v)) breaks \(c)"))
                    }
                    if !any { problems.append("\(rule.source): cannot break \(c) of \(rule.syscall) alone") }
                }
            }
        }
        let absent = absentCandidates.filter { policy.rule(for: $0) == nil }.prefix(2)
        if absent.isEmpty { problems.append("\(file): every candidate for an absent call is in the policy") }
        for name in absent {
            cases.append(ProbeCase(policyFile: file, syscall: name, args: template(name), expected: .signaled(SIGSYS),
                                   why: "\(name) is not in the policy"))
        }
        cases.append(ProbeCase(policyFile: file, syscall: String(unknownNumber), args: template(""),
                               expected: .signaled(SIGSYS), why: "\(unknownNumber) is no system call"))
        return (cases, problems)
    }
}
