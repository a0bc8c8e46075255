import CSynthVM
import Glibc
import IPC
import Sandbox
import KVM
import Machine
import Partition
import SynICRouting

/// A VM built from a `MachineConfig`: KVM VM with in-kernel irqchip and PIT, guest RAM in a
/// memfd, one vCPU per configured CPU with our CPUID table, the kernel loaded and the boot vCPU
/// set up. `runOnCallingThread()` runs it to the end on one thread per vCPU, a few service threads
/// and the calling thread, each under its seccomp filter (MonitorFilters); `run()` does the same on
/// a thread of its own.
public final class VirtualMachine: @unchecked Sendable {
    public let config: MachineConfig
    public let system: KVMSystem
    public let vm: KVMVirtualMachine
    public let memory: GuestMemory
    public let vcpus: [KVMVCPU]
    public let console: ConsoleSink
    public let bootPlan: BootPlan
    /// The CPUID table given to each vCPU, as built (what a normal KVM shows the guest).
    public let cpuidTables: [[CPUIDEntry]]
    let control: VMControl
    public let bus: PortIOBus
    /// The HV#1 partition; nil with `--hyperv off`.
    public let partition: Partition?
    /// Watches the worker processes; nil when the VM runs without workers.
    public let supervisor: Supervisor?
    /// The workers' current links (a restart replaces one) and the restart policy.
    let restarts: WorkerRestarts
    public var workerLinks: [WorkerLink] { restarts.links }
    /// One page per worker: its heartbeat word (WorkerHeartbeat); nil without workers.
    private(set) var heartbeats: SharedRegion?
    /// The device region and doorbells the VMBus and storage workers share: kept for the VM's
    /// life, since a restarted worker gets the same fds.
    private(set) var deviceLink: DeviceLink?
    let partitionEvents: PartitionEventSink
    let syntheticTimers: HostSyntheticTimers?
    /// One eventfd per (VP, SINT) and its KVM route; nil with `--hyperv off`.
    let sintRoutes: SINTRoutes?
    /// The monitor's side of the SynIC message router; nil unless the guest has a SynIC.
    let routerLink: SynICRouterLink?
    /// The VMBus worker's restart state (`VMBusServer.Saved`, written by the worker); nil unless it runs.
    private(set) var vmbusState: WorkerStateRegion?
    /// The SynIC router's restart state (queues, held messages, routes): created here, handed
    /// to the router as region 2, and to a restarted router the same way.
    private(set) var routerState: RouterStateRegion?
    /// Its slot size: the saved state of a connection with a few dozen channels and GPADLs.
    static let vmbusStateSlotSize = 256 << 10
    /// The storage worker's restart state: the vstor state of each channel in the slot, the
    /// in-flight table (256 entries of 2368 bytes) in the extra area (docs/storage.md, "Restart
    /// state"; StorageService.stateSlotSize and stateExtraBytes()).
    private(set) var storageState: WorkerStateRegion?
    /// The storage worker's per-disk I/O counters (`StorageMetricsRegion`, region 4): created
    /// here, handed to the worker and to a restarted one, read by the control socket's `metrics`.
    private(set) var storageMetrics: StorageMetricsRegion?
    public static let storageStateSlotSize = 4096
    public static let storageStateExtraBytes = (256 * 2368 + 4095) / 4096 * 4096
    /// The monitor threads' seccomp filters, compiled before any thread of this VM starts.
    let filters: MonitorFilters
    /// COM1, kept for the console input feeder.
    let serial: SerialPort

    /// The name of the thread that runs the VM (`runOnCallingThread`), under monitor.policy.
    public static let monitorThreadName = "synthvm-monitor"

    /// Addresses KVM needs for its real-mode helpers on Intel; inside the MMIO hole.
    static let tssAddress: UInt64 = 0xFFFB_D000
    static let identityMapAddress: UInt64 = 0xFFFB_C000

