import Glibc
import IPC
import Machine
import Partition
import Sandbox

/// Everything needed to build a VM, already read and validated. `load` is the one path from
/// operator input (paths, strings) to a config: the CLI and the guest tests both use it, so a
/// test boots a guest exactly as `synthvm run` would.
public struct MachineConfig: Sendable {
    /// The kernel, recognised and unpacked (a bzImage's payload decompressed) once, here.
    public var kernel: KernelImage
    public var kernelName: String
    public var modules: [BootModule]
    public var commandLine: String
    public var cpuCount: Int
    public var layout: GuestMemoryLayout
    public var console: ConsoleSink.Target
    /// Where COM1's received bytes come from (the CLI: stdin with `--serial stdio`); nil: nothing
    /// is ever received. The fd stays the caller's.
    public var consoleInput: Int32?
    /// Whether Ctrl-A x on `consoleInput` stops the VM (the CLI sets it for a raw terminal).
    public var consoleEscapes = false
    /// How often the supervisor checks for "every vCPU halted with IF=0".
    public var haltPollMilliseconds: Int32 = 10
    /// Whether SIGINT/SIGTERM stop the VM (the CLI); tests leave signals alone.
    public var handleSignals = false
    /// Wall-clock limit for the whole run; nil runs until the guest stops.
    public var timeoutSeconds: Int?
    /// The Hyper-V enlightenments the guest sees (`--hyperv`); `off` gives a plain x86 guest.
    public var enlightenments: Enlightenments
    public var onGuestCrash: GuestCrashAction = .stop
    /// Worker processes to start with the VM besides those the configuration implies (the
    /// SynIC router runs whenever the guest has a SynIC: `runsSynICRouter`).
    public var workers: [String] = []
    /// Serve QEMU's hyperv-testdev at port 0x3000 from the router (`--hyperv-testdev`).
    public var hypervTestDevice = false
    /// Run the VMBus server worker (`synthvm-vmbus`) next to the router, and give the guest the
    /// VMBus ACPI device (docs/vmbus.md). On by default; only with a SynIC (`runsVMBus`);
    /// `--no-vmbus` turns it off.
    public var vmbus = true

    /// The `--disk`s, opened and locked (`DiskImage.openAll`), LUN 0, 1, ... of one SCSI
    /// controller served by the storage worker (`runsStorage`). Each `fd` is the caller's.
    public var disks: [DiskImage] = []

    /// SIGTERM asks the guest to shut down through the shutdown integration service and stops it
    /// hard after this many seconds (`--shutdown-grace`); 0: SIGTERM stops at once, as SIGINT.
    public var shutdownGraceSeconds = 30

