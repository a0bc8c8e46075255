// A compiled policy that one thread installs on itself (Firecracker-style per-thread filters):
// the monitor's vCPU and vmm threads. Workers, single-purpose processes, install theirs on every
// thread at once (TSYNC) through the worker handshake instead.
import CSeccomp

public struct ThreadFilter: Sendable, Equatable {
    /// The policy's name (`vcpu` for Policies/vcpu.policy), for messages.
    public var name: String
    /// `struct sock_filter` bytes from `PolicyCompiler.compile`.
    public var instructions: [UInt8]

    public init(name: String, instructions: [UInt8]) {
        self.name = name
        self.instructions = instructions
    }

    /// Parses the policy at `path`, applies the operator's debug mode and compiles it with the
    /// runtime values of `environment` (`.currentProcess()` for a filter this process installs on
    /// its own threads; `.none` for a worker's, compiled before the worker exists).
    public static func compile(name: String, path: String, mode: PolicyDebugMode,
                               parser: PolicyParser, environment: PolicyEnvironment) throws -> ThreadFilter {
        let policy = try parser.parse(file: path).applying(mode)
        return ThreadFilter(name: name, instructions: try PolicyCompiler.compile(policy, environment: environment))
    }

    /// Installs the filter on the calling thread, and only on it (no_new_privs, then
    /// SECCOMP_SET_MODE_FILTER without TSYNC, with SECCOMP_FILTER_FLAG_LOG so refusals reach the
    /// audit log in every mode). Irreversible. Returns 0 or -errno.
    public func installOnCurrentThread() -> Int32 {
        instructions.withUnsafeBytes {
            svm_seccomp_install_on_current_thread($0.baseAddress, UInt32($0.count / PolicyCompiler.instructionSize))
        }
    }
}