    public init(config: MachineConfig, extraDevices: [(any PortIODevice, ClosedRange<UInt16>)] = [])
        throws(MonitorError) {
        self.config = config
        filters = try MonitorFilters.compile(directory: config.policyDirectory, mode: config.seccomp)
        console = try ConsoleSink(config.console)
        control = try VMControl(vcpuCount: config.cpuCount)
        do {
            system = try KVMSystem()
            guard system.checkExtension(KVMCap.irqchip) > 0 else {
                throw MonitorError.config("this KVM has no in-kernel irqchip (KVM_CAP_IRQCHIP)")
            }
            vm = try system.createVM()
            try vm.setIdentityMapAddress(Self.identityMapAddress)
            try vm.setTSSAddress(Self.tssAddress)
            try vm.createIRQChip()
            try vm.createPIT2()
            // MSRs KVM does not handle come to us (and get #GP) instead of being dropped in the kernel,
            // and the synthetic range is filtered so it always comes to us.
            guard system.checkExtension(KVMCap.x86UserSpaceMSR) > 0 else {
                throw MonitorError.config("this KVM cannot exit to user space on MSR accesses (KVM_CAP_X86_USER_SPACE_MSR)")
            }
            try vm.enableCap(UInt32(KVMCap.x86UserSpaceMSR),
                             args: [KVMCap.msrExitReasonUnknown | KVMCap.msrExitReasonInval | KVMCap.msrExitReasonFilter])
            if system.checkExtension(KVMCap.x86MSRFilter) > 0 {
                let r = HyperVPlatform.trappedMSRs
                try vm.setMSRFilter(deny: [.init(base: r.lowerBound, count: r.upperBound - r.lowerBound + 1)])
            }
        } catch let e as KVMError {
            throw .kvm(e)
        } catch let e as MonitorError {
            throw e
        } catch {
            throw .config("\(error)")
        }

        do { memory = try GuestMemory(layout: config.layout) } catch { throw .memory(error) }
        do {
            for (slot, region) in config.layout.ramRegions.enumerated() {
                try vm.setUserMemoryRegion(slot: UInt32(slot), guestPhysicalAddress: region.guestAddress,
                                           size: region.size, hostAddress: memory.hostAddress(of: region))
            }
        } catch { throw .kvm(error) }

        do {
            bootPlan = try KernelLoader.load(kernel: config.kernel, modules: config.modules,
                                             commandLine: config.commandLine, cpuCount: config.cpuCount,
                                             into: memory)
        } catch { throw .boot(error) }
        // ACPI tables in the BIOS area (reserved in the e820 map), where guests scan for the RSDP.
        do {
            try memory.write(ACPITables.build(vcpuCount: config.cpuCount,
                                              extraDevices: config.runsVMBus ? [DSDT.vmbus()] : []).blob,
                             at: ACPITables.defaultBase)
        } catch { throw .memory(error) }

        var vcpus: [KVMVCPU] = []
        var tables: [[CPUIDEntry]] = []
        let control = self.control
        let timers = config.enlightenments.isOff ? nil : try HostSyntheticTimers(vpCount: config.cpuCount)
        syntheticTimers = timers
        // The SynIC's interrupt routes, and the message router's shared state when the guest has a SynIC.
        let sintRoutes = config.enlightenments.isOff ? nil : try SINTRoutes(vm: vm, vpCount: config.cpuCount, control: control)
        self.sintRoutes = sintRoutes
        let routerLink = config.runsSynICRouter
            ? try SynICRouterLink(vpCount: config.cpuCount, vmbus: config.runsVMBus, storage: config.runsStorage) : nil
        self.routerLink = routerLink
        partitionEvents = PartitionEventSink(control: control, action: config.onGuestCrash)
        restarts = WorkerRestarts(budget: config.restartBudget, control: control)
        do {
            for i in 0..<config.cpuCount { vcpus.append(try vm.createVCPU(id: UInt32(i))) }
            if config.enlightenments.isOff {
                partition = nil
            } else {
                let clock = try GuestTSCClock(bootVCPU: vcpus[0], threadOfVP: { control.thread(vcpu: Int($0)) })
                partition = Partition(
                    configuration: PartitionConfiguration(enlightenments: config.enlightenments, vpCount: config.cpuCount),
                    memory: PartitionRAM(memory), clock: clock,
                    interrupts: MSIInterrupts(vm: vm, vpCount: config.cpuCount), events: partitionEvents,
                    synicInterrupts: sintRoutes, timers: timers, synicShared: routerLink)
            }
            let hvLeaves = (partition?.cpuidLeaves ?? []).map {
                CPUIDEntry(function: $0.function, eax: $0.eax, ebx: $0.ebx, ecx: $0.ecx, edx: $0.edx)
            }
            let supported = try system.supportedCPUID().map(CPUIDEntry.init)
            for (i, vcpu) in vcpus.enumerated() {
                let table = CPUIDTable.build(supported: supported, vcpuIndex: UInt32(i),
                                             vcpuCount: UInt32(config.cpuCount)) + hvLeaves
                try vcpu.setCPUID(table.map(\.kvmEntry))
                tables.append(table)
            }
            try BootRegisters.apply(bootPlan.cpu, to: vcpus[0])
        } catch { throw .kvm(error) }
        self.vcpus = vcpus
        cpuidTables = tables

        let workerNames = config.workerNames
        if workerNames.isEmpty {
            supervisor = nil
        } else {
            let kinds = try workerNames.map { (w) throws(MonitorError) -> (String, WorkerKind) in
                guard let kind = MachineConfig.knownWorkers[w] else {
                    throw .config("unknown worker \(w) (known: \(MachineConfig.knownWorkers.keys.sorted().joined(separator: ", ")))")
                }
                return (w, kind)
            }
            // The device region and doorbell the VMBus and storage workers share (made once).
            var deviceLink: DeviceLink?
            func storageLink() throws(MonitorError) -> DeviceLink? {
                guard config.runsStorage, let link = routerLink, let bell = link.storageDoorbell else { return nil }
                if deviceLink == nil {
                    do {
                        deviceLink = DeviceLink(rings: try DeviceRegion.create(), storageDoorbell: bell, vmbusDoorbell: try Doorbell(),
                                                maxSubChannels: config.storageSubChannels)
                    }
                    catch { throw .config("storage device region: \(error)") }
                }
                return deviceLink
            }
            // A worker that dies is reported by the supervisor and restarted (WorkerRestarts).
            let restarts = self.restarts
            let sup = try Supervisor(onExit: { restarts.processEnded($0) }, threadFilter: filters.vmm,
                                     hangTimeoutSeconds: config.workerHangTimeoutSeconds)
            supervisor = sup
            restarts.attach(supervisor: sup)
            let beats: SharedRegion
            do { beats = try SharedRegion(name: "synthvm-heartbeats", size: WorkerHeartbeat.slotSize * kinds.count) } catch {
                throw .config("heartbeat region: \(error)")
            }
            heartbeats = beats
            var specs: [(name: String, kind: WorkerKind, regions: [WorkerLink.Region], setup: [WorkerLink.SetupMessage],
                         filter: SeccompProgram, jail: JailConfig?, slot: Int)] = []
            for (slot, (name, kind)) in kinds.enumerated() {
                // Every worker runs under its policy from the handshake on; no policy, no worker.
                let filter = try Self.compileWorkerPolicy(name: name, directory: config.policyDirectory,
                                                          mode: config.seccomp)
                var regions: [WorkerLink.Region] = [
                    .init(id: WorkerLink.guestRAMRegion, fd: memory.fd, size: memory.size),
                    // Its own page of the heartbeat region only.
                    .init(id: WorkerHeartbeat.regionID, fd: beats.fd.rawValue, size: UInt64(WorkerHeartbeat.slotSize),
                          offset: UInt64(slot * WorkerHeartbeat.slotSize)),
                ]
                var setup: [WorkerLink.SetupMessage] = []
                var jail = config.jail
                if kind == .synicRouter, let link = routerLink, let routes = sintRoutes {
                    // It holds one eventfd per (VP, SINT) besides its few others.
                    if var j = jail {
                        j.openFiles = max(j.openFiles, UInt64(64 + 16 * config.cpuCount))
                        jail = j
                    }
                    regions.append(.init(id: WorkerLink.synicRegion, fd: link.region.region.fd.rawValue,
                                         size: UInt64(link.region.region.size)))
                    let state: RouterStateRegion
                    do { state = try RouterStateRegion.create(vpCount: config.cpuCount) } catch {
                        throw .config("router state region: \(error)")
                    }
                    routerState = state
                    regions.append(.init(id: WorkerLink.workerStateRegion, fd: state.region.fd.rawValue,
                                         size: UInt64(state.region.size)))
                    setup = Self.routerSetup(config: config, link: link, routes: routes)
                }
                if kind == .vmbus, let link = routerLink, let routes = sintRoutes, let partition,
                   let clock = partition.clock as? GuestTSCClock {
                    let state: WorkerStateRegion
                    do {
                        state = try WorkerStateRegion.create(name: "synthvm-vmbus-state", kind: WorkerKind.vmbus.rawValue,
                                                             slotSize: Self.vmbusStateSlotSize)
                    } catch { throw .config("VMBus state region: \(error)") }
                    vmbusState = state
                    regions.append(.init(id: WorkerLink.workerStateRegion, fd: state.region.fd.rawValue,
                                         size: UInt64(state.region.size)))
                    regions.append(.init(id: WorkerLink.synicRegion, fd: link.region.region.fd.rawValue,
                                         size: UInt64(link.region.region.size)))
                    setup = Self.vmbusSetup(config: config, link: link, routes: routes,
                                            reference: partition.referenceClock, clock: clock)
                    if let storage = try storageLink() {
                        regions.append(storage.region)
                        setup.append(storage.vmbusSetup)
                    }
                }
                if kind == .storage, let link = routerLink, let routes = sintRoutes, let storage = try storageLink() {
                    if var j = jail {
                        j.openFiles = max(j.openFiles, UInt64(64 + config.cpuCount + config.disks.count))
                        // Writes stay inside each image: RLIMIT_FSIZE is the largest one (0 elsewhere).
                        j.fileSize = config.disks.map(\.sizeBytes).max() ?? 0
                        jail = j
                    }
                    let state: WorkerStateRegion
                    do {
                        state = try WorkerStateRegion.create(name: "synthvm-storage-state", kind: WorkerKind.storage.rawValue,
                                                             slotSize: Self.storageStateSlotSize,
                                                             extraBytes: Self.storageStateExtraBytes)
                    } catch { throw .config("storage state region: \(error)") }
                    storageState = state
                    regions.append(.init(id: WorkerLink.workerStateRegion, fd: state.region.fd.rawValue,
                                         size: UInt64(state.region.size)))
                    regions.append(.init(id: WorkerLink.synicRegion, fd: link.region.region.fd.rawValue,
                                         size: UInt64(link.region.region.size)))
                    regions.append(storage.region)
                    let metrics: StorageMetricsRegion
                    do { metrics = try StorageMetricsRegion.create(disks: config.disks.count) } catch {
                        throw .config("storage metrics region: \(error)")
                    }
                    storageMetrics = metrics
                    regions.append(.init(id: StorageMetricsRegion.regionID, fd: metrics.region.fd.rawValue,
                                         size: UInt64(metrics.region.size)))
                    setup = Self.storageSetup(config: config, link: link, routes: routes, device: storage)
                }
                specs.append((name, kind, regions, setup, filter, jail, slot))
            }
            // The spawner first, while this process can still clone and exec: what restarts the
            // workers later (docs/faults.md). Started before them, so none can die before it exists.
            if let budget = config.restartBudget, budget.restarts > 0 {
                let spawnerFilter = try Self.compileWorkerPolicy(name: "spawner", directory: config.policyDirectory,
                                                                 mode: config.seccomp)
                let spawnKinds = specs.map { spec in
                    let plan = WorkerLink.plan(regions: spec.regions, jail: spec.jail, arguments: config.workerArguments)
                    return SpawnerLink.Kind(name: spec.name, executable: WorkerProcess.executablePath(for: spec.name),
                                            arguments: plan.arguments, jail: plan.ids)
                }
                restarts.setSpawner(try SpawnerLink(supervisor: sup, kinds: spawnKinds, filter: spawnerFilter,
                                                    standardError: config.workerStandardError))
            }
            for spec in specs {
                let word = beats.pointer(at: spec.slot * WorkerHeartbeat.slotSize, count: 8)?.assumingMemoryBound(to: UInt64.self)
                restarts.append(try WorkerLink(
                    supervisor: sup, name: spec.name, kind: spec.kind, regions: spec.regions, setup: spec.setup,
                    filter: spec.filter, jail: spec.jail, arguments: config.workerArguments,
                    standardError: config.workerStandardError, heartbeat: word))
            }
            self.deviceLink = deviceLink
        }

        var builder = PortIOBus.Builder()
        serial = try SerialPort(sink: console, irq: ISAInterruptLine(vm: vm, irq: SerialPort.com1IRQ, control: control))
        builder.attach(serial, ports: SerialPort.com1)
        builder.attach(RTCDevice(), ports: RTCDevice.ports)
        let keyboard = KeyboardController(control: control)
        builder.attach(keyboard, ports: I8042.dataPort...I8042.dataPort)
        builder.attach(keyboard, ports: I8042.commandPort...I8042.commandPort)
        builder.attach(ExitDevice(control: control), ports: ExitDevice.port...ExitDevice.port)
        builder.attach(POSTPort(), ports: POSTPort.port...POSTPort.port)
        builder.attach(ACPIPowerManagement(control: control), ports: ACPIPowerManagement.ports)
        builder.attach(ResetControl(control: control), ports: ResetControl.port...ResetControl.port)
        if config.hypervTestDevice, let link = routerLink {
            let port = TestDeviceCommand.port
            builder.attach(TestDevicePort(link: link), ports: port...(port + 3))
        }
        for (device, ports) in extraDevices { builder.attach(device, ports: ports) }
        bus = builder.build()
    }

