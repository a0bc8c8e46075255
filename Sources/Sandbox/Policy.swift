// The seccomp policy model: what a parsed `Policies/*.policy` file says, before it is compiled
// into a BPF filter (with libseccomp, at spawn time). Pure values; no I/O.

/// What the filter does with a system call.
public enum PolicyAction: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Kill the whole process (SECCOMP_RET_KILL_PROCESS), never just the calling thread.
    case killProcess
    /// Send SIGSYS to the calling thread (SECCOMP_RET_TRAP).
    case trap
    /// Allow the call and log it (SECCOMP_RET_LOG).
    case log
    /// Fail the call with this errno (SECCOMP_RET_ERRNO), 1...4095.
    case errno(Int32)
    /// Allow the call (SECCOMP_RET_ALLOW).
    case allow

    public var description: String {
        switch self {
        case .killProcess: "kill"
        case .trap: "trap"
        case .log: "log"
        case .errno(let n): "errno \(n)"
        case .allow: "allow"
        }
    }
}

/// Where a rule or an error comes from: the policy file as named to the parser, 1-based line.
public struct SourceLocation: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int

    public init(file: String, line: Int) {
        self.file = file
        self.line = line
    }

    public var description: String { "\(file):\(line)" }
}

/// One comparison of a system call argument (the full 64-bit register) against constants, or
/// against a runtime value (`$SELF_PID`) until `Policy.resolving` replaces it with its number.
public struct ArgumentCondition: Equatable, Hashable, Sendable, CustomStringConvertible {
    public enum Operation: Equatable, Hashable, Sendable {
        /// arg == value
        case equal(UInt64)
        /// arg != value
        case notEqual(UInt64)
        /// arg & mask != 0 (any bit of the mask set)
        case maskedAny(UInt64)
        /// arg & mask == value
        case maskedEqual(mask: UInt64, value: UInt64)
        /// arg is one of the values (no duplicates, at least one)
        case inSet([UInt64])
        /// arg == a value known only at compile time (`argN == $SELF_PID`). Unresolved, it
        /// matches nothing: an unresolved policy never allows more than a resolved one.
        case equalRuntime(PolicyRuntimeValue)
    }

    /// Argument index, 0...5.
    public var arg: Int
    public var op: Operation

    public static let argumentRange = 0...5

    public init(arg: Int, op: Operation) {
        precondition(Self.argumentRange.contains(arg), "seccomp arguments are 0...5")
        self.arg = arg
        self.op = op
    }

    /// Whether `value` (the argument's register) satisfies the condition.
    public func matches(_ value: UInt64) -> Bool {
        switch op {
        case .equal(let v): value == v
        case .notEqual(let v): value != v
        case .maskedAny(let m): value & m != 0
        case .maskedEqual(let m, let v): value & m == v
        case .inSet(let vs): vs.contains(value)
        case .equalRuntime: false
        }
    }

    /// This condition with a runtime value replaced by its number; nil if `environment` lacks it.
    public func resolving(_ environment: PolicyEnvironment) -> ArgumentCondition? {
        guard case .equalRuntime(let name) = op else { return self }
        return environment.value(of: name).map { ArgumentCondition(arg: arg, op: .equal($0)) }
    }

    public var description: String {
        func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
        switch op {
        case .equal(let v): return "arg\(arg) == \(hex(v))"
        case .notEqual(let v): return "arg\(arg) != \(hex(v))"
        case .maskedAny(let m): return "arg\(arg) & \(hex(m))"
        case .maskedEqual(let m, let v): return "arg\(arg) & \(hex(m)) == \(hex(v))"
        case .inSet(let vs): return "arg\(arg) in {\(vs.map(hex).joined(separator: ", "))}"
        case .equalRuntime(let name): return "arg\(arg) == \(name)"
        }
    }
}

