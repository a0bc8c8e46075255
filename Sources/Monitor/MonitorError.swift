import KVM
import Machine

/// Why the monitor could not build or start a VM. One line each, for the operator.
public enum MonitorError: Error, CustomStringConvertible {
    case config(String)
    case kvm(KVMError)
    case boot(BootError)
    case memory(GuestMemoryError)

    public var description: String {
        switch self {
        case let .config(s): return s
        case let .kvm(e): return e.description
        case let .boot(e): return e.description
        case let .memory(e): return e.description
        }
    }
}