    /// Asks the VM to stop (from any thread).
    public func requestStop(_ reason: StopReason) { control.requestStop(reason) }

    /// Whether this KVM fills kvm_run with registers at each exit (KVM_CAP_SYNC_REGS).
    var syncRegs: Bool {
        let want = KVMCap.syncX86Regs | KVMCap.syncX86Sregs
        return UInt64(system.checkExtension(KVMCap.syncRegs)) & want == want
    }

    /// Runs the VM until it stops on a new thread, `synthvm-monitor`, which does what
    /// `runOnCallingThread()` does and ends with the VM; returns why, with per-vCPU counters. For
    /// callers whose own thread must stay unfiltered (a test runner, the benchmarks, the CPUID
    /// probe); `synthvm run` runs each VM in a process of its own with `runOnCallingThread()`.
    public func run() -> RunOutcome {
        let result = OutcomeBox()
        let thread: HostThread
        do {
            thread = try HostThread.spawn { [self] in result.outcome = runOnCallingThread() }
        } catch {
            return RunOutcome(reason: .hostFailure(error.description), counters: [], crashReport: nil)
        }
        thread.join()
        return result.outcome ?? RunOutcome(reason: .hostFailure("the monitor thread ended without an outcome"),
                                            counters: [], crashReport: nil)
    }

