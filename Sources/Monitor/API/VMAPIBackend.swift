import CSynthVM
import ControlAPI
import Glibc
import HyperV
import IPC
import Sandbox
import SynICRouting

/// The control socket's view of one VM (`APIBackend`): what `status` and `metrics` report and
/// what `fault`, `shutdown` and `stop` do. Called on the `synthvm-api` thread only; everything it
/// reads is shared with atomics or locks the VM already has (VMControl, the supervisor's status,
/// the vCPUs' `PublishedCounters`), and nothing it does blocks.
final class VMAPIBackend: APIBackend, @unchecked Sendable {
    let control: VMControl
    let supervisor: Supervisor?
    /// The workers' current links (fault records go over their control sockets).
    let restarts: WorkerRestarts?
    let counters: [PublishedCounters]
    let vcpuCount: Int
    let faultInjectionAllowed: Bool
    /// CLOCK_MONOTONIC when the VM started running.
    let started: Double
    let workerKinds: [String: String]
    /// `VirtualMachine.requestGracefulShutdown`: sends the guest the shutdown IC's request when
    /// it has negotiated that channel; false when it cannot be asked.
    let askGuestToShutDown: @Sendable () -> Bool

    /// What the VMBus worker publishes (the heartbeat IC's answers); nil without VMBus.
    let vmbusStatus: @Sendable () -> SynICRegion.VMBusStatus?
    /// The router's restart state (its message counters and queues); nil without a router.
    let routerState: RouterStateRegion?
    /// The storage worker's per-disk I/O counters; nil without disks.
    let storageMetrics: StorageMetricsRegion?
    /// Each disk's image path (the `path` label), LUN order.
    let diskPaths: [String]

    init(control: VMControl, supervisor: Supervisor?, restarts: WorkerRestarts? = nil, counters: [PublishedCounters], config: MachineConfig,
         askGuestToShutDown: @escaping @Sendable () -> Bool = { false },
         vmbusStatus: @escaping @Sendable () -> SynICRegion.VMBusStatus? = { nil },
         routerState: RouterStateRegion? = nil, storageMetrics: StorageMetricsRegion? = nil) {
        self.askGuestToShutDown = askGuestToShutDown
        self.routerState = routerState
        self.storageMetrics = storageMetrics
        diskPaths = config.disks.map(\.path)
        self.vmbusStatus = vmbusStatus
        self.control = control
        self.supervisor = supervisor
        self.restarts = restarts
        self.counters = counters
        vcpuCount = config.cpuCount
        faultInjectionAllowed = config.allowFaultInjection
        started = monotonicSeconds()
        var kinds: [String: String] = [:]
        for name in config.workerNames {
            switch MachineConfig.knownWorkers[name] {
            case .synicRouter?: kinds[name] = "synic-router"
            case .vmbus?: kinds[name] = "vmbus"
            case .storage?: kinds[name] = "storage"
            default: kinds[name] = name
            }
        }
        workerKinds = kinds
    }

    /// One entry per worker name: its newest process (restart will add processes to the list).
    private func workers() -> [APIWorkerStatus] {
        // The spawner is the VM's helper, not a worker.
        let all = (supervisor?.status ?? []).filter { $0.name != SpawnerLink.executableName }
        var names: [String] = []
        for s in all where !names.contains(s.name) { names.append(s.name) }
        return names.map { name in
            let processes = all.filter { $0.name == name }
            let newest = processes[processes.count - 1]
            let lastExit = processes.last { $0.exit != nil }?.exit
            return APIWorkerStatus(name: name, kind: workerKinds[name] ?? name, pid: newest.pid, running: newest.exit == nil,
                                   restarts: processes.count - 1, lastExit: lastExit.map { "\($0)" },
                                   heartbeatAgeMs: newest.exit == nil ? supervisor?.heartbeatAgeMs(worker: name) : nil)
        }
    }

    func status() -> APIStatus {
        APIStatus(state: control.isStopping ? "stopping" : "running", uptimeSeconds: monotonicSeconds() - started,
                  vcpus: vcpuCount, pid: getpid(), faultInjection: faultInjectionAllowed, workers: workers(),
                  guestHeartbeat: guestHeartbeat())
    }

    /// The heartbeat IC's view of the guest: answers so far, the last sequence number, how long
    /// ago (null before the first answer); nil (JSON null) without VMBus.
    func guestHeartbeat() -> JSONValue? {
        guard let s = vmbusStatus() else { return nil }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let now = UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
        let age: JSONValue = s.heartbeats == 0 || s.heartbeatMonotonicNs > now
            ? .null : .int(Int64((now - s.heartbeatMonotonicNs) / 1_000_000))
        return .object([("answered", .int(Int64(clamping: s.heartbeats))),
                        ("sequence", .int(Int64(clamping: s.heartbeatSequence))), ("age_ms", age),
                        ("shutdown_negotiated", .bool(s.flags & SynICRegion.VMBusStatus.shutdownNegotiated != 0))])
    }

