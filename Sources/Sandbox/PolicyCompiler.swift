// Policy -> classic BPF (struct sock_filter[]) for seccomp(SECCOMP_SET_MODE_FILTER), with
// libseccomp. The monitor compiles a worker's policy at spawn time and sends the program over
// the control socket (`SeccompProgram`); the worker installs it. x86-64 only: libseccomp
// prepends the architecture check (another architecture kills the process).
//
// Every comparison is on the full 64-bit argument register, as the policy format says. That
// is the strict reading: a caller that leaves garbage in the upper half of an int argument is
// refused, never allowed by accident.
import CSeccomp
import Glibc

/// A policy libseccomp would not take, or a failure exporting the program.
public struct PolicyCompileError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum PolicyCompiler {
    /// The kernel's BPF_MAXINSNS.
    public static let maxInstructions = 4096
    /// Bytes per `struct sock_filter` instruction.
    public static let instructionSize = 8

    /// The filter as `struct sock_filter` bytes (host byte order), a multiple of 8 bytes.
    /// Runtime values (`$SELF_PID`) take their numbers from `environment`; one it lacks is an
    /// error naming the first rule that uses it (`file:line: $SELF_PID has no value here ...`).
    public static func compile(_ unresolved: Policy,
                               environment: PolicyEnvironment = .none) throws(PolicyCompileError) -> [UInt8] {
        let policy: Policy
        do { policy = try unresolved.resolving(environment) } catch { throw PolicyCompileError(error.description) }
        guard let ctx = seccomp_init(try action(policy.defaultAction)) else {
            throw PolicyCompileError("seccomp_init(\(policy.defaultAction)) failed")
        }
        defer { seccomp_release(ctx) }
        // Architecture mismatch (a 32-bit or x32 call): kill the whole process, never a thread.
        try check(seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, svm_scmp_act_kill_process()), "set bad-arch action")
        // Rule order as written; no priority games (every rule is allow).
        for rule in policy.rules {
            for group in expand(rule.conditions) {
                let r = group.withUnsafeBufferPointer { cmps in
                    seccomp_rule_add_exact_array(ctx, svm_scmp_act_allow(), rule.number,
                                                 UInt32(cmps.count), cmps.baseAddress)
                }
                if r != 0 {
                    let what = group.isEmpty ? "unconditional" :
                        group.map { "arg\($0.arg) op \($0.op.rawValue) \($0.datum_a) \($0.datum_b)" }.joined(separator: ", ")
                    throw PolicyCompileError("\(rule.source): libseccomp refused the rule for '\(rule.syscall)' "
                        + "(\(what)): \(String(cString: strerror(-r)))")
                }
            }
        }
        let fd = svm_scmp_memfd()
        guard fd >= 0 else { throw PolicyCompileError("memfd_create: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try check(seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0, size % off_t(instructionSize) == 0,
              size / off_t(instructionSize) <= off_t(maxInstructions) else {
            throw PolicyCompileError("compiled filter has a bad size (\(size) bytes; at most \(maxInstructions) "
                + "instructions of \(instructionSize) bytes)")
        }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + off, $0.count - off, off_t(off)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw PolicyCompileError("reading the compiled filter back failed") }
            off += n
        }
        return bytes
    }

    /// libseccomp's action for a policy action.
    static func action(_ a: PolicyAction) throws(PolicyCompileError) -> UInt32 {
        switch a {
        case .killProcess: return svm_scmp_act_kill_process()
        case .trap: return svm_scmp_act_trap()
        case .log: return svm_scmp_act_log()
        case .allow: return svm_scmp_act_allow()
        case .errno(let n):
            // libseccomp (2.5) takes 1...4094 although the kernel and the policy format allow 4095.
            guard (1...4094).contains(n) else { throw PolicyCompileError("errno \(n) is outside 1...4094 (libseccomp)") }
            return svm_scmp_act_errno(UInt16(n))
        }
    }

    /// OR of ANDs -> one libseccomp rule (an AND of comparisons) per alternative. `in {…}` and a
    /// multi-bit `& M` are ORs themselves, so each AND group becomes the cartesian product.
    /// An empty result list element (`[]`) is an unconditional rule.
    static func expand(_ conditions: [[ArgumentCondition]]) -> [[scmp_arg_cmp]] {
        if conditions.isEmpty { return [[]] }
        var out: [[scmp_arg_cmp]] = []
        for group in conditions {
            var partial: [[scmp_arg_cmp]] = [[]]
            for c in group {
                let alternatives = comparisons(c)
                partial = partial.flatMap { p in alternatives.map { p + [$0] } }
            }
            out += partial
        }
        return out
    }

    /// The alternatives (OR) for one condition, each a single libseccomp comparison.
    static func comparisons(_ c: ArgumentCondition) -> [scmp_arg_cmp] {
        let arg = UInt32(c.arg)
        func cmp(_ op: scmp_compare, _ a: UInt64, _ b: UInt64 = 0) -> scmp_arg_cmp {
            scmp_arg_cmp(arg: arg, op: op, datum_a: a, datum_b: b)
        }
        switch c.op {
        case .equal(let v): return [cmp(SCMP_CMP_EQ, v)]
        case .notEqual(let v): return [cmp(SCMP_CMP_NE, v)]
        case .maskedEqual(let m, let v): return [cmp(SCMP_CMP_MASKED_EQ, m, v)]
        case .inSet(let vs): return vs.map { cmp(SCMP_CMP_EQ, $0) }
        // `compile` resolves every runtime value first; one left over allows nothing (no
        // alternative), never anything more.
        case .equalRuntime: return []
        case .maskedAny(let m):
            // arg & M != 0 <=> some bit b of M has arg & b == b.
            return (0..<64).compactMap { i in
                let b = UInt64(1) << UInt64(i)
                return m & b != 0 ? cmp(SCMP_CMP_MASKED_EQ, b, b) : nil
            }
        }
    }

    private static func check(_ r: Int32, _ what: String) throws(PolicyCompileError) {
        if r != 0 { throw PolicyCompileError("\(what): \(String(cString: strerror(-r)))") }
    }
}