    /// Runs the VM until it stops, on the calling thread; returns why, with per-vCPU counters.
    ///
    /// The calling thread becomes the VM's monitor thread, and is filtered for the rest of its
    /// life: it starts every other thread of the VM (each filtering itself before its body runs;
    /// the vCPU threads then wait), installs Policies/monitor.policy on itself, and only then lets
    /// the vCPUs make their first KVM_RUN. It runs the supervising loop, then stops everything.
    /// After this returns the thread can still allocate, write, close and exit, but not open,
    /// clone, exec, create sockets or make any KVM call. If the filter cannot be installed, no
    /// vCPU runs and the outcome is a host failure. The thread is named `synthvm-monitor` once its
    /// filter is in (like every `synthvm-*` thread).
    public func runOnCallingThread() -> RunOutcome {
        do { try VCPUKick.install() } catch {
            return RunOutcome(reason: .hostFailure(error.description), counters: [], crashReport: nil)
        }
        var signalFD: Int32 = -1
        if config.handleSignals {
            // Blocked here, so vCPU threads (spawned below) inherit the mask and only the
            // signalfd sees SIGINT/SIGTERM.
            _ = svm_block_signals_for_wait()
            signalFD = svm_stop_signalfd()
        }
        defer { if signalFD >= 0 { close(signalFD) } }

        if let timers = syntheticTimers, let p = partition {
            do { try timers.start(partition: p, filter: filters.vmm) } catch {
                return RunOutcome(reason: .hostFailure(error.description), counters: [], crashReport: nil)
            }
        }
        defer { syntheticTimers?.stop() }
        if let relay = sintRoutes?.autoEOI {
            do { try relay.start(filter: filters.vmm) } catch {
                return RunOutcome(reason: .hostFailure(error.description), counters: [], crashReport: nil)
            }
        }
        defer { sintRoutes?.autoEOI.stop() }
        let consoleInput: ConsoleInput?
        do { consoleInput = try ConsoleInput.start(config: config, serial: serial, control: control, filter: filters.vmm) } catch {
            return RunOutcome(reason: .hostFailure(error.description), counters: [], crashReport: nil)
        }
        defer { consoleInput?.stop() }
        let runners = vcpus.enumerated().map {
            VCPURunner(index: $0.offset, vcpu: $0.element, bus: bus, control: control, memory: memory,
                       partition: partition, syncRegs: syncRegs,
                       connections: routerLink ?? NoHypercallConnections.shared, autoEOI: sintRoutes?.autoEOI)
        }
        // Every vCPU thread filters itself, then waits here until this thread is filtered too.
        let go = Latch()
        var threads: [HostThread] = []
        for r in runners {
            do {
                threads.append(try HostThread.spawn(name: "synthvm-vcpu\(r.index)", filter: filters.vcpu) { [control] in
                    go.wait()
                    if !control.isStopping { r.run() }
                })
            } catch {
                control.requestStop(.hostFailure(error.description))
                break
            }
        }
        // The joiner waits for the vCPU threads from the start (this thread cannot start one
        // once it is filtered) and says when they are all gone.
        let done = Latch()
        let started = threads
        let joiner: HostThread?
        do {
            joiner = try HostThread.spawn(name: "synthvm-joiner", filter: filters.vmm) {
                for t in started { t.join() }
                done.open()
            }
        } catch {
            joiner = nil
            control.requestStop(.hostFailure(error.description))
        }
        // The control socket's thread (synthvm-api, under monitor.policy), started while this
        // thread can still clone; it serves until the VM has stopped.
        var api: ControlSocketServer?
        if let fd = config.apiSocket, !control.isStopping {
            do {
                let backend = VMAPIBackend(control: control, supervisor: supervisor, restarts: restarts, counters: runners.map(\.published),
                                           config: config, askGuestToShutDown: { [unowned self] in requestGracefulShutdown() },
                                           vmbusStatus: { [routerLink, config] in config.runsVMBus ? routerLink?.region.vmbusStatus : nil },
                                           routerState: routerState, storageMetrics: storageMetrics)
                let server = try ControlSocketServer(listenFD: fd, backend: backend)
                try server.start(filter: filters.monitor)
                api = server
            } catch {
                control.requestStop(.hostFailure("control socket: \(error)"))
            }
        }
        defer { api?.stop() }
        // Opened before the filter, which refuses open; written after it, so the name says filtered.
        let nameFile = HostThread.NameFile(tid: svm_gettid())
        let r = filters.monitor.installOnCurrentThread()
        if r != 0 {
            control.requestStop(.hostFailure("cannot install the seccomp filter monitor on the monitor thread: "
                + String(cString: strerror(-r))))
            nameFile?.discard()
        } else {
            nameFile?.write(Self.monitorThreadName)
        }
        go.open()
        if !control.isStopping { supervise(signalFD: signalFD) }
        // Stopping: keep kicking until every vCPU thread has left KVM_RUN and returned.
        if let joiner {
            while !done.isOpen {
                control.kickAll()
                var ts = timespec(tv_sec: 0, tv_nsec: 2_000_000)
                nanosleep(&ts, nil)
            }
            joiner.join()
        } else {
            // The joiner could not start: the stop was requested before the latch opened, so
            // the vCPU threads return without a single KVM_RUN.
            for t in threads { t.join() }
        }
        console.flush()
        stopWorkers()
        let reason = control.stopReason ?? .hostFailure("stopped without a reason")
        let notifications = partitionEvents.all
        return RunOutcome(reason: reason, counters: runners.map(\.counters),
                          crashReport: runners.compactMap(\.crashReport).first,
                          guestCrashNotifications: notifications,
                          guestCrashReportJSON: notifications.last.map(GuestCrashLog.json),
                          // The spawner is the VM's helper, not a worker.
                          workers: supervisor?.status.filter { $0.name != SpawnerLink.executableName } ?? [])
    }