    func metricsText() -> String {
        var p = PrometheusText()
        p.family("synthvm_uptime_seconds", type: "gauge", help: "Seconds since this VM process started running the VM.",
                 [.init(value: ((monotonicSeconds() - started) * 1000).rounded() / 1000)])
        let perVCPU = counters.map { $0.exitCounters() }
        // Exits by reason; the rest of ExitCounters as events.
        let reasons = ["pio": "io", "mmio": "mmio", "msr": "msr"]
        var exitSamples: [PrometheusText.Sample] = []
        var totalSamples: [PrometheusText.Sample] = []
        var eventSamples: [PrometheusText.Sample] = []
        for (vcpu, values) in perVCPU.enumerated() {
            for (name, v) in values {
                if name == "exits" {
                    totalSamples.append(.init(labels: [("vcpu", String(vcpu))], value: Double(v)))
                } else if let r = reasons[name] {
                    exitSamples.append(.init(labels: [("vcpu", String(vcpu)), ("reason", r)], value: Double(v)))
                } else {
                    eventSamples.append(.init(labels: [("vcpu", String(vcpu)), ("event", name)], value: Double(v)))
                }
            }
        }
        p.family("synthvm_vcpu_exits_total", type: "counter",
                 help: "KVM exits to user space handled by each vCPU thread, all reasons.", totalSamples)
        p.family("synthvm_vcpu_exits_by_reason_total", type: "counter",
                 help: "KVM exits by exit reason (io: port I/O including hypercalls, mmio, msr).", exitSamples)
        p.family("synthvm_vcpu_events_total", type: "counter",
                 help: "What the vCPU threads did besides (ExitCounters: kicks, unknown ports/MMIO/MSRs, synthetic MSRs, hypercalls, AutoEOI injections, emulation fix-ups).",
                 eventSamples)
        var hypercalls: [Int: Int] = [:]
        for c in counters { for (slot, v) in c.hypercallCounts() { hypercalls[slot, default: 0] += v } }
        p.family("synthvm_hypercalls_total", type: "counter",
                 help: "Hypercalls by call code, summed over the vCPUs (code \"other\": 0x100 and above).",
                 hypercalls.keys.sorted().map { slot in
                     let hex = String(slot, radix: 16)
                     let code = slot < 256 ? "0x" + String(repeating: "0", count: 4 - hex.count) + hex : "other"
                     let name = slot < 256 ? HvCallCode(rawValue: UInt16(slot)).name ?? "unknown" : "other"
                     return .init(labels: [("code", code), ("name", name)], value: Double(hypercalls[slot] ?? 0))
                 })
        let ws = workers()
        p.family("synthvm_worker_up", type: "gauge", help: "1 while the worker's process runs.",
                 ws.map { .init(labels: [("worker", $0.name), ("kind", $0.kind)], value: $0.running ? 1 : 0) })
        p.family("synthvm_worker_restarts_total", type: "counter", help: "Restarts of each worker by the supervisor.",
                 ws.map { .init(labels: [("worker", $0.name), ("kind", $0.kind)], value: Double($0.restarts)) })
        if let routerState { Self.synicMetrics(routerState.metrics(), into: &p) }
        if let storageMetrics { Self.diskMetrics(storageMetrics, paths: diskPaths, into: &p) }
        return p.text
    }

    /// The SynIC router's counters (docs/api.md, "metrics"): already clamped by `metrics()`.
    static func synicMetrics(_ m: RouterStateRegion.Metrics, into p: inout PrometheusText) {
        p.family("synthvm_synic_messages_posted_total", type: "counter",
                 help: "SynIC messages the router took: source guest, HvPostMessage calls (queued for a SIMP slot or held for the VMBus worker); source host, messages from the VMBus worker for the guest.",
                 [.init(labels: [("source", "guest")], value: Double(m.guestPosted)),
                  .init(labels: [("source", "host")], value: Double(m.hostPosted))])
        p.family("synthvm_synic_messages_delivered_total", type: "counter",
                 help: "SynIC messages the router wrote into the guest's SIMP slots (timer messages, written by the monitor, not included).",
                 [.init(value: Double(m.delivered))])
        p.family("synthvm_synic_messages_queued", type: "gauge",
                 help: "SynIC messages waiting: queue simp, in the router's per-(VP, SINT) queues for their SIMP slot; queue vmbus, guest messages held for the VMBus worker.",
                 [.init(labels: [("queue", "simp")], value: Double(m.queued)),
                  .init(labels: [("queue", "vmbus")], value: Double(m.held))])
    }