    /// VMBus's SINT (`VMBUS_MESSAGE_SINT`): control messages and channel interrupts.
    public static let vmbusSINT = 2
    /// VMBus message connections 1 and 4 (`VMBusMessageConnection.accepted`).
    public static let vmbusMessageConnections: [UInt32] = [1, 4]
    /// Message buffers each of them has: messages the guest may have in flight to the worker
    /// before HvPostMessage answers HV_STATUS_INSUFFICIENT_BUFFERS (Linux retries those).
    public static let vmbusMessageBuffers: UInt32 = 16
    /// The relids of the channels the VMBus worker offers, whose event connections the router
    /// publishes before the guest runs (OpenVMM #1850: an event port must exist when the host
    /// answers OPEN). Workers/vmbus offers the integration services in this order: heartbeat,
    /// shutdown, time sync.
    public static let standardVMBusRelIDs: ClosedRange<UInt32> = 1...3
    /// The relids of the devices the VMBus worker hosts itself: the standard ones and, when the
    /// worker is asked for its test-only echo device (`--test-echo-device` in `workerArguments`:
    /// tests and `synthvm-bench vmbus`), one more, offered after them.
    public var localVMBusRelIDs: ClosedRange<UInt32> {
        let standard = Self.standardVMBusRelIDs
        return workerArguments.contains(WorkerCommandLine.testEchoDeviceArgument)
            ? standard.lowerBound...(standard.upperBound + 1) : standard
    }
    /// The SCSI controller's relid when the storage worker runs (nil otherwise): the VMBus worker
    /// offers it after its own devices (4 unless the echo device is there); its event
    /// connection's owner is the storage worker.
    public var storageRelID: UInt32? { runsStorage ? localVMBusRelIDs.upperBound + 1 : nil }
    /// The most sub-channels the SCSI controller offers on any VM (docs/storage.md, "Sub-channels").
    public static let maxStorageSubChannels = 16
    /// The SCSI controller's sub-channel limit, QUERY_PROPERTIES' max_channel_cnt: one per vCPU
    /// beyond the first (Linux asks for min(CPUs - 1, max_channel_cnt)), at most
    /// `maxStorageSubChannels`; 0 without the storage worker or with one vCPU.
    public var storageSubChannels: Int { runsStorage ? min(max(cpuCount - 1, 0), Self.maxStorageSubChannels) : 0 }
    /// The relids the sub-channels get when the guest asks for them (the VMBus worker's
    /// `VMBusWorkerCore.subChannelRelIDs`: the ones right after the controller's).
    public var storageSubChannelRelIDs: [UInt32] {
        guard let primary = storageRelID else { return [] }
        return (0..<UInt32(storageSubChannels)).map { primary + 1 + $0 }
    }
    /// The relids whose event connections this VM publishes: the VMBus worker's own devices',
    /// the SCSI controller's and its possible sub-channels'.
    public var vmbusRelIDs: ClosedRange<UInt32> {
        let last = storageSubChannelRelIDs.last ?? storageRelID ?? localVMBusRelIDs.upperBound
        return localVMBusRelIDs.lowerBound...last
    }
    /// Where the workers' seccomp policies (`<name>.policy`) are read from at spawn time. Default:
    /// the package's own `Policies/`, found from this source file's path, which is right for
    /// `swift run synthvm`, `swift test` and a binary run from its build tree.
    public var policyDirectory: String = MachineConfig.defaultPolicyDirectory
    /// What every seccomp policy (the monitor's threads and the workers) does with a call it does
    /// not allow: `enforce` (the policy's own default, trap or kill), or for debugging a policy,
    /// `log` (allow and log) or `errno` (fail with ENOSYS). Anything but enforce is announced on
    /// stderr whenever a VM is built.
    public var seccomp: SeccompMode = .enforce
    /// How every worker is jailed (docs/security.md). nil: the operator's `--no-jail` (workers run
    /// in the monitor's namespaces, as its user, filtered only; warned on stderr at every start).
    public var jail: JailConfig? = JailConfig()
    /// Extra command-line arguments for every worker. Tests only (`--test-forbidden-syscall`);
    /// the operator's CLI does not set it.
    public var workerArguments: [String] = []
    /// If set, the workers' stderr (their fd 2) instead of the monitor's. Tests only.
    public var workerStandardError: Int32?
    /// A listening Unix stream socket (non-blocking is set by the VM) served as the control
    /// socket (docs/api.md) by the `synthvm-api` thread. The fd stays the caller's: `synthvm run
    /// --api-socket` creates it in the launcher and hands it to every VM process as its fd 5.
    public var apiSocket: Int32?
    /// Whether the control socket's `fault` command is accepted (`--allow-fault-injection`).
    public var allowFaultInjection = false
    /// How many worker restarts are allowed in a sliding window (`--restart-budget N/SECONDS`);
    /// past it the VM stops with status 6 (docs/faults.md). 0 restarts: a worker death stops the VM.
    /// nil (`--restart-budget off`, and tests that make a worker fail on purpose): no restarts
    /// and no stop: a dead worker stays dead and the VM goes on without it.
    public var restartBudget: RestartBudget? = RestartBudget()
    /// A worker whose heartbeat word has not moved for this long is killed and restarted
    /// (`--worker-hang-timeout SECONDS`; 0: never).
    public var workerHangTimeoutSeconds: Double = 10
    /// `<package root>/Policies`, from `#filePath` (Sources/Monitor/MachineConfig.swift).
    public static let defaultPolicyDirectory: String = {
        var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/") + "/Policies"
    }()
    /// The guest has a SynIC, so its messages and events are routed by the router worker.
    public var runsSynICRouter: Bool { !enlightenments.isOff && enlightenments.has(.synic) }

    /// The VMBus worker runs when asked for and the guest has a SynIC (its messages go through the router).
    public var runsVMBus: Bool { vmbus && runsSynICRouter }

    /// The storage worker runs when the guest has VMBus and there are disks.
    public var runsStorage: Bool { runsVMBus && !disks.isEmpty }

    /// Every worker to start, in order (the router first when the SynIC needs it, then VMBus,
    /// then storage).
    public var workerNames: [String] {
        var names = runsSynICRouter ? ["synic-router"] : []
        if runsVMBus { names.append("vmbus") }
        if runsStorage { names.append("storage") }
        for w in workers where !names.contains(w) { names.append(w) }
        return names
    }

    /// Worker names (executable `synthvm-<name>`) and the kind each announces in its hello.
    public static let knownWorkers: [String: WorkerKind] = ["synic-router": .synicRouter, "vmbus": .vmbus,
                                                                "storage": .storage]

    public static let cpuRange = 1...64
    public static let defaultMemory = "256M"

    public init(kernel: KernelImage, kernelName: String, modules: [BootModule] = [], commandLine: String = "",
                cpuCount: Int = 1, layout: GuestMemoryLayout, console: ConsoleSink.Target,
                enlightenments: Enlightenments) {
        self.enlightenments = enlightenments
        self.kernel = kernel
        self.kernelName = kernelName
        self.modules = modules
        self.commandLine = commandLine
        self.cpuCount = cpuCount
        self.layout = layout
        self.console = console
    }