    /// The router's setup messages: the partition's shape with its doorbells, then every SINT
    /// eventfd in batches (index vp * 16 + sint).
    static func routerSetup(config: MachineConfig, link: SynICRouterLink, routes: SINTRoutes) -> [WorkerLink.SetupMessage] {
        var flags: SynICRouterSetup.Flags = []
        if config.hypervTestDevice { flags.insert(.testDevice) }
        if config.enlightenments.has(.synicPolling) { flags.insert(.sintPolling) }
        let ranges = config.layout.ramRegions.map {
            SynICRouterSetup.MemoryRange(base: $0.guestAddress, size: $0.size, offset: $0.backingOffset)
        }
        let record = SynICRouterSetup(vpCount: UInt32(config.cpuCount), flags: flags,
                                      ringRecordSize: UInt32(SynICRouterLink.ringLayout.recordSize),
                                      ringCapacity: UInt32(SynICRouterLink.ringLayout.capacity), memory: ranges)
        var messages = [WorkerLink.SetupMessage(bytes: record.encoded(), fds: [link.routerDoorbell.fd.rawValue,
                                                                           link.replyDoorbell.fd.rawValue])]
        messages += sintBatches(routes.eventFDs)
        if let connections = vmbusConnections(config: config, link: link) { messages.append(connections) }
        return messages
    }