    /// The storage worker's per-disk counters (docs/api.md, "metrics"), sanitized by `snapshot`.
    static func diskMetrics(_ region: StorageMetricsRegion, paths: [String], into p: inout PrometheusText) {
        let disks = (0..<region.diskCount).compactMap { d in region.snapshot(disk: d).map { (d, $0) } }
        func labels(_ d: Int) -> [(String, String)] { [("disk", String(d)), ("path", d < paths.count ? paths[d] : "")] }
        p.family("synthvm_disk_requests_total", type: "counter",
                 help: "SCSI requests each disk completed, by operation (read, write incl. WRITE SAME, flush, unmap, other: every other SRB).",
                 disks.flatMap { d, s in
                     StorageMetricsRegion.Op.allCases.map { op in
                         .init(labels: labels(d) + [("op", op.label)], value: Double(s.requests[op.rawValue]))
                     }
                 })
        p.family("synthvm_disk_bytes_total", type: "counter", help: "Bytes each disk's reads and writes moved.",
                 disks.flatMap { d, s in
                     [.init(labels: labels(d) + [("direction", "read")], value: Double(s.bytesRead)),
                      .init(labels: labels(d) + [("direction", "write")], value: Double(s.bytesWritten))]
                 })
        p.family("synthvm_disk_errors_total", type: "counter",
                 help: "Requests each disk completed with MEDIUM ERROR (a failed host call, injected io-error faults included).",
                 disks.map { d, s in .init(labels: labels(d), value: Double(s.errors)) })
        p.histogram("synthvm_disk_request_duration_seconds",
                    help: "Time from taking a request from the ring to writing its completion, in the storage worker.",
                    disks.map { d, s in
                        let cumulative = s.cumulativeBuckets
                        return .init(labels: labels(d),
                                     buckets: cumulative.enumerated().map { (StorageMetricsRegion.bucketBound($0.offset), $0.element) },
                                     sum: Double(s.latencyNanoseconds) / 1e9, count: cumulative.last ?? 0)
                    })
    }

    func killWorker(_ name: String) -> Result<Int32, APIError> {
        guard let sup = supervisor, name != SpawnerLink.executableName, sup.status.contains(where: { $0.name == name }) else {
            let known = workers().map(\.name)
            return .failure(APIError(.workerNotFound, "no worker \(name) in this VM"
                + (known.isEmpty ? " (it runs none)" : " (workers: \(known.joined(separator: ", ")))")))
        }
        guard !control.isStopping else { return .failure(APIError(.stopping, "the VM is stopping")) }
        guard let pid = sup.kill(worker: name) else {
            return .failure(APIError(.workerNotRunning, "worker \(name) is not running"))
        }
        return .success(pid)
    }

    /// crash, hang, slow, syscall, io-error, torn: a WorkerFault record on the worker's control
    /// socket (a non-blocking SEQPACKET write; WorkerRuntime handles it in the worker's serve
    /// loop, the storage worker's service the storage kinds).
    func injectFault(_ name: String, kind: String, argument: UInt32) -> Result<Int32, APIError> {
        guard let faultKind = WorkerFault.Kind(name: kind), faultKind.argumentRange.contains(argument) else {
            return .failure(APIError(.notSupported, "fault kind \(kind) is not supported"))
        }
        if faultKind.storageOnly, let k = workerKinds[name], k != "storage" {
            return .failure(APIError(.invalidArgument, "fault \(kind) applies to storage workers only (\(name) is a \(k) worker)"))
        }
        guard let link = restarts?.link(named: name) else {
            let known = workers().map(\.name)
            return .failure(APIError(.workerNotFound, "no worker \(name) in this VM"
                + (known.isEmpty ? " (it runs none)" : " (workers: \(known.joined(separator: ", ")))")))
        }
        guard !control.isStopping else { return .failure(APIError(.stopping, "the VM is stopping")) }
        guard supervisor?.status.contains(where: { $0.pid == link.process.pid && $0.exit == nil }) == true,
              link.send(WorkerFault(kind: faultKind, argument: argument).encoded()) else {
            return .failure(APIError(.workerNotRunning, "worker \(name) is not running"))
        }
        return .success(link.process.pid)
    }

    /// Asks the guest once (the supervising loop then allows it `--shutdown-grace` seconds, as
    /// after SIGTERM: status 0 when it powers off, 131 when it does not in time or refuses); a
    /// second `shutdown`, or a guest that cannot be asked, stops the VM hard (130).
    func shutdown() -> APIShutdownResult {
        if !control.hasAskedGuestToShutDown, !control.isStopping, askGuestToShutDown(), control.noteGuestAskedToShutDown() {
            return .guestAsked
        }
        control.requestStop(.controlSocketStop)
        return .hardStop
    }

    func stop() -> Bool { control.requestStop(.controlSocketStop) }

    func log(_ line: String) { writeAll(Array((line + "\n").utf8), fd: 2) }
}
