// Values a policy can name that are not kernel constants but facts about the process that
// installs the filter (`$SELF_PID`). They are resolved when the policy is compiled, by whoever
// compiles it, so a policy file stays a fixed text and the compiled filter holds plain numbers.
import Glibc

/// A value known only when a policy is compiled, written `$NAME` in a policy.
public enum PolicyRuntimeValue: String, Equatable, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// The process id (tgid) of the process that will install the filter. `tgkill: arg0 ==
    /// $SELF_PID` lets a thread signal threads of its own process only (glibc's abort(), raise()
    /// and pthread_kill all call tgkill(getpid(), tid, sig)).
    case selfPID = "SELF_PID"

    /// How a policy writes it: `$SELF_PID`.
    public var description: String { "$" + rawValue }
}

/// The runtime values available to one compilation. Empty: a policy that names one does not
/// compile (`PolicyError.Kind.unresolvedRuntimeValue`, with file:line).
public struct PolicyEnvironment: Equatable, Hashable, Sendable {
    public var values: [PolicyRuntimeValue: UInt64]

    public init(values: [PolicyRuntimeValue: UInt64] = [:]) {
        self.values = values
    }

    public init(selfPID: Int32) {
        self.init(values: [.selfPID: UInt64(UInt32(bitPattern: selfPID))])
    }

    /// No runtime values: for a policy compiled before the process that installs it exists (a
    /// worker's, compiled by the monitor before the spawn).
    public static let none = PolicyEnvironment()

    /// The values of the calling process, for a filter this process installs on its own threads
    /// (the monitor's policies, synthvm-policy-probe).
    public static func currentProcess() -> PolicyEnvironment {
        PolicyEnvironment(selfPID: getpid())
    }

    public func value(of name: PolicyRuntimeValue) -> UInt64? { values[name] }
}