    /// The VMBus worker's setup messages: the partition's shape and clock with its doorbell and
    /// the router's, then each VP's SINT2 eventfd in batches (index = VP).
    static func vmbusSetup(config: MachineConfig, link: SynICRouterLink, routes: SINTRoutes, reference: ReferenceClock,
                           clock: GuestTSCClock) -> [WorkerLink.SetupMessage] {
        let ranges = config.layout.ramRegions.map {
            SynICRouterSetup.MemoryRange(base: $0.guestAddress, size: $0.size, offset: $0.backingOffset)
        }
        let record = VMBusWorkerSetup(
            vpCount: UInt32(config.cpuCount), flags: config.enlightenments.has(.synicPolling) ? .sintPolling : [],
            ringRecordSize: UInt32(SynICRouterLink.ringLayout.recordSize),
            ringCapacity: UInt32(SynICRouterLink.ringLayout.capacity), tscFrequencyHz: reference.tscFrequencyHz,
            tscAtReferenceZero: reference.tscAtCreation, guestTSCOffset: clock.offset, memory: ranges)
        var messages = [WorkerLink.SetupMessage(bytes: record.encoded(), fds: [link.vmbusDoorbell?.fd.rawValue ?? -1,
                                                                           link.routerDoorbell.fd.rawValue])]
        messages += sintBatches((0..<config.cpuCount).map { routes.eventFDs[$0 * 16 + MachineConfig.vmbusSINT] })
        return messages
    }

    /// `fds` in `SINTEventFDs` batches (one message carries at most 253 fds): index `first + i`
    /// is `fds[first + i]` (vp * 16 + sint for the router, the VP for SINT2-only workers).
    static func sintBatches(_ fds: [Int32]) -> [WorkerLink.SetupMessage] {
        var messages: [WorkerLink.SetupMessage] = []
        var first = 0
        while first < fds.count {
            let n = min(Int(SINTEventFDs.maxPerMessage), fds.count - first)
            messages.append(.init(bytes: SINTEventFDs(first: UInt32(first), count: UInt32(n)).encoded(),
                                  fds: Array(fds[first..<(first + n)])))
            first += n
        }
        return messages
    }

