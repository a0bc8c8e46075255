import CSynthVM
import Glibc
import Sandbox

/// The operator's seccomp mode (`synthvm run --seccomp`, `MachineConfig.seccomp`).
public typealias SeccompMode = PolicyDebugMode

/// The monitor's own seccomp filters, Firecracker-style: one policy per kind of thread
/// (Policies/vcpu.policy, vmm.policy, monitor.policy), compiled once per VM before any of its
/// threads starts, and installed by each thread on itself, never with TSYNC: the thread that runs
/// the VM (`VirtualMachine.runOnCallingThread`) builds it first, which needs open, clone and the
/// setup ioctls, and installs monitor.policy only once every other thread is up and filtered.
/// docs/monitor.md ("Seccomp filters") lists what runs under which policy.
struct MonitorFilters: Sendable {
    /// Every vCPU thread.
    let vcpu: ThreadFilter
    /// The synthetic timers (synthvm-stimer), the worker supervisor (synthvm-workers), the
    /// AutoEOI relay, the console feeder, the joiner.
    let vmm: ThreadFilter
    /// The thread that runs the VM (run loop, stopping), from the end of setup on.
    let monitor: ThreadFilter
    let mode: SeccompMode

    /// The policies, by file name without `.policy`.
    static let policyNames = ["vcpu", "vmm", "monitor"]

    /// Reads and compiles the three policies from `directory`; any error names the file and line.
    /// Not enforcing is announced on stderr, every time. `$SELF_PID` is this process's pid: the
    /// process that runs the VM compiles its filters itself (`synthvm run`'s VM process after its
    /// fork, a test process for its test VMs), and its threads install them.
    static func compile(directory: String, mode: SeccompMode) throws(MonitorError) -> MonitorFilters {
        let own = PolicyEnvironment.currentProcess()
        let vcpu = try compile(policy: "vcpu", directory: directory, mode: mode, environment: own, for: "monitor")
        let vmm = try compile(policy: "vmm", directory: directory, mode: mode, environment: own, for: "monitor")
        let monitor = try compile(policy: "monitor", directory: directory, mode: mode, environment: own, for: "monitor")
        installSigsysReporter()
        fixMallocArenaLimit
        if let warning = warning(mode) { _ = warning.withCString { Glibc.write(2, $0, strlen($0)) } }
        return MonitorFilters(vcpu: vcpu, vmm: vmm, monitor: monitor, mode: mode)
    }

    /// glibc's malloc decides how many arenas it may create the first time a thread needs a new
    /// one after 8 exist, by reading /sys/devices/system/cpu/online (arena_get2 -> get_nprocs) —
    /// an openat that a filtered thread is not allowed, and which can come at any later malloc of
    /// that thread (seen on a vCPU thread: a Dictionary resize in a port device, after many VMs in
    /// one process). Fixing the limit with M_ARENA_MAX, once, before any filter, means malloc never
    /// asks. 8 per CPU is glibc's own default for 64-bit.
    static let fixMallocArenaLimit: Void = {
        let cpus = max(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), 1)
        _ = svm_set_malloc_arena_max(Int32(clamping: 8 * cpus))
    }()

    /// `<directory>/<policy>.policy`, parsed, with the operator's mode applied, compiled with the
    /// runtime values of `environment`. Errors read `<user>: seccomp policy: <file>:<line>: <message>`.
    static func compile(policy: String, directory: String, mode: SeccompMode, environment: PolicyEnvironment,
                        for user: String) throws(MonitorError) -> ThreadFilter {
        let parser = PolicyParser(readFile: { p in
            guard let bytes = try? MachineConfig.readFile(p, what: "policy") else { return nil }
            return String(decoding: bytes, as: UTF8.self)
        })
        do {
            return try ThreadFilter.compile(name: policy, path: directory + "/" + policy + ".policy",
                                            mode: mode, parser: parser, environment: environment)
        } catch {
            throw .config("\(user): seccomp policy: \(error)")
        }
    }

    /// The line printed on stderr whenever a VM is built with a mode other than enforce.
    static func warning(_ mode: SeccompMode) -> String? {
        switch mode {
        case .enforce:
            return nil
        case .log:
            return "synthvm: WARNING: seccomp NOT ENFORCED (--seccomp log): calls the policies refuse are "
                + "ALLOWED and only logged by the kernel (dmesg / audit). For debugging policies, never for guests "
                + "you do not trust.\n"
        case .errno:
            return "synthvm: WARNING: seccomp NOT ENFORCED (--seccomp errno): calls the policies refuse fail with "
                + "ENOSYS instead of killing the process. For debugging policies, never for guests you do not trust.\n"
        }
    }

    /// A monitor thread that makes a refused call takes SIGSYS (`@default trap`): this handler
    /// (async-signal-safe C, the same as the workers') writes `synthvm monitor: seccomp violation:
    /// syscall N (name)` to stderr, then re-raises SIGSYS so the process dies by it. Process-wide
    /// and installed once; it changes nothing for threads without a filter, which never take SIGSYS.
    static func installSigsysReporter() { _ = sigsysReporterInstalled }

    private static let sigsysReporterInstalled: Int32 = {
        let count = Int((SyscallTable.numbers.values.max() ?? 0) + 1)
        let names = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: count)
        names.initialize(repeating: nil, count: count)
        for (name, n) in SyscallTable.numbers { names[Int(n)] = UnsafePointer(strdup(name)) }
        return svm_install_sigsys_reporter(strdup("synthvm monitor"), names, UInt32(count))
    }()
}
