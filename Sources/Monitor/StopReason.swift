/// Why a VM stopped, and the process status `synthvm run` exits with for it.
///
/// | status | meaning |
/// |---|---|
/// | 0 | every vCPU halted with interrupts disabled, or the guest powered off through ACPI |
/// | odd | the exit device: `(v << 1) | 1` (QEMU isa-debug-exit) |
/// | 2 | triple fault (KVM_EXIT_SHUTDOWN) |
/// | 4 | guest crash: KVM internal error, failed entry, unhandled exit |
/// | 6 | host failure while running (a KVM ioctl failed), or a worker died past its restart budget (`--restart-budget`) |
/// | 8 | the guest reported a crash through the Hyper-V crash MSRs |
/// | 10 | the guest requested a reset (Hyper-V RESET MSR, port 0xCF9 or the keyboard controller) with `--on-reset exit` |
/// | 64 | bad command line or input, before any VM is created |
/// | 70 | the VM could not be created (KVM missing, setup ioctl failed) |
/// | 124 | the --timeout elapsed |
/// | 130 | stopped by SIGINT, by SIGTERM when the guest has no shutdown channel (or `--shutdown-grace 0`), from the console with Ctrl-A x, or by `stop` (or a `shutdown` the guest cannot be asked for) on the control socket |
/// | 131 | SIGTERM or the control socket's `shutdown` asked the guest to shut down through the shutdown IC and it did not within `--shutdown-grace` seconds, or refused: stopped hard |
public enum StopReason: Sendable, Equatable {
    case halted
    case exitDevice(value: UInt32)
    case tripleFault(vcpu: UInt32)
    case guestCrash(vcpu: UInt32, summary: String)
    case hostFailure(String)
    case signal(Int32)
    case timedOut(seconds: Int)
    case guestReportedCrash(vcpu: UInt32)
    case resetRequested(vcpu: UInt32)
    case poweredOff
    /// Port 0xCF9 or the keyboard controller's reset line.
    case platformReset
    /// Ctrl-A x on a raw-mode console terminal.
    case consoleQuit
    /// `stop` on the control socket (docs/api.md), or a `shutdown` the guest had no way to take:
    /// the same hard stop as SIGTERM, and the same status.
    case controlSocketStop
    /// SIGTERM asked the guest to shut down (shutdown IC); it had not after `seconds`, or it
    /// refused (`refused`), so the VM was stopped hard.
    case shutdownFailed(seconds: Int, refused: Bool)
    /// A worker died and restarting it would exceed `--restart-budget` (`restarts` in `seconds`),
    /// or it could not be restarted at all (no spawner): status 6, like a host failure.
    case workerRestartBudgetExhausted(worker: String, restarts: Int, seconds: Int)

    /// A reset of either kind (the CLI restarts the VM for these with `--on-reset restart`).
    public var isReset: Bool {
        switch self {
        case .resetRequested, .platformReset: return true
        default: return false
        }
    }

    public var exitStatus: Int32 {
        switch self {
        case .halted: return 0
        case let .exitDevice(v): return Int32(truncatingIfNeeded: ((v << 1) | 1) & 0xFF)
        case .tripleFault: return 2
        case .guestCrash: return 4
        case .hostFailure, .workerRestartBudgetExhausted: return 6
        case .signal, .consoleQuit, .controlSocketStop: return 130
        case .shutdownFailed: return 131
        case .timedOut: return 124
        case .guestReportedCrash: return 8
        case .resetRequested, .platformReset: return 10
        case .poweredOff: return 0
        }
    }

    public var description: String {
        switch self {
        case .halted: return "all vCPUs halted with interrupts disabled"
        case let .exitDevice(v): return "guest wrote 0x\(String(v, radix: 16)) to the exit device"
        case let .tripleFault(c): return "triple fault on vCPU \(c)"
        case let .guestCrash(c, s): return "guest crash on vCPU \(c): \(s)"
        case let .hostFailure(s): return "host failure: \(s)"
        case let .signal(s): return "stopped by signal \(s)"
        case let .timedOut(s): return "timed out after \(s) s"
        case let .guestReportedCrash(c): return "guest reported a crash (crash MSRs) on vCPU \(c)"
        case let .resetRequested(c): return "guest requested a reset on vCPU \(c)"
        case .poweredOff: return "guest powered off (ACPI S5)"
        case .platformReset: return "guest reset the platform (port 0xcf9 or the keyboard controller)"
        case .consoleQuit: return "stopped from the console (Ctrl-A x)"
        case .controlSocketStop: return "stopped through the control socket"
        case let .workerRestartBudgetExhausted(w, n, s):
            return "worker \(w) died past its restart budget (\(n) restarts in \(s) s): stopped"
        case let .shutdownFailed(s, refused):
            return refused ? "the guest refused to shut down (shutdown IC); stopped"
                : "the guest did not shut down within \(s) s of being asked; stopped"
        }
    }

    /// Exit statuses the CLI uses before a VM exists.
    public static let usageStatus: Int32 = 64
    public static let setupFailureStatus: Int32 = 70
}