    /// The device region shared by the VMBus and storage workers, with their doorbells.
    struct DeviceLink {
        let rings: SharedRegion
        let storageDoorbell: Doorbell
        /// The VMBus worker's device doorbell: the storage worker rings it after pushing an answer.
        let vmbusDoorbell: Doorbell
        /// The controller's sub-channel limit (`MachineConfig.storageSubChannels`).
        var maxSubChannels = 0

        var region: WorkerLink.Region {
            .init(id: DeviceRegion.regionID, fd: rings.fd.rawValue, size: UInt64(rings.size))
        }

        var vmbusSetup: WorkerLink.SetupMessage {
            let layout = DeviceRegion.layout
            return .init(bytes: VMBusRemoteDeviceSetup(owner: .storage, regionID: DeviceRegion.regionID,
                                                       ringRecordSize: UInt32(layout.recordSize),
                                                       ringCapacity: UInt32(layout.capacity),
                                                       maxSubChannels: UInt32(maxSubChannels)).encoded(),
                         fds: [storageDoorbell.fd.rawValue, vmbusDoorbell.fd.rawValue])
        }
    }

    /// The storage worker's setup messages: the partition's shape, the disks (their fds
    /// attached after the two doorbells), then each VP's SINT2 eventfd in batches (index = VP).
    static func storageSetup(config: MachineConfig, link: SynICRouterLink, routes: SINTRoutes,
                             device: DeviceLink) -> [WorkerLink.SetupMessage] {
        let ranges = config.layout.ramRegions.map {
            SynICRouterSetup.MemoryRange(base: $0.guestAddress, size: $0.size, offset: $0.backingOffset)
        }
        let record = StorageWorkerSetup(
            vpCount: UInt32(config.cpuCount), sintPolling: config.enlightenments.has(.synicPolling),
            synicRing: (UInt32(SynICRouterLink.ringLayout.recordSize), UInt32(SynICRouterLink.ringLayout.capacity)),
            deviceRing: (UInt32(DeviceRegion.layout.recordSize), UInt32(DeviceRegion.layout.capacity)),
            memory: ranges, disks: config.disks.map(\.setupDisk),
            highestProtocolVersion: DiskImage.controllerProtocolVersion(config.disks),
            maxSubChannels: UInt32(config.storageSubChannels))
        var messages = [WorkerLink.SetupMessage(bytes: record.encoded(),
                                                fds: [device.storageDoorbell.fd.rawValue, device.vmbusDoorbell.fd.rawValue]
                                                    + config.disks.map(\.fd))]
        messages += sintBatches((0..<config.cpuCount).map { routes.eventFDs[$0 * 16 + MachineConfig.vmbusSINT] })
        return messages
    }

    /// The connections the router publishes for the VMBus worker: message connections 1 and 4,
    /// and one event connection per channel it offers (relid | 2 << 12, `VMBusRelID.connectionID`);
    /// the SCSI controller's (relid 4, or 5 after the test-only echo device) and those of its
    /// possible sub-channels (the relids after it, `MachineConfig.storageSubChannelRelIDs`: all
    /// published before the guest runs, docs/vmbus.md "Sub-channels") are owned by the storage
    /// worker when it runs.
    static func vmbusConnections(config: MachineConfig, link: SynICRouterLink) -> WorkerLink.SetupMessage? {
        guard let bell = link.vmbusDoorbell else { return nil }
        let owner = UInt32(WorkerKind.vmbus.rawValue)
        var entries = MachineConfig.vmbusMessageConnections.map {
            RouterConnections.Entry(connectionID: $0, kind: .message, owner: owner, buffers: MachineConfig.vmbusMessageBuffers)
        }
        for relID in config.vmbusRelIDs {
            let storage = relID == config.storageRelID || config.storageSubChannelRelIDs.contains(relID)
            let relOwner = storage ? UInt32(WorkerKind.storage.rawValue) : owner
            entries.append(.init(connectionID: relID | UInt32(MachineConfig.vmbusSINT) << 12, kind: .event, owner: relOwner, buffers: 0))
        }
        return .init(bytes: RouterConnections(entries: entries).encoded(), fds: [bell.fd.rawValue])
    }

    /// Parses `<directory>/<name>.policy` and compiles it into the program the worker installs.
    static func compileWorkerPolicy(name: String, directory: String, mode: SeccompMode) throws(MonitorError) -> SeccompProgram {
        // No runtime values: the worker does not exist yet, so `$SELF_PID` in its policy is a
        // file:line error (docs/policy-format.md, "Runtime values").
        let filter = try MonitorFilters.compile(policy: name, directory: directory, mode: mode, environment: .none,
                                                for: "worker \(name)")
        return SeccompProgram(instructions: filter.instructions)
    }