/// The rule for one system call. At most one rule per system call in a policy.
public struct SyscallRule: Equatable, Hashable, Sendable {
    public var syscall: String
    /// The x86-64 number (`SyscallTable`).
    public var number: Int32
    /// OR of ANDs: the call is allowed if every condition of any one inner list holds.
    /// Empty: always allowed. (Text: `1`, or `a && b || c`.)
    public var conditions: [[ArgumentCondition]]
    public var source: SourceLocation

    public init(syscall: String, number: Int32, conditions: [[ArgumentCondition]], source: SourceLocation) {
        self.syscall = syscall
        self.number = number
        self.conditions = conditions
        self.source = source
    }

    /// Whether this rule allows a call with these argument registers (missing ones read as 0).
    public func allows(_ args: [UInt64]) -> Bool {
        if conditions.isEmpty { return true }
        return conditions.contains { all in
            all.allSatisfy { c in c.matches(c.arg < args.count ? args[c.arg] : 0) }
        }
    }
}

/// The operator's override for debugging a policy.
public enum PolicyDebugMode: String, Equatable, Hashable, Sendable, CaseIterable {
    /// Use the policy's own default action (normally kill the process).
    case enforce
    /// Allow and log what the policy would have refused (SECCOMP_RET_LOG).
    case log
    /// Refuse with ENOSYS instead of killing, so the caller sees "not implemented" and carries on.
    case errno

    /// errno returned for refused calls in `.errno` mode: ENOSYS, which callers (glibc, the
    /// Swift runtime) already treat as "this kernel lacks the call" rather than a hard failure.
    public static let errnoValue: Int32 = 38  // ENOSYS
}

/// A whole policy: a default action for every call no rule allows, and the rules.
public struct Policy: Equatable, Hashable, Sendable {
    public var defaultAction: PolicyAction
    /// In file order (includes expanded where they appear).
    public var rules: [SyscallRule]

    public init(defaultAction: PolicyAction, rules: [SyscallRule]) {
        self.defaultAction = defaultAction
        self.rules = rules
    }

    public func rule(for syscall: String) -> SyscallRule? { rules.first { $0.syscall == syscall } }

    /// The runtime values the rules name (`$SELF_PID`), with the first rule naming each.
    public var runtimeValues: [(value: PolicyRuntimeValue, at: SourceLocation)] {
        var seen: [(value: PolicyRuntimeValue, at: SourceLocation)] = []
        for rule in rules {
            for group in rule.conditions {
                for c in group {
                    if case .equalRuntime(let name) = c.op, !seen.contains(where: { $0.value == name }) {
                        seen.append((name, rule.source))
                    }
                }
            }
        }
        return seen
    }

    /// This policy with every runtime value replaced by its number from `environment`. A value
    /// the environment lacks is an error at the first rule that names it: the policy cannot be
    /// compiled for this process (docs/policy-format.md, "Runtime values").
    public func resolving(_ environment: PolicyEnvironment) throws(PolicyError) -> Policy {
        var p = self
        for r in p.rules.indices {
            for g in p.rules[r].conditions.indices {
                for c in p.rules[r].conditions[g].indices {
                    let condition = p.rules[r].conditions[g][c]
                    guard let resolved = condition.resolving(environment) else {
                        guard case .equalRuntime(let name) = condition.op else { continue }
                        throw PolicyError(.unresolvedRuntimeValue(name), at: p.rules[r].source)
                    }
                    p.rules[r].conditions[g][c] = resolved
                }
            }
        }
        return p
    }

    /// What the policy does with a call: `.allow` if a rule allows it, else the default action.
    /// A condition on an unresolved runtime value holds for no argument (resolve first).
    public func action(forSyscall number: Int32, args: [UInt64] = []) -> PolicyAction {
        if let r = rules.first(where: { $0.number == number }), r.allows(args) { return .allow }
        return defaultAction
    }

    /// This policy with the operator's debug mode applied to the default action.
    public func applying(_ mode: PolicyDebugMode) -> Policy {
        var p = self
        switch mode {
        case .enforce: break
        case .log: p.defaultAction = .log
        case .errno: p.defaultAction = .errno(PolicyDebugMode.errnoValue)
        }
        return p
    }
}
