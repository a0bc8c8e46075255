import ArgumentParser
import Glibc
import Machine
import Monitor
import Sandbox

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Boot a guest kernel in a new VM and run it to the end.",
        discussion: """
            The kernel format is detected from the file: a Linux bzImage has its payload decompressed on \
            the host and its vmlinux booted through the PVH entry (or the Linux 64-bit boot protocol); an \
            ELF with a PVH note boots through PVH, an ELF64 vmlinux through the 64-bit boot protocol; any \
            other ELF64 x86-64 image is entered directly in 64-bit long mode (SynthVM direct boot); an \
            ELF32 or a.out-kludge image with a multiboot v1 header is entered in 32-bit protected mode \
            (see docs/boot-protocol.md). Without --kernel, the built-in default guest runs.

            Each VM life runs in a process of its own (synthvm-vm, started afresh with its own address-space \
            layout), whose every thread is under a seccomp filter once the VM runs; this process waits, restarts it after a guest reset, passes \
            SIGINT/SIGTERM on and ends as it ended (docs/monitor.md, "The VM process").

            Exit status: 0 when every vCPU halted with interrupts off; (v << 1) | 1 when the guest wrote \
            v to the exit device at port 0xf4; 2 triple fault; 4 guest crash (a report goes to stderr); \
            6 host failure while running; 64 bad input; 70 the VM could not be created; 124 --timeout elapsed; \
            130 SIGINT, SIGTERM when the guest cannot be asked to shut down, or stop on the control socket; 131 SIGTERM asked the guest to \
            shut down and it did not within --shutdown-grace (or refused); 8 the guest reported a crash through \
            the Hyper-V crash MSRs; 10 the guest requested a reset and --on-reset is exit. A guest that shuts \
            down when asked powers off through ACPI: 0.
            """)

    @Option(name: .long, help: ArgumentHelp("Guest kernel: a Linux bzImage or vmlinux, an ELF64, or a multiboot v1 kernel. Default: the built-in guest.",
                                            valueName: "path"))
    var kernel: String?

    @Option(name: .long, help: ArgumentHelp("A file to load as a boot module (Linux initramfs / multiboot module / boot-info module). Repeatable.",
                                            valueName: "path"))
    var initrd: [String] = []

    @Option(name: .long, help: ArgumentHelp("Same as --initrd: another module. Repeatable; modules keep command-line order.",
                                            valueName: "path"))
    var module: [String] = []

    @Option(name: .long, help: ArgumentHelp("Kernel command line (at most 4095 bytes).", valueName: "string"))
    var cmdline: String = ""

    @Option(name: .long, help: ArgumentHelp("Number of vCPUs (1-64).", valueName: "n"))
    var cpus: Int = 1

    @Option(name: .long, help: ArgumentHelp("Guest RAM: bytes or K/M/G suffix, a multiple of 4 KiB (2M-64G).",
                                            valueName: "size"))
    var memory: String = MachineConfig.defaultMemory

    @Option(name: .long, help: ArgumentHelp(
        "Guest serial console (COM1): stdio (output to stdout, input from stdin; a terminal is put in raw mode, "
            + "Ctrl-A x quits), none, or file:PATH (output only).", valueName: "sink"))
    var serial: String = "stdio"

    @Option(name: .long, help: ArgumentHelp(
        "Hyper-V enlightenments: off (a plain x86 guest), default, or a comma list of runtime, time, reset, "
            + "frequencies, crash, relaxed, ipi, messages, xmm-input, synic, synic-polling, stimer, stimer-direct. "
            + "See docs/hyperv.md.", valueName: "set"))
    var hyperv: String = "default"

    @Flag(name: .long, help: ArgumentHelp(
        "Serve QEMU's hyperv-testdev at port 0x3000 (SynIC routes, message and event connections for guest "
            + "test suites), from the SynIC router worker. Needs the synic enlightenment."))
    var hypervTestdev = false

    @Flag(name: .long, inversion: .prefixedNo, help: ArgumentHelp(
        "Serve VMBus (default): the VMBus ACPI device in the DSDT and the VMBus server worker (synthvm-vmbus, "
            + "jailed and filtered like the SynIC router) with the heartbeat, shutdown and time-sync integration "
            + "services. Only with the synic enlightenment: a --hyperv set without synic gets no VMBus device "
            + "(asking for --vmbus then is an error). --no-vmbus leaves VMBus out."))
    var vmbus: Bool?

    @Option(name: .long, help: ArgumentHelp(
        "A disk for the guest: a raw image file (sparse allowed; its size a multiple of 512) or a block device, one "
            + "LUN of a synthetic SCSI controller (storvsc) in command-line order; repeatable (up to 64). Options: "
            + "readonly (opened read-only; the guest sees it write-protected); serial=STR (VPD page 0x80); "
            + "cache=writeback (default: writes complete once the host has them, flushes and FUA writes are made "
            + "durable with fdatasync), cache=direct (O_DIRECT, every write durable before it completes; needs the "
            + "host file system's O_DIRECT alignment, 512 bytes on most hosts), or cache=unsafe (flushes and FUA are "
            + "IGNORED: data is lost if the host crashes). The image is locked (flock: exclusive, shared for readonly) "
            + "so two VMs never write one image. protocol=0x0602|0x0600|0x0501|0x0402|0x0200 caps the vstor protocol "
            + "version the controller agrees (default 0x0602; the controller serves all disks, so the lowest given "
            + "counts). Served by the jailed synthvm-storage worker, which gets only the open descriptor. Needs "
            + "VMBus. See docs/storage.md.",
        valueName: "path[,readonly][,serial=STR][,cache=writeback|direct|unsafe][,protocol=0xNNNN]"))
    var disk: [String] = []

    @Option(name: .long, help: ArgumentHelp("Write a JSON report here when the guest reports a crash (Hyper-V crash MSRs).",
                                            valueName: "path"))
    var crashReport: String?

    @Option(name: .long, help: ArgumentHelp("When the guest reports a crash: stop (status 8) or continue.",
                                            valueName: "stop|continue"))
    var onGuestCrash: String = "stop"

    @Option(name: .long, help: ArgumentHelp("When the guest resets the VM (Hyper-V RESET MSR): restart or exit (status 10).",
                                            valueName: "restart|exit"))
    var onReset: String = "restart"

    @Option(name: .long, help: ArgumentHelp(
        "Guest profile. linux-pvm: on a PVM host, append the Linux options (noxsave, clearcpuid=...) for the "
            + "features the guest sees but the host cannot emulate; see docs/pvm.md.", valueName: "name"))
    var profile: String?

    @Option(name: .long, help: ArgumentHelp("Stop the VM after this many seconds (status 124).", valueName: "seconds"))
    var timeout: Int?

    @Option(name: .long, help: ArgumentHelp(
        "Seccomp filters of the monitor's threads and the workers: enforce (default), or, to debug a policy, "
            + "log (refused calls are allowed and logged by the kernel) or errno (refused calls fail with ENOSYS). "
            + "Anything but enforce is announced on stderr. See docs/monitor.md.", valueName: "enforce|log|errno"))
    var seccomp: String = SeccompMode.enforce.rawValue

    @Option(name: .long, help: ArgumentHelp(
        "Directory of the seccomp policies (vcpu.policy, vmm.policy, one per worker). Default: the source tree's "
            + "Policies/, which a relocated install must replace.", valueName: "dir"))
    var policyDir: String?

    @Option(name: .long, help: ArgumentHelp(
        "SIGTERM asks the guest to shut down through the VMBus shutdown integration service and stops it hard "
            + "after this many seconds (status 131); a guest without that channel, SIGINT, a second SIGTERM and "
            + "Ctrl-A x stop at once (status 130). 0: SIGTERM stops at once.", valueName: "seconds"))
    var shutdownGrace: Int = 30

    @Flag(name: .long, help: "Print exit statistics to stderr when the VM stops.")
    var stats = false

    @Flag(name: .long, help: ArgumentHelp(
        "Run worker processes WITHOUT their jail (namespaces, unprivileged ids, no capabilities, rlimits); "
            + "their seccomp filters still apply. For debugging only: warns on stderr at every worker start. "
            + "See docs/security.md."))
    var noJail = false

    @Option(name: .long, help: ArgumentHelp(
        "Serve the control socket here: a Unix stream socket (mode 0600) taking one JSON request per line "
            + "(status, metrics, fault, shutdown, stop); `synthvm ctl PATH ...` is its client. See docs/api.md.",
        valueName: "path"))
    var apiSocket: String?

    @Flag(name: .long, help: ArgumentHelp(
        "Accept the control socket's fault command (fault injection into workers, e.g. `synthvm ctl PATH fault "
            + "synic-router kill`). Off by default; every accepted fault is logged with who asked."))
    var allowFaultInjection = false

    @Option(name: .long, help: ArgumentHelp(
        "How many worker restarts are allowed in a sliding window: N restarts in SECONDS (all workers together). "
            + "A worker that dies past it stops the VM with status 6. 0/S: a worker death stops the VM. off: no restarts, "
            + "a dead worker stays dead and the VM goes on without it. See docs/faults.md.",
        valueName: "N/SECONDS"))
    var restartBudget = "5/60"

    @Option(name: .long, help: ArgumentHelp(
        "Kill and restart a worker whose heartbeat has not moved for this many seconds (0: never).",
        valueName: "seconds"))
    var workerHangTimeout: Double = 10

    // Workers to start with the VM (MachineConfig.workers). Hidden: today they attach to guest RAM
    // and route nothing yet; the tests use it to run a worker under a real `synthvm` process.
    @Option(name: .customLong("worker"), help: .hidden)
    var workers: [String] = []

    // The VMBus worker's test-only echo device (VMBusEchoDevice, offered after the standard
    // devices): `synthvm-bench faults` runs its soak guest through `synthvm run`. Hidden: a test device.
    @Flag(name: .customLong("test-echo-device"), help: .hidden)
    var testEchoDevice = false

    func run() throws {
        var config: MachineConfig
        do {
            // Modules keep their command-line order across --initrd and --module.
            config = try MachineConfig.load(kernelPath: kernel, modulePaths: orderedModules(), commandLine: cmdline,
                                            cpus: cpus, memory: memory, serial: serial, hyperv: hyperv)
        } catch {
            fail("\(error)", status: StopReason.usageStatus)
        }
        config.handleSignals = true
        if hypervTestdev {
            guard config.runsSynICRouter else {
                fail("--hyperv-testdev needs the synic enlightenment (--hyperv \(hyperv) has none)",
                     status: StopReason.usageStatus)
            }
            config.hypervTestDevice = true
        }
        if vmbus == true, !config.runsSynICRouter {
            fail("--vmbus needs the synic enlightenment (--hyperv \(hyperv) has none)", status: StopReason.usageStatus)
        }
        config.vmbus = vmbus ?? true
        if !disk.isEmpty {
            guard config.runsVMBus else {
                fail("--disk needs VMBus (the synic enlightenment, and no --no-vmbus)", status: StopReason.usageStatus)
            }
            do {
                // Opened and locked here, before any VM process or jail; kept open for every VM life.
                config.disks = try DiskImage.openAll(try disk.map { (d) throws(MonitorError) in try DiskImage.parse(d) })
            } catch {
                fail("\(error)", status: StopReason.usageStatus)
            }
        }
        guard (0...86_400).contains(shutdownGrace) else {
            fail("--shutdown-grace \(shutdownGrace) is out of range (0...86400 seconds)", status: StopReason.usageStatus)
        }
        config.shutdownGraceSeconds = shutdownGrace
        config.workers = workers
        if testEchoDevice { config.workerArguments.append(WorkerCommandLine.testEchoDeviceArgument) }
        if restartBudget == "off" {
            config.restartBudget = nil
        } else {
            guard let budget = RestartBudget(parsing: restartBudget) else {
                fail("--restart-budget \(restartBudget): expected N/SECONDS (N 0...1000, SECONDS 1...86400) or off", status: StopReason.usageStatus)
            }
            config.restartBudget = budget
        }
        guard workerHangTimeout >= 0, workerHangTimeout <= 86400 else {
            fail("--worker-hang-timeout \(workerHangTimeout): expected 0...86400 seconds", status: StopReason.usageStatus)
        }
        config.workerHangTimeoutSeconds = workerHangTimeout
        if allowFaultInjection {
            guard apiSocket != nil else {
                fail("--allow-fault-injection needs --api-socket (faults are asked for through it)", status: StopReason.usageStatus)
            }
            config.allowFaultInjection = true
        }
        if noJail {
            config.jail = nil
            printErr("synthvm: WARNING: --no-jail: worker processes will run without their jail (debugging only)")
        }
        guard let crashAction = GuestCrashAction(rawValue: onGuestCrash) else {
            fail("--on-guest-crash \(onGuestCrash): expected stop or continue", status: StopReason.usageStatus)
        }
        config.onGuestCrash = crashAction
        guard onReset == "restart" || onReset == "exit" else {
            fail("--on-reset \(onReset): expected restart or exit", status: StopReason.usageStatus)
        }
        guard let seccompMode = SeccompMode(rawValue: seccomp) else {
            fail("--seccomp \(seccomp): expected enforce, log or errno", status: StopReason.usageStatus)
        }
        config.seccomp = seccompMode
        if let dir = policyDir { config.policyDirectory = dir }
        if let t = timeout {
            guard t > 0 else { fail("--timeout \(t) must be positive", status: StopReason.usageStatus) }
            config.timeoutSeconds = t
        }
        if let p = profile {
            guard p == "linux-pvm" else { fail("--profile \(p): expected linux-pvm", status: StopReason.usageStatus) }
            applyLinuxPVMProfile(to: &config)
        }
        if serial == "stdio" {
            // COM1 receives stdin. A terminal goes raw so every key reaches the guest (Ctrl-C
            // included); its mode comes back at exit and on any fatal signal (the C shim). In the
            // background the terminal is not ours: no input from it (reading would stop us).
            if !ConsoleTerminal.isTerminal(fd: 0) {
                config.consoleInput = 0
            } else if ConsoleTerminal.isForeground(fd: 0) {
                config.consoleInput = 0
                config.consoleEscapes = ConsoleTerminal.enterRawMode(fd: 0)
            }
        }
        // Last, so no usage error leaves a socket file behind.
        var socket: APISocket?
        if let path = apiSocket {
            switch APISocket.create(path: path) {
            case let .success(s): socket = s
            case let .failure(why):
                ConsoleTerminal.restore()
                fail(why.message, status: StopReason.usageStatus)
            }
        }
        VMProcessLauncher(restartOnReset: onReset == "restart", crashReportPath: crashReport, timeoutSeconds: timeout,
                          stats: stats, apiSocket: socket).run(config: config)
    }

    /// Derives the additions from what a probe guest sees on this host and appends those the
    /// operator did not already give.
    private func applyLinuxPVMProfile(to config: inout MachineConfig) {
        let host = PVMHost.detect()
        guard host.isPVM else {
            printErr("synthvm: --profile linux-pvm: not a PVM host (no \(PVMHost.modulePath)); nothing to add")
            return
        }
        let guest: PVMHost.GuestCPUID
        do { guest = try PVMHost.probeGuestCPUID() } catch {
            fail("--profile linux-pvm: cannot probe the guest CPUID: \(error)", status: StopReason.setupFailureStatus)
        }
        let additions = host.linuxCommandLineAdditions(guest: guest)
        config.commandLine = LinuxPVMProfile.merge(additions, into: config.commandLine)
        if let list = config.commandLine.split(separator: " ").first(where: { $0.hasPrefix("clearcpuid=") }),
           list.count - "clearcpuid=".count > LinuxPVMProfile.clearCPUIDLimit {
            printErr("synthvm: --profile linux-pvm: warning: Linux reads only \(LinuxPVMProfile.clearCPUIDLimit) characters of \(list)")
        }
        do { try config.validate() } catch { fail("--profile linux-pvm: \(error)", status: StopReason.usageStatus) }
        printErr("synthvm: --profile linux-pvm: command line is now: \(config.commandLine)")
    }

    /// --initrd and --module values in the order they were typed.
    private func orderedModules() -> [String] {
        var out: [String] = []
        var initrds = initrd[...]
        var modules = module[...]
        var args = CommandLine.arguments.dropFirst()
        while let a = args.popFirst() {
            if a == "--initrd" || a.hasPrefix("--initrd="), let v = initrds.popFirst() { out.append(v) }
            if a == "--module" || a.hasPrefix("--module="), let v = modules.popFirst() { out.append(v) }
        }
        return out + initrds + modules
    }
}

func printErr(_ s: String) {
    var line = s
    if !line.hasSuffix("\n") { line += "\n" }
    _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
}

func fail(_ message: String, status: Int32) -> Never {
    printErr("synthvm: error: \(message)")
    Glibc.exit(status)
}