    /// Closes the workers' control sockets (they exit on end-of-file), gives them a moment, then
    /// lets the supervisor kill and reap whatever is left.
    private func stopWorkers() {
        guard let sup = supervisor else { return }
        // No restart starts after this; a restart in progress is waited for.
        sup.expectExits()
        let links = restarts.close()
        links.forEach { $0.close() }
        for _ in 0..<100 where sup.status.contains(where: { $0.exit == nil }) {
            var ts = timespec(tv_sec: 0, tv_nsec: 5_000_000)
            nanosleep(&ts, nil)
        }
        sup.stop()
    }

    /// Asks the guest to shut down through the shutdown integration service: true when the
    /// request went to the VMBus worker, which sends it because the guest has negotiated that
    /// channel; false (stop hard instead) when there is no VMBus, no shutdown channel, or a grace
    /// of 0. From the monitor thread or the control socket's thread.
    public func requestGracefulShutdown() -> Bool {
        guard config.shutdownGraceSeconds > 0, let link = routerLink,
              link.region.vmbusStatus.flags & SynICRegion.VMBusStatus.shutdownNegotiated != 0,
              let vmbus = workerLinks.first(where: { $0.kind == .vmbus }) else { return false }
        return vmbus.send(GuestShutdownRequest().encoded())
    }

    static func say(_ line: String) {
        let text = line + "\n"
        _ = text.withCString { Glibc.write(2, $0, strlen($0)) }
    }

    private func supervise(signalFD: Int32) {
        var fds = [pollfd(fd: control.wakeFD, events: Int16(POLLIN), revents: 0)]
        if signalFD >= 0 { fds.append(pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0)) }
        let deadline = config.timeoutSeconds.map { monotonicSeconds() + Double($0) }
        var shutdownDeadline: Double?
        while !control.isStopping {
            if let d = deadline, monotonicSeconds() >= d {
                control.requestStop(.timedOut(seconds: config.timeoutSeconds ?? 0))
                break
            }
            _ = poll(&fds, nfds_t(fds.count), config.haltPollMilliseconds)
            if signalFD >= 0, fds[1].revents != 0 {
                let sig = svm_read_signalfd(signalFD)
                // The first SIGTERM asks the guest to shut down when it can be asked; SIGINT,
                // a second SIGTERM, or a guest with no shutdown channel stop at once.
                if sig == SIGTERM, shutdownDeadline == nil, !control.hasAskedGuestToShutDown, requestGracefulShutdown() {
                    control.markGuestAskedToShutDown()
                    shutdownDeadline = monotonicSeconds() + Double(config.shutdownGraceSeconds)
                    Self.say("synthvm: SIGTERM: asked the guest to shut down (shutdown IC); stopping it in "
                             + "\(config.shutdownGraceSeconds) s if it has not (SIGINT or another SIGTERM: now)")
                } else if sig > 0 {
                    control.requestStop(.signal(Int32(sig)))
                }
            }
            // The control socket's `shutdown` asked the guest (on its own thread): the same grace.
            if control.takeShutdownAskedByAPI(), shutdownDeadline == nil {
                shutdownDeadline = monotonicSeconds() + Double(config.shutdownGraceSeconds)
                Self.say("synthvm: shutdown (control socket): asked the guest to shut down (shutdown IC); stopping it in "
                         + "\(config.shutdownGraceSeconds) s if it has not")
            }
            if let d = shutdownDeadline {
                let refused = (routerLink?.region.vmbusStatus.flags ?? 0) & SynICRegion.VMBusStatus.shutdownRefused != 0
                if refused || monotonicSeconds() >= d {
                    control.requestStop(.shutdownFailed(seconds: config.shutdownGraceSeconds, refused: refused))
                }
            }
            if control.isStopping { break }
            if control.everyoneParked() {
                control.requestStop(.halted)
                break
            }
            control.beginRound()
        }
    }
}

/// CLOCK_MONOTONIC in seconds (timeouts, the CLI's restart budget).
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// The outcome handed from the monitor thread `run()` starts to `run()`'s caller (written before
/// the thread ends, read after it was joined).
final class OutcomeBox: @unchecked Sendable {
    var outcome: RunOutcome?
}

extension CPUIDEntry {
    init(_ e: kvm_cpuid_entry2) {
        self.init(function: e.function, index: e.index, flags: e.flags,
                  eax: e.eax, ebx: e.ebx, ecx: e.ecx, edx: e.edx)
    }

    var kvmEntry: kvm_cpuid_entry2 {
        var e = kvm_cpuid_entry2()
        e.function = function
        e.index = index
        e.flags = flags
        e.eax = eax
        e.ebx = ebx
        e.ecx = ecx
        e.edx = edx
        return e
    }
}