    /// Reads and checks operator input. Every failure is one line naming what is wrong, and
    /// happens before any VM exists. `kernelPath == nil` selects the built-in guest.
    public static func load(kernelPath: String?, modulePaths: [String] = [], commandLine: String = "",
                            cpus: Int = 1, memory: String = defaultMemory,
                            serial: String = "stdio", hyperv: String = "default") throws(MonitorError) -> MachineConfig {
        let enlightenments: Enlightenments
        do { enlightenments = try Enlightenments.parse(hyperv) } catch { throw .config("--hyperv: \(error)") }
        guard cpuRange.contains(cpus) else {
            throw .config("--cpus \(cpus) is out of range (\(cpuRange.lowerBound)...\(cpuRange.upperBound))")
        }
        let size: UInt64
        do { size = try MemorySize.parse(memory) } catch { throw .config("--memory: \(error)") }
        let layout: GuestMemoryLayout
        do { layout = try GuestMemoryLayout(ramSize: size) } catch { throw .config("--memory: \(error)") }
        let console = try parseSerial(serial)
        let file: [UInt8]
        let name: String
        if let path = kernelPath {
            file = try readFile(path, what: "kernel")
            name = path
        } else {
            file = BuiltinGuest.elf()
            name = BuiltinGuest.name
        }
        let kernel: KernelImage
        do { kernel = try KernelImage.open(file, decompressedSizeLimit: Int(layout.ramSize)) } catch {
            throw .config("\(name): \(error)")
        }
        var modules: [BootModule] = []
        for p in modulePaths { modules.append(BootModule(name: p, bytes: try readFile(p, what: "module"))) }
        let config = MachineConfig(kernel: kernel, kernelName: name, modules: modules, commandLine: commandLine,
                                   cpuCount: cpus, layout: layout, console: console, enlightenments: enlightenments)
        try config.validate()
        return config
    }

    /// Runs the loader against a memory that only checks bounds: the same code that will load
    /// the kernel rejects it now, before /dev/kvm is touched.
    public func validate() throws(MonitorError) {
        do {
            _ = try KernelLoader.load(kernel: kernel, modules: modules, commandLine: commandLine, cpuCount: cpuCount,
                                      into: BoundsCheckingMemory(layout: layout))
        } catch {
            throw .config("\(kernelName): \(error)")
        }
    }

    static func parseSerial(_ s: String) throws(MonitorError) -> ConsoleSink.Target {
        switch s {
        case "stdio": return .stdout
        case "none": return .none
        default:
            if s.hasPrefix("file:"), s.count > 5 { return .file(String(s.dropFirst(5))) }
            throw .config("--serial \(s): expected stdio, none or file:PATH")
        }
    }

    static func readFile(_ path: String, what: String) throws(MonitorError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw .config("cannot read \(what) \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw .config("cannot stat \(what) \(path): \(String(cString: strerror(errno)))") }
        if (st.st_mode & S_IFMT) != S_IFREG { throw .config("\(what) \(path) is not a regular file") }
        let limit = 1 << 34
        if st.st_size > limit { throw .config("\(what) \(path) is larger than 16 GiB") }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + off, $0.count - off, off_t(off)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .config("cannot read \(what) \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            off += n
        }
        if off == 0 { throw .config("\(what) \(path) is empty") }
        return Array(bytes.prefix(off))
    }
}

/// A guest memory that stores nothing and checks every access against the layout.
final class BoundsCheckingMemory: GuestPhysicalMemory, @unchecked Sendable {
    let layout: GuestMemoryLayout
    init(layout: GuestMemoryLayout) { self.layout = layout }

    func write(_ bytes: UnsafeRawBufferPointer, at gpa: UInt64) throws(GuestMemoryError) {
        guard layout.backingOffset(gpa: gpa, length: UInt64(bytes.count)) != nil else {
            throw .outOfRange(gpa: gpa, length: UInt64(bytes.count))
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at gpa: UInt64) throws(GuestMemoryError) {
        guard layout.backingOffset(gpa: gpa, length: UInt64(buffer.count)) != nil else {
            throw .outOfRange(gpa: gpa, length: UInt64(buffer.count))
        }
    }

    func zero(at gpa: UInt64, count: UInt64) throws(GuestMemoryError) {
        guard layout.backingOffset(gpa: gpa, length: count) != nil else { throw .outOfRange(gpa: gpa, length: count) }
    }
}

/// `--restart-budget N/SECONDS`: at most `restarts` worker restarts (all kinds together) in any
/// `seconds`-second window.
public struct RestartBudget: Sendable, Equatable, CustomStringConvertible {
    public var restarts: Int
    public var seconds: Int

    public init(restarts: Int = 5, seconds: Int = 60) {
        self.restarts = restarts
        self.seconds = seconds
    }

    /// "N/SECONDS", N 0...1000, SECONDS 1...86400 (`off` is the caller's: nil).
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let n = Int(parts[0]), let s = Int(parts[1]), (0...1000).contains(n), (1...86400).contains(s) else {
            return nil
        }
        self.init(restarts: n, seconds: s)
    }

    public var description: String { "\(restarts)/\(seconds)" }
}
